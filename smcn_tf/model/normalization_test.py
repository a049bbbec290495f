"""Audio normalisation: mask-aware statistics, the model option, saving and export."""

import io
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.model.smcn import (
    AUDIO_NORMALIZATIONS,
    VARIANTS,
    build_smcn,
    convert_recurrent_core,
    dtype_policy,
)
from smcn_tf.model.normalization import AudioNormalization, adapt_audio_normalization

DIM = 4
AUDIO_DIM, TEXT_DIM, CLASSES = 6, 5, 3
TINY = dict(
    audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, num_classes=CLASSES, hidden_units=4, head_units=4
)


def _utterances(rng, lengths, dim=DIM, offset=0.0, scale=1.0):
    """Unpadded utterances `[length, dim]`, each feature with its own scale."""
    spread = np.linspace(0.5, 3.0, dim)
    return [
        (offset + scale * spread * rng.normal(size=(length, dim))).astype("float32")
        for length in lengths
    ]


def _padded_batch(utterances, extra=0, fill=None, rng=None):
    """One batch, padded to its longest item + `extra` frames with `fill` (or noise)."""
    frames = max(len(item) for item in utterances) + extra
    dim = utterances[0].shape[1]
    if fill is None:
        batch = 1e4 * rng.normal(size=(len(utterances), frames, dim))
    else:
        batch = np.full((len(utterances), frames, dim), fill)
    batch = batch.astype("float32")
    for row, item in enumerate(utterances):
        batch[row, : len(item)] = item
    return {
        "audio_features": batch,
        "audio_length": np.array([len(item) for item in utterances], "int32"),
    }


def _batches(utterances, size, **padding):
    return [
        _padded_batch(utterances[start : start + size], **padding)
        for start in range(0, len(utterances), size)
    ]


def _mask(batch):
    frames = batch["audio_features"].shape[1]
    return np.arange(frames)[None, :] < batch["audio_length"][:, None]


def _weights(layer):
    return np.asarray(layer.mean), np.asarray(layer.variance)


def test_global_statistics_ignore_padding_and_batching():
    rng = np.random.default_rng(0)
    # A large offset: a naive float32 sum of squares would lose the variance.
    utterances = _utterances(rng, [7, 1, 12, 3, 9, 5, 2], offset=300.0)
    frames = np.concatenate(utterances).astype("float64")
    expected_mean, expected_variance = frames.mean(0), frames.var(0)

    results = []
    for size, padding in ((2, dict(extra=0, fill=0.0)), (3, dict(extra=5, rng=rng)),
                          (7, dict(extra=2, fill=np.nan))):
        layer = AudioNormalization("global")
        assert layer.adapt(_batches(utterances, size, **padding)) == len(frames)
        results.append(_weights(layer))
    # A tf.data stream of (inputs, label) batches, padded by padded_batch.
    dataset = tf.data.Dataset.from_generator(
        lambda: ((item, len(item)) for item in utterances),
        output_signature=(
            tf.TensorSpec([None, DIM], tf.float32), tf.TensorSpec([], tf.int32)
        ),
    ).map(lambda x, n: ({"audio_features": x, "audio_length": n}, 0))
    layer = AudioNormalization("global")
    layer.adapt(dataset.padded_batch(4))
    results.append(_weights(layer))
    for mean, variance in results:
        np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
        np.testing.assert_allclose(variance, expected_variance, rtol=1e-5)


def test_global_layer_is_the_identity_until_adapted_then_standardises():
    rng = np.random.default_rng(1)
    utterances = _utterances(rng, [5, 3, 8], offset=-4.0, scale=2.0)
    batch = _padded_batch(utterances, extra=3, rng=rng)
    mask = _mask(batch)
    layer = AudioNormalization("global")
    out = np.asarray(layer(batch["audio_features"], mask=mask))
    np.testing.assert_array_equal(out[mask], batch["audio_features"][mask])
    assert np.all(out[~mask] == 0)

    layer.adapt(batch)  # one batch (a dict) is data too
    mean, variance = _weights(layer)
    out = np.asarray(layer(batch["audio_features"], mask=mask))
    expected = (batch["audio_features"][mask] - mean) / np.sqrt(variance)
    np.testing.assert_allclose(out[mask], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[mask].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[mask].var(0), 1.0, rtol=1e-4)
    assert np.all(out[~mask] == 0)


