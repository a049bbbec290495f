"""Tests for the validation plan and best-epoch selection."""

import json
import os

import keras
import numpy as np
import pytest

from smcn_tf.training import selection
from smcn_tf.config import load_config
from smcn_tf.train import run_experiment

SESSIONS = [f"Session{index}" for index in range(1, 6)]


@pytest.mark.parametrize("test_group", SESSIONS)
def test_validation_group_comes_from_the_training_groups_only(test_group):
    train_groups = [group for group in SESSIONS if group != test_group]
    fit_groups, plan = selection.validation_plan(
        "group", SESSIONS, train_groups, [test_group], 0.1, 1
    )
    (chosen,) = plan["groups"]
    assert chosen != test_group and chosen in train_groups
    assert sorted(fit_groups + [chosen]) == sorted(train_groups)
    # The group after the test group, cyclically.
    assert chosen == SESSIONS[(SESSIONS.index(test_group) + 1) % len(SESSIONS)]


def test_every_fold_validates_on_another_group_and_the_final_model_on_the_last():
    chosen = [
        selection.validation_plan(
            "group", SESSIONS, [g for g in SESSIONS if g != test], [test], 0.1, 1
        )[1]["groups"][0]
        for test in SESSIONS
    ]
    assert sorted(chosen) == SESSIONS
    fit_groups, plan = selection.validation_plan("group", SESSIONS, SESSIONS, [], 0.1, 1)
    assert plan["groups"] == ["Session5"] and fit_groups == SESSIONS[:4]


def test_fraction_and_none_plans_and_too_few_groups():
    fit_groups, plan = selection.validation_plan(
        "fraction", SESSIONS, SESSIONS[1:], SESSIONS[:1], 0.2, 7
    )
    assert fit_groups == SESSIONS[1:]
    assert plan == {"kind": "fraction", "groups": SESSIONS[1:], "fraction": 0.2, "seed": 7}
    assert selection.validation_plan("none", SESSIONS, SESSIONS[1:], SESSIONS[:1], 0.2, 7) == (
        SESSIONS[1:], None
    )
    with pytest.raises(ValueError, match="at least two training groups"):
        selection.validation_plan("group", ["train", "test"], ["train"], ["test"], 0.1, 1)


def _tiny_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_best_checkpoint_keeps_the_best_epoch_stops_and_resumes(tmp_path):
    path = str(tmp_path / "best.weights.h5")
    model = _tiny_model()
    callback = selection.BestValidationCheckpoint(path, patience=2)
    callback.set_model(model)
    scores = [0.5, 0.7, 0.6]
    for epoch, score in enumerate(scores):
        model.layers[-1].kernel.assign(np.full((2, 1), epoch, "float32"))
        callback.on_epoch_end(epoch, {selection.MONITOR: score})
    assert (callback.best, callback.best_epoch, callback.wait) == (0.7, 2, 1)
    assert not model.stop_training
    # The state a backup keeps resumes the same choice in a new callback.
    state = json.loads(json.dumps(callback.get_state()))
    resumed = selection.BestValidationCheckpoint(path, patience=2, state=state)
    resumed.set_model(model)
    resumed.on_epoch_end(3, {selection.MONITOR: float("nan")})
    assert resumed.stopped_epoch == 4 and model.stop_training
    reloaded = _tiny_model()
    reloaded.load_weights(path)
    np.testing.assert_array_equal(np.asarray(reloaded.layers[-1].kernel), np.ones((2, 1)))
    with pytest.raises(ValueError, match="validation data"):
        resumed.on_epoch_end(4, {"loss": 1.0})


def test_select_best_needs_validation():
    with pytest.raises(ValueError, match="training.select: best needs a validation set"):
        load_config(os.path.join("configs", "demo.yaml"), ["training.select=best"])
    with pytest.raises(ValueError, match="early_stopping_patience needs"):
        load_config(
            os.path.join("configs", "demo.yaml"), ["training.early_stopping_patience=2"]
        )


def test_a_fold_keeps_its_best_validation_epoch(demo_features, tmp_path):
    config = load_config(
        os.path.join("configs", "demo.yaml"),
        [
            "training.steps=8",
            "training.steps_per_epoch=2",
            "training.batch_size=8",
            "model.hidden_units=4",
            "model.head_units=4",
            "evaluation.folds=[Session3]",
            "evaluation.validation=group",
            "training.select=best",
            "training.early_stopping_patience=2",
            "training.attention_examples_per_class=0",  # no figures: selection only
            "training.calibration_batches=0",
        ],
    )
    run_dir = str(tmp_path / "run")
    summary = run_experiment(config, demo_features, run_dir, verbose=0, log=lambda _: None)
    results = json.load(open(os.path.join(run_dir, "Session3", "results.json")))
    record = results["selection"]
    assert record["validation_groups"] == ["Session4"]
    assert "Session4" not in record["fit_groups"] and "Session3" not in record["fit_groups"]
    assert record["validation_examples"] > 0
    assert record["kept_epoch"] == record["best_epoch"] >= 1
    assert results["steps"] == record["epochs_run"] * 2
    # The saved model holds the best epoch's weights, not the last ones.
    from smcn_tf.model.smcn import load_model

    model = load_model(os.path.join(run_dir, "Session3", "model.keras"), compile=False)
    best = load_model(os.path.join(run_dir, "Session3", "model.keras"), compile=False)
    best.load_weights(os.path.join(run_dir, "Session3", selection.BEST_WEIGHTS_FILE))
    for kept, wanted in zip(model.weights, best.weights):
        np.testing.assert_array_equal(np.asarray(kept), np.asarray(wanted))
    epoch_file = os.path.join(
        run_dir, "Session3", "checkpoints", f"epoch-{record['best_epoch']:03d}.weights.h5"
    )
    best.load_weights(epoch_file)
    for kept, wanted in zip(model.weights, best.weights):
        np.testing.assert_array_equal(np.asarray(kept), np.asarray(wanted))
    assert summary["folds"]["Session3"]["unweighted_accuracy"] == results["unweighted_accuracy"]
