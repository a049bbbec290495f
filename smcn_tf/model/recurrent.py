"""SMCN's recurrent core: every BiGRU that reads one input, computed together.

SMCN runs two bidirectional GRUs over each modality's input (the intra-modal
branch H and the calibration branch H1, eq. 1 and 9). `FusedBidirectionalGRU`
holds all of them and computes them in one pass:

- the input projections of every GRU and direction are one matmul over the
  whole sequence, before the time loop (Keras's GRU does one per step);
- the backward directions run on the sequence reversed within each item's
  length, so every direction and branch steps forward together;
- one time loop per direction steps both branches together (the two loops
  are independent, so TensorFlow runs them side by side on two cores), and
  the backward pass is written by hand (`gru_recurrence`).

The arithmetic is that of `keras.layers.GRU(reset_after=True)` (the default)
and the weights have its layout, so the outputs match
`keras.layers.Bidirectional(keras.layers.GRU(...))` within float rounding, and
`set_weights` takes Keras GRU weights unchanged.

On a GPU, with `use_cudnn` left at `"auto"`, each GRU runs as a cuDNN kernel
instead (the masks here are always right-padded, which cuDNN needs). A graph
built with `use_cudnn=False` has only core TensorFlow ops, for TF Serving.
"""

import keras
import tensorflow as tf
from keras import ops

from smcn_tf.private_keras_api import private_function

DIRECTIONS = ("forward", "backward")

# Keras's cuDNN GRU on given weights (what keras.layers.GRU runs on a GPU);
# private, so checked here: see smcn_tf.private_keras_api.
_keras_cudnn_gru = private_function(
    "keras.src.backend.tensorflow.rnn",
    "gru",
    parameters=(
        "inputs", "initial_state", "mask", "kernel", "recurrent_kernel", "bias",
        "activation", "recurrent_activation", "return_sequences",
    ),
)


def gru_recurrence(
    gate_inputs, candidate_inputs, step_mask, recurrent_kernel, candidate_bias
):
    """The time loop of several GRUs (`reset_after=True`), with a hand-written BPTT.

    TensorFlow's automatic gradient of a while loop runs every op's gradient
    inside the loop, step by step. Here everything that does not depend on
    the gradient carried back through time is computed for all steps at
    once, so the backward loop is a few small ops and one matmul per GRU a step, and
    the recurrent kernel's gradient is one matmul over all steps.

    Args:
        gate_inputs: `[time, grus, batch, 2 * units]`: for the update and
            reset gates, `x W + b_input + b_recurrent` (both biases add there).
        candidate_inputs: `[time, grus, batch, units]`: `x W + b_input` of the
            candidate.
        step_mask: bool `[time, 1, batch, 1]`; a False step keeps the state.
        recurrent_kernel: `[grus, units, 3 * units]`, gates in Keras's order
            (z, r, h).
        candidate_bias: `[grus, 1, units]`, the recurrent bias of the
            candidate, which the reset gate scales.

    Returns:
        The states `[time, grus, batch, units]`.
    """
    return _gru_loop(
        gate_inputs, candidate_inputs, step_mask, recurrent_kernel, candidate_bias
    )


def _per_gru_matmul(tensor, kernels):
    # [K, B, n] x K kernels: K small matmuls. oneDNN runs these faster than one
    # batched matmul of this size (15-20 % on the whole step, on a CPU).
    return tf.stack(
        [tf.matmul(part, kernel) for part, kernel in zip(tf.unstack(tensor), kernels)]
    )


