"""Render a finished run's TensorBoard figures to PNG files (for the README).

The same figures as `smcn_tf.training.tensorboard_logging` logs, made by the same
functions, for one fold of a run:

- `confusion_matrix.png`: the held-out confusion matrix, counts and
  row-normalised, from the fold's `results.json` predictions (checked against
  its `confusion_matrix`);
- `attention.png`: one held-out utterance (the first of
  `select_attention_examples`, or `--utterance`): log-Mel frames and every
  attention of the variant; the word pieces the records keep (or, for
  records prepared without them, those of `--corpus`'s transcripts);
- `calibration.png`: the calibration diagnostics over epochs, read back from
  `<run>/tensorboard/<fold>/calibration/`. A run trained without
  `CalibrationDiagnostics` has none: `--backfill-calibration` computes them
  from the fold's per-epoch checkpoints into that directory first.

    python scripts/render_tensorboard_figures.py --run-dir work/demo/run \\
        --out docs/tensorboard --corpus work/demo/corpus

It prints the files it writes.
"""

import argparse
import glob
import json
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smcn_tf import quiet  # noqa: E402

# TensorFlow's start-up lines only with --verbose (or SMCN_VERBOSE=1).
quiet.configure(quiet.verbose_requested(sys.argv[1:]))

import numpy as np  # noqa: E402

from smcn_tf import evaluate  # noqa: E402
from smcn_tf.training import tensorboard_logging as tb  # noqa: E402


def _read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def _first_scored_fold(run_dir):
    summary_path = os.path.join(run_dir, "summary.json")
    folds = list(_read_json(summary_path)["folds"]) if os.path.isfile(summary_path) else sorted(
        os.path.basename(os.path.dirname(path))
        for path in glob.glob(os.path.join(run_dir, "*", "results.json"))
    )
    for fold in folds:
        if os.path.isfile(os.path.join(run_dir, fold, "results.json")):
            return fold
    raise SystemExit(f"{run_dir} has no fold with a results.json: train it first.")


def _transcripts(corpus, root):
    """Utterance id -> transcript of a corpus directory."""
    try:
        from smcn_tf.corpora import registry
    except ImportError:
        registry = None
    if registry is not None and hasattr(registry, "get_corpus"):
        utterances = registry.get_corpus(corpus).load(root, strict=False).utterances
    elif corpus in ("meld", "demo-meld"):
        from smcn_tf.corpora import meld

        utterances = meld.parse_meld(root).utterances
    else:
        from smcn_tf.corpora import iemocap

        utterances = iemocap.parse_iemocap(root, strict=False).utterances
    return {utterance.utterance_id: utterance.transcript for utterance in utterances}


def _save(figure, path):
    with open(path, "wb") as stream:
        stream.write(tb.figure_to_png(figure))
    print(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a finished `smcn train` run")
    parser.add_argument("--out", required=True, help="where the PNG files go")
    parser.add_argument("--fold", help="the fold (default: the run's first scored fold)")
    parser.add_argument("--records", help="the prepared features (default: summary.json's)")
    parser.add_argument("--corpus", help="the corpus directory, for the token strings")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up logs")
    parser.add_argument("--utterance", help="the utterance to draw (default: the first chosen)")
    parser.add_argument(
        "--backfill-calibration", action="store_true",
        help="compute missing calibration diagnostics from the fold's epoch checkpoints",
    )
    args = parser.parse_args(argv)

    from smcn_tf.records import format as records_format
    from smcn_tf.records import pipeline
    from smcn_tf.model.smcn import load_model

    run_dir = args.run_dir
    fold = args.fold or _first_scored_fold(run_dir)
    results = _read_json(os.path.join(run_dir, fold, "results.json"))
    class_names = results["class_names"]
    os.makedirs(args.out, exist_ok=True)

    # The confusion matrix, from the same predictions results.json scored.
    labels = np.array([item["label"] for item in results["predictions"]])
    predictions = np.array([item["prediction"] for item in results["predictions"]])
    ids = [item["utterance_id"] for item in results["predictions"]]
    scores = evaluate.score_predictions(labels, predictions, class_names)
    if scores["confusion_matrix"] != results["confusion_matrix"]:
        raise SystemExit(f"{fold}/results.json: its predictions and confusion matrix disagree.")
    title = tb.confusion_title(scores, f"{fold}, held-out group")
    _save(
        tb.confusion_matrix_figure(scores["confusion_matrix"], class_names, title),
        os.path.join(args.out, "confusion_matrix.png"),
    )

    # One utterance's attention.
    records_dir = args.records
    if records_dir is None:
        records_dir = _read_json(os.path.join(run_dir, "summary.json"))["records_dir"]
    features = _read_json(os.path.join(run_dir, "features.json"))
    dataset = pipeline.make_dataset(
        records_dir, groups=results["test_groups"], batch_size=16, include_metadata=True
    )
    utterance = args.utterance or tb.select_attention_examples(ids, labels, per_class=1)[0]
    batch, batch_labels, batch_ids = tb.gather_examples(dataset, [utterance])
    # The word pieces `smcn prepare` kept in the shard sidecars; else re-tokenize
    # the corpus transcripts (records prepared before they were kept).
    tokens = records_format.read_token_strings(records_dir, [utterance])
    if tokens and tokens[0] is None:
        tokens = None
    if tokens is None and args.corpus:
        transcript = _transcripts(features["corpus"], args.corpus)[utterance]
        tokens = tb.token_strings([transcript], features["text_encoder"], features["max_tokens"])
    model = load_model(os.path.join(run_dir, fold, "model.keras"), compile=False)
    (example,) = tb.attention_examples(
        model, batch, batch_ids, tokens, batch_labels, class_names
    )
    _save(tb.attention_figure(**example), os.path.join(args.out, "attention.png"))

    # The calibration diagnostics, read back from the event files.
    log_dir = tb.fold_log_dir(run_dir, fold, tb.CALIBRATION_DIR)
    series = {
        tag: values for tag, values in tb.read_scalars(log_dir).items()
        if tag.startswith("calibration/")
    } if os.path.isdir(log_dir) else {}
    if not series and args.backfill_calibration:
        weights = sorted(glob.glob(os.path.join(run_dir, fold, "checkpoints", "epoch-*.weights.h5")))
        tb.backfill_calibration_diagnostics(log_dir, model, dataset, weights)
        series = {
            tag: values for tag, values in tb.read_scalars(log_dir).items()
            if tag.startswith("calibration/")
        }
    if series:
        title = f"{fold}: calibration diagnostics on the held-out group ({results['variant']})"
        _save(tb.calibration_figure(series, title), os.path.join(args.out, "calibration.png"))
    else:
        print(
            f"no calibration diagnostics in {log_dir} (variant {results['variant']}); "
            "--backfill-calibration computes them from the epoch checkpoints",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