def _utterance_reference(item, epsilon=1e-3):
    if len(item) == 0:
        return item
    item = item.astype("float64")
    return (item - item.mean(0)) / np.sqrt(np.maximum(item.var(0), epsilon))


def test_utterance_mode_matches_numpy_per_utterance_and_guards_one_frame():
    rng = np.random.default_rng(2)
    utterances = _utterances(rng, [6, 1, 9, 2], offset=8.0)
    utterances.append(np.zeros((0, DIM), "float32"))  # missing audio
    constant = np.full((4, DIM), 3.5, "float32")  # zero variance, several frames
    utterances.append(constant)
    batch = _padded_batch(utterances, extra=2, fill=np.inf)
    mask = _mask(batch)
    out = np.asarray(AudioNormalization("utterance")(batch["audio_features"], mask=mask))
    assert np.all(np.isfinite(out))
    assert np.all(out[~mask] == 0)
    for row, item in enumerate(utterances):
        np.testing.assert_allclose(
            out[row, : len(item)], _utterance_reference(item), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_array_equal(out[1, :1], 0.0)  # one frame: itself minus its mean
    np.testing.assert_array_equal(out[5, :4], 0.0)


@pytest.mark.parametrize("mode", ["global", "utterance"])
def test_padding_never_changes_valid_outputs(mode):
    rng = np.random.default_rng(3)
    utterances = _utterances(rng, [4, 7, 2], offset=2.0)
    layer = AudioNormalization(mode)
    if mode == "global":
        layer.adapt(_batches(utterances, 3, extra=0, fill=0.0))
    tight = _padded_batch(utterances, fill=0.0)
    loose = _padded_batch(utterances, extra=6, fill=np.nan)
    out_tight = np.asarray(layer(tight["audio_features"], mask=_mask(tight)))
    out_loose = np.asarray(layer(loose["audio_features"], mask=_mask(loose)))
    frames = out_tight.shape[1]
    np.testing.assert_array_equal(out_loose[:, :frames], out_tight)
    assert np.all(out_loose[:, frames:] == 0)


def test_layer_config_round_trip_and_bad_arguments():
    layer = AudioNormalization("utterance", epsilon=1e-4, name="n")
    clone = AudioNormalization.from_config(layer.get_config())
    assert (clone.mode, clone.epsilon, clone.name) == ("utterance", 1e-4, "n")
    with pytest.raises(ValueError, match="mode"):
        AudioNormalization("none")
    with pytest.raises(ValueError, match="epsilon"):
        AudioNormalization("global", epsilon=0.0)
    with pytest.raises(ValueError, match="global"):
        AudioNormalization("utterance").adapt([])
    with pytest.raises(ValueError, match="no valid audio frame"):
        AudioNormalization("global").adapt([])
    with pytest.raises(ValueError, match="audio_length"):
        AudioNormalization("global").adapt([{"audio_features": np.zeros((1, 2, DIM))}])
    with pytest.raises(ValueError, match="infinite"):
        batch = _padded_batch([np.ones((2, DIM), "float32")], fill=0.0)
        AudioNormalization("global").adapt(tf.data.Dataset.from_tensors(batch).repeat())


# The model option.


def _model_batch(rng, batch=4, frames=7, tokens=5, offset=5.0):
    return {
        "audio_features": (offset + 3.0 * rng.normal(size=(batch, frames, AUDIO_DIM))).astype(
            "float32"
        ),
        "audio_length": rng.integers(1, frames + 1, batch).astype("int32"),
        "text_features": rng.normal(size=(batch, tokens, TEXT_DIM)).astype("float32"),
        "text_length": rng.integers(1, tokens + 1, batch).astype("int32"),
    }


def _assert_same_outputs(first, second, inputs, atol=0.0):
    first, second = first(inputs), second(inputs)
    assert set(first) == set(second)
    for key, value in first.items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(second[key]), atol=atol, rtol=0, err_msg=key
        )