@tf.custom_gradient
def _gru_loop(gate_inputs, candidate_inputs, step_mask, kernel, candidate_bias):
    units = kernel.shape[-2]
    kernels = tf.unstack(kernel)

    def step(carry, inputs):
        state = carry[0]
        gate_input, candidate_input, valid = inputs
        recurrent_gates, recurrent_candidate = tf.split(
            _per_gru_matmul(state, kernels), [2 * units, units], axis=-1
        )
        gates = tf.sigmoid(gate_input + recurrent_gates)
        update, reset = tf.split(gates, 2, axis=-1)
        recurrent_candidate = recurrent_candidate + candidate_bias
        candidate = tf.tanh(candidate_input + reset * recurrent_candidate)
        # Keras's exact expression, so results match it to the last bits.
        new_state = update * state + (1 - update) * candidate
        return tf.where(valid, new_state, state), gates, candidate, recurrent_candidate

    shape = tf.shape(candidate_inputs)
    zeros = tf.zeros([shape[1], shape[2], units], candidate_inputs.dtype)
    states, gates, candidate, recurrent_candidate = tf.scan(
        step,
        (gate_inputs, candidate_inputs, step_mask),
        initializer=(zeros, tf.concat([zeros, zeros], axis=-1), zeros, zeros),
    )

    def gradient(upstream):
        return _gru_loop_gradient(
            upstream, step_mask, kernel, shape, zeros,
            (states, gates, candidate, recurrent_candidate),
        )

    return states, gradient


def _step_factors(valid, units, zeros, forward):
    """The chain rule's per-step factors, for all steps at once.

    d pre-activation = d state * factor.

    Args:
        valid: `step_mask` as floats, `[time, 1, batch, 1]`.
        units: GRU units.
        zeros: the initial state, `[grus, batch, units]`.
        forward: as for `_gru_loop_gradient`.

    Returns:
        `(previous, candidate_factor, factors, carried)`: the states before
        each step, the candidate's factor, the factors of the recurrent
        pre-activations `[time, grus, batch, 3, units]` (z, r, h parts) and
        the direct path state -> state.
    """
    states, gates, candidate, recurrent_candidate = forward
    update, reset = gates[..., :units], gates[..., units:]
    previous = tf.concat([zeros[tf.newaxis], states[:-1]], axis=0)
    candidate_factor = valid * (1 - update) * (1 - candidate * candidate)
    factors = tf.stack(
        [
            valid * (previous - candidate) * update * (1 - update),
            candidate_factor * recurrent_candidate * reset * (1 - reset),
            candidate_factor * reset,
        ],
        axis=-2,
    )
    carried = 1 - valid + valid * update
    return previous, candidate_factor, factors, carried


def _gru_loop_gradient(upstream, step_mask, kernel, shape, zeros, forward):
    """`_gru_loop`'s gradient with respect to its five inputs.

    Args:
        upstream: the gradient of the states, `[time, grus, batch, units]`.
        step_mask: as for `gru_recurrence`.
        kernel: the recurrent kernels, `[grus, units, 3 * units]`.
        shape: the shape of the candidate inputs, `[time, grus, batch, units]`.
        zeros: the initial state, `[grus, batch, units]`.
        forward: what the forward loop kept, by step: `(states, gates,
            candidate, recurrent_candidate)`.

    Returns:
        The gradients of `gate_inputs`, `candidate_inputs`, `step_mask`
        (None), the recurrent kernel and the candidate bias.
    """
    units = kernel.shape[-2]
    valid = tf.cast(step_mask, upstream.dtype)
    previous, candidate_factor, factors, carried = _step_factors(valid, units, zeros, forward)
    kernels_transposed = tf.unstack(tf.transpose(kernel, [0, 2, 1]))
    gate_shape = tf.shape(factors)[1:-2]

    def back(state_gradient, inputs):
        output_gradient, step_factors, step_carried = inputs
        total = state_gradient + output_gradient
        recurrent_gradient = tf.reshape(
            total[..., tf.newaxis, :] * step_factors,
            tf.concat([gate_shape, [3 * units]], axis=0),
        )
        return total * step_carried + _per_gru_matmul(
            recurrent_gradient, kernels_transposed
        )

    # What each step passes back to the state before it.
    passed_back = tf.scan(
        back, (upstream, factors, carried), initializer=zeros, reverse=True
    )
    total = upstream + tf.concat([passed_back[1:], zeros[tf.newaxis]], axis=0)
    gate_gradient, recurrent_candidate_gradient = tf.split(
        total[..., tf.newaxis, :] * factors, [2, 1], axis=-2
    )
    gate_gradient = tf.reshape(
        gate_gradient, tf.concat([tf.shape(total)[:-1], [2 * units]], axis=0)
    )
    recurrent_candidate_gradient = recurrent_candidate_gradient[..., 0, :]

    def over_steps(tensor):  # [T, K, B, n] -> [K, T * B, n]
        tensor = tf.transpose(tensor, [1, 0, 2, 3])
        return tf.reshape(tensor, [shape[1], -1, tensor.shape[-1]])

    previous = over_steps(previous)
    kernel_gradient = tf.concat(
        [
            tf.matmul(previous, over_steps(gate_gradient), adjoint_a=True),
            tf.matmul(previous, over_steps(recurrent_candidate_gradient), adjoint_a=True),
        ],
        axis=-1,
    )
    return (
        gate_gradient,
        total * candidate_factor,
        None,
        kernel_gradient,
        tf.reduce_sum(recurrent_candidate_gradient, axis=[0, 2])[:, tf.newaxis],
    )


