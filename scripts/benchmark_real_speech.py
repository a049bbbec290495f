"""Accuracy on real acted speech: EmoDB, leave-speakers-out, against classic references.

EmoDB (the Berlin Database of Emotional Speech: 535 utterances, 10 speakers, 10
German sentences each spoken in 7 emotions) is read from a folder of its wav
files, named as the release names them (`03a01Fa.wav`: speaker 03, text a01,
emotion F, version a). Everything is scored on the same 5 folds of 2 speakers
(03+08, 09+10, 11+12, 13+14, 15+16), leave-one-pair-out, for 4 classes
(neutral, happiness, sadness, anger, as IEMOCAP has) and for all 7. UA is the
balanced accuracy (mean recall over classes), WA the accuracy; each is the
mean over the 5 folds.

What it computes:

1. The CSV manifest (`<work>/emodb.csv`, for `smcn prepare csv`): the
   transcript of each text code, the emotion from the file name, the speaker,
   and as the group the pair of speakers.
2. The reference rows, deterministic (one run each), fitted on the training
   folds only, with a fixed C (never chosen on a test fold):
   - openSMILE functionals (the `opensmile` package: `pip install -e ".[bench]"`)
     of ComParE_2016 (6373-d) and eGeMAPSv02 (88-d), computed once per wav and
     cached under `<work>/opensmile/<set>.npz` (keyed by the file list, so
     reruns are free), each with a StandardScaler fitted on the training folds
     and LogisticRegression(C=0.1) (`compare-lr`, `egemaps-lr`) or
     LinearSVC(C=0.01) (`compare-svm`, `egemaps-svm`);
   - `logmel-lr`: the mean and standard deviation over each utterance of the
     log-Mel+Δ+ΔΔ frames that the `paper-*` systems read (configs/iemocap.yaml's
     features), standardised, LogisticRegression(C=1) (the earlier reference).
3. The network rows: each named system is a preset, a `model.variant` and
   overrides:
   - `paper-audio`, `paper-smcn`: configs/iemocap.yaml (the paper's settings),
     `training.steps=600` unless `--steps` is given;
   - `recipe-audio`, `recipe-smcn`: configs/small_corpus.yaml (the small-corpus
     recipe), its own steps unless `--steps` is given; skipped with a notice
     when that preset does not exist and `--systems` was not given.
   Features are prepared (`smcn prepare csv`) once per distinct resolved
   `features` section (e.g. the recipe's `features.speed_perturbation`) and
   class set, into `<work>/features-<classes>-<hash of the section>`. Every
   system trains `--seeds N` times (`training.seed` = 1..N) into
   `<work>/runs-<classes>/<system>-<hash of its settings>/seed<S>`; a run dir
   that holds a `summary.json` is read, not retrained, so a killed benchmark
   continues where it stopped (and changed settings get a new directory).
4. The table per class set: every row's UA and WA (network rows: mean ± std
   over the seeds, ddof=1, of each run's fold-mean) and its UA minus that of
   ComParE_2016 + LR (eGeMAPSv02 + LR when ComParE is not computed); then the
   command of every prepare and train run and the total wall time. All of it
   goes to `<work>/results.json`, rewritten after every step.

Every sentence is spoken in every emotion, so the transcripts carry no
emotion here: `smcn` can at best match `audio`. This is a check of the audio
path on real voices, not a tuning target.

Usage:

    scripts/benchmark_real_speech.sh /data/emodb/wav [--work work/emodb]
        [--systems paper-audio,paper-smcn,recipe-audio,recipe-smcn | none]
        [--references compare-lr,compare-svm,egemaps-lr,egemaps-svm,logmel-lr | none]
        [--seeds 3] [--steps N] [--classes 4|7|both] [--set section.key=value ...]
        [--references-only] [--quick]

`--references-only` is `--systems none`: the reference rows only (a few
minutes, most of it openSMILE's first pass over the wavs and the log-Mel
features' preparation).

`--quick` is a smoke run of a few minutes: 1 seed, 4 classes, `--steps 60` for
both presets, one system per preset and per variant (`paper-audio,recipe-smcn`),
the references without ComParE (`egemaps-lr,egemaps-svm,logmel-lr`). Flags
given explicitly win over these. (On 2 busy CPU cores a 5-fold run costs about
a minute of start-up, model building and scoring before its steps.)

Not in CI: it needs the corpus. On 2 CPU cores the default table (the
references, `paper-audio` and `recipe-audio`, 3 seeds, 4 and 7 classes: 12
five-fold runs, two at a time with `--jobs 2`) takes about 90 minutes; each
`smcn` system adds about 4x an `audio` one.
"""

