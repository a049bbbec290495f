"""The fold loop on the prepared demo corpus: results, TensorBoard, resume."""

import glob
import json
import os
import shutil

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


def _manifest(counts, class_names=("a",)):
    """A `Manifest` with these counts (group -> class -> examples), one shard."""
    from smcn_tf.records.format import Manifest

    total = sum(sum(by_class.values()) for by_class in counts.values())
    return Manifest(
        corpus="test", class_names=class_names, audio_dim=78, text_dim=8,
        text_encoder=None, pooling=5, max_frames=500, max_tokens=150,
        shards=[{"file": "shard-00000-of-00001.tfrecord", "count": total}],
        num_examples=total, groups=sorted(counts), counts=counts,
    )


def test_fold_plan_is_leave_one_session_out():
    manifest = _manifest({f"Session{i}": {"a": 1} for i in range(1, 6)})
    plan = fold_plan(_tiny_config(), manifest)
    assert [fold for fold, _, _ in plan] == list(manifest.groups)
    for fold, train_groups, test_groups in plan:
        assert test_groups == [fold] and fold not in train_groups
        assert len(train_groups) == 4
    with pytest.raises(ValueError, match="Session9"):
        fold_plan(_tiny_config("evaluation.folds=[Session9]"), manifest)


def test_run_writes_results_logs_every_loss_term_and_resumes(demo_features, demo_tiny_run,
                                                             tmp_path):
    # The fold: `smcn train --fold Session2` with the settings of _tiny_config(),
    # run once for the session (conftest.py; cli_test reads it too). A copy
    # here: the rest of this test runs the whole experiment in it.
    run_dir = str(tmp_path / "run")
    shutil.copytree(demo_tiny_run[0], run_dir)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))

    results = json.load(open(os.path.join(run_dir, "Session2", "results.json")))
    assert results["test_groups"] == ["Session2"]
    assert "Session2" not in results["train_groups"]
    assert results["num_examples"] == 48 and len(results["predictions"]) == 48
    assert sum(map(sum, results["confusion_matrix"])) == 48
    assert summary["folds"]["Session2"]["unweighted_accuracy"] == results["unweighted_accuracy"]
    assert os.path.isfile(os.path.join(run_dir, "summary.json"))
    assert os.path.isfile(os.path.join(run_dir, "Session2", "model.keras"))

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

    _check_tensorboard_views(run_dir, demo_features, results)

    # The whole experiment (the fold and the final model) on the same run: a
    # finished fold is not trained again, its results file stands.
    config = _tiny_config("evaluation.folds=[Session2]")
    stamp = os.path.getmtime(os.path.join(run_dir, "Session2", "model.keras"))
    again = run_experiment(config, demo_features, run_dir, verbose=0, log=lambda _: None)
    assert os.path.getmtime(os.path.join(run_dir, "Session2", "model.keras")) == stamp
    assert again["folds"] == summary["folds"]
    # The final model trains on every session and is not scored.
    final = json.load(open(os.path.join(run_dir, "all", "results.json")))
    assert final["test_groups"] == [] and len(final["train_groups"]) == 5


def _events(directory):
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        yield from tf.compat.v1.train.summary_iterator(path)


def _check_tensorboard_views(run_dir, records_dir, results):
    """What `smcn train` adds to TensorBoard beyond the Keras curves."""
    from smcn_tf.records import format as records

    board = os.path.join(run_dir, "tensorboard", "Session2")
    held_out = {}
    for event in _events(os.path.join(board, "held_out")):
        for value in event.summary.value:
            held_out[value.tag] = value
    assert "evaluation/confusion_matrix" in held_out
    # The per-class table states the held-out supports of results.json.
    table = tf.make_ndarray(held_out["evaluation/classification_report"].tensor)
    lines = b"\n".join(table.reshape(-1)).decode("utf-8").splitlines()
    for name in results["class_names"]:
        row = results["classes"][name]
        (line,) = [line for line in lines if line.startswith(f"| {name} |")]
        assert line.endswith(f"| {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |")
    # Attention figures for two utterances per class, drawn with token strings.
    attention = sorted(tag for tag in held_out if tag.startswith("attention/"))
    assert len(attention) == 2 * len(results["class_names"])
    chosen = [tag.split("/", 1)[1] for tag in attention]
    tokens = records.read_token_strings(records_dir, chosen)
    assert tokens and all(strings[0] == "[CLS]" and strings[-1] == "[SEP]" for strings in tokens)
    # Calibration diagnostics and the learning rate, once per epoch.
    steps = {}
    for event in _events(os.path.join(board, "calibration")):
        for value in event.summary.value:
            steps.setdefault(value.tag, []).append(event.step)
    for tag in ("calibration/cosine_Fca_Ft", "calibration/mse_Fct_Fa",
                "calibration/cosine_Fa_Ft", "optimizer/learning_rate"):
        assert sorted(steps[tag]) == [0, 1], tag
    # HParams sessions: the fold and the run's mean.
    for session in ("Session2", "mean"):
        plugins = {
            value.metadata.plugin_data.plugin_name
            for event in _events(os.path.join(run_dir, "tensorboard", session))
            for value in event.summary.value
        }
        assert "hparams" in plugins, session
    # The projector's config names files that exist.
    projector = os.path.join(board, "projector")
    config_text = open(os.path.join(projector, "projector_config.pbtxt")).read()
    for name in ("metadata.tsv",):
        assert name in config_text and os.path.isfile(os.path.join(projector, name))
    rows = open(os.path.join(projector, "metadata.tsv")).read().strip().splitlines()
    assert len(rows) == 1 + results["num_examples"]


