"""The fused recurrent core equals Keras's Bidirectional(GRU), forward and backward."""

import io
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.model.smcn import build_smcn, convert_recurrent_core
from smcn_tf.model.recurrent import (
    FusedBidirectionalGRU,
    reversal_index,
    reverse_within_lengths,
)

BRANCHES = ("intra", "calibration")


def _sequences(rng, lengths, steps, features):
    values = rng.normal(size=(len(lengths), steps, features)).astype("float32")
    mask = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    return values, mask


def _pair(rng, units, features, steps):
    """A fused layer and two Keras BiGRUs holding the same random weights."""
    fused = FusedBidirectionalGRU(units, branches=BRANCHES)
    reference = [
        keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True))
        for _ in BRANCHES
    ]
    probe = np.zeros((1, steps, features), "float32")
    fused(probe)
    for layer in reference:
        layer(probe)
    # Random biases too (Keras starts them at zero), so every term is tested.
    weights = [
        (0.5 * rng.normal(size=weight.shape)).astype("float32")
        for weight in fused.weights
    ]
    fused.set_weights(weights)  # the layout of Bidirectional(GRU).get_weights()
    reference[0].set_weights(weights[:6])
    reference[1].set_weights(weights[6:])
    return fused, reference


@pytest.mark.parametrize("lengths", [[9, 3, 1, 5, 0, 9], [7, 7, 7]])
def test_outputs_and_gradients_equal_keras_bidirectional_gru(lengths):
    rng = np.random.default_rng(0)
    steps, features, units = 9, 7, 6
    fused, reference = _pair(rng, units, features, steps)
    values, mask = _sequences(rng, lengths, steps, features)
    inputs = tf.constant(values)
    # Different upstream gradients per output, on every step (padding too).
    upstream = [
        tf.constant(rng.normal(size=(len(lengths), steps, 2 * units)).astype("float32"))
        for _ in BRANCHES
    ]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        fused_outputs = fused(inputs, mask=mask)
        reference_outputs = [layer(inputs, mask=mask) for layer in reference]
        fused_loss = sum(tf.reduce_sum(o * u) for o, u in zip(fused_outputs, upstream))
        reference_loss = sum(
            tf.reduce_sum(o * u) for o, u in zip(reference_outputs, upstream)
        )
    assert len(fused_outputs) == 2
    for ours, theirs in zip(fused_outputs, reference_outputs):
        assert ours.shape == (len(lengths), steps, 2 * units)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5, rtol=0)
        # Padding outputs zero in both directions, as Keras's Bidirectional does.
        assert np.all(ours.numpy()[~mask] == 0)
    reference_variables = reference[0].trainable_variables + reference[1].trainable_variables
    ours = tape.gradient(fused_loss, fused.trainable_variables + [inputs])
    theirs = tape.gradient(reference_loss, reference_variables + [inputs])
    assert len(ours) == 13
    for mine, keras_gradient in zip(ours, theirs):
        scale = max(1.0, float(np.abs(keras_gradient.numpy()).max()))
        np.testing.assert_allclose(
            mine.numpy() / scale, keras_gradient.numpy() / scale, atol=1e-5, rtol=0
        )


def test_padding_never_changes_the_valid_steps():
    rng = np.random.default_rng(1)
    layer = FusedBidirectionalGRU(5, branches=("intra",))
    values, mask = _sequences(rng, [4, 2], 4, 3)
    values[~mask] = 0.0
    short = layer(values, mask=mask)[0].numpy()
    padded_values = np.concatenate([values, rng.normal(size=(2, 6, 3)).astype("float32")], 1)
    padded_mask = np.concatenate([mask, np.zeros((2, 6), bool)], axis=1)
    padded = layer(padded_values, mask=padded_mask)[0].numpy()
    np.testing.assert_allclose(padded[:, :4], short, atol=1e-6)
    assert np.all(padded[:, 4:] == 0)