import argparse
import concurrent.futures
import csv
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")

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
CLASS_SETS = {"4": FOUR_CLASSES, "7": SEVEN_CLASSES}
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


@dataclasses.dataclass(frozen=True)
class System:
    """A network row: a preset, a model variant and overrides of the preset."""

    config: str
    variant: str
    overrides: tuple = ()


PAPER_PRESET = os.path.join(CONFIGS, "iemocap.yaml")
RECIPE_PRESET = os.path.join(CONFIGS, "small_corpus.yaml")
SYSTEMS = {
    "paper-audio": System(PAPER_PRESET, "audio", ("training.steps=600",)),
    "paper-smcn": System(PAPER_PRESET, "smcn", ("training.steps=600",)),
    "recipe-audio": System(RECIPE_PRESET, "audio"),
    "recipe-smcn": System(RECIPE_PRESET, "smcn"),
}
# The default table: the audio variant of both presets (EmoDB's transcripts
# carry no emotion, and `smcn` trains about 4x slower on a CPU); add the
# smcn rows with --systems.
DEFAULT_SYSTEMS = ("paper-audio", "recipe-audio")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference row: utterance-level features + a standardised linear classifier."""

    features: str  # an openSMILE feature set, or "logmel"
    classifier: str  # "lr" | "svm"
    C: float
    title: str


REFERENCES = {
    "compare-lr": Reference("ComParE_2016", "lr", 0.1, "ComParE_2016 + LR (C=0.1)"),
    "compare-svm": Reference("ComParE_2016", "svm", 0.01, "ComParE_2016 + linear SVM (C=0.01)"),
    "egemaps-lr": Reference("eGeMAPSv02", "lr", 0.1, "eGeMAPSv02 + LR (C=0.1)"),
    "egemaps-svm": Reference("eGeMAPSv02", "svm", 0.01, "eGeMAPSv02 + linear SVM (C=0.01)"),
    "logmel-lr": Reference("logmel", "lr", 1.0, "log-Mel mean+std + LR (C=1)"),
}
DEFAULT_REFERENCES = tuple(REFERENCES)
# The row every other row's UA is compared with, first present wins.
BASELINES = {"compare-lr": "ComParE+LR", "egemaps-lr": "eGeMAPS+LR"}
LR_MAX_ITER = 20000
SVM_MAX_ITER = 50000

# --quick: what a smoke run resolves to (explicit flags win).
QUICK = {
    "seeds": 1,
    "classes": "4",
    "steps": 60,
    "systems": ("paper-audio", "recipe-smcn"),
    "references": ("egemaps-lr", "egemaps-svm", "logmel-lr"),
}
DEFAULTS = {
    "seeds": 3,
    "classes": "both",
    "steps": None,  # each system's own: 600 for paper-*, the preset's for recipe-*
    "systems": DEFAULT_SYSTEMS,
    "references": DEFAULT_REFERENCES,
}
OPENSMILE_MISSING = (
    "openSMILE is not installed: the reference rows need the `opensmile` package. "
    'Install it with: pip install -e ".[bench]"   (or skip those rows with '
    "--references logmel-lr or --references none)"
)


def group_of(speaker):
    """The fold a speaker belongs to, e.g. "spk03-08"."""
    for pair in SPEAKER_PAIRS:
        if speaker in pair:
            return f"spk{pair[0]}-{pair[1]}"
    raise ValueError(f"Speaker {speaker!r} is not one of EmoDB's ten speakers.")


FOLDS = tuple(group_of(pair[0]) for pair in SPEAKER_PAIRS)


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


def read_manifest(path):
    """The rows of a manifest written by `write_manifest`, as dicts."""
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


# ---------------------------------------------------------------- openSMILE


def opensmile_available():
    return importlib.util.find_spec("opensmile") is not None


def _file_list_key(paths):
    """A digest of the file list (absolute path and size of each file)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{os.path.abspath(path)}\t{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()


def _save_npz_atomic(path, **arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as stream:
        np.savez(stream, **arrays)
    os.replace(partial, path)


def opensmile_functionals(paths, feature_set, cache_dir):
    """openSMILE functionals of every file, `[len(paths), dim]`, cached.

    The cache, `<cache_dir>/<feature_set>.npz`, is used when it was computed
    for the same file list (paths and sizes); otherwise every file is
    processed again and the cache replaced, atomically.

    Returns:
        `(features float32 [n, dim], feature names, seconds spent computing
        (0.0 when read from the cache))`.
    """
    cache = os.path.join(cache_dir, f"{feature_set}.npz")
    key = _file_list_key(paths)
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return stored["features"], [str(name) for name in stored["names"]], 0.0
    import opensmile

    smile = opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    started = time.time()
    rows = []
    for path in paths:
        frame = smile.process_file(path)
        rows.append(frame.to_numpy(dtype=np.float32)[0])
    features = np.stack(rows)
    names = [str(name) for name in smile.feature_names]
    _save_npz_atomic(
        cache, key=np.array(key), files=np.array([os.path.abspath(p) for p in paths]),
        names=np.array(names), features=features,
    )
    return features, names, time.time() - started


# ---------------------------------------------------------------- references


def make_reference_classifier(kind, C):
    """StandardScaler + a linear classifier with a fixed C (`kind`: lr | svm)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "lr":
        classifier = LogisticRegression(C=C, max_iter=LR_MAX_ITER)
    elif kind == "svm":
        classifier = LinearSVC(C=C, max_iter=SVM_MAX_ITER, random_state=0)
    else:
        raise ValueError(f"Unknown reference classifier {kind!r} (lr, svm).")
    return make_pipeline(StandardScaler(), classifier)


def fit_reference(features, labels, groups, folds, kind, C):
    """Leave-one-fold-out scores of a standardised linear classifier.

    For each fold the scaler and the classifier are fitted on the other folds
    only, and the fold is scored: UA (balanced accuracy), WA (accuracy).

    Args:
        features: `[n, dim]`.
        labels: `[n]` class indices (or names).
        groups: `[n]` fold names.
        folds: the folds to score (each must hold items).
        kind: "lr" (LogisticRegression) or "svm" (LinearSVC).
        C: the inverse regularisation strength, fixed.

    Returns:
        `{"unweighted_accuracy", "weighted_accuracy"` (means over the folds),
        `"folds": {fold: {...}}, "classifier": "LogisticRegression(C=0.1)",
        "C", "converged"}`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    per_fold = {}
    converged = True
    description = None
    for fold in folds:
        test = groups == fold
        if not test.any() or test.all():
            raise ValueError(f"Fold {fold!r} holds no item, or every item.")
        model = make_reference_classifier(kind, C)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(features[~test], labels[~test])
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            converged = False
        estimator = model[-1]
        description = f"{type(estimator).__name__}(C={estimator.C:g})"
        predicted = model.predict(features[test])
        per_fold[fold] = {
            "unweighted_accuracy": float(balanced_accuracy_score(labels[test], predicted)),
            "weighted_accuracy": float(accuracy_score(labels[test], predicted)),
            "test_items": int(test.sum()),
        }
    return {
        "unweighted_accuracy": float(np.mean([s["unweighted_accuracy"] for s in per_fold.values()])),
        "weighted_accuracy": float(np.mean([s["weighted_accuracy"] for s in per_fold.values()])),
        "folds": per_fold,
        "classifier": f"StandardScaler + {description}",
        "C": float(C),
        "converged": converged,
    }


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


def logmel_statistics(records_dir, folds):
    """`utterance_statistics` of every fold: `(features, labels, groups)`."""
    parts = {fold: utterance_statistics(records_dir, [fold]) for fold in folds}
    features = np.concatenate([parts[fold][0] for fold in folds])
    labels = np.concatenate([parts[fold][1] for fold in folds])
    groups = np.concatenate([[fold] * len(parts[fold][1]) for fold in folds])
    return features, labels, groups


# ---------------------------------------------------------------- seeds and formatting


def summarise(values):
    """`{"mean", "std" (ddof=1; None for one value), "values"}` of per-run scores."""
    values = [float(value) for value in values]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "values": values,
    }


def format_mean_std(values, digits=2):
    """Fractions as "mean ± std" in % (std with ddof=1); one value: its % alone.

    >>> format_mean_std([0.80, 0.82, 0.84])
    '82.00 ± 2.00'
    """
    summary = summarise(values)
    text = f"{100 * summary['mean']:.{digits}f}"
    if summary["std"] is not None:
        text += f" ± {100 * summary['std']:.{digits}f}"
    return text


# ---------------------------------------------------------------- settings


def _merge_overrides(*groups):
    """`section.key=value` overrides, later ones winning, one per key."""
    merged = {}
    for group in groups:
        for override in group:
            if "=" not in override:
                raise ValueError(f"Override {override!r} must look like section.key=value.")
            key, value = override.split("=", 1)
            merged[key.strip()] = value
    return [f"{key}={value}" for key, value in merged.items()]


def _set_flags(overrides):
    flags = []
    for override in overrides:
        flags += ["--set", override]
    return flags


def _short_hash(value):
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _file_digest(path):
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def features_section(preset, overrides):
    """The resolved `features` section: the defaults, the preset's, the
    `features.*` overrides (values parsed as YAML, as `smcn` does)."""
    import yaml

    from smcn_tf.config import FeaturesConfig

    section = {}
    for field in dataclasses.fields(FeaturesConfig):
        if field.default is not dataclasses.MISSING:
            section[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            section[field.name] = field.default_factory()
    with open(preset, encoding="utf-8") as stream:
        values = yaml.safe_load(stream) or {}
    section.update(values.get("features") or {})
    for override in overrides:
        key, value = override.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) == 2 and parts[0] == "features":
            section[parts[1]] = yaml.safe_load(value)
    return section


def fold_overrides():
    """The same evaluation for every run: leave-one-pair-out on the 5 pairs."""
    return [
        "features.corpus=csv",
        f"evaluation.folds=[{','.join(FOLDS)}]",
        "evaluation.protocol=loso",
        "evaluation.final_model=false",
    ]


def _split_list(text, known, what):
    if text is None:
        return None
    if text.strip() in ("none", ""):
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(
            f"Unknown {what} {', '.join(unknown)}; known: {', '.join(known)} (or none)."
        )
    return names


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Not in CI. See the module docstring for what is computed.",
    )
    parser.add_argument("corpus_dir", help="The folder of EmoDB's 535 wav files.")
    parser.add_argument("--work", default="work/emodb", help="Where everything is written.")
    parser.add_argument(
        "--systems",
        help="Comma-separated network systems, or none (default: "
        f"{','.join(DEFAULT_SYSTEMS)}; known: {', '.join(SYSTEMS)}).",
    )
    parser.add_argument(
        "--references",
        help="Comma-separated reference rows, or none (default: "
        f"{','.join(DEFAULT_REFERENCES)}).",
    )
    parser.add_argument(
        "--references-only", action="store_true", help="The reference rows only (--systems none).",
    )
    parser.add_argument(
        "--seeds", type=int, help="Network runs per system, training.seed=1..N (default 3).",
    )
    parser.add_argument(
        "--steps", type=int,
        help="training.steps of every system (default: 600 for paper-*, the preset's for "
        "recipe-*).",
    )
    parser.add_argument("--classes", choices=("4", "7", "both"), help="Default: both.")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="One more config override for every network run, prepare and train "
        "(repeatable; features.* ones change the features, and so their directory).",
    )
    parser.add_argument(
        "--jobs", type=int, default=2,
        help="Training runs at a time, each with cores/jobs TensorFlow threads (default 2: "
        "on 2 cores, two one-thread runs train about twice as many steps per second "
        "as one two-thread run, the models being small).",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="Smoke run: 1 seed, 4 classes, --steps 60, paper-audio and recipe-smcn, no "
        "ComParE (explicit flags win).",
    )
    return parser


