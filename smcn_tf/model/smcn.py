"""The SMCN functional graph (paper section 2) and every Table 3 variant, from one builder.

Inputs (every variant takes all four; unimodal ones ignore the other modality):
    audio_features  float32 [batch, frames, audio_dim]   (78 log-Mel + deltas)
    audio_length    int32   [batch]
    text_features   float32 [batch, tokens, text_dim]    (frozen BERT vectors)
    text_length     int32   [batch]

Outputs (a dict; a variant returns the keys it has):
    probabilities              [batch, classes]   the variant's prediction
    audio_probabilities        [batch, classes]   unimodal head p^a (eq. 7)
    text_probabilities         [batch, classes]   unimodal head p^t
    audio_semantic / text_semantic         F^i   (eq. 3)
    audio_calibration / text_calibration   Fc^i  (eq. 10)
    audio_attention / text_attention  [batch, time]  weights of the attention
        that feeds the final head (I1' for SMCN), to explain a prediction.

The loss is eq. 17, computed in `SMCNModel.compute_loss`, and each term is
logged on its own (`emotion_loss`, `audio_loss`, `text_loss`,
`audio_calibration_loss`, `text_calibration_loss`).

Mixed precision: built under a `mixed_float16` or `mixed_bfloat16` Keras
policy, the GRUs, attention projections and dense layers compute in the
reduced type, while every softmax (the attention weights and the three
heads) and every loss term stay in float32; the variables are float32, so
`smcn_tf.export.exporter.serving_copy` rebuilds the same model in float32 for serving.
"""

import contextlib
import dataclasses

import keras
import tensorflow as tf
from keras import ops

from smcn_tf.model.layers import AttentionPooling, Fusion, LengthMask
from smcn_tf.model.normalization import AUDIO_NORMALIZATIONS, AudioNormalization
from smcn_tf.model.normalization import adapt_audio_normalization  # noqa: F401  (re-exported)
from smcn_tf.model.recurrent import FusedBidirectionalGRU

MODALITIES = ("audio", "text")
RECURRENT_CORES = ("fused", "keras")


@dataclasses.dataclass(frozen=True)
class Variant:
    """Which parts of SMCN a Table 3 row keeps.

    Args:
        modalities: the modalities the variant reads.
        calibration: whether the inter-modal calibration branch (H1, Fc,
            Loss_ij) exists.
        unimodal_heads: whether each modality has its own classifier and
            cross-entropy (eq. 7-8).
        final_features: per modality, which utterance-level features are
            fused by Φ2 into I2 for the final head (eq. 14-15):
            `"semantic"` F^i, `"calibration"` Fc^i, `"interaction"` I1'^i.
            Empty for the unimodal variants, whose unimodal head is the output.
    """

    modalities: tuple
    calibration: bool
    unimodal_heads: bool
    final_features: tuple


BOTH = ("audio", "text")
VARIANTS = {
    # Unimodal: BiGRU + attention + two dense layers.
    "audio": Variant(("audio",), False, True, ()),
    "text": Variant(("text",), False, True, ()),
    # Late fusion of F^a and F^t, no calibration and no unimodal losses.
    "cat": Variant(BOTH, False, False, ("semantic",)),
    # The SMCN framework, with the final head reading one kind of feature.
    "intra": Variant(BOTH, True, True, ("semantic",)),
    "inter": Variant(BOTH, True, True, ("calibration",)),
    "first_interaction": Variant(BOTH, True, True, ("interaction",)),
    "second_interaction": Variant(BOTH, True, True, ("semantic", "calibration")),
    "smcn": Variant(BOTH, True, True, ("interaction", "semantic", "calibration")),
}

LOSS_TERMS = (
    "emotion_loss",
    "audio_loss",
    "text_loss",
    "audio_calibration_loss",
    "text_calibration_loss",
)


def _other(modality):
    return "text" if modality == "audio" else "audio"


def _make_fusion(spec, name):
    """A fresh Φ layer from a method name or a layer to copy (never shared)."""
    if isinstance(spec, str):
        return Fusion(spec, name=name)
    if isinstance(spec, dict):
        spec = keras.saving.deserialize_keras_object(spec)
    if isinstance(spec, keras.layers.Layer):
        config = spec.get_config()
        config["name"] = name
        return spec.__class__.from_config(config)
    raise ValueError(
        f"A fusion function must be one of {Fusion.METHODS} or a Keras layer; "
        f"got {spec!r}."
    )