def reversal_index(lengths, steps):
    """For `reverse_within_lengths`: `[batch, steps]` source steps.

    Step `t < length` of an item reads step `length - 1 - t`; padded steps
    stay where they are.
    """
    positions = tf.range(steps)[tf.newaxis, :]
    lengths = lengths[:, tf.newaxis]
    return tf.where(positions < lengths, lengths - 1 - positions, positions)


@tf.custom_gradient
def reverse_within_lengths(tensor, index):
    """`tf.reverse_sequence` for batch-major `[batch, steps, ...]` as one gather.

    The reversal is its own inverse, so its gradient is the same gather
    (TensorFlow's generic gather gradient would scatter-add instead).

    Args:
        tensor: `[batch, steps, ...]`.
        index: from `reversal_index(lengths, steps)`.

    Returns:
        `tensor` with each item's first `length` steps reversed.
    """

    def gradient(upstream):
        return tf.gather(upstream, index, batch_dims=1), None

    return tf.gather(tensor, index, batch_dims=1), gradient


def _cudnn_available():
    return bool(tf.config.list_logical_devices("GPU"))


@keras.saving.register_keras_serializable(package="smcn_tf")
class FusedBidirectionalGRU(keras.layers.Layer):
    """Several bidirectional GRUs over the same input, computed as one.

    Each branch is a `Bidirectional(GRU(units, return_sequences=True))` with
    its own weights; the branches differ only in their weights. The output of
    a branch is `[forward, backward]` concatenated on the last axis, as
    Keras's `Bidirectional` does.

    Masking: the mask must be right-padded (True for the first `length`
    steps of an item, as `LengthMask` makes). A padded step never changes a
    state, and its output is zero in both directions, as with Keras's
    `Bidirectional(GRU(..., return_sequences=True))`.

    Weights: for each branch, then each direction (forward, backward):
    `kernel` `[input_dim, 3 * units]`, `recurrent_kernel` `[units, 3 * units]`
    and `bias` `[2, 3 * units]`, gates in Keras's order (z, r, h). That is
    the order of `Bidirectional(GRU(...)).get_weights()` for each branch, so
    Keras GRU weights load unchanged.

    Args:
        units: GRU units per direction.
        branches: names of the bidirectional GRUs, e.g.
            `("intra", "calibration")`; the call returns one output per name.
        use_cudnn: `"auto"` (cuDNN when a GPU is visible), `True` (cuDNN,
            fail without it) or `False` (never; CPU-safe graphs).
        kernel_initializer: initializer of the input kernels.
        recurrent_initializer: initializer of the recurrent kernels.
        bias_initializer: initializer of the biases.

    Call arguments:
        inputs: float `[batch, time, features]`.
        mask: optional bool `[batch, time]`, right-padded.

    Returns:
        A tuple with one float `[batch, time, 2 * units]` per branch.

    Example:

    >>> layer = FusedBidirectionalGRU(4, branches=("intra", "calibration"))
    >>> intra, calibration = layer(ops.ones((2, 5, 3)))
    >>> tuple(intra.shape), len(layer.weights)
    ((2, 5, 8), 12)
    """

    def __init__(
        self,
        units,
        branches=("intra",),
        use_cudnn="auto",
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"`units` must be a positive integer, got {units}.")
        branches = tuple(branches)
        if not branches or len(set(branches)) != len(branches):
            raise ValueError(
                f"`branches` must be one or more distinct names, got {branches}."
            )
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                f"`use_cudnn` must be 'auto', True or False, got {use_cudnn!r}."
            )
        self.units = int(units)
        self.branches = branches
        self.use_cudnn = use_cudnn
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "FusedBidirectionalGRU needs a known feature size (last axis); "
                f"got input shape {input_shape}."
            )
        units = self.units
        self.cells = {}
        for branch in self.branches:
            for direction in DIRECTIONS:
                prefix = f"{branch}_{direction}"
                self.cells[(branch, direction)] = (
                    self.add_weight(
                        name=f"{prefix}_kernel",
                        shape=(features, 3 * units),
                        initializer=self.kernel_initializer,
                    ),
                    self.add_weight(
                        name=f"{prefix}_recurrent_kernel",
                        shape=(units, 3 * units),
                        initializer=self.recurrent_initializer,
                    ),
                    self.add_weight(
                        name=f"{prefix}_bias",
                        shape=(2, 3 * units),
                        initializer=self.bias_initializer,
                    ),
                )

    def _use_cudnn(self):
        if self.use_cudnn is False:
            return False
        if _cudnn_available():
            return True
        if self.use_cudnn is True:
            raise ValueError(
                "use_cudnn=True, but no GPU is visible. Pass use_cudnn='auto' "
                "to run the fused CPU loop instead."
            )
        return False

    def call(self, inputs, mask=None):
        dtype = self.compute_dtype
        inputs = ops.cast(inputs, dtype)
        shape = tf.shape(inputs)
        batch, steps = shape[0], shape[1]
        if mask is None:
            lengths = tf.fill([batch], steps)
            mask = tf.ones([batch, steps], dtype="bool")
        else:
            mask = tf.cast(mask, "bool")
            lengths = tf.reduce_sum(tf.cast(mask, "int32"), axis=1)
        if self._use_cudnn():
            return self._cudnn_directions(inputs, mask, lengths)
        return tuple(self._fused_directions(inputs, mask, lengths))

    def _weights(self, branch, direction):
        kernel, recurrent_kernel, bias = self.cells[(branch, direction)]
        dtype = self.compute_dtype
        return (
            ops.cast(kernel, dtype),
            ops.cast(recurrent_kernel, dtype),
            ops.cast(bias, dtype),
        )

    def _fused_directions(self, inputs, mask, lengths):
        """All GRUs, one time loop per direction; returns one `[B, T, 2U]` per branch."""
        units = self.units
        branches = len(self.branches)
        shape = tf.shape(inputs)
        batch, steps = shape[0], shape[1]
        # The backward directions read a copy reversed within each item's
        # length: then every GRU steps forward over its valid steps first,
        # and one mask serves all of them.
        reversal = reversal_index(lengths, steps)
        sequences = tf.reshape(
            tf.stack([inputs, reverse_within_lengths(inputs, reversal)]),
            [2, batch * steps, -1],
        )
        cells = [
            [self._weights(branch, direction) for branch in self.branches]
            for direction in DIRECTIONS
        ]  # [direction][branch] -> (kernel, recurrent_kernel, bias)

        def project(columns, biases):
            # One batched matmul projects the whole sequence for every GRU:
            # [2, B*T, D] x [2, D, N*n] -> per direction [T, N, B, n].
            kernel = tf.stack(
                [tf.concat([k[:, columns] for k, _, _ in row], 1) for row in cells]
            )
            bias = tf.stack(
                [tf.concat([biases(b) for _, _, b in row], 0) for row in cells]
            )
            projected = tf.matmul(sequences, kernel) + bias[:, tf.newaxis]
            width = kernel.shape[-1] // branches
            projected = tf.reshape(projected, [2, batch, steps, branches, width])
            return tf.unstack(tf.transpose(projected, [0, 2, 3, 1, 4]))

        # Gates and candidate apart, so that no big tensor is sliced later;
        # the recurrent bias of z and r adds to the input projection.
        gates = slice(0, 2 * units)
        candidate = slice(2 * units, 3 * units)
        gate_inputs = project(gates, lambda b: b[0, gates] + b[1, gates])
        candidate_inputs = project(candidate, lambda b: b[0, candidate])
        step_mask = tf.transpose(mask)[:, tf.newaxis, :, tf.newaxis]
        # One loop per direction (each runs its branches together): two
        # independent loops, which TensorFlow runs side by side on two cores.
        forward_states, backward_states = [
            tf.transpose(
                gru_recurrence(
                    gate_inputs[index],
                    candidate_inputs[index],
                    step_mask,
                    tf.stack([r for _, r, _ in cells[index]]),
                    tf.stack([b[1:, candidate] for _, _, b in cells[index]]),
                ),
                [2, 0, 1, 3],
            )  # [T, N, B, U] -> [B, T, N, U]
            for index in range(2)
        ]
        backward_states = reverse_within_lengths(backward_states, reversal)
        # Bidirectional(GRU) outputs 0 on padding in both directions.
        valid = tf.cast(mask, forward_states.dtype)[:, :, tf.newaxis, tf.newaxis]
        states = tf.stack([forward_states, backward_states], axis=3) * valid[..., tf.newaxis]
        states = tf.transpose(states, [2, 0, 1, 3, 4])  # [N, B, T, 2, U]
        return tf.unstack(tf.reshape(states, [branches, batch, steps, 2 * units]))

    def _cudnn_directions(self, inputs, mask, lengths):
        """One cuDNN GRU per branch and direction (GPU only); one output per branch."""
        batch = tf.shape(inputs)[0]
        initial = tf.zeros([batch, self.units], dtype=inputs.dtype)
        reversed_inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1, batch_axis=0)
        valid = tf.cast(mask, inputs.dtype)[..., tf.newaxis]
        hidden = {}
        for branch in self.branches:
            for direction in DIRECTIONS:
                kernel, recurrent_kernel, bias = self._weights(branch, direction)
                source = inputs if direction == "forward" else reversed_inputs
                _, output, _ = _keras_cudnn_gru(
                    source,
                    initial,
                    mask,
                    kernel,
                    recurrent_kernel,
                    bias,
                    activation=ops.tanh,
                    recurrent_activation=ops.sigmoid,
                    return_sequences=True,
                )
                if direction == "backward":
                    output = tf.reverse_sequence(
                        output, lengths, seq_axis=1, batch_axis=0
                    )
                hidden[(branch, direction)] = output * valid
        return tuple(
            tf.concat([hidden[(branch, "forward")], hidden[(branch, "backward")]], -1)
            for branch in self.branches
        )

    def compute_mask(self, inputs, mask=None):
        return tuple(mask for _ in self.branches)

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], input_shape[1], 2 * self.units)
        return tuple(shape for _ in self.branches)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "branches": list(self.branches),
                "use_cudnn": self.use_cudnn,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
