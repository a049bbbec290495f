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
import json
import os
import typing

import keras
import tensorflow as tf
from keras import ops

from smcn_tf.contract.signatures import MODALITIES
from smcn_tf.model.layers import AttentionPooling, Fusion, LengthMask, SpecAugment
# Importing the metrics also registers them, for `load_model` of compiled models.
from smcn_tf.model.metrics import emotion_metrics
from smcn_tf.model.normalization import AUDIO_NORMALIZATIONS, AudioNormalization
from smcn_tf.model.normalization import adapt_audio_normalization  # noqa: F401  (re-exported)
from smcn_tf.model.recurrent import FusedBidirectionalGRU

RECURRENT_CORES = ("fused", "keras")
# attention: the paper's pooling (eq. 4-6); statistics: attentive statistics
# pooling (weighted mean and standard deviation).
POOLINGS = ("attention", "statistics")
# The SMCNModel arguments that only change training: a serving copy turns
# them off (`inference_config`).
TRAINING_ONLY_ARGUMENTS = {
    "time_masks": 0, "time_mask_frames": 0, "frequency_masks": 0, "frequency_mask_bands": 0,
}


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

# The paper's learning rate (section 3.3), `SMCNModel.compile`'s default.
DEFAULT_LEARNING_RATE = 1e-4