def _serialize_fusion(spec):
    if isinstance(spec, keras.layers.Layer):
        return keras.saving.serialize_keras_object(spec)
    return spec


@keras.saving.register_keras_serializable(package="smcn_tf")
class SMCNModel(keras.Model):
    """Self-guided Modality Calibration Network (Hou et al., ICASSP 2022).

    A functional model whose config is its hyper-parameters, so that
    `from_config` rebuilds the same graph. Build it with `build_smcn`.

    Masking: `audio_length` / `text_length` mask both BiGRUs (the states stop
    at the last valid step in both directions) and every attention pooling,
    so extra padding never changes an output.

    Args:
        variant: a key of `VARIANTS` (`"smcn"` is the full model).
        num_classes: number of emotion classes.
        audio_dim: size of an audio frame (78 in the paper).
        text_dim: size of a token vector (768 for BERT-base, 384 for MiniLM).
        hidden_units: GRU units per direction (`hd`, 128 in the paper).
        attention_units: size of `W` in eq. 4; defaults to `2 * hidden_units`.
        head_units: hidden size of the two-layer unimodal heads (eq. 7).
        head_activation: activation between the two unimodal head layers.
        first_fusion: Φ1 (eq. 12): a `Fusion` method name or a Keras layer.
        second_fusion: Φ2 (eq. 14): likewise.
        stop_gradient_target: if True (default), the calibration target F^j of
            Loss_ij is held fixed, so the MSE trains only the calibration
            branch and unimodal learning is not disturbed.
        dropout: dropout rate on the utterance-level features before each head.
        use_cudnn: passed to the GRUs (`"auto"`, True or False). Export builds
            with False so a served graph never carries cuDNN-only ops.
        recurrent_core: `"fused"` (default) computes both BiGRUs of a
            modality in one `FusedBidirectionalGRU` (one input projection,
            one time loop per direction, a hand-written gradient); `"keras"` uses one
            `Bidirectional(GRU)` layer per branch, the layout of models saved
            before the fused core existed (they load with it). The two give
            the same outputs from the same weights.
        audio_normalization: how the audio frames are standardised before
            the audio BiGRU(s), mask-aware (see
            `smcn_tf.model.normalization.AudioNormalization`, layer
            `"audio_normalization"`): `"none"` (default: no layer, as models
            saved before this option), `"global"` (the training data's
            per-feature mean and variance, non-trainable weights set by
            `adapt_audio_normalization(model, train_dataset)`; the identity
            until then) or `"utterance"` (each utterance's own statistics).
        class_names: optional names of the classes, kept for export.
    """

    def __init__(
        self,
        variant="smcn",
        num_classes=4,
        audio_dim=78,
        text_dim=768,
        hidden_units=128,
        attention_units=None,
        head_units=128,
        head_activation="relu",
        first_fusion="add",
        second_fusion="add",
        stop_gradient_target=True,
        dropout=0.0,
        use_cudnn="auto",
        recurrent_core="fused",
        audio_normalization="none",
        class_names=None,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(
                f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}."
            )
        for field, value in (
            ("num_classes", num_classes),
            ("audio_dim", audio_dim),
            ("text_dim", text_dim),
            ("hidden_units", hidden_units),
            ("head_units", head_units),
        ):
            if int(value) < 1:
                raise ValueError(f"`{field}` must be a positive integer, got {value}.")
        if recurrent_core not in RECURRENT_CORES:
            raise ValueError(
                f"`recurrent_core` must be one of {RECURRENT_CORES}, got "
                f"{recurrent_core!r}."
            )
        if audio_normalization not in AUDIO_NORMALIZATIONS:
            raise ValueError(
                f"`audio_normalization` must be one of {AUDIO_NORMALIZATIONS}, got "
                f"{audio_normalization!r}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != num_classes:
                raise ValueError(
                    f"`class_names` has {len(class_names)} names but "
                    f"`num_classes` is {num_classes}."
                )
        spec = VARIANTS[variant]
        attention_units = attention_units or 2 * hidden_units
        dims = {"audio": audio_dim, "text": text_dim}

        inputs, semantic, calibration, interaction = {}, {}, {}, {}
        attention = {}
        outputs = {}
        # Every variant takes all four inputs, so one dataset or signature
        # feeds any of them; a unimodal variant ignores the other modality.
        for modality in MODALITIES:
            inputs[f"{modality}_features"] = keras.Input(
                (None, dims[modality]), name=f"{modality}_features"
            )
            inputs[f"{modality}_length"] = keras.Input(
                (), dtype="int32", name=f"{modality}_length"
            )
        for modality in spec.modalities:
            features = inputs[f"{modality}_features"]
            length = inputs[f"{modality}_length"]
            mask = LengthMask(name=f"{modality}_mask")((features, length))
            if modality == "audio" and audio_normalization != "none":
                # Standardised over valid frames only; padded frames become 0.
                features = AudioNormalization(
                    audio_normalization, name="audio_normalization"
                )(features, mask=mask)

            branches = ("intra", "calibration") if spec.calibration else ("intra",)
            if recurrent_core == "fused":
                # Both BiGRUs read the same input: one projection, one loop a direction.
                hidden_by_branch = FusedBidirectionalGRU(
                    hidden_units,
                    branches=branches,
                    use_cudnn=use_cudnn,
                    name=f"{modality}_gru",
                )(features, mask=mask)
            else:
                hidden_by_branch = [
                    keras.layers.Bidirectional(
                        keras.layers.GRU(
                            hidden_units, return_sequences=True, use_cudnn=use_cudnn
                        ),
                        name=f"{modality}_{branch}_gru",
                    )(features, mask=mask)
                    for branch in branches
                ]
            hidden = hidden_by_branch[0]

            # Intra-modal feature learning, eq. 1-3.
            semantic[modality], semantic_weights = AttentionPooling(
                attention_units, name=f"{modality}_intra_attention"
            )(hidden, mask=mask)
            attention[(modality, "semantic")] = semantic_weights
            if spec.calibration:
                # Inter-modal calibration learning, eq. 9-10.
                hidden_calibration = hidden_by_branch[1]
                calibration[modality], calibration_weights = AttentionPooling(
                    attention_units, name=f"{modality}_calibration_attention"
                )(hidden_calibration, mask=mask)
                attention[(modality, "calibration")] = calibration_weights
                outputs[f"{modality}_calibration"] = calibration[modality]
                if "interaction" in spec.final_features:
                    # Indirect interaction, first (temporal) scale, eq. 12-13.
                    first = _make_fusion(first_fusion, f"{modality}_first_fusion")(
                        [hidden, hidden_calibration]
                    )
                    interaction[modality], interaction_weights = AttentionPooling(
                        attention_units, name=f"{modality}_interaction_attention"
                    )(first, mask=mask)
                    attention[(modality, "interaction")] = interaction_weights
            outputs[f"{modality}_semantic"] = semantic[modality]
            if spec.unimodal_heads:
                head = semantic[modality]
                if dropout:
                    head = keras.layers.Dropout(dropout, name=f"{modality}_dropout")(head)
                head = keras.layers.Dense(
                    head_units, activation=head_activation, name=f"{modality}_head_hidden"
                )(head)
                outputs[f"{modality}_probabilities"] = keras.layers.Dense(
                    num_classes,
                    activation="softmax",
                    dtype="float32",  # softmax and loss in float32 under mixed precision
                    name=f"{modality}_head",
                )(head)

        if spec.final_features:
            available = {
                "semantic": semantic,
                "calibration": calibration,
                "interaction": interaction,
            }
            fused = []
            for modality in spec.modalities:
                parts = [available[kind][modality] for kind in spec.final_features]
                if len(parts) == 1:
                    fused.append(parts[0])
                else:
                    # Second interaction at utterance level, eq. 14.
                    fused.append(
                        _make_fusion(second_fusion, f"{modality}_second_fusion")(parts)
                    )
            joint = keras.layers.Concatenate(name="joint_features")(fused)
            if dropout:
                joint = keras.layers.Dropout(dropout, name="joint_dropout")(joint)
            outputs["probabilities"] = keras.layers.Dense(
                num_classes, activation="softmax", dtype="float32", name="emotion_head"
            )(joint)
            explained = spec.final_features[0]
        else:
            only = spec.modalities[0]
            outputs["probabilities"] = outputs.pop(f"{only}_probabilities")
            explained = "semantic"
        for modality in spec.modalities:
            outputs[f"{modality}_attention"] = attention[(modality, explained)]

        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.variant = variant
        self.num_classes = num_classes
        self.audio_dim = audio_dim
        self.text_dim = text_dim
        self.hidden_units = hidden_units
        self.attention_units = attention_units
        self.head_units = head_units
        self.head_activation = head_activation
        self.first_fusion = first_fusion
        self.second_fusion = second_fusion
        self.stop_gradient_target = stop_gradient_target
        self.dropout = dropout
        self.use_cudnn = use_cudnn
        self.recurrent_core = recurrent_core
        self.audio_normalization = audio_normalization
        self.class_names = class_names
        self.modalities = spec.modalities
        self.loss_terms = self._active_loss_terms(spec)
        # One Mean per loss term, so fit/evaluate/TensorBoard show each term.
        self.loss_term_trackers = [
            keras.metrics.Mean(name=term) for term in self.loss_terms
        ]
        self._cross_entropy = keras.losses.SparseCategoricalCrossentropy()

    @staticmethod
    def _active_loss_terms(spec):
        terms = []
        if spec.final_features:
            terms.append("emotion_loss")
        if spec.unimodal_heads:
            terms.extend(f"{modality}_loss" for modality in spec.modalities)
        if spec.calibration:
            terms.extend(f"{modality}_calibration_loss" for modality in spec.modalities)
        return tuple(terms)

    def loss_components(self, y, y_pred, sample_weight=None):
        """The terms of eq. 17 for a batch.

        Args:
            y: int class ids `[batch]`.
            y_pred: the model's output dict.
            sample_weight: optional `[batch]` weights (e.g. class weights).

        Returns:
            A dict from term name (see `LOSS_TERMS`) to a scalar tensor.
        """
        terms = {}
        for term in self.loss_terms:
            if term == "emotion_loss":
                probabilities = y_pred["probabilities"]
            elif term.endswith("_calibration_loss"):
                modality = term[: -len("_calibration_loss")]
                # Loss_ij = MSE(F^j, Fc^i): Fc of modality i learns F of the other.
                # In float32, also when the features are float16.
                target = ops.cast(y_pred[f"{_other(modality)}_semantic"], "float32")
                if self.stop_gradient_target:
                    target = ops.stop_gradient(target)
                calibration = ops.cast(y_pred[f"{modality}_calibration"], "float32")
                error = ops.mean(ops.square(target - calibration), axis=-1)
                if sample_weight is not None:
                    weights = ops.cast(ops.reshape(sample_weight, (-1,)), error.dtype)
                    terms[term] = ops.sum(error * weights) / ops.maximum(
                        ops.sum(weights), 1e-12
                    )
                else:
                    terms[term] = ops.mean(error)
                continue
            else:
                modality = term[: -len("_loss")]
                key = (
                    "probabilities"
                    if len(self.modalities) == 1
                    else f"{modality}_probabilities"
                )
                probabilities = y_pred[key]
            terms[term] = self._cross_entropy(y, probabilities, sample_weight)
        return terms

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """Eq. 17: Loss_p + sum over modalities of (Loss_i + Loss_ij).

        Under a tf.distribute strategy with N replicas, each replica's loss is
        divided by N before the gradients are summed across replicas, as
        Keras does with its own losses: the cross-entropies come divided from
        the Keras loss, the calibration MSEs are divided here, and the
        trackers log the undivided terms.
        """
        terms = self.loss_components(y, y_pred, sample_weight)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for term in self.loss_terms:
            if replicas > 1 and term.endswith("_calibration_loss"):
                terms[term] = terms[term] / replicas
        for tracker in self.loss_term_trackers:
            tracker.update_state(terms[tracker.name] * replicas)
        total = ops.sum(ops.stack([terms[term] for term in self.loss_terms]))
        for loss in self.losses:  # regularizers, if a user adds any
            total = total + loss
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Compiled metrics score the final prediction only.
        return super().compute_metrics(x, y, y_pred["probabilities"], sample_weight)

    def get_config(self):
        # Like keras-hub backbones: the config is the hyper-parameters.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "variant": self.variant,
            "num_classes": self.num_classes,
            "audio_dim": self.audio_dim,
            "text_dim": self.text_dim,
            "hidden_units": self.hidden_units,
            "attention_units": self.attention_units,
            "head_units": self.head_units,
            "head_activation": self.head_activation,
            "first_fusion": _serialize_fusion(self.first_fusion),
            "second_fusion": _serialize_fusion(self.second_fusion),
            "stop_gradient_target": self.stop_gradient_target,
            "dropout": self.dropout,
            "use_cudnn": self.use_cudnn,
            "recurrent_core": self.recurrent_core,
            "audio_normalization": self.audio_normalization,
            "class_names": self.class_names,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Models saved before the fused core have no key: they hold one
        # Bidirectional(GRU) layer per branch, so rebuild that layout.
        config.setdefault("recurrent_core", "keras")
        # Models saved before the option have no audio normalisation.
        config.setdefault("audio_normalization", "none")
        return cls(**config)


@contextlib.contextmanager
def dtype_policy(name):
    """Set Keras' global dtype policy to `name` for a block, then restore it.

    Layers take the global policy when they are created, so a model built
    inside the block computes in that policy.

    Args:
        name: `"none"` (leave the policy as it is), `"float32"`,
            `"mixed_float16"` or `"mixed_bfloat16"`.
    """
    previous = keras.config.dtype_policy()
    if name != "none":
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_smcn(variant="smcn", **kwargs):
    """Build SMCN or one of its Table 3 ablations.

    Args:
        variant: `"smcn"` (default) or one of `"audio"`, `"text"`, `"cat"`,
            `"intra"`, `"inter"`, `"first_interaction"`,
            `"second_interaction"`.
        **kwargs: hyper-parameters of `SMCNModel`.

    Returns:
        An uncompiled `SMCNModel`.

    Example:

    >>> model = build_smcn(audio_dim=78, text_dim=768, num_classes=4)
    >>> model.count_params()
    2163980
    """
    return SMCNModel(variant=variant, **kwargs)


def model_inputs(variant):
    """The input names a variant reads, in a stable order."""
    names = []
    for modality in VARIANTS[variant].modalities:
        names += [f"{modality}_features", f"{modality}_length"]
    return names


def load_model(path, compile=True):
    """Load a `.keras` model written by `smcn train`.

    The file also records the compiled metrics, so their module is imported
    first to register them.

    Args:
        path: a `model.keras` file.
        compile: restore the optimizer and metrics too. Inference (evaluate,
            export) passes False: a model trained under mixed precision
            saved a loss-scaling optimizer, which a float32 reload would only
            warn about and skip.

    Returns:
        The `SMCNModel`.
    """
    import os

    from smcn_tf.model import metrics  # noqa: F401  (registers the compiled metrics)

    if not os.path.isfile(path):
        raise ValueError(f"No saved model at {path}.")
    return keras.saving.load_model(path, compile=compile)


def _branch_weights(model, modality):
    """A modality's BiGRU weights, one list of 6 arrays per branch (intra first)."""
    branches = ["intra"] + (["calibration"] if VARIANTS[model.variant].calibration else [])
    if model.recurrent_core == "fused":
        weights = model.get_layer(f"{modality}_gru").get_weights()
        return [weights[6 * index : 6 * index + 6] for index in range(len(branches))]
    return [model.get_layer(f"{modality}_{branch}_gru").get_weights() for branch in branches]


def convert_recurrent_core(model, recurrent_core):
    """The same model and weights with the other recurrent core.

    Both cores hold Keras GRU weights in the same layout, so this is a copy:
    e.g. a model saved before the fused core existed (which loads with
    `recurrent_core="keras"`) moves to the faster fused core, and gives the
    same outputs within float rounding. Every other layer's weights (the
    attention, the heads, a global `audio_normalization`'s mean and
    variance) are copied as they are.

    Args:
        model: an `SMCNModel`.
        recurrent_core: `"fused"` or `"keras"`.

    Returns:
        A new `SMCNModel`.
    """
    config = dict(model.get_config())
    config["recurrent_core"] = recurrent_core
    converted = SMCNModel.from_config(config)
    for modality in VARIANTS[model.variant].modalities:
        branches = _branch_weights(model, modality)
        if recurrent_core == "fused":
            converted.get_layer(f"{modality}_gru").set_weights(sum(branches, []))
        else:
            for branch, weights in zip(("intra", "calibration"), branches):
                converted.get_layer(f"{modality}_{branch}_gru").set_weights(weights)
    recurrent = (FusedBidirectionalGRU, keras.layers.Bidirectional)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, recurrent):
            converted.get_layer(layer.name).set_weights(layer.get_weights())
    return converted
