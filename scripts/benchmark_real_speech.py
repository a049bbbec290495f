"""Accuracy on real acted speech: EmoDB, leave-speakers-out, against a simple reference.

EmoDB (the Berlin Database of Emotional Speech: 535 utterances, 10 speakers, 10
German sentences each spoken in 7 emotions) is read from a folder of its wav
files, named as the release names them (`03a01Fa.wav`: speaker 03, text a01,
emotion F, version a). The script:

1. writes the CSV manifest (`smcn prepare csv`): the transcript of each text
   code, the emotion from the file name, the speaker, and as the group a
   pair of speakers (5 folds of 2 speakers: 03+08, 09+10, 11+12, 13+14,
   15+16);
2. prepares the features for 4 classes (neutral, happiness, sadness, anger,
   as IEMOCAP has) and for all 7;
3. trains the `audio` variant and `smcn` with the preset's settings
   (configs/iemocap.yaml by default) under every `model.audio_normalization`
   and both `training.select` modes, leave-one-pair-out;
4. computes the reference inside the script: the mean and standard deviation
   of the same log-Mel+Δ+ΔΔ frames over each utterance, standardised on the
   training folds, and a logistic regression (scikit-learn);
5. prints UA / WA (mean over the 5 folds) of everything, side by side, and
   writes them to `<work>/results.json` with the command of every run.

Every sentence is spoken in every emotion, so the transcripts carry no
emotion here: `smcn` can only match `audio`. This is a check of the audio
path on real voices, not a tuning target.

Usage:

    scripts/benchmark_real_speech.sh /data/emodb/wav [--work work/emodb]
        [--config configs/iemocap.yaml] [--steps N] [--quick]

Not in CI: it needs the corpus and, on 2 CPU cores, about an hour (`--quick`
runs one normalisation and one selection mode, a few minutes).
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The release's emotion letters (German initials).
EMOTIONS = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
FOUR_CLASSES = ("neutral", "happiness", "sadness", "anger")
SEVEN_CLASSES = ("neutral", "happiness", "sadness", "anger", "boredom", "disgust", "fear")
# The ten sentences, by text code (the release's documentation).
TRANSCRIPTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
SPEAKER_PAIRS = (("03", "08"), ("09", "10"), ("11", "12"), ("13", "14"), ("15", "16"))
FILE_NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])\.wav$")


def group_of(speaker):
    """The fold a speaker belongs to, e.g. "spk03-08"."""
    for pair in SPEAKER_PAIRS:
        if speaker in pair:
            return f"spk{pair[0]}-{pair[1]}"
    raise ValueError(f"Speaker {speaker!r} is not one of EmoDB's ten speakers.")


def write_manifest(corpus_dir, path):
    """Write the CSV manifest of the EmoDB wavs in `corpus_dir`.

    Returns:
        The number of rows written.

    Raises:
        ValueError: a wav whose name is not EmoDB's, or no wav at all.
    """
    names = sorted(name for name in os.listdir(corpus_dir) if name.endswith(".wav"))
    if not names:
        raise ValueError(f"{corpus_dir} holds no .wav files.")
    rows = []
    for name in names:
        match = FILE_NAME.match(name)
        if not match or match.group(2) not in TRANSCRIPTS:
            raise ValueError(
                f"{os.path.join(corpus_dir, name)}: not an EmoDB file name "
                "(speaker, text code, emotion letter, version: 03a01Fa.wav)."
            )
        speaker, text, emotion, _ = match.groups()
        rows.append(
            {
                "id": name[:-4],
                "path": os.path.abspath(os.path.join(corpus_dir, name)),
                "transcript": TRANSCRIPTS[text],
                "label": EMOTIONS[emotion],
                "group": group_of(speaker),
                "speaker": f"spk{speaker}",
            }
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def utterance_statistics(records_dir, groups):
    """Per utterance: the mean and std of its valid frames, its label.

    Returns:
        `(features [n, 2 * audio_dim], labels [n])`.
    """
    from smcn_tf.records import pipeline

    features, labels = [], []
    dataset = pipeline.make_dataset(records_dir, groups=groups, batch_size=64)
    for inputs, label in dataset:
        frames = inputs["audio_features"].numpy().astype(np.float64)
        lengths = inputs["audio_length"].numpy()
        for row, length in enumerate(lengths):
            valid = frames[row, :length]
            features.append(np.concatenate([valid.mean(axis=0), valid.std(axis=0)]))
        labels.append(label.numpy())
    return np.stack(features), np.concatenate(labels)


def reference_scores(records_dir, folds, num_classes):
    """UA / WA per fold of the reference: utterance mean+std, standardised,
    logistic regression; fitted on the other folds only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = {fold: utterance_statistics(records_dir, [fold]) for fold in folds}
    per_fold = {}
    for fold in folds:
        train_x = np.concatenate([data[other][0] for other in folds if other != fold])
        train_y = np.concatenate([data[other][1] for other in folds if other != fold])
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        classifier.fit(train_x, train_y)
        test_x, test_y = data[fold]
        predicted = classifier.predict(test_x)
        per_fold[fold] = {
            "unweighted_accuracy": float(balanced_accuracy_score(test_y, predicted)),
            "weighted_accuracy": float(accuracy_score(test_y, predicted)),
        }
    return _mean_of(per_fold)


def _mean_of(per_fold):
    return {
        name: float(np.mean([scores[name] for scores in per_fold.values()]))
        for name in ("unweighted_accuracy", "weighted_accuracy")
    } | {"folds": per_fold}


def _smcn(*arguments):
    return [sys.executable, "-m", "smcn_tf.cli", *arguments]