def test_every_variant_reading_audio_normalises_it_and_default_adds_nothing():
    assert AUDIO_NORMALIZATIONS == ("none", "global", "utterance")
    for variant in ("audio", "text", "cat"):
        model = build_smcn(variant, audio_normalization="utterance", **TINY)
        names = [layer.name for layer in model.layers]
        assert ("audio_normalization" in names) is ("audio" in VARIANTS[variant].modalities)
    plain = build_smcn("smcn", **TINY)
    assert plain.audio_normalization == "none"
    assert "audio_normalization" not in [layer.name for layer in plain.layers]
    assert plain.get_config()["audio_normalization"] == "none"
    with pytest.raises(ValueError, match="audio_normalization"):
        build_smcn("smcn", audio_normalization="batch", **TINY)


def _adapted_model(rng, **kwargs):
    keras.utils.set_random_seed(4)
    model = build_smcn(audio_normalization="global", **kwargs)
    batches = [(_model_batch(rng, frames=frames), np.zeros(4, "int32")) for frames in (7, 9)]
    frames = adapt_audio_normalization(
        model, tf.data.Dataset.from_generator(
            lambda: iter(batches),
            output_signature=(
                {
                    "audio_features": tf.TensorSpec([None, None, AUDIO_DIM], tf.float32),
                    "audio_length": tf.TensorSpec([None], tf.int32),
                    "text_features": tf.TensorSpec([None, None, TEXT_DIM], tf.float32),
                    "text_length": tf.TensorSpec([None], tf.int32),
                },
                tf.TensorSpec([None], tf.int32),
            ),
        )
    )
    valid = np.concatenate(
        [inputs["audio_features"][_mask(inputs)] for inputs, _ in batches]
    ).astype("float64")
    assert frames == len(valid)
    mean, variance = _weights(model.get_layer("audio_normalization"))
    np.testing.assert_allclose(mean, valid.mean(0), rtol=1e-5)
    np.testing.assert_allclose(variance, valid.var(0), rtol=1e-5)
    return model


def test_global_model_saves_loads_and_converts_with_its_statistics(tmp_path):
    rng = np.random.default_rng(5)
    model = _adapted_model(rng, variant="smcn", **TINY)
    inputs = _model_batch(rng)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    assert restored.audio_normalization == "global"
    np.testing.assert_array_equal(
        _weights(restored.get_layer("audio_normalization"))[0],
        _weights(model.get_layer("audio_normalization"))[0],
    )
    _assert_same_outputs(model, restored, inputs, atol=1e-6)
    # The statistics matter: the identity layer answers otherwise.
    identity = build_smcn(audio_normalization="global", variant="smcn", **TINY)
    identity.set_weights(model.get_weights())
    identity.get_layer("audio_normalization").set_weights(
        [np.zeros(AUDIO_DIM, "float32"), np.ones(AUDIO_DIM, "float32")]
    )
    assert not np.allclose(
        np.asarray(identity(inputs)["probabilities"]), np.asarray(model(inputs)["probabilities"])
    )
    # The other recurrent core keeps them too.
    converted = convert_recurrent_core(model, "keras")
    _assert_same_outputs(model, converted, inputs, atol=1e-5)


