"""SMCN's building blocks: length masks, attention pooling (eq. 4-6) and fusion Φ.

Every layer here is serializable (`package="smcn_tf"`), uses `keras.ops`, and
honours masks, so a padded frame or token never changes a result.
"""

import keras
from keras import ops

from smcn_tf.checks import integer_at_least


@keras.saving.register_keras_serializable(package="smcn_tf")
class LengthMask(keras.layers.Layer):
    """Boolean time mask from per-item lengths.

    Args:
        None besides the base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a tuple `(sequence, lengths)`: `sequence` is `[batch, time, ...]`
            (only its time size is read), `lengths` is int `[batch]`.

    Returns:
        A bool tensor `[batch, time]`, True at the first `lengths[b]` steps.

    Example:

    >>> mask = LengthMask()((ops.zeros((2, 4, 3)), ops.array([1, 3])))
    >>> ops.convert_to_numpy(mask).astype(int).tolist()
    [[1, 0, 0, 0], [1, 1, 1, 0]]
    """

    def call(self, inputs):
        sequence, lengths = inputs
        steps = ops.arange(ops.shape(sequence)[1], dtype="int32")
        lengths = ops.cast(ops.reshape(lengths, (-1, 1)), "int32")
        return ops.less(ops.expand_dims(steps, 0), lengths)

    def compute_output_spec(self, inputs):
        sequence, _ = inputs
        return keras.KerasTensor(tuple(sequence.shape[:2]), dtype="bool")