def test_balanced_class_weights_from_the_manifest_counts():
    manifest = _manifest(
        {"S1": {"a": 6, "b": 2}, "S2": {"a": 2, "b": 2, "c": 0}, "S3": {"c": 9}},
        class_names=["a", "b", "c"],
    )
    # Over S1 + S2: a 8, b 4, c 0 -> 12 / (3 * 8), 12 / (3 * 4), 0.
    from smcn_tf.train import balanced_class_weights

    assert balanced_class_weights(manifest, ["S1", "S2"]) == pytest.approx([0.5, 1.0, 0.0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_restores_the_global_policy(demo_features, tmp_path, policy):
    import keras
    import numpy as np

    from smcn_tf.records.format import read_manifest
    from smcn_tf.model.smcn import load_model

    manifest = read_manifest(demo_features)
    inputs = {
        "audio_features": np.ones((2, 7, manifest.audio_dim), "float32"),
        "audio_length": np.array([7, 3], "int32"),
        "text_features": np.ones((2, 5, manifest.text_dim), "float32"),
        "text_length": np.array([5, 2], "int32"),
    }
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            seen["policy"] = self.model.dtype_policy.name
            seen["global"] = keras.config.dtype_policy().name
            seen["probabilities"] = self.model(inputs, training=False)["probabilities"]

    before = keras.config.dtype_policy().name
    run_dir = str(tmp_path / "run")
    config = _tiny_config(
        f"training.mixed_precision={policy}",
        "training.steps=2",
        "evaluation.folds=[Session2]",
        "evaluation.final_model=false",
        "training.attention_examples_per_class=0",  # no figures: the policy only
        "training.calibration_batches=0",
    )
    run_experiment(
        config, demo_features, run_dir, verbose=0, log=lambda _: None, callbacks=[Probe()]
    )
    assert (seen["policy"], seen["global"]) == (policy, policy)
    assert keras.config.dtype_policy().name == before  # restored
    # The model computes in half precision but answers in float32.
    assert keras.backend.standardize_dtype(seen["probabilities"].dtype) == "float32"
    assert np.allclose(np.asarray(seen["probabilities"]).sum(axis=-1), 1.0, atol=1e-3)
    results = json.load(open(os.path.join(run_dir, "Session2", "results.json")))
    assert all(np.isfinite(value) for value in results["final_training_logs"].values())
    assert results["num_examples"] == 48
    # The saved model loads (outside the policy) and answers in float32.
    model = load_model(os.path.join(run_dir, "Session2", "model.keras"))
    probabilities = model(inputs, training=False)["probabilities"]
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"


def test_cosine_schedule_warms_up_to_the_peak_then_decays_to_the_floor():
    from smcn_tf.train import learning_rate_schedule

    training = load_config(overrides=[
        "training.schedule=cosine", "training.learning_rate=1e-3", "training.steps=1000",
        "training.warmup_steps=100", "training.final_learning_rate=1e-5",
    ]).training
    schedule = learning_rate_schedule(training)
    rate = lambda step: float(schedule(step))  # noqa: E731
    assert rate(0) == pytest.approx(0.0, abs=1e-12)
    assert rate(50) == pytest.approx(5e-4, rel=1e-4)
    assert rate(100) == pytest.approx(1e-3, rel=1e-4)
    # Half-way through the decay: the mean of peak and floor.
    assert rate(550) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    assert rate(1000) == pytest.approx(1e-5, rel=1e-3)
    paper = load_config(os.path.join(CONFIGS, "iemocap.yaml")).training
    assert learning_rate_schedule(paper) == pytest.approx(1e-4)


def test_optimizer_settings_build_adamw_with_ema_and_refuse_decay_on_adam():
    from smcn_tf.train import build_optimizer

    training = load_config(overrides=[
        "training.optimizer=adamw", "training.weight_decay=0.01", "training.ema_momentum=0.99",
    ]).training
    optimizer = build_optimizer(training)
    assert type(optimizer).__name__ == "AdamW"
    assert optimizer.weight_decay == pytest.approx(0.01)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.99)
    paper = build_optimizer(load_config(os.path.join(CONFIGS, "iemocap.yaml")).training)
    assert type(paper).__name__ == "Adam" and not paper.use_ema
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(load_config(overrides=["training.weight_decay=0.01"]).training)
