"""Markdown reports laid out like the paper's Tables 1-3, with the paper's numbers beside ours.

A report reads run directories written by `smcn train` (each has a
`summary.json`). Runs of the same corpus and variant with different seeds are
pooled into mean ± std. IEMOCAP rows use each run's mean over its folds (UA,
WA); MELD rows use accuracy (= WA) and weighted F1 on the test split.
"""

import collections
import os

import numpy as np

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


def load_runs(run_dirs):
    """Read `summary.json` and `config.yaml`-free metadata of each run.

    Args:
        run_dirs: run directories of `smcn train`.

    Returns:
        A list of dicts: `path`, `corpus`, `variant`, `summary`.
    """
    runs = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "summary.json")
        if not os.path.isfile(path):
            raise ValueError(f"{path} is missing: is {run_dir} a finished `smcn train` run?")
        summary = read_json(path)
        features_path = os.path.join(run_dir, "features.json")
        corpus = read_json(features_path).get("corpus", "") if os.path.isfile(features_path) else ""
        runs.append(
            {
                "path": run_dir,
                "corpus": corpus,
                "variant": summary.get("variant", "smcn"),
                "summary": summary,
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
            "std": {name: float(np.std(values[name])) for name in SCORES},
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
    lines = [f"### {run['variant']} — {run['path']}", ""]
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
    for table in tables:
        if table not in builders:
            raise ValueError(f"Unknown table {table}; the paper has tables 1, 2 and 3.")
        parts += [builders[table](aggregated), ""]
    seeds = sorted({entry["seeds"] for entry in aggregated.values()})
    parts.append(
        f"Ours: mean over seeds (± std where there are several; seeds per row: {seeds}). "
        "IEMOCAP: the mean of the 5 leave-one-session-out folds; MELD: the test split."
    )
    parts += ["", "## Runs", ""]
    for run in runs:
        parts += [confusion_section(run), ""]
    return "\n".join(parts)
