"""Small models, datasets and event readers for the TensorBoard view tests."""

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from smcn_tf.model.smcn import build_smcn

CLASSES = ["angry", "happy", "neutral", "sad"]
AUDIO_DIM, TEXT_DIM = 12, 6  # 12 = 4 log-Mel bands + deltas + delta-deltas


def accumulator(log_dir):
    """An `EventAccumulator` of `log_dir` that keeps every tensor and image."""
    accumulator = event_accumulator.EventAccumulator(
        log_dir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0}
    )
    accumulator.Reload()
    return accumulator


def image(accumulator, tag):
    """(height, width) of the PNG logged under tag, and the size recorded with it."""
    (event,) = accumulator.Tensors(tag)
    strings = tf.make_ndarray(event.tensor_proto)
    image = tf.image.decode_png(strings[2]).numpy()
    return image.shape[:2], (int(strings[1]), int(strings[0]))


def text(accumulator, tag):
    """The one text summary logged under `tag`."""
    (event,) = accumulator.Tensors(tag)
    return tf.make_ndarray(event.tensor_proto).item().decode("utf-8")


def random_items(count, seed=0):
    """`count` random utterances: inputs padded to 8 frames / 5 tokens, labels, ids."""
    rng = np.random.default_rng(seed)
    audio_length = rng.integers(3, 9, count).astype(np.int32)
    text_length = rng.integers(2, 6, count).astype(np.int32)
    audio = rng.normal(size=(count, 8, AUDIO_DIM)).astype(np.float32)
    text = rng.normal(size=(count, 5, TEXT_DIM)).astype(np.float32)
    audio[np.arange(8)[None, :] >= audio_length[:, None]] = 0.0
    text[np.arange(5)[None, :] >= text_length[:, None]] = 0.0
    inputs = {
        "audio_features": audio,
        "audio_length": audio_length,
        "text_features": text,
        "text_length": text_length,
    }
    labels = (np.arange(count) % len(CLASSES)).astype(np.int32)
    ids = np.array([f"utt{index:03d}".encode() for index in range(count)])
    return inputs, labels, ids


def dataset(count=12, batch_size=4, metadata=True, seed=0):
    """`random_items` batched, as `(inputs, labels[, {"utterance_id"}])`."""
    inputs, labels, ids = random_items(count, seed)
    if metadata:
        elements = (inputs, labels, {"utterance_id": ids})
    else:
        elements = (inputs, labels)
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)


def tiny_model(variant="smcn", seed=None):
    """A 4-class SMCN of `variant` with 4 GRU and head units."""
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    return build_smcn(
        variant, num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, hidden_units=4,
        head_units=4,
    )
