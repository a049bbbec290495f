"""Markdown reports laid out like the paper's Tables 1-3, with the paper's numbers beside ours.

A report reads run directories written by `smcn train` (each has a
`summary.json`). Runs of the same corpus and variant with different seeds are
pooled into mean ± std (the sample std, ddof=1; a single seed shows no std).
IEMOCAP rows use each run's mean over its folds (UA, WA); MELD rows use
accuracy (= WA) and weighted F1 on the test split.

Every report names the runs' text encoder and its dimension (from the run's
`features.json`) and says when it is not the paper's bert-base-uncased
(768-d): the default all-MiniLM-L6-v2 (384-d) gives text and fusion scores
that are not comparable with the paper's.
"""

import collections
import json
import os

import numpy as np

from smcn_tf.features.text import DEFAULT_CHECKPOINT_PACKAGE, text_encoder_name  # noqa: F401
from smcn_tf.io_utils import read_json

# Table 1 (IEMOCAP, %), Table 2 (MELD, %), Table 3 (ablations, %) of the paper.
PAPER_TABLE1 = [
    ("FAF [5]", 72.7, 72.7),
    ("A-LSTM [9]", 70.9, 72.5),
    ("GBAN [13]", 70.1, 72.4),
    ("CMA + Raw waveform [14]", 72.8, None),
    ("CME [15]", 73.5, 72.7),
    ("SMCN", 77.6, 75.6),
]
PAPER_TABLE2 = [
    ("DialogueRNN [11, 17]", None, 60.3),
    ("MMFA-RNN [18]", 63.3, 60.6),
    ("GNN+self-attention [19]", 61.8, None),
    ("Semi-supervised MMER [20]", None, 57.1),
    ("CTNet [21]", 60.8, 62.0),
    ("SMCN", 64.9, 62.3),
]
# variant: (IEMOCAP UA, IEMOCAP WA, MELD Acc, MELD W-F1)
PAPER_TABLE3 = collections.OrderedDict(
    [
        ("audio", ("Audio", 62.7, 59.9, 48.9, 35.8)),
        ("text", ("Text", 68.6, 67.6, 62.5, 60.9)),
        ("cat", ("Cat", 75.4, 73.2, 63.6, 60.4)),
        ("intra", ("Intra-modal learning", 76.2, 73.9, 63.7, 60.3)),
        ("inter", ("Inter-modal calibration", 76.7, 75.1, 64.2, 61.1)),
        ("first_interaction", ("First interaction", 76.6, 74.6, 64.4, 61.3)),
        ("second_interaction", ("Second interaction", 76.9, 75.2, 64.0, 60.5)),
        ("smcn", ("SMCN", 77.6, 75.6, 64.9, 62.3)),
    ]
)
SCORES = ("unweighted_accuracy", "weighted_accuracy", "weighted_f1")
# The paper's text encoder (section 3.2: BERT uncased_L-12_H-768_A-12).
PAPER_TEXT_ENCODER = "bert-base-uncased"
PAPER_TEXT_DIM = 768
# config.json of bert-base-uncased: what a checkpoint must match to count as it.
_PAPER_TEXT_CONFIG = {
    "model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "vocab_size": 30522,
}