def resolve_settings(args):
    """The effective settings: explicit flags, else --quick's, else the defaults."""
    base = QUICK if args.quick else DEFAULTS
    systems = _split_list(args.systems, SYSTEMS, "system")
    if args.references_only:
        if systems:
            raise SystemExit("--references-only contradicts --systems.")
        systems = ()
    references = _split_list(args.references, REFERENCES, "reference")
    seeds = args.seeds if args.seeds is not None else base["seeds"]
    if seeds < 1:
        raise SystemExit("--seeds must be at least 1.")
    classes = args.classes or base["classes"]
    return {
        "quick": bool(args.quick),
        "seeds": seeds,
        "classes": ["4", "7"] if classes == "both" else [classes],
        "steps": args.steps if args.steps is not None else base["steps"],
        "systems": list(systems if systems is not None else base["systems"]),
        "systems_explicit": systems is not None,
        "references": list(references if references is not None else base["references"]),
        "overrides": list(args.overrides),
        "jobs": max(1, args.jobs),
        "threads": max(1, (os.cpu_count() or 1) // max(1, args.jobs)),
    }


# ---------------------------------------------------------------- running


def _smcn(*arguments):
    return [sys.executable, "-m", "smcn_tf.cli", *arguments]


def _run(command, log_path, threads=None):
    """Run a command, its output to `log_path`; raise with its tail on failure.

    `threads` caps TensorFlow's (and oneDNN's) threads in the child, so that
    parallel jobs share the cores instead of fighting over them.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    environment = dict(os.environ)
    if threads:
        environment.update(
            TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1",
            OMP_NUM_THREADS=str(threads),
        )
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=environment
        )
    if code:
        with open(log_path, encoding="utf-8") as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"{shlex.join(command)} failed ({code}):\n{tail}")


def _write_json_atomic(path, value):
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as stream:
        json.dump(value, stream, indent=2)
    os.replace(partial, path)


def _read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


class Benchmark:
    """The state of one benchmark: where it writes, what it ran, its results."""

    def __init__(self, corpus_dir, work, settings):
        self.work = work
        self.settings = settings
        self.manifest = os.path.join(work, "emodb.csv")
        self.results_path = os.path.join(work, "results.json")
        self.started = time.time()
        self.features = {}  # features dir -> its entry in results["features"]
        self.results = {
            "corpus_dir": os.path.abspath(corpus_dir),
            "work": work,
            "settings": {k: v for k, v in settings.items() if k != "systems_explicit"},
            "folds": list(FOLDS),
            "systems": {},
            "references": {
                name: dataclasses.asdict(REFERENCES[name]) for name in settings["references"]
            },
            "features": {},
            "class_sets": {},
            "commands": [],
            "skipped": {},
        }

    def save(self):
        self.results["wall_seconds"] = round(time.time() - self.started, 1)
        _write_json_atomic(self.results_path, self.results)

    # -- features

    def prepare_command(self, system, key, overrides, out):
        return _smcn(
            "prepare", "csv", "--manifest", self.manifest,
            "--classes", ",".join(CLASS_SETS[key]), "--out", out, "--quiet",
            "--config", system.config, *_set_flags(overrides),
        )

    def ensure_features(self, system, key):
        """The features directory of `system` for class set `key`, prepared once."""
        overrides = _merge_overrides(
            fold_overrides(),
            [o for o in system.overrides if o.strip().startswith("features.")],
            self.settings["overrides"],
        )
        section = features_section(system.config, overrides)
        digest = _short_hash(
            {"features": section, "classes": CLASS_SETS[key],
             "manifest": _file_digest(self.manifest)}
        )
        out = os.path.join(self.work, f"features-{key}-{digest}")
        if out in self.features:
            return out
        command = self.prepare_command(system, key, overrides, out)
        marker = os.path.join(out, "benchmark-prepare.json")
        resumed = os.path.isfile(marker)
        if resumed:
            seconds = _read_json(marker).get("seconds")
            print(f"[{key} classes] features {os.path.basename(out)}: already prepared",
                  flush=True)
        else:
            print(f"[{key} classes] prepare: {shlex.join(command)}", flush=True)
            started = time.time()
            _run(command, out + ".log")
            seconds = round(time.time() - started, 1)
            _write_json_atomic(marker, {"command": shlex.join(command), "seconds": seconds,
                                        "features": section})
            print(f"[{key} classes] prepared in {seconds:.0f} s", flush=True)
        entry = {"dir": out, "classes": key, "features": section,
                 "command": shlex.join(command), "seconds": seconds, "resumed": resumed}
        self.features[out] = entry
        self.results["features"][os.path.basename(out)] = entry
        self.results["commands"].append(shlex.join(command))
        self.save()
        return out

    # -- references

    def opensmile_sets(self):
        return sorted({REFERENCES[name].features for name in self.settings["references"]}
                      - {"logmel"})

    def run_references(self, key, rows, functionals):
        classes = CLASS_SETS[key]
        entry = self.results["class_sets"][key]
        keep = np.array([row["label"] in classes for row in rows])
        labels = np.array([classes.index(row["label"]) for row in rows if row["label"] in classes])
        groups = np.array([row["group"] for row in rows])[keep]
        for name in self.settings["references"]:
            reference = REFERENCES[name]
            started = time.time()
            if reference.features == "logmel":
                from smcn_tf import quiet  # TensorFlow reads the records: its start-up quiet

                quiet.configure(quiet.verbose_requested([]))
                records = self.ensure_features(SYSTEMS["paper-audio"], key)
                features, logmel_labels, logmel_groups = logmel_statistics(records, FOLDS)
                scores = fit_reference(features, logmel_labels, logmel_groups, FOLDS,
                                       reference.classifier, reference.C)
                scores["features"] = f"log-Mel+Δ+ΔΔ mean+std of {os.path.basename(records)}"
            else:
                features = functionals[reference.features][keep]
                scores = fit_reference(features, labels, groups, FOLDS,
                                       reference.classifier, reference.C)
                scores["features"] = f"openSMILE {reference.features} functionals"
            scores["title"] = reference.title
            scores["dim"] = int(features.shape[1])
            scores["seconds"] = round(time.time() - started, 1)
            entry["references"][name] = scores
            note = "" if scores["converged"] else "  (did not converge)"
            print(
                f"[{key} classes] {reference.title:<36} UA "
                f"{100 * scores['unweighted_accuracy']:6.2f}  WA "
                f"{100 * scores['weighted_accuracy']:6.2f}  ({scores['seconds']:.0f} s){note}",
                flush=True,
            )
            self.save()

    # -- network runs

    def train_overrides(self, name):
        system = SYSTEMS[name]
        steps = self.settings["steps"]
        return _merge_overrides(
            fold_overrides(), system.overrides,
            [f"training.steps={steps}"] if steps else [],
            self.settings["overrides"],
            [f"model.variant={system.variant}"],
        )

    def run_system_seed(self, name, key, seed):
        """Train (or read back) one system at one seed; returns its run record."""
        system = SYSTEMS[name]
        features = self.ensure_features(system, key)
        overrides = self.train_overrides(name)
        with open(system.config, "rb") as stream:
            preset_digest = hashlib.sha256(stream.read()).hexdigest()
        digest = _short_hash({"preset": preset_digest, "overrides": overrides,
                              "features": os.path.basename(features)})
        run_dir = os.path.join(self.work, f"runs-{key}", f"{name}-{digest}", f"seed{seed}")
        command = _smcn(
            "train", "--config", system.config, "--data", features, "--run-dir", run_dir,
            "--verbose", "0", *_set_flags(overrides + [f"training.seed={seed}"]),
        )
        summary_path = os.path.join(run_dir, "summary.json")
        marker = os.path.join(run_dir, "benchmark-run.json")
        resumed = os.path.isfile(summary_path)
        if resumed:
            seconds = _read_json(marker).get("seconds") if os.path.isfile(marker) else None
        else:
            print(f"[{key} classes] train: {shlex.join(command)}", flush=True)
            started = time.time()
            _run(command, run_dir + ".log", threads=self.settings.get("threads"))
            seconds = round(time.time() - started, 1)
            _write_json_atomic(marker, {"command": shlex.join(command), "seconds": seconds})
        summary = _read_json(summary_path)
        run = {
            "seed": seed,
            "run_dir": run_dir,
            "command": shlex.join(command),
            "unweighted_accuracy": summary["mean"]["unweighted_accuracy"],
            "weighted_accuracy": summary["mean"]["weighted_accuracy"],
            "folds": summary["folds"],
            "seconds": seconds,
            "resumed": resumed,
        }
        print(
            f"[{key} classes] {name} seed {seed}: UA {100 * run['unweighted_accuracy']:.2f}  "
            f"WA {100 * run['weighted_accuracy']:.2f}  "
            + ("(read from an earlier run)" if resumed else f"({seconds:.0f} s)"),
            flush=True,
        )
        return run

    def record_run(self, name, key, run):
        """Add a finished run to the results (one thread at a time)."""
        self.results["commands"].append(run["command"])
        entry = self.results["class_sets"][key]["systems"][name]
        entry["runs"] = [r for r in entry["runs"] if r["seed"] != run["seed"]] + [run]
        entry["runs"].sort(key=lambda r: r["seed"])
        for metric in ("unweighted_accuracy", "weighted_accuracy"):
            entry[metric] = summarise([r[metric] for r in entry["runs"]])
        self.save()


def run_matrix(bench, systems, settings):
    """Every (seed, class set, system) run, `settings["jobs"]` at a time.

    Features are prepared first, one at a time; then the runs go in order,
    seeds outermost, so a benchmark stopped early has every system at seed 1.
    """
    for key in settings["classes"]:
        for name in systems:
            bench.ensure_features(SYSTEMS[name], key)
    tasks = [
        (name, key, seed)
        for seed in range(1, settings["seeds"] + 1)
        for key in settings["classes"]
        for name in systems
    ]
    lock = threading.Lock()

    def run_one(task):
        name, key, _ = task
        run = bench.run_system_seed(*task)
        with lock:
            bench.record_run(name, key, run)

    with concurrent.futures.ThreadPoolExecutor(max_workers=settings["jobs"]) as pool:
        for future in [pool.submit(run_one, task) for task in tasks]:
            future.result()  # the first failure stops the benchmark, with its log's tail


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    systems = []
    skipped = {}
    for name in settings["systems"]:
        if os.path.isfile(SYSTEMS[name].config):
            systems.append(name)
        elif settings["systems_explicit"]:
            print(f"{name}: its preset {SYSTEMS[name].config} does not exist.", file=sys.stderr)
            return 2
        else:
            skipped[name] = f"preset {SYSTEMS[name].config} does not exist"
            print(f"Skipping {name}: {skipped[name]}.", flush=True)
    settings["systems"] = systems
    bench = Benchmark(args.corpus_dir, os.path.abspath(args.work), settings)
    if bench.opensmile_sets() and not opensmile_available():
        print(OPENSMILE_MISSING, file=sys.stderr)
        return 2
    bench.results["skipped"] = skipped
    os.makedirs(bench.work, exist_ok=True)

    count = write_manifest(args.corpus_dir, bench.manifest)
    print(f"EmoDB: {count} utterances -> {bench.manifest}", flush=True)
    for name in systems:
        system = SYSTEMS[name]
        bench.results["systems"][name] = {
            "config": system.config, "variant": system.variant,
            "overrides": bench.train_overrides(name),
        }
    rows = read_manifest(bench.manifest)
    functionals = {}
    for feature_set in bench.opensmile_sets():
        features, names, seconds = opensmile_functionals(
            [row["path"] for row in rows], feature_set, os.path.join(bench.work, "opensmile")
        )
        functionals[feature_set] = features
        origin = "cached" if seconds == 0.0 else f"computed in {seconds:.0f} s"
        print(f"openSMILE {feature_set}: {features.shape[0]} x {features.shape[1]} ({origin})",
              flush=True)
        bench.results.setdefault("opensmile", {})[feature_set] = {
            "dim": int(features.shape[1]), "seconds": round(seconds, 1),
            "cache": os.path.join(bench.work, "opensmile", f"{feature_set}.npz"),
        }

    for key in settings["classes"]:
        bench.results["class_sets"][key] = {
            "classes": list(CLASS_SETS[key]), "references": {},
            "systems": {name: {"runs": []} for name in systems},
        }
        bench.run_references(key, rows, functionals)
    run_matrix(bench, systems, settings)
    bench.save()
    print()
    print(format_table(bench.results))
    print(format_commands(bench.results))
    print(f"Total wall time: {bench.results['wall_seconds']:.0f} s. "
          f"Results: {bench.results_path}")
    return 0


def format_table(results):
    """Per class set: every row's UA / WA in % (± std over seeds) and UA - baseline."""
    lines = []
    for key, entry in results["class_sets"].items():
        references = entry["references"]
        baseline = next((name for name in BASELINES if name in references), None)
        base_ua = references[baseline]["unweighted_accuracy"] if baseline else None
        delta_title = f"UA - {BASELINES[baseline]}" if baseline else ""
        lines.append(
            f"EmoDB, {key} classes ({', '.join(entry['classes'])}), 5 folds of 2 speakers; "
            "UA / WA in %, mean over folds; network rows: mean ± std over seeds (ddof=1)"
        )
        lines.append(f"{'system':<36} {'runs':>4}  {'UA':<14} {'WA':<14} {delta_title:>16}")
        table_rows = [
            (reference["title"], 1, [reference["unweighted_accuracy"]],
             [reference["weighted_accuracy"]])
            for reference in references.values()
        ]
        for name, system in entry["systems"].items():
            if system["runs"]:
                table_rows.append(
                    (name, len(system["runs"]),
                     [run["unweighted_accuracy"] for run in system["runs"]],
                     [run["weighted_accuracy"] for run in system["runs"]])
                )
        for title, runs, ua, wa in table_rows:
            delta = (f"{100 * (np.mean(ua) - base_ua):+16.2f}" if base_ua is not None
                     else f"{'':>16}")
            lines.append(
                f"{title:<36} {runs:>4}  {format_mean_std(ua):<14} {format_mean_std(wa):<14} "
                f"{delta}"
            )
        lines.append("")
    return "\n".join(lines)


def format_commands(results):
    """The command of every prepare and train run, in the order they were needed."""
    if not results["commands"]:
        return ""
    return "\n".join(["Commands:", *(f"  {command}" for command in results["commands"]), ""])


if __name__ == "__main__":
    sys.exit(main())
