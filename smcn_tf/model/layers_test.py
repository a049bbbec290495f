"""Tests for the attention pooling (eq. 4-6), length masks and fusion layers."""

import keras
import numpy as np
import pytest

from smcn_tf.model.layers import AttentionPooling, Fusion, LengthMask


def test_length_mask_marks_the_first_length_steps():
    mask = LengthMask()((np.zeros((3, 4, 2), "float32"), np.array([0, 2, 4])))
    assert np.asarray(mask).tolist() == [
        [False, False, False, False],
        [True, True, False, False],
        [True, True, True, True],
    ]


def _numpy_attention(hidden, kernel, bias, context, length):
    """Eq. 4-6 written out: c = u . tanh(W h + b); alpha = softmax(c); f = sum alpha h."""
    valid = hidden[:length]
    scores = np.tanh(valid @ kernel + bias) @ context
    alpha = np.exp(scores - scores.max())
    alpha /= alpha.sum()
    return (alpha[:, None] * valid).sum(0), alpha


def test_attention_pooling_matches_equations_4_to_6_under_a_mask():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 6, 5)).astype("float32")
    lengths = np.array([6, 3])
    pooling = AttentionPooling(attention_units=4)
    mask = np.arange(6)[None, :] < lengths[:, None]
    pooled, weights = pooling(hidden, mask=mask)
    pooled, weights = np.asarray(pooled), np.asarray(weights)
    kernel, bias, context = (np.asarray(v) for v in pooling.weights)
    for item, length in enumerate(lengths):
        expected, alpha = _numpy_attention(hidden[item], kernel, bias, context, length)
        np.testing.assert_allclose(pooled[item], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights[item, :length], alpha, rtol=1e-5, atol=1e-7)
        assert np.all(weights[item, length:] == 0.0)
        assert weights[item].sum() == pytest.approx(1.0, abs=1e-6)


def test_attention_pooling_ignores_whatever_is_in_the_padding():
    rng = np.random.default_rng(1)
    pooling = AttentionPooling()
    short = rng.normal(size=(1, 3, 4)).astype("float32")
    padded = np.concatenate([short, 100 * rng.normal(size=(1, 5, 4))], axis=1)
    alone, _ = pooling(short, mask=np.ones((1, 3), bool))
    with_padding, weights = pooling(
        padded.astype("float32"), mask=np.arange(8)[None, :] < 3
    )
    np.testing.assert_allclose(np.asarray(alone), np.asarray(with_padding), atol=1e-6)
    assert np.all(np.asarray(weights)[0, 3:] == 0)


def test_attention_pooling_of_an_empty_item_is_zero_not_nan():
    pooled, weights = AttentionPooling()(
        np.ones((1, 4, 3), "float32"), mask=np.zeros((1, 4), bool)
    )
    assert np.all(np.asarray(pooled) == 0) and np.all(np.asarray(weights) == 0)


def test_attention_pooling_defaults_to_a_square_projection_and_round_trips():
    pooling = AttentionPooling(name="pool")
    pooling(np.ones((1, 2, 7), "float32"))
    assert pooling.kernel.shape == (7, 7)
    config = pooling.get_config()
    assert config["name"] == "pool" and config["attention_units"] is None
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(pooling)
    )
    assert isinstance(restored, AttentionPooling)
    with pytest.raises(ValueError, match="attention_units"):
        AttentionPooling(attention_units=0)


@pytest.mark.parametrize(
    "method, expected",
    [("add", [4.0, 7.0]), ("average", [2.0, 3.5]), ("maximum", [3.0, 5.0]), ("multiply", [3.0, 10.0])],
)
def test_fusion_methods(method, expected):
    first = np.array([[1.0, 2.0]], "float32")
    second = np.array([[3.0, 5.0]], "float32")
    result = Fusion(method)([first, second])
    np.testing.assert_allclose(np.asarray(result)[0], expected)


def test_fusion_rejects_unknown_methods_and_keeps_the_first_mask():
    with pytest.raises(ValueError, match="concat"):
        Fusion("concat")
    mask = np.array([[True, False]])
    assert Fusion().compute_mask([None, None], [mask, None]) is mask
    assert Fusion.from_config(Fusion("maximum").get_config()).method == "maximum"