def is_paper_text_encoder(text_encoder, text_dim):
    """Whether a run's text features come from the paper's bert-base-uncased (768-d).

    The checkpoint's `config.json` decides when the directory is on this
    machine (BERT, 768 hidden, 12 layers, 12 heads, the uncased 30522-token
    vocabulary); otherwise its name must say bert-base-uncased.
    """
    if text_dim != PAPER_TEXT_DIM or not text_encoder:
        return False
    config_path = os.path.join(str(text_encoder), "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as stream:
                config = json.load(stream)
        except (OSError, ValueError):
            config = None
        if isinstance(config, dict):
            return all(config.get(key) == value for key, value in _PAPER_TEXT_CONFIG.items())
    name = text_encoder_name(text_encoder).lower()
    return PAPER_TEXT_ENCODER in name or "uncased_l-12_h-768_a-12" in name


def text_encoder_note(run):
    """One line naming a run's text encoder and dimension, and whether it is the paper's.

    Returns:
        `(line, is_paper)`.
    """
    encoder, dim = run.get("text_encoder"), run.get("text_dim")
    if dim is None:
        return (
            f"Text encoder: unknown ({run['path']}/features.json does not give "
            "text_encoder and text_dim): whether text and fusion scores are comparable "
            f"with the paper's ({PAPER_TEXT_ENCODER}, {PAPER_TEXT_DIM}-d) cannot be told.",
            False,
        )
    name = f"{text_encoder_name(encoder)} ({dim}-d)"
    if is_paper_text_encoder(encoder, dim):
        return f"Text encoder: {name}, the paper's {PAPER_TEXT_ENCODER}.", True
    return (
        f"Text encoder: {name}, not the paper's {PAPER_TEXT_ENCODER} ({PAPER_TEXT_DIM}-d): "
        "text and fusion scores are not comparable with the paper's.",
        False,
    )


def text_encoder_notes(runs):
    """The distinct text-encoder lines of `runs` (see `text_encoder_note`), and a
    warning for each table row that pools runs of different text encoders.

    Returns:
        A list of `(line, is_paper)`; with several encoders each line names its runs.
    """
    notes = collections.OrderedDict()
    for run in runs:
        line, is_paper = text_encoder_note(run)
        notes.setdefault((line, is_paper), []).append(run["path"])
    result = []
    for (line, is_paper), paths in notes.items():
        if len(notes) > 1:
            line = f"{line} Runs: {', '.join(paths)}."
        result.append((line, is_paper))
    encoders = collections.defaultdict(set)
    for run in runs:
        key = ("meld" if _is_meld(run["corpus"]) else "iemocap", run["variant"])
        encoders[key].add((text_encoder_name(run.get("text_encoder")), run.get("text_dim")))
    for (kind, variant), found in sorted(encoders.items()):
        if len(found) > 1:
            described = ", ".join(
                sorted(f"{name} ({dim if dim is not None else '?'}-d)" for name, dim in found)
            )
            result.append(
                (f"Warning: the {kind} {variant} row pools runs of different text "
                 f"encoders ({described}).", False)
            )
    return result


def load_runs(run_dirs):
    """Read `summary.json` and the run's `features.json` of each run.

    Args:
        run_dirs: run directories of `smcn train`.

    Returns:
        A list of dicts: `path`, `corpus`, `variant`, `summary`,
        `text_encoder` and `text_dim` (None when `features.json` lacks them).
    """
    runs = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "summary.json")
        if not os.path.isfile(path):
            raise ValueError(f"{path} is missing: is {run_dir} a finished `smcn train` run?")
        summary = read_json(path)
        features_path = os.path.join(run_dir, "features.json")
        features = read_json(features_path) if os.path.isfile(features_path) else {}
        runs.append(
            {
                "path": run_dir,
                "corpus": features.get("corpus", ""),
                "variant": summary.get("variant", "smcn"),
                "summary": summary,
                "text_encoder": features.get("text_encoder"),
                "text_dim": features.get("text_dim"),
            }
        )
    return runs


def _is_meld(corpus):
    return "meld" in corpus


def _run_scores(run):
    """A run's headline scores: the fold mean (LOSO) or the single split."""
    return {name: 100.0 * run["summary"]["mean"][name] for name in SCORES}


def aggregate(runs):
    """Mean and std over seeds, per (corpus kind, variant).

    The std is the sample standard deviation (ddof=1); with a single seed it
    is 0.0 (and the tables show no ± for it).

    Returns:
        A dict from (`"iemocap"` or `"meld"`, variant) to
        `{"mean": {score: %}, "std": {score: %}, "seeds": n, "runs": [...]}`.
    """
    grouped = collections.defaultdict(list)
    for run in runs:
        kind = "meld" if _is_meld(run["corpus"]) else "iemocap"
        grouped[(kind, run["variant"])].append(run)
    result = {}
    for key, members in grouped.items():
        values = {name: [_run_scores(run)[name] for run in members] for name in SCORES}
        result[key] = {
            "mean": {name: float(np.mean(values[name])) for name in SCORES},
            "std": {
                name: float(np.std(values[name], ddof=1)) if len(members) > 1 else 0.0
                for name in SCORES
            },
            "seeds": len(members),
            "runs": members,
        }
    return result


def _cell(entry, name):
    if entry is None:
        return "—"
    mean, std = entry["mean"][name], entry["std"][name]
    if entry["seeds"] > 1:
        return f"{mean:.1f} ± {std:.1f}"
    return f"{mean:.1f}"


def _paper(value):
    return "-" if value is None else f"{value:.1f}"


def _comparison_table(title, columns, paper_rows, ours, score_names):
    """A paper table with two columns of ours beside the paper's, filled on the SMCN row."""
    first, second = columns
    lines = [
        title,
        "",
        f"| Method | {first} (paper) | {second} (paper) | {first} (ours) | {second} (ours) |",
        "|---|---|---|---|---|",
    ]
    for name, first_value, second_value in paper_rows:
        paper = f"{_paper(first_value)} | {_paper(second_value)}"
        if name == "SMCN":
            ours_cells = " | ".join(_cell(ours, score) for score in score_names)
            lines.append(f"| **SMCN** | {paper} | {ours_cells} |")
        else:
            lines.append(f"| {name} | {paper} | | |")
    return "\n".join(lines)


