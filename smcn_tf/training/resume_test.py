"""TrainingBackup / read_backup / restore_backup on a small Keras model."""

import json
import os

import keras
import numpy as np
import pytest

from smcn_tf.training import resume


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def test_the_random_state_is_what_save_weights_leaves_out():
    model = _model()
    names = [v.path.rsplit("/", 1)[-1] for v in resume.random_state_variables(model)]
    assert names == ["seed_generator_state"]
    x, y = _data()
    before = resume.random_state(model)["model"][0]["value"]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert resume.random_state(model)["model"][0]["value"] != before


def test_a_backup_restores_weights_optimizer_and_random_state(tmp_path):
    backup_dir = str(tmp_path / "backup")
    x, y = _data()
    model = _model()
    callback = resume.TrainingBackup(backup_dir, fingerprint="abc")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback], shuffle=False)
    assert sorted(os.listdir(backup_dir)) == ["epoch-002.weights.h5", "state.json"]
    state = resume.read_backup(backup_dir, "abc")
    assert (state["epoch"], state["global_step"]) == (2, 4)
    assert state["logs"] == callback.last_logs and "loss" in state["logs"]

    restored = _model(seed=1)  # other initial weights and seeds
    resume.restore_backup(restored, backup_dir, state)
    for a, b in zip(model.weights + model.optimizer.variables,
                    restored.weights + restored.optimizer.variables):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert resume.random_state(restored) == resume.random_state(model)
    # Both go on alike: dropout masks included.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    restored.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, restored.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_read_backup_refuses_other_settings_and_missing_files(tmp_path):
    backup_dir = str(tmp_path / "backup")
    assert resume.read_backup(backup_dir) is None
    model = _model()
    resume.write_backup(model, backup_dir, 1, fingerprint="abc")
    with pytest.raises(ValueError, match="other settings"):
        resume.read_backup(backup_dir, "xyz")
    os.remove(os.path.join(backup_dir, "epoch-001.weights.h5"))
    with pytest.raises(ValueError, match="missing"):
        resume.read_backup(backup_dir, "abc")


def test_a_new_backup_replaces_the_old_one_only_once_complete(tmp_path):
    backup_dir = str(tmp_path / "backup")
    model = _model()
    resume.write_backup(model, backup_dir, 1)
    # A kill while writing epoch 2 leaves a partial file; epoch 1 still stands.
    open(os.path.join(backup_dir, ".partial-epoch-002.weights.h5"), "w").close()
    open(os.path.join(backup_dir, ".partial-epoch-007.weights.h5"), "w").close()
    assert resume.read_backup(backup_dir)["weights"] == "epoch-001.weights.h5"
    resume.write_backup(model, backup_dir, 2)
    assert sorted(os.listdir(backup_dir)) == ["epoch-002.weights.h5", "state.json"]
    assert json.load(open(os.path.join(backup_dir, "state.json")))["epoch"] == 2
    resume.remove_backup(backup_dir)
    assert not os.path.exists(backup_dir)
