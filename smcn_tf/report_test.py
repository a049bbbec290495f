"""The reproduction report: paper numbers beside ours, seeds pooled into mean ± std."""

import json
import os

import pytest

from smcn_tf.report import build_report


def _write_run(root, name, corpus, variant, ua, wa, f1):
    run = os.path.join(root, name)
    os.makedirs(run)
    matrix = [[3, 1], [0, 4]]
    pooled = {
        "unweighted_accuracy": ua, "weighted_accuracy": wa, "weighted_f1": f1,
        "confusion_matrix": matrix, "class_names": ["neg", "pos"],
        "classes": {
            "neg": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
            "pos": {"precision": 0.8, "recall": 1.0, "f1": 0.889, "support": 4},
        },
    }
    scores = {"unweighted_accuracy": ua, "weighted_accuracy": wa, "weighted_f1": f1}
    summary = {"variant": variant, "folds": {"Session1": scores}, "mean": scores,
               "std": scores, "pooled": pooled}
    with open(os.path.join(run, "summary.json"), "w") as stream:
        json.dump(summary, stream)
    with open(os.path.join(run, "features.json"), "w") as stream:
        json.dump({"corpus": corpus}, stream)
    return run


def test_tables_put_the_paper_beside_our_mean_and_std(tmp_path):
    runs = [
        _write_run(tmp_path, "a", "iemocap", "smcn", 0.70, 0.60, 0.5),
        _write_run(tmp_path, "b", "iemocap", "smcn", 0.80, 0.70, 0.5),
        _write_run(tmp_path, "c", "demo-meld", "smcn", 0.50, 0.40, 0.30),
        _write_run(tmp_path, "d", "demo", "audio", 0.60, 0.55, 0.5),
    ]
    report = build_report(runs, tables=(1, 2, 3))
    # Table 1: two IEMOCAP seeds -> 75.0 ± 5.0 UA, 65.0 ± 5.0 WA, beside 77.6 / 75.6.
    assert "| **SMCN** | 77.6 | 75.6 | 75.0 ± 5.0 | 65.0 ± 5.0 |" in report
    # Table 2: MELD Acc is WA, W-F1 the weighted F1.
    assert "| **SMCN** | 64.9 | 62.3 | 40.0 | 30.0 |" in report
    assert "| Audio | 62.7 / 60.0 | 59.9 / 55.0 | 48.9 / — | 35.8 / — |" in report
    assert "| neg | 3 | 1 |" in report  # the confusion matrix of each run


def test_missing_summary_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="summary.json"):
        build_report([str(tmp_path)])