def table1(aggregated):
    """Table 1: IEMOCAP UA / WA, the paper's methods and ours."""
    return _comparison_table(
        "**Table 1.** Comparison of methods on the IEMOCAP (%)",
        ("UA", "WA"),
        PAPER_TABLE1,
        aggregated.get(("iemocap", "smcn")),
        ("unweighted_accuracy", "weighted_accuracy"),
    )


def table2(aggregated):
    """Table 2: MELD Acc / W-F1, the paper's methods and ours (Acc is WA)."""
    return _comparison_table(
        "**Table 2.** Comparison of methods on the MELD (%)",
        ("Acc", "W-F1"),
        PAPER_TABLE2,
        aggregated.get(("meld", "smcn")),
        ("weighted_accuracy", "weighted_f1"),
    )


def table3(aggregated):
    """Table 3: every variant on both corpora, paper beside ours."""
    lines = [
        "**Table 3.** Comparison of different modules (%); paper / ours",
        "",
        "| Method | IEMOCAP UA | IEMOCAP WA | MELD Acc | MELD W-F1 |",
        "|---|---|---|---|---|",
    ]
    for variant, (name, ua, wa, accuracy, f1) in PAPER_TABLE3.items():
        iemocap = aggregated.get(("iemocap", variant))
        meld = aggregated.get(("meld", variant))
        lines.append(
            f"| {name} | {_paper(ua)} / {_cell(iemocap, 'unweighted_accuracy')} "
            f"| {_paper(wa)} / {_cell(iemocap, 'weighted_accuracy')} "
            f"| {_paper(accuracy)} / {_cell(meld, 'weighted_accuracy')} "
            f"| {_paper(f1)} / {_cell(meld, 'weighted_f1')} |"
        )
    return "\n".join(lines)


def confusion_section(run):
    """Per-fold scores, the pooled confusion matrix and per-class report of a run."""
    summary = run["summary"]
    pooled = summary["pooled"]
    names = pooled["class_names"]
    dim = run.get("text_dim")
    encoder = (
        f"{text_encoder_name(run.get('text_encoder'))} ({dim}-d)" if dim is not None else "unknown"
    )
    lines = [f"### {run['variant']} — {run['path']}", "", f"Text encoder: {encoder}.", ""]
    lines.append("| fold | UA | WA | W-F1 |")
    lines.append("|---|---|---|---|")
    for fold, scores in summary["folds"].items():
        lines.append(
            f"| {fold} | {100 * scores['unweighted_accuracy']:.2f} | "
            f"{100 * scores['weighted_accuracy']:.2f} | {100 * scores['weighted_f1']:.2f} |"
        )
    lines.append(
        f"| pooled | {100 * pooled['unweighted_accuracy']:.2f} | "
        f"{100 * pooled['weighted_accuracy']:.2f} | {100 * pooled['weighted_f1']:.2f} |"
    )
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", ""]
    lines.append("| true \\ predicted | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for name, row in zip(names, pooled["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(value) for value in row) + " |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name in names:
        scores = pooled["classes"][name]
        lines.append(
            f"| {name} | {100 * scores['precision']:.1f} | {100 * scores['recall']:.1f} | "
            f"{100 * scores['f1']:.1f} | {scores['support']} |"
        )
    return "\n".join(lines)


def build_report(run_dirs, tables=(1, 2, 3)):
    """The whole markdown report for the given runs and tables."""
    runs = load_runs(run_dirs)
    aggregated = aggregate(runs)
    builders = {1: table1, 2: table2, 3: table3}
    parts = ["# SMCN reproduction report", ""]
    for line, _ in text_encoder_notes(runs):
        parts += [line, ""]
    for table in tables:
        if table not in builders:
            raise ValueError(f"Unknown table {table}; the paper has tables 1, 2 and 3.")
        parts += [builders[table](aggregated), ""]
    seeds = sorted({entry["seeds"] for entry in aggregated.values()})
    parts.append(
        f"Ours: mean over seeds (± the sample std, ddof=1, where there are several; "
        f"seeds per row: {seeds}). "
        "IEMOCAP: the mean of the 5 leave-one-session-out folds; MELD: the test split."
    )
    parts += ["", "## Runs", ""]
    for run in runs:
        parts += [confusion_section(run), ""]
    return "\n".join(parts)