@keras.saving.register_keras_serializable(package="smcn_tf")
class AttentionPooling(keras.layers.Layer):
    """Additive attention pooling over time, SMCN eq. 4-6.

    For each step `m`: `c_m = u . tanh(W h_m + b)` (eq. 4), the weights are a
    softmax of `c` over the valid steps (eq. 5), and the output is the
    weighted sum `sum_m alpha_m h_m` (eq. 6). `W`, `b` and `u` are learned.

    Masking: steps where `mask` is False get weight exactly 0, so any amount
    of padding leaves the output unchanged. An item with no valid step pools
    to zeros.

    With `statistics=True` it is attentive statistics pooling (Okabe et al.,
    2018): the output is the weighted mean `mu = sum_m alpha_m h_m` and the
    weighted standard deviation `sqrt(sum_m alpha_m h_m^2 - mu^2)`,
    concatenated, so the pooled size doubles.

    Precision: the scores' softmax is computed in float32, and the weights
    are float32, whatever the layer's compute dtype.

    Args:
        attention_units: size of the hidden projection `W h + b`. Defaults to
            the feature size of the input (the paper's `W` is square).
        kernel_initializer: initializer of `W` and `u`.
        bias_initializer: initializer of `b`.
        statistics: also pool the weighted standard deviation (default False:
            the paper's weighted mean alone).

    Call arguments:
        inputs: float `[batch, time, features]`.
        mask: optional bool `[batch, time]`.

    Returns:
        A tuple `(pooled, weights)`: `pooled` is `[batch, features]` (`[batch,
        2 * features]` with `statistics`), `weights` is `[batch, time]` and
        sums to 1 over the valid steps.

    Example:

    >>> pooling = AttentionPooling(attention_units=8)
    >>> pooled, weights = pooling(ops.ones((2, 5, 4)))
    >>> tuple(pooled.shape), tuple(weights.shape)
    ((2, 4), (2, 5))
    """

    def __init__(
        self,
        attention_units=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        statistics=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.statistics = bool(statistics)
        if attention_units is not None and int(attention_units) < 1:
            raise ValueError(
                f"`attention_units` must be a positive integer, got {attention_units}."
            )
        self.attention_units = attention_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "AttentionPooling needs a known feature size (last axis); "
                f"got input shape {input_shape}."
            )
        units = self.attention_units or features
        self.kernel = self.add_weight(
            name="kernel", shape=(features, units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(units,), initializer=self.bias_initializer
        )
        self.context = self.add_weight(
            name="context", shape=(units,), initializer=self.kernel_initializer
        )

    def call(self, inputs, mask=None):
        hidden = ops.tanh(ops.matmul(inputs, self.kernel) + self.bias)
        scores = ops.tensordot(hidden, self.context, axes=1)  # [batch, time]
        # The softmax runs in float32 under a mixed-precision policy too.
        scores = ops.cast(scores, "float32")
        if mask is None:
            weights = ops.softmax(scores, axis=-1)
        else:
            mask = ops.cast(mask, "bool")
            # A large negative score (not -inf) keeps all-padding rows NaN-free.
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
            weights = ops.softmax(scores, axis=-1)
            weights = weights * ops.cast(mask, weights.dtype)
        expanded = ops.expand_dims(ops.cast(weights, inputs.dtype), -1)
        pooled = ops.sum(expanded * inputs, axis=1)
        if self.statistics:
            # The variance in float32; the floor keeps sqrt's gradient finite
            # for a constant (or single-step) sequence.
            mean = ops.cast(pooled, "float32")
            second = ops.sum(
                ops.expand_dims(weights, -1) * ops.square(ops.cast(inputs, "float32")), axis=1
            )
            deviation = ops.sqrt(ops.maximum(second - ops.square(mean), 0.0) + 1e-6)
            pooled = ops.concatenate([pooled, ops.cast(deviation, pooled.dtype)], axis=-1)
        return pooled, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        features = input_shape[-1]
        if self.statistics and features is not None:
            features = 2 * features
        return (input_shape[0], features), (input_shape[0], input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention_units": self.attention_units,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "statistics": self.statistics,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="smcn_tf")
class Fusion(keras.layers.Layer):
    """Shape-preserving fusion of same-shaped tensors: SMCN's Φ1 (eq. 12) and Φ2 (eq. 14).

    The paper uses addition; the others are there for experiments. To plug in
    your own Φ, pass any serializable layer that maps a list of same-shaped
    tensors to one tensor of that shape to `build_smcn(first_fusion=...)`.

    Masking: the output takes the mask of the first input, so a sequence
    fusion (Φ1) stays masked for the attention after it.

    Args:
        method: one of `"add"`, `"average"`, `"maximum"`, `"multiply"`.

    Call arguments:
        inputs: a list of two or more tensors of one shape.

    Returns:
        One tensor of that shape.

    Example:

    >>> Fusion("add")([ops.ones((2, 3)), ops.ones((2, 3))]).shape
    TensorShape([2, 3])
    """

    METHODS = ("add", "average", "maximum", "multiply")

    def __init__(self, method="add", **kwargs):
        super().__init__(**kwargs)
        if method not in self.METHODS:
            raise ValueError(
                f"Unknown fusion method {method!r}; expected one of {self.METHODS}."
            )
        self.method = method
        self.supports_masking = True

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 1:
            raise ValueError("Fusion expects a list of tensors.")
        result = inputs[0]
        for tensor in inputs[1:]:
            if self.method in ("add", "average"):
                result = result + tensor
            elif self.method == "maximum":
                result = ops.maximum(result, tensor)
            else:
                result = result * tensor
        if self.method == "average":
            result = result / float(len(inputs))
        return result

    def compute_mask(self, inputs, mask=None):
        if mask is None or not isinstance(mask, (list, tuple)):
            return mask
        return mask[0]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"method": self.method})
        return config


