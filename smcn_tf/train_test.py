"""The fold loop on the prepared demo corpus: results, TensorBoard, resume."""

import glob
import json
import os

import pytest
import tensorflow as tf

from smcn_tf.config import load_config
from smcn_tf.train import fold_plan, run_experiment

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def _tiny_config(*extra):
    return load_config(
        os.path.join(CONFIGS, "demo.yaml"),
        [
            "training.steps=4",
            "training.steps_per_epoch=2",
            "model.hidden_units=4",
            "model.head_units=4",
            *extra,
        ],
    )


def _event_tags(directory):
    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_fold_plan_is_leave_one_session_out():
    manifest = {"groups": [f"Session{i}" for i in range(1, 6)]}
    plan = fold_plan(_tiny_config(), manifest)
    assert [fold for fold, _, _ in plan] == manifest["groups"]
    for fold, train_groups, test_groups in plan:
        assert test_groups == [fold] and fold not in train_groups
        assert len(train_groups) == 4
    with pytest.raises(ValueError, match="Session9"):
        fold_plan(_tiny_config("evaluation.folds=[Session9]"), manifest)


def test_run_writes_results_logs_every_loss_term_and_resumes(demo_features, tmp_path):
    run_dir = str(tmp_path / "run")
    config = _tiny_config("evaluation.folds=[Session2]")
    summary = run_experiment(config, demo_features, run_dir, verbose=0, log=lambda _: None)

    results = json.load(open(os.path.join(run_dir, "Session2", "results.json")))
    assert results["test_groups"] == ["Session2"]
    assert "Session2" not in results["train_groups"]
    assert results["num_examples"] == 48 and len(results["predictions"]) == 48
    assert sum(map(sum, results["confusion_matrix"])) == 48
    assert summary["folds"]["Session2"]["unweighted_accuracy"] == results["unweighted_accuracy"]
    assert os.path.isfile(os.path.join(run_dir, "summary.json"))
    assert os.path.isfile(os.path.join(run_dir, "Session2", "model.keras"))
    # The final model trains on every session and is not scored.
    final = json.load(open(os.path.join(run_dir, "all", "results.json")))
    assert final["test_groups"] == [] and len(final["train_groups"]) == 5

    tags = _event_tags(os.path.join(run_dir, "tensorboard", "Session2", "train"))
    for term in (
        "loss", "emotion_loss", "audio_loss", "text_loss",
        "audio_calibration_loss", "text_calibration_loss",
        "unweighted_accuracy", "weighted_accuracy", "weighted_f1",
    ):
        assert f"epoch_{term}" in tags, term
    assert "test/unweighted_accuracy" in _event_tags(
        os.path.join(run_dir, "tensorboard", "Session2", "test")
    )

    # A finished fold is not trained again: its results file stands.
    stamp = os.path.getmtime(os.path.join(run_dir, "Session2", "model.keras"))
    again = run_experiment(config, demo_features, run_dir, verbose=0, log=lambda _: None)
    assert os.path.getmtime(os.path.join(run_dir, "Session2", "model.keras")) == stamp
    assert again["folds"] == summary["folds"]


def test_balanced_class_weights_from_the_manifest_counts():
    manifest = {
        "class_names": ["a", "b", "c"],
        "counts": {"S1": {"a": 6, "b": 2}, "S2": {"a": 2, "b": 2, "c": 0}, "S3": {"c": 9}},
    }
    # Over S1 + S2: a 8, b 4, c 0 -> 12 / (3 * 8), 12 / (3 * 4), 0.
    from smcn_tf.train import balanced_class_weights

    assert balanced_class_weights(manifest, ["S1", "S2"]) == pytest.approx([0.5, 1.0, 0.0])
