"""The `smcn` command line: demo-data, prepare, train, evaluate, export, report, serve, predict.

Each subcommand has `--help`. Settings come from a YAML preset (`--config`,
see `configs/`) and `--set section.key=value` overrides.

Quiet by default: TensorFlow's C++ start-up lines (oneDNN, CUDA drivers,
cuInit, cpu_feature_guard, absl::InitializeLog), its Python retracing
warnings and transformers' "PyTorch was not found" advice are hidden (see
`smcn_tf.quiet`). `smcn --verbose COMMAND ...` (before the command) or
SMCN_VERBOSE=1 shows them. `smcn train --verbose N` (after the command) is
only Keras' progress verbosity and does not turn them on.
"""

import argparse
import os
import sys

from smcn_tf import quiet

# Commands import what they need inside their functions, on purpose: start-up time.


def _add_config_arguments(parser):
    parser.add_argument(
        "--config",
        help="YAML preset (configs/iemocap.yaml, configs/meld.yaml, configs/demo.yaml).",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="Override one config value, e.g. --set training.steps=100 (repeatable).",
    )


def _load_config(args):
    from smcn_tf.config import load_config

    return load_config(args.config, args.overrides)


def command_demo_data(args):
    if args.layout == "meld":
        from smcn_tf.corpora.demo_meld import write_demo_meld

        root = write_demo_meld(
            args.out, seed=args.seed, utterances_per_class=args.utterances_per_class
        )
        print(f"Demo corpus (MELD.Raw layout) written to {root}")
        return 0
    from smcn_tf.corpora.demo import write_demo_corpus

    root = write_demo_corpus(
        args.out, seed=args.seed, utterances_per_speaker=args.utterances_per_speaker
    )
    print(f"Demo corpus (IEMOCAP release layout) written to {root}")
    return 0


