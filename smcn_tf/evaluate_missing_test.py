"""Scoring with a modality removed: the unimodal head vs the fused head fed zeros."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.evaluate import evaluate_missing, format_missing, predict_dataset
from smcn_tf.model.smcn import build_smcn

CLASS_NAMES = ["angry", "happy", "sad"]
TINY = dict(audio_dim=6, text_dim=5, num_classes=3, hidden_units=4, head_units=4,
            class_names=CLASS_NAMES)


def dataset(batches=2, batch_size=4, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for batch in range(batches):
        inputs = {
            "audio_features": rng.normal(size=(batch_size, 7, 6)).astype("float32"),
            "audio_length": rng.integers(1, 8, batch_size).astype("int32"),
            "text_features": rng.normal(size=(batch_size, 5, 5)).astype("float32"),
            "text_length": rng.integers(1, 6, batch_size).astype("int32"),
        }
        labels = rng.integers(0, 3, batch_size).astype("int32")
        ids = np.array([f"u{batch}_{i}".encode() for i in range(batch_size)])
        items.append((inputs, labels, {"utterance_id": ids}))
    return items, tf.data.Dataset.from_generator(
        lambda: iter(items),
        output_signature=(
            {"audio_features": tf.TensorSpec([None, None, 6], tf.float32),
             "audio_length": tf.TensorSpec([None], tf.int32),
             "text_features": tf.TensorSpec([None, None, 5], tf.float32),
             "text_length": tf.TensorSpec([None], tf.int32)},
            tf.TensorSpec([None], tf.int32),
            {"utterance_id": tf.TensorSpec([None], tf.string)},
        ),
    )


def test_a_missing_modality_is_scored_through_the_head_and_through_zeros():
    keras.utils.set_random_seed(0)
    model = build_smcn("smcn", **TINY)
    items, data = dataset()
    head = predict_dataset(model, data, missing="text", route="head")
    zeros = predict_dataset(model, data, missing="text", route="zeros")
    expected_head, expected_zeros = [], []
    for batch, _, _ in items:
        emptied = dict(batch, text_features=np.zeros_like(batch["text_features"]),
                       text_length=np.zeros_like(batch["text_length"]))
        outputs = model(emptied)
        expected_head.append(outputs["audio_probabilities"])
        expected_zeros.append(outputs["probabilities"])
        # The audio head never reads the text: emptied or not, the same answer.
        np.testing.assert_allclose(
            outputs["audio_probabilities"], model(batch)["audio_probabilities"], atol=1e-6
        )
    np.testing.assert_allclose(head["probabilities"], np.concatenate(expected_head), atol=1e-5)
    np.testing.assert_allclose(zeros["probabilities"], np.concatenate(expected_zeros), atol=1e-5)
    results = evaluate_missing(model, data, CLASS_NAMES, "text")
    assert set(results) == {"both", "head", "zeros"}
    table = format_missing(results, "text")
    assert "no text: audio head" in table and "no text: fused head, zeros" in table


def test_variants_that_cannot_answer_say_so():
    keras.utils.set_random_seed(0)
    _, data = dataset(batches=1)
    cat = build_smcn("cat", **TINY)
    with pytest.raises(ValueError, match="variant cat has no unimodal heads"):
        predict_dataset(cat, data, missing="audio", route="head")
    assert set(evaluate_missing(cat, data, CLASS_NAMES, "audio")) == {"both", "zeros"}
    text = build_smcn("text", **TINY)
    with pytest.raises(ValueError, match="variant text reads only text"):
        predict_dataset(text, data, missing="text")
    # Without audio, the text variant answers as it always does.
    np.testing.assert_allclose(
        predict_dataset(text, data, missing="audio")["probabilities"],
        predict_dataset(text, data)["probabilities"], atol=1e-6,
    )
