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
