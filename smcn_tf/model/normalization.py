"""Normalisation of the audio features inside the model (`model.audio_normalization`).

The audio input (26 log-Mel + delta + delta-delta, values of about -14..+15)
would otherwise enter the GRUs unnormalised. `AudioNormalization` standardises
each feature, mask-aware, in one of two modes:

- `"global"`: with a per-feature mean and variance of the training data,
  held as non-trainable weights (so they are saved in `model.keras`, copied
  by `set_weights` and baked into the exported SavedModel). They are computed
  once per fold by `adapt_audio_normalization(model, train_dataset)`, from
  the training groups only; until then the layer is the identity.
- `"utterance"`: with the mean and variance of each utterance's own valid
  frames, computed in `call`; nothing to adapt, no weights.

`"none"` (the default of `SMCNModel`) adds no layer at all, so models saved
before this option load and answer exactly as before.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# The values of `SMCNModel(audio_normalization=...)` and `model.audio_normalization`.
AUDIO_NORMALIZATIONS = ("none", "global", "utterance")
# The name of the layer in `SMCNModel`.
LAYER_NAME = "audio_normalization"


@keras.saving.register_keras_serializable(package="smcn_tf")
class AudioNormalization(keras.layers.Layer):
    """Mask-aware per-feature standardisation of audio frames.

    Each valid frame becomes `(x - mean) / sqrt(max(variance, epsilon))`, per
    feature (the last axis); every padded frame (mask False) becomes exactly
    0, whatever it held (even NaN or inf).

    Masking: padded frames never enter any statistic, neither the global ones
    (`adapt` counts each item's first `audio_length` frames only) nor an
    utterance's own, so padding changes neither the statistics nor the
    outputs at valid frames.

    Precision: statistics and outputs are float32; the layer's dtype policy
    is float32 unless another `dtype` is passed, also under a
    mixed-precision global policy (the following GRUs cast the float32
    output to their compute type). `adapt` accumulates in float64.

    Args:
        mode: `"global"` (the training data's statistics, see `adapt`) or
            `"utterance"` (each utterance's own statistics).
        epsilon: the smallest variance divided by. In `"utterance"` mode an
            utterance with one valid frame (variance 0) or a constant
            feature maps to 0 (its value minus its mean), never to
            NaN/inf; a near-constant feature is scaled by at most
            `1 / sqrt(epsilon)`. With `variance = 1` (a `"global"` layer
            before `adapt`) the layer is exactly the identity on valid
            frames.

    Call arguments:
        inputs: float `[batch, time, features]`.
        mask: optional bool `[batch, time]`, True at valid frames (e.g. from
            `smcn_tf.model.layers.LengthMask`); `None`: every frame is valid.

    Returns:
        float32 `[batch, time, features]`: the normalised valid frames, zeros
        at padded ones. The mask is passed on (`compute_mask`).

    Example:

    >>> layer = AudioNormalization("utterance")
    >>> features = np.array([[[1.0], [3.0], [99.0]]], "float32")
    >>> mask = np.array([[True, True, False]])
    >>> ops.convert_to_numpy(layer(features, mask=mask))[0, :, 0].tolist()
    [-1.0, 1.0, 0.0]
    """

    MODES = ("global", "utterance")

    def __init__(self, mode="global", epsilon=1e-3, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "float32"  # statistics in float32 under mixed precision
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(
                f"AudioNormalization `mode` must be one of {self.MODES}, got {mode!r}."
            )
        if not float(epsilon) > 0.0:
            raise ValueError(f"`epsilon` must be positive, got {epsilon}.")
        self.mode = mode
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "AudioNormalization needs a known feature size (last axis); got "
                f"input shape {input_shape}."
            )
        if self.mode == "global":
            self.mean = self.add_weight(
                name="mean", shape=(features,), initializer="zeros", trainable=False
            )
            self.variance = self.add_weight(
                name="variance", shape=(features,), initializer="ones", trainable=False
            )

    def call(self, inputs, mask=None):
        features = ops.cast(inputs, "float32")
        if mask is None:
            valid = ops.ones(ops.shape(features)[:2], dtype="bool")
        else:
            valid = ops.cast(mask, "bool")
        valid = ops.expand_dims(valid, -1)  # [batch, time, 1]
        zeros = ops.zeros_like(features)
        # `where`, not a product with the mask: padding holding NaN/inf stays out.
        features = ops.where(valid, features, zeros)
        if self.mode == "global":
            mean = ops.cast(self.mean, "float32")
            variance = ops.cast(self.variance, "float32")
        else:
            count = ops.sum(ops.cast(valid, "float32"), axis=1, keepdims=True)
            count = ops.maximum(count, 1.0)  # an empty utterance maps to zeros
            mean = ops.sum(features, axis=1, keepdims=True) / count
            centred = ops.where(valid, features - mean, zeros)
            variance = ops.sum(ops.square(centred), axis=1, keepdims=True) / count
        scale = 1.0 / ops.sqrt(ops.maximum(variance, self.epsilon))
        return ops.where(valid, (features - mean) * scale, zeros)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def adapt(self, data, steps=None):
        """Set the `"global"` mean and variance from data, padding excluded.

        Each batch contributes the first `audio_length[b]` frames of each
        item `b`; their per-feature count, mean and sum of squared
        deviations are computed in float64 and merged across batches with
        Chan et al.'s parallel update, so the result is the population mean
        and variance of all valid frames, however they were batched and
        padded.

        Args:
            data: a `tf.data.Dataset` or an iterable of batches (or one
                batch). A batch is an inputs dict with `audio_features`
                `[batch, time, features]` and `audio_length` `[batch]`, or a
                tuple whose first element is that dict (`(inputs, label)`,
                `(inputs, label, weight)`, `(inputs, label, metadata)`).
                Must be finite unless `steps` is given.
            steps: read at most this many batches (`None`: all).

        Returns:
            The number of valid frames the statistics come from.

        Raises:
            ValueError: the layer is not in `"global"` mode, a batch lacks
                `audio_features` / `audio_length` or has the wrong feature
                size, the dataset is infinite and `steps` is `None`, or no
                valid frame was seen (the weights are then left unchanged).

        Example:

        >>> layer = AudioNormalization("global")
        >>> batch = {"audio_features": np.array([[[1.0], [3.0], [0.0]]], "float32"),
        ...          "audio_length": np.array([2], "int32")}
        >>> layer.adapt([batch])
        2
        >>> [ops.convert_to_numpy(w).tolist() for w in (layer.mean, layer.variance)]
        [[2.0], [1.0]]
        """
        if self.mode != "global":
            raise ValueError(
                f"Only a 'global' AudioNormalization has statistics to adapt; this one "
                f"is {self.mode!r}."
            )
        count, mean, squares = _stream_moments(data, steps)
        if count == 0:
            raise ValueError(
                "AudioNormalization.adapt saw no valid audio frame (every audio_length "
                "was 0, or the data was empty); the statistics are left unchanged."
            )
        features = mean.shape[0]
        if not self.built:
            self.build((None, None, features))
        if tuple(self.mean.shape) != (features,):
            raise ValueError(
                f"The data has {features} audio features per frame but the layer "
                f"normalises {self.mean.shape[0]}."
            )
        self.mean.assign(mean.astype("float32"))
        self.variance.assign((squares / count).astype("float32"))
        return int(count)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "epsilon": self.epsilon})
        return config


def _inputs_of(element):
    """The inputs dict of a dataset element: a dict, or a tuple led by one."""
    if isinstance(element, (tuple, list)) and element:
        element = element[0]
    if not isinstance(element, dict) or not {"audio_features", "audio_length"} <= set(
        element
    ):
        raise ValueError(
            "Expected batches that are an inputs dict with `audio_features` and "
            "`audio_length`, or a tuple (inputs, label[, weight]) led by one; got "
            f"{type(element).__name__}"
            + (f" with keys {sorted(element)}" if isinstance(element, dict) else "")
            + "."
        )
    return element


def _batch_moments(features, lengths):
    """float64 count, mean and sum of squared deviations of a batch's valid frames."""
    features = tf.cast(features, tf.float64)
    mask = tf.sequence_mask(
        tf.reshape(tf.cast(lengths, tf.int32), [-1]), maxlen=tf.shape(features)[1]
    )
    valid = tf.boolean_mask(features, mask)  # [frames, features]
    count = tf.cast(tf.shape(valid)[0], tf.float64)
    mean = tf.reduce_sum(valid, axis=0) / tf.maximum(count, 1.0)
    squares = tf.reduce_sum(tf.square(valid - mean), axis=0)
    return count, mean, squares


def _element_moments(*element):
    inputs = _inputs_of(element if len(element) > 1 else element[0])
    return _batch_moments(inputs["audio_features"], inputs["audio_length"])


def _stream_moments(data, steps=None):
    """(count, mean, sum of squared deviations) over all valid frames of `data`."""
    if steps is not None and int(steps) < 1:
        raise ValueError(f"`steps` must be a positive integer or None, got {steps}.")
    if isinstance(data, tf.data.Dataset):
        if steps is not None:
            data = data.take(int(steps))
        elif data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                "The dataset is infinite (repeat()): pass a single pass over the "
                "training data, or `steps`."
            )
        batches = data.map(_element_moments, num_parallel_calls=tf.data.AUTOTUNE)
        batches = batches.as_numpy_iterator()
    else:
        if isinstance(data, dict):
            data = [data]
        elif not hasattr(data, "__iter__"):
            raise ValueError(
                "adapt expects a tf.data.Dataset or an iterable of batches, got "
                f"{type(data).__name__}."
            )

        def eager(data):
            for index, element in enumerate(data):
                if steps is not None and index >= int(steps):
                    return
                inputs = _inputs_of(element)
                yield [
                    np.asarray(value)
                    for value in _batch_moments(
                        inputs["audio_features"], inputs["audio_length"]
                    )
                ]

        batches = eager(data)
    count, mean, squares = 0.0, None, None
    for batch_count, batch_mean, batch_squares in batches:
        batch_count = float(batch_count)
        if mean is None:
            mean = np.zeros(batch_mean.shape, np.float64)
            squares = np.zeros(batch_mean.shape, np.float64)
        if batch_mean.shape != mean.shape:
            raise ValueError(
                f"Batches differ in their audio feature size: {mean.shape[0]} and "
                f"{batch_mean.shape[0]}."
            )
        if batch_count == 0:
            continue
        # Chan, Golub and LeVeque's pairwise update of (count, mean, M2).
        total = count + batch_count
        delta = batch_mean - mean
        mean = mean + delta * (batch_count / total)
        squares = squares + batch_squares + np.square(delta) * (count * batch_count / total)
        count = total
    if mean is None:
        return 0, np.zeros((0,)), np.zeros((0,))
    return count, mean, squares


def audio_normalization_layer(model):
    """The model's `AudioNormalization` layer, or `None` if it has none."""
    for layer in getattr(model, "layers", ()):
        if layer.name == LAYER_NAME and isinstance(layer, AudioNormalization):
            return layer
    return None


def adapt_audio_normalization(model, dataset, steps=None):
    """Adapt a model's global audio normalisation to the training data.

    Call once per fold, after building the model and before training, with
    a single (finite) pass over the TRAINING groups only: never the test
    data. The statistics become part of the model's weights.

    Args:
        model: an `SMCNModel` (any model; one without a `"global"`
            `audio_normalization` layer is left alone).
        dataset: a `tf.data.Dataset` (or iterable) of batches whose first
            element is the inputs dict: `(inputs, label)`,
            `(inputs, label, weight)`, or the dict itself; see
            `AudioNormalization.adapt`.
        steps: read at most this many batches (needed for an infinite
            dataset).

    Returns:
        The number of valid frames adapted on, or `None` when the model has
        no global audio normalisation (nothing is read then).

    Example: in training, `dataset` is `pipeline.make_dataset(records_dir,
    groups=train_groups, batch_size=64)`; here, one batch of two valid frames:

    >>> from smcn_tf.model.smcn import build_smcn
    >>> model = build_smcn("audio", audio_dim=1, audio_normalization="global")
    >>> batch = {"audio_features": np.array([[[1.0], [3.0], [99.0]]], "float32"),
    ...          "audio_length": np.array([2], "int32")}
    >>> adapt_audio_normalization(model, [batch])
    2
    >>> layer = audio_normalization_layer(model)
    >>> [ops.convert_to_numpy(w).tolist() for w in (layer.mean, layer.variance)]
    [[2.0], [1.0]]
    """
    layer = audio_normalization_layer(model)
    if layer is None or layer.mode != "global":
        return None
    return layer.adapt(dataset, steps=steps)