def test_reverse_within_lengths_is_tf_reverse_sequence_and_its_own_gradient():
    rng = np.random.default_rng(2)
    values = tf.constant(rng.normal(size=(3, 5, 2)).astype("float32"))
    lengths = tf.constant([5, 2, 0])
    index = reversal_index(lengths, 5)
    expected = tf.reverse_sequence(values, lengths, seq_axis=1, batch_axis=0)
    with tf.GradientTape() as tape:
        tape.watch(values)
        reversed_values = reverse_within_lengths(values, index)
        weights = tf.constant(rng.normal(size=(3, 5, 2)).astype("float32"))
        loss = tf.reduce_sum(reversed_values * weights)
    np.testing.assert_array_equal(reversed_values.numpy(), expected.numpy())
    np.testing.assert_array_equal(
        tape.gradient(loss, values).numpy(),
        tf.reverse_sequence(weights, lengths, seq_axis=1, batch_axis=0).numpy(),
    )


def test_config_round_trip_and_bad_arguments():
    layer = FusedBidirectionalGRU(3, branches=BRANCHES, use_cudnn=False, name="core")
    clone = FusedBidirectionalGRU.from_config(layer.get_config())
    assert clone.branches == BRANCHES and clone.units == 3 and clone.use_cudnn is False
    with pytest.raises(ValueError, match="units"):
        FusedBidirectionalGRU(0)
    with pytest.raises(ValueError, match="branches"):
        FusedBidirectionalGRU(3, branches=("intra", "intra"))
    with pytest.raises(ValueError, match="use_cudnn"):
        FusedBidirectionalGRU(3, use_cudnn="yes")
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(ValueError, match="no GPU"):
            FusedBidirectionalGRU(3, use_cudnn=True)(np.zeros((1, 2, 2), "float32"))


TINY = dict(audio_dim=6, text_dim=5, hidden_units=4, head_units=4, num_classes=4)


def _model_inputs(rng):
    return {
        "audio_features": rng.normal(size=(3, 8, 6)).astype("float32"),
        "audio_length": np.array([8, 3, 5], "int32"),
        "text_features": rng.normal(size=(3, 5, 5)).astype("float32"),
        "text_length": np.array([2, 5, 4], "int32"),
    }


@pytest.mark.parametrize("variant", ["smcn", "audio"])
def test_model_outputs_are_the_same_with_either_core(variant):
    rng = np.random.default_rng(3)
    keras_core = build_smcn(variant, recurrent_core="keras", **TINY)
    fused_core = convert_recurrent_core(keras_core, "fused")
    assert fused_core.count_params() == keras_core.count_params()
    inputs = _model_inputs(rng)
    expected = keras_core(inputs)
    for key, value in fused_core(inputs).items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(expected[key]), atol=1e-5, err_msg=key
        )
    back = convert_recurrent_core(fused_core, "keras")
    for first, second in zip(back.get_weights(), keras_core.get_weights()):
        np.testing.assert_array_equal(first, second)


def test_a_model_saved_before_the_fused_core_still_loads(tmp_path):
    """Old .keras files have no `recurrent_core` key and per-branch GRU layers."""
    rng = np.random.default_rng(4)
    old = build_smcn("smcn", recurrent_core="keras", **TINY)
    saved = tmp_path / "new.keras"
    old.save(saved)
    # Rewrite the archive's config as the older code wrote it.
    legacy = tmp_path / "old.keras"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(legacy, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.load(io.BytesIO(data))
                del config["config"]["recurrent_core"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    restored = keras.saving.load_model(legacy)
    assert restored.recurrent_core == "keras"
    inputs = _model_inputs(rng)
    for key, value in restored(inputs).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(old(inputs)[key]))
    # A fused model saves and loads as itself.
    fused = convert_recurrent_core(restored, "fused")
    fused.save(tmp_path / "fused.keras")
    reloaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert reloaded.recurrent_core == "fused"
    for key, value in reloaded(inputs).items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(old(inputs)[key]), atol=1e-5, err_msg=key
        )