CROSS_ENTROPY = "cross_entropy"
CALIBRATION = "calibration"


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One term of eq. 17, as data.

    Args:
        name: the logged name (`emotion_loss`, `audio_loss`, ...).
        output_key: the model output the term scores.
        kind: `"cross_entropy"` (against the labels, eq. 8 and 16) or
            `"calibration"` (the MSE of eq. 11 between `output_key`, Fc^i,
            and `target_key`, F^j).
        target_key: for `"calibration"`, the output the calibration learns.
    """

    name: str
    output_key: str
    kind: str
    target_key: typing.Optional[str] = None


def _other(modality):
    return "text" if modality == "audio" else "audio"


def loss_terms_for(spec):
    """The terms of eq. 17 that a `Variant` trains, in logging order."""
    terms = []
    if spec.final_features:
        terms.append(LossTerm("emotion_loss", "probabilities", CROSS_ENTROPY))
    if spec.unimodal_heads:
        for modality in spec.modalities:
            # A unimodal variant's own head is its `probabilities` output.
            key = "probabilities" if len(spec.modalities) == 1 else f"{modality}_probabilities"
            terms.append(LossTerm(f"{modality}_loss", key, CROSS_ENTROPY))
    if spec.calibration:
        for modality in spec.modalities:
            # Loss_ij = MSE(F^j, Fc^i): Fc of modality i learns F of the other.
            terms.append(
                LossTerm(
                    f"{modality}_calibration_loss",
                    f"{modality}_calibration",
                    CALIBRATION,
                    target_key=f"{_other(modality)}_semantic",
                )
            )
    return tuple(terms)


# Every term's name, as the full model logs them.
LOSS_TERMS = tuple(term.name for term in loss_terms_for(VARIANTS["smcn"]))


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


def _check_arguments(
    variant, num_classes, audio_dim, text_dim, hidden_units, head_units, dropout,
    recurrent_core, audio_normalization, class_names, pooling="attention",
    recurrent_dropout=0.0,
):
    """Validate `SMCNModel`'s arguments; returns the class names as strings."""
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
    if not 0.0 <= float(recurrent_dropout) < 1.0:
        raise ValueError(f"`recurrent_dropout` must be in [0, 1), got {recurrent_dropout}.")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` has {len(class_names)} names but "
                f"`num_classes` is {num_classes}."
            )
    return class_names


def _spec_augment_settings(time_masks, time_mask_frames, frequency_masks, frequency_mask_bands):
    """`SpecAugment`'s arguments, or None when no mask would ever be drawn."""
    if not ((time_masks and time_mask_frames) or (frequency_masks and frequency_mask_bands)):
        return None
    return dict(
        time_masks=time_masks,
        time_mask_frames=time_mask_frames,
        frequency_masks=frequency_masks,
        frequency_mask_bands=frequency_mask_bands,
    )


def _graph_inputs(dims):
    """The four `keras.Input`s by name, from each modality's feature size.

    Every variant takes all four, so one dataset or signature feeds any of
    them; a unimodal variant ignores the other modality.
    """
    inputs = {}
    for modality in MODALITIES:
        inputs[f"{modality}_features"] = keras.Input(
            (None, dims[modality]), name=f"{modality}_features"
        )
        inputs[f"{modality}_length"] = keras.Input((), dtype="int32", name=f"{modality}_length")
    return inputs


def _modality_layers(
    modality, spec, *, num_classes, hidden_units, attention_units, head_units,
    head_activation, first_fusion, dropout, use_cudnn, recurrent_core,
    audio_normalization, pooling="attention", recurrent_dropout=0.0,
    spec_augment=None,
):
    """The layers of one modality's branch, by role (absent roles are None).

    The names are part of the model's interface (TensorBoard, tests and
    `convert_recurrent_core` look layers up by name) and of its saved files.
    """
    branches = ("intra", "calibration") if spec.calibration else ("intra",)
    layers = dict(
        mask=LengthMask(name=f"{modality}_mask"),
        normalization=None,
        spec_augment=None,
        recurrent=None,
        recurrent_dropout=None,
        calibration_attention=None,
        first_fusion=None,
        interaction_attention=None,
        dropout=None,
        head_hidden=None,
        head=None,
    )
    if modality == "audio" and audio_normalization != "none":
        layers["normalization"] = AudioNormalization(
            audio_normalization, name="audio_normalization"
        )
    if modality == "audio" and spec_augment:
        layers["spec_augment"] = SpecAugment(**spec_augment, name="audio_spec_augment")
    if recurrent_core == "fused":
        # Both BiGRUs read the same input: one projection, one loop a direction.
        layers["recurrent"] = FusedBidirectionalGRU(
            hidden_units, branches=branches, use_cudnn=use_cudnn, name=f"{modality}_gru"
        )
    else:
        layers["recurrent"] = [
            keras.layers.Bidirectional(
                keras.layers.GRU(hidden_units, return_sequences=True, use_cudnn=use_cudnn),
                name=f"{modality}_{branch}_gru",
            )
            for branch in branches
        ]
    if recurrent_dropout:
        layers["recurrent_dropout"] = keras.layers.Dropout(
            recurrent_dropout, name=f"{modality}_recurrent_dropout"
        )
    statistics = pooling == "statistics"
    layers["intra_attention"] = AttentionPooling(
        attention_units, statistics=statistics, name=f"{modality}_intra_attention"
    )
    if spec.calibration:
        layers["calibration_attention"] = AttentionPooling(
            attention_units, statistics=statistics, name=f"{modality}_calibration_attention"
        )
        if "interaction" in spec.final_features:
            layers["first_fusion"] = _make_fusion(first_fusion, f"{modality}_first_fusion")
            layers["interaction_attention"] = AttentionPooling(
                attention_units, statistics=statistics,
                name=f"{modality}_interaction_attention",
            )
    if spec.unimodal_heads:
        if dropout:
            layers["dropout"] = keras.layers.Dropout(dropout, name=f"{modality}_dropout")
        layers["head_hidden"] = keras.layers.Dense(
            head_units, activation=head_activation, name=f"{modality}_head_hidden"
        )
        layers["head"] = keras.layers.Dense(
            num_classes,
            activation="softmax",
            dtype="float32",  # softmax and loss in float32 under mixed precision
            name=f"{modality}_head",
        )
    return layers


def _modality_branch(modality, layers, features, length):
    """One modality's graph: mask → normalisation → BiGRUs → attentions → head.

    Returns:
        `(features, weights, outputs)`: the utterance-level features by kind
        (`"semantic"` F^i, `"calibration"` Fc^i, `"interaction"` I1'^i, those
        the variant has), the attention weights by the same kinds, and the
        model outputs of this branch (`{modality}_calibration`,
        `{modality}_semantic`, `{modality}_probabilities`).
    """
    pooled, weights, outputs = {}, {}, {}
    mask = layers["mask"]((features, length))
    if layers["normalization"] is not None:
        # Standardised over valid frames only; padded frames become 0.
        features = layers["normalization"](features, mask=mask)
    if layers["spec_augment"] is not None:
        # Training only (the identity at inference); padded frames untouched.
        features = layers["spec_augment"](features, mask=mask)
    if isinstance(layers["recurrent"], list):  # recurrent_core="keras"
        hidden_by_branch = [gru(features, mask=mask) for gru in layers["recurrent"]]
    else:
        hidden_by_branch = layers["recurrent"](features, mask=mask)
    if layers["recurrent_dropout"] is not None:
        hidden_by_branch = [layers["recurrent_dropout"](hidden) for hidden in hidden_by_branch]
    hidden = hidden_by_branch[0]

    # Intra-modal feature learning, eq. 1-3.
    pooled["semantic"], weights["semantic"] = layers["intra_attention"](hidden, mask=mask)
    if layers["calibration_attention"] is not None:
        # Inter-modal calibration learning, eq. 9-10.
        hidden_calibration = hidden_by_branch[1]
        pooled["calibration"], weights["calibration"] = layers["calibration_attention"](
            hidden_calibration, mask=mask
        )
        outputs[f"{modality}_calibration"] = pooled["calibration"]
        if layers["interaction_attention"] is not None:
            # Indirect interaction, first (temporal) scale, eq. 12-13.
            first = layers["first_fusion"]([hidden, hidden_calibration])
            pooled["interaction"], weights["interaction"] = layers["interaction_attention"](
                first, mask=mask
            )
    outputs[f"{modality}_semantic"] = pooled["semantic"]
    if layers["head"] is not None:
        # The unimodal head p^i, eq. 7.
        head = pooled["semantic"]
        if layers["dropout"] is not None:
            head = layers["dropout"](head)
        head = layers["head_hidden"](head)
        outputs[f"{modality}_probabilities"] = layers["head"](head)
    return pooled, weights, outputs


def _head_layers(spec, *, num_classes, second_fusion, dropout):
    """The final head's layers: Φ2 per modality, the joint features, the emotion head.

    None for the unimodal variants, whose unimodal head is the output.
    """
    if not spec.final_features:
        return None
    return dict(
        second_fusion={
            modality: _make_fusion(second_fusion, f"{modality}_second_fusion")
            for modality in spec.modalities
        }
        if len(spec.final_features) > 1
        else None,
        joint=keras.layers.Concatenate(name="joint_features"),
        dropout=keras.layers.Dropout(dropout, name="joint_dropout") if dropout else None,
        head=keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="emotion_head"
        ),
    )


def _final_head(spec, layers, branches):
    """Φ2 fusion (eq. 14), joint features and the emotion head (eq. 15-16).

    Args:
        spec: the `Variant`.
        layers: from `_head_layers`.
        branches: per modality, what `_modality_branch` returned.

    Returns:
        The model's output dict: every branch's outputs, `probabilities`
        and, per modality, the attention weights of the features the final
        head reads (`{modality}_attention`).
    """
    outputs = {}
    for modality in spec.modalities:
        outputs.update(branches[modality][2])
    if layers is not None:
        fused = []
        for modality in spec.modalities:
            pooled = branches[modality][0]
            parts = [pooled[kind] for kind in spec.final_features]
            if len(parts) == 1:
                fused.append(parts[0])
            else:
                # Second interaction at utterance level, eq. 14.
                fused.append(layers["second_fusion"][modality](parts))
        joint = layers["joint"](fused)
        if layers["dropout"] is not None:
            joint = layers["dropout"](joint)
        outputs["probabilities"] = layers["head"](joint)
        explained = spec.final_features[0]
    else:
        only = spec.modalities[0]
        outputs["probabilities"] = outputs.pop(f"{only}_probabilities")
        explained = "semantic"
    for modality in spec.modalities:
        outputs[f"{modality}_attention"] = branches[modality][1][explained]
    return outputs


@keras.saving.register_keras_serializable(package="smcn_tf")
class SMCNModel(keras.Model):
    """Self-guided Modality Calibration Network (Hou et al., ICASSP 2022).

    A functional model whose config is its hyper-parameters, so that
    `from_config` rebuilds the same graph, in the shape of keras-hub's
    backbones: the layers, then the functional graph (one branch per
    modality, `_modality_branch`, then the final head, `_final_head`), then
    the config. Build it with `build_smcn`, or from a
    `smcn_tf.config.ModelConfig` with `SMCNModel.from_model_config`.
    `compile()` defaults to the paper's Adam (1e-4) and UA / WA / weighted F1.

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
        pooling: `"attention"` (default: the paper's attention pooling, eq.
            4-6) or `"statistics"` (attentive statistics pooling: every
            attention also pools the weighted standard deviation, so F^i,
            Fc^i and I1'^i are twice as wide).
        recurrent_dropout: dropout rate on the BiGRU outputs (every branch),
            in training only.
        time_masks, time_mask_frames, frequency_masks, frequency_mask_bands:
            SpecAugment on the audio frames, in training only (layer
            `"audio_spec_augment"`, see `smcn_tf.model.layers.SpecAugment`);
            no layer when both counts are 0 (default).
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
        pooling="attention",
        recurrent_dropout=0.0,
        time_masks=0,
        time_mask_frames=0,
        frequency_masks=0,
        frequency_mask_bands=0,
        class_names=None,
        **kwargs,
    ):
        class_names = _check_arguments(
            variant, num_classes, audio_dim, text_dim, hidden_units, head_units,
            dropout, recurrent_core, audio_normalization, class_names, pooling,
            recurrent_dropout,
        )
        spec = VARIANTS[variant]
        attention_units = attention_units or 2 * hidden_units
        spec_augment = _spec_augment_settings(
            time_masks, time_mask_frames, frequency_masks, frequency_mask_bands
        )

        # === Layers ===
        branch_layers = {
            modality: _modality_layers(
                modality, spec, num_classes=num_classes, hidden_units=hidden_units,
                attention_units=attention_units, head_units=head_units,
                head_activation=head_activation, first_fusion=first_fusion,
                dropout=dropout, use_cudnn=use_cudnn, recurrent_core=recurrent_core,
                audio_normalization=audio_normalization, pooling=pooling,
                recurrent_dropout=recurrent_dropout, spec_augment=spec_augment,
            )
            for modality in spec.modalities
        }
        head_layers = _head_layers(
            spec, num_classes=num_classes, second_fusion=second_fusion, dropout=dropout
        )

        # === Functional graph ===
        inputs = _graph_inputs({"audio": audio_dim, "text": text_dim})
        branches = {
            modality: _modality_branch(
                modality, branch_layers[modality], inputs[f"{modality}_features"],
                inputs[f"{modality}_length"],
            )
            for modality in spec.modalities
        }
        outputs = _final_head(spec, head_layers, branches)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self._set_hyperparameters(
            spec, variant=variant, num_classes=num_classes, audio_dim=audio_dim,
            text_dim=text_dim, hidden_units=hidden_units, attention_units=attention_units,
            head_units=head_units, head_activation=head_activation,
            first_fusion=first_fusion, second_fusion=second_fusion,
            stop_gradient_target=stop_gradient_target, dropout=dropout,
            use_cudnn=use_cudnn, recurrent_core=recurrent_core,
            audio_normalization=audio_normalization, pooling=pooling,
            recurrent_dropout=recurrent_dropout, time_masks=time_masks,
            time_mask_frames=time_mask_frames, frequency_masks=frequency_masks,
            frequency_mask_bands=frequency_mask_bands, class_names=class_names,
        )

    def _set_hyperparameters(self, spec, **hyperparameters):
        """Keep the constructor's arguments and set up the loss terms.

        Every keyword becomes the attribute of the same name, which
        `get_config` reads back.
        """
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        # Serialised now, not in `get_config`: inside Keras' saving scope a
        # layer's dtype policy, shared with the model's, would be written as a
        # shared object, and the config would not round-trip as it is. Kept
        # as JSON text, which Keras' attribute tracking leaves alone.
        self._fusion_configs = json.dumps(
            {
                "first_fusion": _serialize_fusion(hyperparameters["first_fusion"]),
                "second_fusion": _serialize_fusion(hyperparameters["second_fusion"]),
            }
        )
        self.modalities = spec.modalities
        self.loss_terms = loss_terms_for(spec)
        # One Mean per loss term, so fit/evaluate/TensorBoard show each term.
        self.loss_term_trackers = [
            keras.metrics.Mean(name=term.name) for term in self.loss_terms
        ]
        self._set_label_smoothing(0.0)  # `compile` may set another

    @classmethod
    def from_model_config(
        cls, model_config, *, num_classes, audio_dim, text_dim, class_names=None,
        use_cudnn="auto", **kwargs,
    ):
        """An `SMCNModel` from a `smcn_tf.config.ModelConfig` and the data's shapes.

        Every field of the `ModelConfig` is a constructor argument, so a new
        hyper-parameter is added to `ModelConfig` and `SMCNModel` only.

        Args:
            model_config: a `ModelConfig` (or a dict of its fields).
            num_classes: number of emotion classes.
            audio_dim: size of an audio frame.
            text_dim: size of a token vector.
            class_names: optional class names.
            use_cudnn: passed to the GRUs.
            **kwargs: more `SMCNModel` arguments (e.g. `name`).

        Returns:
            An uncompiled `SMCNModel`.
        """
        if dataclasses.is_dataclass(model_config):
            model_config = dataclasses.asdict(model_config)
        return cls(
            **dict(model_config),
            num_classes=num_classes,
            audio_dim=audio_dim,
            text_dim=text_dim,
            class_names=class_names,
            use_cudnn=use_cudnn,
            **kwargs,
        )

    def compile(
        self,
        optimizer="auto",
        loss=None,
        loss_weights=None,
        metrics="auto",
        *,
        learning_rate=None,
        label_smoothing=0.0,
        **kwargs,
    ):
        """`keras.Model.compile` with the paper's defaults.

        The loss is eq. 17, built in (`compute_loss`); `loss` is accepted as
        Keras accepts it. Every other `keras.Model.compile` argument
        (`jit_compile`, `steps_per_execution`, ...) passes through.

        Args:
            optimizer: `"auto"` (default): Adam at `learning_rate`; or any
                optimizer Keras accepts.
            loss: as for `keras.Model.compile`.
            loss_weights: as for `keras.Model.compile`.
            metrics: `"auto"` (default): UA, WA and weighted F1
                (`metrics.emotion_metrics(num_classes)`) on the final
                prediction; None for no metric; or a list Keras accepts.
            learning_rate: Adam's rate for `optimizer="auto"` (default
                `DEFAULT_LEARNING_RATE`, 1e-4 as in the paper).
            label_smoothing: label smoothing of every cross-entropy term of
                eq. 17 (default 0: none, as in the paper).
            **kwargs: the other `keras.Model.compile` arguments.
        """
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing}.")
        self._set_label_smoothing(label_smoothing)
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(
                learning_rate=DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
            )
        elif learning_rate is not None:
            raise ValueError(
                "`learning_rate` sets the default optimizer's rate; with an explicit "
                "`optimizer`, set the rate on it instead."
            )
        if isinstance(metrics, str) and metrics == "auto":
            metrics = emotion_metrics(self.num_classes)
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics,
            **kwargs,
        )

    def compile_from_config(self, config):
        # Keras skips compile() on load when a model overrides it; this one
        # only adds defaults, so a saved model recompiles with its saved
        # optimizer and metrics, as `keras.Model.compile_from_config` does.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            # Create optimizer variables.
            self.optimizer.build(self.trainable_variables)

    def _set_label_smoothing(self, label_smoothing):
        self.label_smoothing = float(label_smoothing)
        if self.label_smoothing:
            self._cross_entropy = keras.losses.CategoricalCrossentropy(
                label_smoothing=self.label_smoothing
            )
        else:  # the paper's loss, as it always was computed
            self._cross_entropy = keras.losses.SparseCategoricalCrossentropy()

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
            if term.kind == CROSS_ENTROPY:
                targets = y
                if self.label_smoothing:  # smoothing needs one-hot targets
                    targets = ops.one_hot(
                        ops.reshape(ops.cast(y, "int32"), (-1,)), self.num_classes
                    )
                terms[term.name] = self._cross_entropy(
                    targets, y_pred[term.output_key], sample_weight
                )
                continue
            # Loss_ij = MSE(F^j, Fc^i), in float32 also when the features are float16.
            target = ops.cast(y_pred[term.target_key], "float32")
            if self.stop_gradient_target:
                target = ops.stop_gradient(target)
            calibration = ops.cast(y_pred[term.output_key], "float32")
            error = ops.mean(ops.square(target - calibration), axis=-1)
            if sample_weight is not None:
                weights = ops.cast(ops.reshape(sample_weight, (-1,)), error.dtype)
                terms[term.name] = ops.sum(error * weights) / ops.maximum(
                    ops.sum(weights), 1e-12
                )
            else:
                terms[term.name] = ops.mean(error)
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
            if replicas > 1 and term.kind == CALIBRATION:
                terms[term.name] = terms[term.name] / replicas
        for tracker in self.loss_term_trackers:
            tracker.update_state(terms[tracker.name] * replicas)
        total = ops.sum(ops.stack([terms[term.name] for term in self.loss_terms]))
        for loss in self.losses:  # regularizers, if a user adds any
            total = total + loss
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Compiled metrics score the final prediction only.
        return super().compute_metrics(x, y, y_pred["probabilities"], sample_weight)

    def get_config(self):
        # Like keras-hub backbones: the config is the hyper-parameters. The
        # base config gives name and trainable; its `dtype` is left out, as
        # in every saved file: the layers take the policy they are built
        # under (`dtype_policy`), and a float32 rebuild (`serving_copy`,
        # evaluation) must not inherit a mixed policy at the model level.
        config = super().get_config()
        config.pop("dtype", None)
        fusions = json.loads(self._fusion_configs)
        config.update(
            {
                "variant": self.variant,
                "num_classes": self.num_classes,
                "audio_dim": self.audio_dim,
                "text_dim": self.text_dim,
                "hidden_units": self.hidden_units,
                "attention_units": self.attention_units,
                "head_units": self.head_units,
                "head_activation": self.head_activation,
                "first_fusion": fusions["first_fusion"],
                "second_fusion": fusions["second_fusion"],
                "stop_gradient_target": self.stop_gradient_target,
                "dropout": self.dropout,
                "use_cudnn": self.use_cudnn,
                "recurrent_core": self.recurrent_core,
                "audio_normalization": self.audio_normalization,
                "pooling": self.pooling,
                "recurrent_dropout": self.recurrent_dropout,
                "time_masks": self.time_masks,
                "time_mask_frames": self.time_mask_frames,
                "frequency_masks": self.frequency_masks,
                "frequency_mask_bands": self.frequency_mask_bands,
                "class_names": self.class_names,
            }
        )
        return config

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

    The file also records the compiled metrics, registered by this module's
    import of `smcn_tf.model.metrics`.

    Args:
        path: a `model.keras` file.
        compile: restore the optimizer and metrics too. Inference (evaluate,
            export) passes False: a model trained under mixed precision
            saved a loss-scaling optimizer, which a float32 reload would only
            warn about and skip.

    Returns:
        The `SMCNModel`.
    """
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