def _configured_corpus(args):
    """The corpus the config names itself, and where: `(name, source)`.

    `features.corpus` from the last `--set features.corpus=...`, else from the
    `--config` file; `(None, None)` when neither sets it. The built-in default
    ("iemocap") does not count, so `smcn prepare demo` without a config keeps
    working.
    """
    import yaml

    for override in reversed(args.overrides):
        path, _, value = override.partition("=")
        if path.strip() == "features.corpus":
            return yaml.safe_load(value), "--set features.corpus"
    if args.config:
        # `_load_config` has read and validated the file already.
        with open(args.config, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
        features = values.get("features") if isinstance(values, dict) else None
        if isinstance(features, dict) and features.get("corpus") is not None:
            return features["corpus"], f"features.corpus in {args.config}"
    return None, None


def _resolve_corpus(args):
    """The corpus to prepare, and its adapter.

    The positional CORPUS and the config's `features.corpus` must agree when
    both are given (the config's other settings, e.g. pooling, are meant for
    its corpus); either alone is enough.

    Raises:
        ValueError: neither is given, they differ, or the name is unknown
            (the message lists the known ones).
    """
    from smcn_tf.corpora import registry

    configured, source = _configured_corpus(args)
    if args.corpus is None and configured is None:
        raise ValueError(
            f"name the corpus ({', '.join(registry.corpus_names())}) or give a --config "
            "whose features.corpus names it."
        )
    if args.corpus is not None and configured is not None and args.corpus != configured:
        raise ValueError(
            f"the command line names corpus {args.corpus!r} but {source} is "
            f"{configured!r}; drop one of them, or add --set features.corpus={args.corpus} "
            "to use this config with that corpus."
        )
    name = configured if args.corpus is None else args.corpus
    return name, registry.get_corpus(name)


def _corpus_root_and_options(args, name, adapter):
    """The root to load (`--data-dir`, or `--manifest` for a file corpus) and
    the corpus' options (`--classes`, `--label-map`).

    Raises:
        ValueError: a flag the corpus does not use, or a missing one.
    """
    if adapter.root_kind == "file":
        if args.data_dir is not None:
            raise ValueError(
                f"corpus {name!r} reads a manifest file: give --manifest FILE, not "
                "--data-dir (relative audio paths are read from the manifest's folder)."
            )
        if args.manifest is None:
            raise ValueError(f"corpus {name!r} needs --manifest FILE (the CSV manifest).")
        root = args.manifest
    else:
        if args.manifest is not None:
            raise ValueError(
                f"--manifest is for the csv corpus; corpus {name!r} takes --data-dir."
            )
        if args.data_dir is None:
            raise ValueError(f"corpus {name!r} needs --data-dir (the root of the raw corpus).")
        root = args.data_dir
    options = {}
    for flag, option, value in (
        ("--classes", "classes", args.classes),
        ("--label-map", "label_map", args.label_map),
    ):
        if value is None:
            continue
        if option not in adapter.option_names:
            raise ValueError(f"{flag} is for the csv corpus; corpus {name!r} does not take it.")
        options[option] = value
    return root, options


def command_prepare(args):
    from smcn_tf.records.prepare import (
        format_augmentation,
        format_counts_table,
        format_skipped,
        prepare_corpus,
    )

    config = _load_config(args)
    features = config.features
    corpus, adapter = _resolve_corpus(args)
    root, options = _corpus_root_and_options(args, corpus, adapter)
    report = prepare_corpus(
        corpus,
        root,
        args.out,
        pooling=features.pooling,
        max_frames=features.max_frames,
        max_tokens=features.max_tokens,
        text_encoder_dir=args.text_encoder or features.text_encoder,
        shard_size=features.shard_size,
        strict=args.strict,
        progress=not args.quiet,
        max_seconds=args.max_seconds,
        min_seconds=features.min_seconds if args.min_seconds is None else args.min_seconds,
        corpus_options=options,
        sample_rate=features.sample_rate,
        speed_perturbation=features.speed_perturbation,
        mel_bands=features.mel_bands,
    )
    print(format_counts_table(report))
    _print_text_encoder(report.get("features", {}), args.out, "prepare")
    report_path = os.path.join(args.out, "report.json")
    skipped = format_skipped(report, report_path=report_path, names=not args.quiet)
    if skipped:
        print(skipped)
    augmented = format_augmentation(report)
    if augmented:
        print(augmented)
    print(f"Prepared features in {args.out} (report: {report_path})")
    return 0


def _print_text_encoder(features, path, command):
    """Name the text encoder; on stderr, as a warning, when it is not the paper's."""
    from smcn_tf.report import text_encoder_note

    line, is_paper = text_encoder_note(
        {"path": path, "text_encoder": features.get("text_encoder"),
         "text_dim": features.get("text_dim")}
    )
    if is_paper:
        print(line)
    else:
        print(f"smcn {command}: warning: {line}", file=sys.stderr)


def command_train(args):
    from smcn_tf.evaluate import format_summary
    from smcn_tf.train import run_experiment

    config = _load_config(args)
    summary = run_experiment(
        config,
        args.data,
        args.run_dir,
        folds=args.fold or None,
        verbose=args.verbose,
    )
    if summary is None:  # a multi-worker run's non-chief worker: it writes nothing
        print(f"Worker done; the chief writes the results to {args.run_dir}.")
        return 0
    print()
    print(f"{config.model.variant} on {args.data}")
    print(format_summary(summary))
    print()
    print(f"Results:     {os.path.join(args.run_dir, 'summary.json')}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(args.run_dir, 'tensorboard')}")
    return 0


def command_evaluate(args):
    from smcn_tf.records import format as records
    from smcn_tf.evaluate import (
        evaluate_missing,
        format_missing,
        format_summary,
        held_out_dataset,
        score_fold,
        summarize_folds,
    )
    from smcn_tf.io_utils import read_json
    from smcn_tf.model.smcn import load_model

    manifest = records.read_manifest(args.data)
    fold_results = {}
    folds = args.fold or sorted(
        name
        for name in os.listdir(args.run_dir)
        if os.path.isfile(os.path.join(args.run_dir, name, "model.keras"))
    )
    if not folds:
        raise ValueError(f"No trained fold (<fold>/model.keras) under {args.run_dir}.")
    for fold in folds:
        fold_dir = os.path.join(args.run_dir, fold)
        results_path = os.path.join(fold_dir, "results.json")
        if not os.path.isfile(results_path):
            raise ValueError(f"{results_path} is missing: was fold {fold} trained?")
        test_groups = read_json(results_path)["test_groups"]
        if not test_groups:  # the final model trained on everything
            continue
        model = load_model(os.path.join(fold_dir, "model.keras"), compile=False)
        if args.missing:
            # Each route (full input, unimodal head, fused head fed zeros) per fold.
            dataset = held_out_dataset(args.data, test_groups, args.batch_size)
            routes = evaluate_missing(model, dataset, manifest.class_names, args.missing)
            for route, report in routes.items():
                fold_results.setdefault(route, {})[fold] = report
            continue
        # The same scoring as `smcn train` gives the fold's results.json.
        fold_results[fold], _ = score_fold(
            model, args.data, test_groups, manifest.class_names, args.batch_size
        )
    if args.missing:
        pooled = {
            route: summarize_folds(results, manifest.class_names)["pooled"]
            for route, results in fold_results.items()
        }
        print(f"Pooled over folds {', '.join(sorted(fold_results['both']))}:")
        print(format_missing(pooled, args.missing))
        return 0
    print(format_summary(summarize_folds(fold_results, manifest.class_names)))
    return 0


def command_export(args):
    from smcn_tf.export.exporter import export_from_run

    path = export_from_run(args.model, args.export_base, args.model_name, args.version)
    print(f"SavedModel (TF Serving layout) written to {path}")
    print(f"Inspect it: saved_model_cli show --dir {path} --all")
    return 0


def command_report(args):
    from smcn_tf.report import build_report, load_runs, text_encoder_notes

    text = build_report(args.run, tables=args.table or (1, 2, 3))
    # The markdown says it too; stderr makes sure a script's user sees it.
    for line, is_paper in text_encoder_notes(load_runs(args.run)):
        if not is_paper:
            print(f"smcn report: warning: {line}", file=sys.stderr)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
        print(f"Report written to {args.out}")
    else:
        print(text)
    return 0


def _add_demo_data_parser(commands):
    """`smcn demo-data`: the built-in demo corpus."""
    demo = commands.add_parser(
        "demo-data", help="Write the built-in demo corpus in IEMOCAP's release layout."
    )
    demo.add_argument("--out", required=True, help="Directory to write the corpus to.")
    demo.add_argument(
        "--layout",
        choices=["iemocap", "meld"],
        default="iemocap",
        help="Release layout to imitate: IEMOCAP_full_release (default) or MELD.Raw.",
    )
    demo.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    demo.add_argument(
        "--utterances-per-speaker",
        type=int,
        default=24,
        help="Labelled utterances per speaker (default 24).",
    )
    demo.add_argument(
        "--utterances-per-class",
        type=int,
        default=4,
        help="MELD layout: utterances per class and split (default 4).",
    )
    demo.set_defaults(handler=command_demo_data)


def _add_prepare_parser(commands):
    """`smcn prepare`: a corpus to sharded TFRecords."""
    from smcn_tf.corpora import registry

    prepare = commands.add_parser(
        "prepare",
        help="Parse a corpus and write log-Mel + BERT features as TFRecords.",
        description="Parse a corpus and write log-Mel + BERT features as TFRecords. "
        "Corpora: " + "; ".join(
            f"{name}: {registry.get_corpus(name).description}" for name in registry.corpus_names()
        ) + ".",
    )
    prepare.add_argument(
        "corpus",
        nargs="?",
        choices=registry.corpus_names(),
        help="The corpus (default: the config's features.corpus; when both are given "
        "they must agree).",
    )
    prepare.add_argument(
        "--data-dir", help="Root of the raw corpus (every corpus but csv)."
    )
    prepare.add_argument(
        "--manifest",
        help="csv: the CSV manifest (columns path, transcript, label, group; optional "
        "speaker, start, end, id); relative paths are read from its folder.",
    )
    prepare.add_argument(
        "--classes",
        help="csv: the class names in order, e.g. ang,hap,neu,sad; rows with other labels "
        "are dropped and reported (default: every label, in order of first appearance).",
    )
    prepare.add_argument(
        "--label-map",
        help="csv: merge labels before --classes, e.g. exc:hap,sur:neu.",
    )
    prepare.add_argument("--out", required=True, help="Directory for shards + manifest.")
    prepare.add_argument(
        "--text-encoder",
        help="Local Hugging Face BERT checkpoint dir (default: installed all-MiniLM-L6-v2).",
    )
    prepare.add_argument(
        "--strict",
        action="store_true",
        help="Stop at the first missing or unreadable audio file or missing transcript "
        "instead of skipping it.",
    )
    prepare.add_argument(
        "--max-seconds",
        type=float,
        help="Cut longer clips (reported); default 30 s for MELD, no limit for IEMOCAP "
        "and csv.",
    )
    prepare.add_argument(
        "--min-seconds",
        type=float,
        help="Skip shorter clips (reported); default features.min_seconds (0.1 s).",
    )
    prepare.add_argument(
        "--quiet",
        action="store_true",
        help="No progress bar; count the skipped utterances without listing them.",
    )
    _add_config_arguments(prepare)
    prepare.set_defaults(handler=command_prepare)


def _add_train_parser(commands):
    """`smcn train`: every fold of a run."""
    train = commands.add_parser(
        "train", help="Train and score every fold (LOSO or the official split)."
    )
    train.add_argument("--data", required=True, help="Prepared features directory.")
    train.add_argument("--run-dir", required=True, help="Output directory of the run.")
    train.add_argument(
        "--fold", action="append", help="Run only this fold (repeatable)."
    )
    train.add_argument("--verbose", type=int, default=2, help="Keras verbosity (0-2).")
    _add_config_arguments(train)
    train.set_defaults(handler=command_train)


def _add_evaluate_parser(commands):
    """`smcn evaluate`: the fold models of a run, scored again."""
    evaluate = commands.add_parser(
        "evaluate", help="Score the trained fold models of a run on their test groups."
    )
    evaluate.add_argument("--data", required=True, help="Prepared features directory.")
    evaluate.add_argument("--run-dir", required=True, help="A run directory of `smcn train`.")
    evaluate.add_argument("--fold", action="append", help="Only this fold (repeatable).")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument(
        "--missing",
        choices=("text", "audio"),
        help="Score with this modality removed: through the other modality's own "
        "head and through the fused head fed zeros, beside the full input.",
    )
    evaluate.set_defaults(handler=command_evaluate)


def _add_export_parser(commands):
    """`smcn export`: a trained model as a TF Serving SavedModel."""
    export = commands.add_parser(
        "export", help="Export a trained model as a TF Serving SavedModel."
    )
    export.add_argument(
        "--model",
        required=True,
        help="A <run>/<fold>/model.keras written by train (the run's features.json "
        "says how to rebuild the raw-input front end).",
    )
    export.add_argument(
        "--export-base", required=True, help="Base path: <base>/<model-name>/<version>/."
    )
    export.add_argument("--model-name", default="smcn", help="Served model name.")
    export.add_argument(
        "--version", type=int, help="Version number (default: newest + 1)."
    )
    export.set_defaults(handler=command_export)


def _add_report_parser(commands):
    """`smcn report`: the paper's tables beside ours."""
    report = commands.add_parser(
        "report",
        help="Markdown tables like the paper's (ours beside the paper's), confusion matrices.",
    )
    report.add_argument(
        "--run", action="append", required=True,
        help="A finished run directory (repeatable; seeds of one variant are pooled).",
    )
    report.add_argument(
        "--table", type=int, action="append", choices=[1, 2, 3],
        help="Which of the paper's tables (repeatable; default all).",
    )
    report.add_argument("--out", help="Write the markdown here instead of printing it.")
    report.set_defaults(handler=command_report)


def build_parser():
    """The `smcn` parser: one sub-command per stage, plus `serve` and `predict`."""
    parser = argparse.ArgumentParser(
        prog="smcn",
        description="SMCN (ICASSP 2022) speech + text emotion recognition in Keras 3.",
    )
    parser.add_argument(
        "--verbose",
        dest="startup_logs",
        action="store_true",
        help="Show TensorFlow's C++ start-up logs and library advice, hidden by default "
        "(give it before the command; also SMCN_VERBOSE=1). Not `train --verbose N`, "
        "which is Keras' progress verbosity.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    for add_parser in (
        _add_demo_data_parser,
        _add_prepare_parser,
        _add_train_parser,
        _add_evaluate_parser,
        _add_export_parser,
        _add_report_parser,
    ):
        add_parser(commands)

    # `serve` (a local server with TF Serving's gRPC/REST API) and `predict`.
    from smcn_tf.serving.local import commands as serving_commands

    serving_commands.add_parsers(commands)
    return parser


def main(argv=None):
    # First: TF_CPP_MIN_LOG_LEVEL is read when TensorFlow loads, so the choice
    # is made from the raw command line before anything imports it.
    quiet.configure(quiet.verbose_requested(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"smcn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