def _run(command, log_path):
    """Run a command, its output to `log_path`; raise with its tail on failure."""
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code:
        with open(log_path, encoding="utf-8") as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{tail}")


def settings_matrix(quick, normalizations=None, selects=None):
    """The (variant, normalisation, selection) runs, reference excluded."""
    if quick:
        return [("audio", "none", "last"), ("smcn", "none", "last")]
    runs = []
    for normalization in normalizations or ("none", "global", "utterance"):
        for select in selects or ("last", "best"):
            for variant in ("audio", "smcn"):
                runs.append((variant, normalization, select))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", help="The folder of EmoDB's 535 wav files.")
    parser.add_argument("--work", default="work/emodb", help="Where everything is written.")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "iemocap.yaml"))
    parser.add_argument("--steps", type=int, help="training.steps (default: the preset's).")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[],
        help="More config overrides for every run (section.key=value).",
    )
    parser.add_argument("--classes", choices=("4", "7", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="Two runs per class set.")
    parser.add_argument(
        "--normalizations", help="Comma-separated model.audio_normalization values to run "
        "(default: none,global,utterance).",
    )
    parser.add_argument(
        "--selects", help="Comma-separated training.select values to run (default: last,best).",
    )
    args = parser.parse_args(argv)

    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    manifest = os.path.join(work, "emodb.csv")
    count = write_manifest(args.corpus_dir, manifest)
    print(f"EmoDB: {count} utterances -> {manifest}", flush=True)
    folds = [group_of(pair[0]) for pair in SPEAKER_PAIRS]
    common = [
        "--config", args.config,
        "--set", "features.corpus=csv",
        "--set", f"evaluation.folds=[{','.join(folds)}]",
        "--set", "evaluation.protocol=loso",
        "--set", "evaluation.final_model=false",
    ]
    if args.steps:
        common += ["--set", f"training.steps={args.steps}"]
    for override in args.overrides:
        common += ["--set", override]
    results = {"corpus_dir": os.path.abspath(args.corpus_dir), "config": args.config,
               "overrides": common, "class_sets": {}}
    class_sets = {"4": FOUR_CLASSES, "7": SEVEN_CLASSES}
    chosen = ["4", "7"] if args.classes == "both" else [args.classes]
    for key in chosen:
        classes = class_sets[key]
        features = os.path.join(work, f"features-{key}")
        prepare = _smcn(
            "prepare", "csv", "--manifest", manifest, "--classes", ",".join(classes),
            "--out", features, "--quiet", *common,
        )
        print(f"[{key} classes] prepare: {' '.join(prepare)}", flush=True)
        _run(prepare, os.path.join(work, f"prepare-{key}.log"))
        entry = {"classes": list(classes), "runs": {}}
        started = time.time()
        entry["reference"] = reference_scores(features, folds, len(classes))
        entry["reference"]["seconds"] = round(time.time() - started, 1)
        print(
            f"[{key} classes] reference (mean+std, logistic regression): "
            f"UA {100 * entry['reference']['unweighted_accuracy']:.2f}", flush=True,
        )
        matrix = settings_matrix(
            args.quick,
            args.normalizations.split(",") if args.normalizations else None,
            args.selects.split(",") if args.selects else None,
        )
        for variant, normalization, select in matrix:
            name = f"{variant}-{normalization}-{select}"
            run_dir = os.path.join(work, f"runs-{key}", name)
            overrides = [
                "--set", f"model.variant={variant}",
                "--set", f"model.audio_normalization={normalization}",
                "--set", f"training.select={select}",
            ]
            if select == "best":
                overrides += ["--set", "evaluation.validation=group"]
            command = _smcn(
                "train", "--data", features, "--run-dir", run_dir, "--verbose", "0",
                *common, *overrides,
            )
            started = time.time()
            os.makedirs(os.path.dirname(run_dir), exist_ok=True)
            _run(command, run_dir + ".log")
            with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as stream:
                summary = json.load(stream)
            entry["runs"][name] = {
                "command": " ".join(command),
                "unweighted_accuracy": summary["mean"]["unweighted_accuracy"],
                "weighted_accuracy": summary["mean"]["weighted_accuracy"],
                "folds": summary["folds"],
                "seconds": round(time.time() - started, 1),
            }
            print(
                f"[{key} classes] {name:<24} UA "
                f"{100 * summary['mean']['unweighted_accuracy']:.2f}  WA "
                f"{100 * summary['mean']['weighted_accuracy']:.2f}  "
                f"({time.time() - started:.0f} s)",
                flush=True,
            )
        results["class_sets"][key] = entry
        with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as stream:
            json.dump(results, stream, indent=2)
    print()
    print(format_table(results))
    return 0


def format_table(results):
    """UA / WA of the reference and every run, per class set, in %."""
    lines = []
    for key, entry in results["class_sets"].items():
        reference = entry["reference"]["unweighted_accuracy"]
        lines.append(f"EmoDB, {key} classes, 5 folds of 2 speakers (mean over folds)")
        lines.append(f"{'system':<28} {'UA':>7} {'WA':>7} {'UA - ref':>9}")
        lines.append(
            f"{'reference (mean+std, LR)':<28} {100 * reference:7.2f} "
            f"{100 * entry['reference']['weighted_accuracy']:7.2f} {'':>9}"
        )
        for name, run in entry["runs"].items():
            lines.append(
                f"{name:<28} {100 * run['unweighted_accuracy']:7.2f} "
                f"{100 * run['weighted_accuracy']:7.2f} "
                f"{100 * (run['unweighted_accuracy'] - reference):+9.2f}"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
