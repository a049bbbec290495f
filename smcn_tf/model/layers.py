"""SMCN's building blocks: length masks, attention pooling (eq. 4-6) and fusion Φ.

Every layer here is serializable (`package="smcn_tf"`), uses `keras.ops`, and
honours masks, so a padded frame or token never changes a result.
"""

import keras
from keras import ops


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

    Precision: the scores' softmax is computed in float32, and the weights
    are float32, whatever the layer's compute dtype.

    Args:
        attention_units: size of the hidden projection `W h + b`. Defaults to
            the feature size of the input (the paper's `W` is square).
        kernel_initializer: initializer of `W` and `u`.
        bias_initializer: initializer of `b`.

    Call arguments:
        inputs: float `[batch, time, features]`.
        mask: optional bool `[batch, time]`.

    Returns:
        A tuple `(pooled, weights)`: `pooled` is `[batch, features]`,
        `weights` is `[batch, time]` and sums to 1 over the valid steps.

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
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        pooled = ops.sum(ops.expand_dims(ops.cast(weights, inputs.dtype), -1) * inputs, axis=1)
        return pooled, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1]), (input_shape[0], input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention_units": self.attention_units,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
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