@keras.saving.register_keras_serializable(package="smcn_tf")
class SpecAugment(keras.layers.Layer):
    """SpecAugment-style time and frequency masking of frames, in training only.

    In training, each utterance gets `time_masks` spans of `0..time_mask_frames`
    consecutive frames and `frequency_masks` spans of `0..frequency_mask_bands`
    consecutive Mel bands (Park et al., 2019), widths and positions drawn per
    utterance. A masked value is replaced by the utterance's own mean of that
    feature over its valid frames, so the masks remove information without
    adding a level the data never has. Time masks start inside the valid
    frames; padded frames are never changed and never counted.

    The frame layout of `smcn_tf.features.audio.LogMelFeatures` is
    `[log-Mel, delta, delta-delta]`, `feature_blocks` blocks of equal size:
    a frequency mask covers the same bands in every block.

    At inference (`training` False or absent) the layer is the identity and
    runs no op. It has no weights; its random state is a `SeedGenerator`
    (saved with the model's other random states, so exact resume holds).

    Args:
        time_masks: time masks per utterance.
        time_mask_frames: the widest time mask, in frames.
        frequency_masks: frequency masks per utterance.
        frequency_mask_bands: the widest frequency mask, in bands.
        feature_blocks: how many equal blocks a frame holds (3: static, delta,
            delta-delta).
        seed: an optional integer seed.

    Call arguments:
        inputs: float `[batch, time, features]`.
        mask: bool `[batch, time]`, True at valid frames (needed in training).
        training: whether to mask.

    Returns:
        A tensor like `inputs`.

    Example:

    >>> layer = SpecAugment(time_masks=2, time_mask_frames=3, frequency_masks=1,
    ...                     frequency_mask_bands=2, seed=0)
    >>> frames = ops.ones((2, 10, 6))
    >>> bool(ops.all(layer(frames) == frames))  # inference: the identity
    True
    """

    def __init__(
        self,
        time_masks=0,
        time_mask_frames=0,
        frequency_masks=0,
        frequency_mask_bands=0,
        feature_blocks=3,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for field, value, minimum in (
            ("time_masks", time_masks, 0),
            ("time_mask_frames", time_mask_frames, 0),
            ("frequency_masks", frequency_masks, 0),
            ("frequency_mask_bands", frequency_mask_bands, 0),
            ("feature_blocks", feature_blocks, 1),
        ):
            integer_at_least(value, f"`{field}`", minimum)
        self.time_masks = int(time_masks)
        self.time_mask_frames = int(time_mask_frames)
        self.frequency_masks = int(frequency_masks)
        self.frequency_mask_bands = int(frequency_mask_bands)
        self.feature_blocks = int(feature_blocks)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None or features % self.feature_blocks:
            raise ValueError(
                f"SpecAugment needs a frame size divisible by feature_blocks="
                f"{self.feature_blocks}; got input shape {input_shape}."
            )

    def _random_spans(self, count, widest, extent, size):
        """A float `[batch, size]`: 1 where one of `count` random spans covers a position.

        Each span's width is uniform in `0..widest` and it lies inside the
        first `extent[b]` positions of row `b`.
        """
        batch = ops.shape(extent)[0]
        extent = ops.cast(extent, "float32")
        steps = ops.cast(ops.arange(size), "float32")[None, :]
        covered = ops.zeros((batch, size), "float32")
        for _ in range(count):
            width = ops.floor(
                keras.random.uniform((batch,), seed=self.seed_generator) * (widest + 1)
            )
            width = ops.minimum(width, extent)
            start = ops.floor(
                keras.random.uniform((batch,), seed=self.seed_generator)
                * (extent - width + 1)
            )
            inside = ops.logical_and(
                steps >= start[:, None], steps < (start + width)[:, None]
            )
            covered = ops.maximum(covered, ops.cast(inside, "float32"))
        return covered

    def call(self, inputs, mask=None, training=None):
        if not training or not (
            (self.time_masks and self.time_mask_frames)
            or (self.frequency_masks and self.frequency_mask_bands)
        ):
            return inputs
        shape = ops.shape(inputs)
        batch, frames, features = shape[0], shape[1], inputs.shape[-1]
        if mask is None:
            valid = ops.ones((batch, frames), "float32")
        else:
            valid = ops.cast(mask, "float32")
        values = ops.cast(inputs, "float32")
        lengths = ops.sum(valid, axis=1)
        mean = ops.sum(values * valid[:, :, None], axis=1) / ops.maximum(lengths, 1.0)[:, None]
        drop = ops.zeros((batch, frames, features), "float32")
        if self.time_masks and self.time_mask_frames:
            in_time = self._random_spans(
                self.time_masks, self.time_mask_frames, lengths, frames
            )
            drop = ops.maximum(drop, in_time[:, :, None])
        if self.frequency_masks and self.frequency_mask_bands:
            bands = features // self.feature_blocks
            in_bands = self._random_spans(
                self.frequency_masks,
                self.frequency_mask_bands,
                ops.full((batch,), bands, "float32"),
                bands,
            )
            in_features = ops.tile(in_bands, (1, self.feature_blocks))
            drop = ops.maximum(drop, in_features[:, None, :])
        drop = drop * valid[:, :, None]  # padded frames stay as they are
        masked = values * (1.0 - drop) + mean[:, None, :] * drop
        return ops.cast(masked, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "time_masks": self.time_masks,
                "time_mask_frames": self.time_mask_frames,
                "frequency_masks": self.frequency_masks,
                "frequency_mask_bands": self.frequency_mask_bands,
                "feature_blocks": self.feature_blocks,
                "seed": self.seed,
            }
        )
        return config