def test_attentive_statistics_pooling_is_the_weighted_mean_and_std_under_a_mask():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 6, 5)).astype("float32")
    mask = np.array([[True] * 4 + [False] * 2, [True] * 6])
    pooling = AttentionPooling(attention_units=3, statistics=True)
    pooled, weights = pooling(hidden, mask=mask)
    pooled, weights = np.asarray(pooled), np.asarray(weights)
    assert pooled.shape == (2, 10) and weights.shape == (2, 6)
    for row, length in enumerate((4, 6)):
        alpha = weights[row, :length]
        valid = hidden[row, :length].astype("float64")
        mean = (alpha[:, None] * valid).sum(0)
        std = np.sqrt((alpha[:, None] * valid**2).sum(0) - mean**2 + 1e-6)
        np.testing.assert_allclose(pooled[row, :5], mean, atol=1e-5)
        np.testing.assert_allclose(pooled[row, 5:], std, atol=1e-4)
    # Padding never changes the statistics.
    noisy = hidden.copy()
    noisy[0, 4:] = 1e3
    np.testing.assert_allclose(np.asarray(pooling(noisy, mask=mask)[0]), pooled, atol=1e-5)
    config = pooling.get_config()
    assert config["statistics"] is True
    assert AttentionPooling.from_config(config).compute_output_shape((2, 6, 5))[0] == (2, 10)


def _spec_augment(**kwargs):
    from smcn_tf.model.layers import SpecAugment

    settings = dict(
        time_masks=2, time_mask_frames=3, frequency_masks=2, frequency_mask_bands=2, seed=3
    )
    settings.update(kwargs)
    return SpecAugment(**settings)


def test_spec_augment_is_the_identity_at_inference():
    frames = np.random.default_rng(0).normal(size=(3, 8, 12)).astype("float32")
    layer = _spec_augment()
    np.testing.assert_array_equal(np.asarray(layer(frames)), frames)
    np.testing.assert_array_equal(np.asarray(layer(frames, training=False)), frames)


def test_spec_augment_masks_with_the_utterance_mean_and_never_touches_padding():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(16, 10, 12)).astype("float32")
    lengths = rng.integers(1, 11, size=16)
    mask = np.arange(10)[None, :] < lengths[:, None]
    frames[~mask] = 0.0
    out = np.asarray(_spec_augment()(frames, mask=mask, training=True))
    assert np.array_equal(out[~mask], frames[~mask])  # padded frames as they were
    changed = out != frames
    assert changed.any()
    for row in range(16):
        mean = frames[row, : lengths[row]].mean(0)
        where = np.nonzero(changed[row])
        np.testing.assert_allclose(out[row][where], np.broadcast_to(mean, out[row].shape)[where],
                                   atol=1e-5)


def test_spec_augment_frequency_masks_cover_the_same_bands_in_every_block():
    frames = np.random.default_rng(2).normal(size=(32, 5, 12)).astype("float32")
    layer = _spec_augment(time_masks=0, frequency_masks=1, frequency_mask_bands=3)
    out = np.asarray(layer(frames, mask=np.ones((32, 5), bool), training=True))
    changed = (out != frames).any(axis=1)  # [batch, 12]: 3 blocks of 4 bands
    blocks = changed.reshape(32, 3, 4)
    assert np.array_equal(blocks[:, 0], blocks[:, 1]) and np.array_equal(blocks[:, 0], blocks[:, 2])
    widths = blocks[:, 0].sum(1)
    assert widths.max() <= 3 and widths.max() > 0
    # A band mask is one contiguous span, and every frame of the row is masked there.
    for row in range(32):
        bands = np.nonzero(blocks[row, 0])[0]
        if len(bands):
            assert bands.tolist() == list(range(bands[0], bands[-1] + 1))
            assert (out[row][:, bands] != frames[row][:, bands]).all()


def test_spec_augment_time_masks_stay_within_the_valid_frames():
    frames = np.random.default_rng(3).normal(size=(64, 12, 6)).astype("float32")
    lengths = np.full(64, 5)
    mask = np.arange(12)[None, :] < lengths[:, None]
    layer = _spec_augment(time_masks=1, time_mask_frames=4, frequency_masks=0)
    out = np.asarray(layer(frames, mask=mask, training=True))
    masked_frames = (out != frames).all(axis=2)  # a time mask covers every feature
    assert not masked_frames[:, 5:].any()
    assert 0 < masked_frames.sum(1).max() <= 4


def test_spec_augment_config_round_trips_and_rejects_bad_values():
    from smcn_tf.model.layers import SpecAugment

    layer = _spec_augment()
    config = layer.get_config()
    assert SpecAugment.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugment(time_masks=-1)
    with pytest.raises(ValueError, match="divisible"):
        SpecAugment(time_masks=1, time_mask_frames=1)(np.zeros((1, 2, 7), "float32"))