def test_a_model_saved_without_the_key_loads_as_none(tmp_path):
    rng = np.random.default_rng(6)
    old = build_smcn("smcn", **TINY)
    saved, legacy = tmp_path / "new.keras", tmp_path / "old.keras"
    old.save(saved)
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(legacy, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.load(io.BytesIO(data))
                del config["config"]["audio_normalization"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    restored = keras.saving.load_model(legacy)
    assert restored.audio_normalization == "none"
    assert "audio_normalization" not in [layer.name for layer in restored.layers]
    _assert_same_outputs(old, restored, _model_batch(rng))


def test_adapt_helper_reads_only_the_inputs_of_what_it_is_given():
    rng = np.random.default_rng(7)
    train = [_model_batch(rng, offset=5.0), _model_batch(rng, frames=11, offset=5.0)]
    test = _model_batch(rng, offset=-50.0)  # never given: must not count
    valid = np.concatenate([batch["audio_features"][_mask(batch)] for batch in train])
    for structure in ("inputs", "label", "weight"):
        elements = []
        for batch in train:
            label = np.zeros(4, "int32")
            if structure == "inputs":
                elements.append(batch)
            elif structure == "label":
                elements.append((batch, label))
            else:
                elements.append((batch, label, np.ones(4, "float32")))
        for data in (elements, _as_dataset(elements)):
            model = build_smcn("audio", audio_normalization="global", **TINY)
            assert adapt_audio_normalization(model, data) == len(valid)
            mean, variance = _weights(model.get_layer("audio_normalization"))
            np.testing.assert_allclose(mean, valid.astype("float64").mean(0), rtol=1e-5)
            np.testing.assert_allclose(variance, valid.astype("float64").var(0), rtol=1e-5)
    assert not np.allclose(mean, test["audio_features"][_mask(test)].mean(0), atol=1.0)
    # `steps` bounds an infinite stream.
    model = build_smcn("audio", audio_normalization="global", **TINY)
    endless = _as_dataset([(train[0], np.zeros(4, "int32"))]).repeat()
    assert adapt_audio_normalization(model, endless, steps=3) == 3 * _mask(train[0]).sum()
    # No-op (nothing read) without a global layer.
    for mode in ("none", "utterance"):
        model = build_smcn("audio", audio_normalization=mode, **TINY)
        assert adapt_audio_normalization(model, endless) is None


def _as_dataset(elements):
    """A dataset of batches of different padded lengths, from a list of elements."""
    first = elements[0]
    signature = tf.nest.map_structure(
        lambda value: tf.TensorSpec([None] * np.ndim(value), tf.as_dtype(value.dtype)), first
    )
    return tf.data.Dataset.from_generator(lambda: iter(elements), output_signature=signature)


def test_mixed_precision_model_normalises_in_float32_and_serves_the_same_statistics():
    from smcn_tf.export.exporter import serving_copy

    rng = np.random.default_rng(8)
    with dtype_policy("mixed_float16"):
        model = _adapted_model(rng, variant="audio", **TINY)
    layer = model.get_layer("audio_normalization")
    assert layer.compute_dtype == "float32" and layer.variable_dtype == "float32"
    assert model.get_layer("audio_gru").compute_dtype == "float16"
    copy = serving_copy(model)
    for first, second in zip(_weights(layer), _weights(copy.get_layer("audio_normalization"))):
        np.testing.assert_array_equal(first, second)
    inputs = _model_batch(rng)
    np.testing.assert_allclose(
        np.asarray(copy(inputs)["probabilities"]),
        np.asarray(model(inputs)["probabilities"]),
        atol=3e-2,
    )


def test_export_answers_like_the_model_with_adapted_global_normalisation(tmp_path):
    from smcn_tf.export.exporter import export_model
    from smcn_tf.export.exporter_test import (
        CLASS_NAMES,
        assert_answers_match,
        feature_settings,
        random_features,
    )
    from smcn_tf.export.exporter_test import TINY as EXPORT_TINY

    rng = np.random.default_rng(9)
    keras.utils.set_random_seed(0)
    model = build_smcn(
        "audio", class_names=CLASS_NAMES, audio_normalization="global", **EXPORT_TINY
    )
    # Statistics far from the identity, so a missing transform would show.
    batch = random_features(78, 384)
    batch["audio_features"] = (7.0 + 4.0 * batch["audio_features"]).astype("float32")
    adapt_audio_normalization(model, [(batch, np.zeros(3, "int32"))])
    assert np.abs(_weights(model.get_layer("audio_normalization"))[0]).min() > 3.0
    settings = feature_settings("not-needed-for-audio", max_tokens=None)
    export_dir = export_model(model, str(tmp_path), "smcn", feature_settings=settings)
    loaded = tf.saved_model.load(export_dir)
    inputs = random_features(78, 384)
    inputs["audio_features"] = (
        7.0 + 4.0 * rng.normal(size=inputs["audio_features"].shape)
    ).astype("float32")
    answer = loaded.signatures["features"](
        **{name: tf.constant(value) for name, value in inputs.items()}
    )
    expected = dict(model(inputs))
    expected["text_attention"] = np.zeros(inputs["text_features"].shape[:2], "float32")
    assert_answers_match(answer, expected, 1e-6)
    with open(f"{export_dir}/assets.extra/smcn.json", encoding="utf-8") as stream:
        assert json.load(stream)["model_config"]["audio_normalization"] == "global"
