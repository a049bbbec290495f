"""`SMCNServingModule`: the served signatures of an SMCN, traced from the contract.

The signatures' names, inputs and outputs are defined once, in
`smcn_tf.contract.signatures` (`SIGNATURES`): this module traces its
functions with `signature_specs` and answers every output `SIGNATURES`
names, for the raw-input `serving_default` and the precomputed `features`.

`audio_attention` / `text_attention` are the attention weights of the branch
that feeds the head that answered (zeros for a modality that did not);
`frames` are the pooled log-Mel frames and `tokens` the (truncated) tokens.

Checks and missing modalities (`smcn_tf.contract.input_checks`): both
signatures refuse bad values with INVALID_ARGUMENT from `tf.debugging.Assert`
ops that every output depends on (non-finite audio or features, lengths
outside [0, padded size], token ids outside the vocabulary, an attention mask
that is not 0/1 ones-then-zeros or not shaped like `input_ids`), so the stock
TF Serving refuses them too. A row whose audio is missing (fewer than
`min_audio_seconds` of samples; `audio_length` 0) or whose text is missing (no
token besides [CLS] and [SEP]; `text_length` 0) is answered by the other
modality's unimodal head (`audio_probabilities` / `text_probabilities`, eq. 7)
and `modality` says which; a row with neither, or a missing modality a
variant cannot do without (`cat` has no unimodal heads), is refused.

Inside `serving_default`:

- `LogMelFeatures(pooling, max_frames)` turns the waveform into features and
  their lengths (it only reads each item's first `waveform_length` samples).
- Token ids are truncated to `max_tokens`; the real tokens of a row are those
  with `attention_mask != 0` up to and including its first `[SEP]`. The `[SEP]`
  cut matters under TF Serving's `pad_variable_length_inputs`, which pads every
  input of a request with that input's *first element*: `attention_mask` is
  padded with 1 (the `[CLS]` position) and `input_ids` with the `[CLS]` id, so
  the padded positions would otherwise count as real tokens. A row with no
  `[SEP]` keeps its attention mask as is.
- The frozen keras-hub `BertBackbone` of the run's text encoder (its weights
  are saved into the SavedModel) turns ids and mask into token vectors
  (`segment_ids` zeros); vectors past each row's real tokens are zeroed, as
  in the padded features training reads; `text_length` is the number of real
  tokens.

The exported graph is built with `use_cudnn=False`, so a model trained on a
GPU still exports without cuDNN-only ops and loads on a CPU server.
"""

import keras
import tensorflow as tf

from smcn_tf.contract import input_checks
from smcn_tf.contract.input_checks import DEFAULT_MIN_AUDIO_SECONDS, InputRules
from smcn_tf.contract.signatures import FEATURES_SIGNATURE, RAW_SIGNATURE, signature_specs
from smcn_tf.model.smcn import TRAINING_ONLY_ARGUMENTS, VARIANTS, SMCNModel, dtype_policy

def serving_copy(model):
    """The same model and weights, rebuilt in float32 without cuDNN-only kernels.

    A model trained under a mixed-precision policy keeps float32 variables,
    so the copy is exact; TF Serving clients send and receive float32.
    The config carries `audio_normalization` and `set_weights` copies a
    global normalisation's mean and variance (non-trainable weights), so the
    served graph normalises the audio exactly as the trained model does.
    """
    config = dict(model.get_config())
    config["use_cudnn"] = False
    # Training-only layers (SpecAugment) are the identity at inference: left out.
    config.update(TRAINING_ONLY_ARGUMENTS)
    with dtype_policy("float32"):
        copy = SMCNModel.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


class _KerasParts:
    """Holds the Keras objects of a serving module without tracking them.

    A plain object, so `tf.saved_model.save` does not export the Keras layers
    as objects: see `SMCNServingModule`.
    """

    def __init__(self, model, audio_layer, text_backbone, answering_model):
        self.model = model
        self.audio_layer = audio_layer
        self.text_backbone = text_backbone
        self.answering_model = answering_model


def _semantic_attention_outputs(model):
    """The model with the attention weights of F^i (what the unimodal heads read).

    A bimodal variant's `audio_attention` / `text_attention` are those of the
    branch that feeds the fused head; a row answered by a unimodal head is
    explained by that modality's intra-modal (semantic) attention instead.
    The result shares every layer and weight with `model`.
    """
    spec = VARIANTS[model.variant]
    if len(spec.modalities) < 2 or not spec.unimodal_heads:
        return model
    outputs = dict(model.output)
    for modality in spec.modalities:
        layer = model.get_layer(f"{modality}_intra_attention")
        outputs[f"{modality}_semantic_attention"] = layer.output[1]
    return keras.Model(model.input, outputs, name=f"{model.name}_serving")


def input_rules(model, tokenizer=None, vocab_size=None, sample_rate=16000,
                min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS):
    """The `InputRules` of an exported model (what its signatures accept).

    Args:
        model: the `SMCNModel`.
        tokenizer: its text encoder's tokenizer (`None` without text).
        vocab_size: the text encoder's vocabulary size.
        sample_rate: the waveform rate.
        min_audio_seconds: audio shorter than this is treated as missing.
    """
    spec = VARIANTS[model.variant]
    if min_audio_seconds < 0:
        raise ValueError(f"min_audio_seconds must be >= 0, got {min_audio_seconds}.")
    return InputRules(
        modalities=spec.modalities,
        unimodal_heads=spec.modalities if spec.unimodal_heads else (),
        variant=model.variant,
        vocab_size=vocab_size,
        cls_token_id=getattr(tokenizer, "cls_token_id", None),
        separator_token_id=getattr(tokenizer, "sep_token_id", None),
        min_audio_samples=int(round(min_audio_seconds * sample_rate)),
        sample_rate=sample_rate,
    )


def max_waveform_samples(audio_layer):
    """The longest waveform the raw signature accepts, or `None` (no front end / no cap).

    `max_frames` pooled frames read `max_frames x pooling` log-Mel frames of
    `hop` samples (the front end skips the rest: see `LogMelFeatures.call`);
    1 s more covers the last window and the deltas' context. A longer
    waveform only costs memory: the graph refuses it with a message naming
    the limit. 416,000 samples (26 s) at the presets' 500 frames x 5 x 160.
    """
    if audio_layer is None or audio_layer.max_frames is None:
        return None
    return (
        audio_layer.max_frames * audio_layer.pooling * audio_layer.hop_samples
        + audio_layer.sample_rate
    )


class SMCNServingModule(tf.Module):
    """The tf.Module that holds the model, its front end and the serving functions.

    The module tracks the *TensorFlow* variables of the Keras objects, not the
    Keras objects themselves. TF Serving loads a SavedModel with the TF1
    session API, which only initialises the variables that the object graph
    holds as `tf.Variable`s; a Keras 3 variable tracked through its layer is
    saved as a copy (`Variable_N`) that the graph never reads, so the graph's
    own variables would stay uninitialised there (TF2's `tf.saved_model.load`
    hides this). `keras.export.ExportArchive` tracks variables the same way.

    Args:
        model: a trained `SMCNModel`.
        audio_layer: the `LogMelFeatures` layer of the raw signature, or `None`
            for a module with only the `features` signature.
        text_backbone: the frozen `keras_hub.models.BertBackbone`, or `None`
            when the model reads no text.
        max_tokens: the most tokens kept per row (`None`: no truncation).
        separator_token_id: the `[SEP]` id that ends a row's real tokens, or
            `None` to trust `attention_mask` alone.
        rules: the `InputRules` the signatures enforce; by default those of
            the model with `separator_token_id` and no vocabulary bound.
    """

    def __init__(
        self, model, audio_layer=None, text_backbone=None, max_tokens=None,
        separator_token_id=None, rules=None,
    ):
        super().__init__(name="smcn_serving")
        copy = serving_copy(model)
        self._keras = _KerasParts(
            copy, audio_layer, text_backbone, _semantic_attention_outputs(copy)
        )
        self.model_variables = [variable.value for variable in self.model.variables]
        self.text_encoder_variables = (
            [variable.value for variable in text_backbone.variables] if text_backbone else []
        )
        names = self.model.class_names or [
            str(index) for index in range(self.model.num_classes)
        ]
        self.class_names = tf.constant(names, dtype=tf.string)
        if rules is None:
            rules = input_rules(self.model)
            rules.separator_token_id = separator_token_id
        if rules.max_waveform_samples is None:
            rules.max_waveform_samples = max_waveform_samples(audio_layer)
        self.rules = rules
        specs = signature_specs(self.model.audio_dim, self.model.text_dim)
        self.features = tf.function(self._predict_features, input_signature=specs["features"])
        self.max_tokens = max_tokens
        self.separator_token_id = separator_token_id
        if audio_layer is not None:
            self.serving_default = tf.function(
                self._predict_raw, input_signature=specs["serving_default"]
            )

    @property
    def model(self):
        """The served `SMCNModel` (built with `use_cudnn=False`)."""
        return self._keras.model

    @property
    def audio_layer(self):
        """The `LogMelFeatures` front end, or `None`."""
        return self._keras.audio_layer

    @property
    def text_backbone(self):
        """The frozen `BertBackbone`, or `None`."""
        return self._keras.text_backbone

    def _predict_features(self, audio_features, audio_length, text_features, text_length):
        audio_features, audio_length, text_features, text_length = (
            input_checks.graph_checks_features(
                audio_features, audio_length, text_features, text_length
            )
        )
        return self._run(
            FEATURES_SIGNATURE, audio_features, audio_length, text_features,
            text_length, audio_present=audio_length > 0, text_present=text_length > 0,
        )

    def _run(self, signature_key, audio_features, audio_length, text_features, text_length,
             audio_present, text_present):
        # At least one step on each time axis: a zero-length axis (no frames,
        # no tokens) is a missing modality, not a reason for the graph to fail.
        audio_features = _at_least_one_step(audio_features)
        text_features = _at_least_one_step(text_features)
        inputs = {
            "audio_features": audio_features,
            "audio_length": audio_length,
            "text_features": text_features,
            "text_length": text_length,
        }
        outputs = self._keras.answering_model(inputs, training=False)
        return self.answer(outputs, inputs, audio_present, text_present, signature_key)

    def text_inputs(self, input_ids, attention_mask):
        """Token ids, the real-token mask and its lengths, truncated to `max_tokens`."""
        real = tf.not_equal(attention_mask, 0)
        if self.separator_token_id is not None:
            # Cut each row after its first [SEP]: TF Serving's batching pads
            # attention_mask with its first element (1), see the module doc.
            real = tf.logical_and(
                real,
                input_checks.graph_checked_positions(
                    input_ids, attention_mask, self.separator_token_id
                ),
            )
        if self.max_tokens is not None:
            input_ids = input_ids[:, : self.max_tokens]
            real = real[:, : self.max_tokens]
        text_length = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
        return input_ids, real, text_length

    def _predict_raw(self, waveform, waveform_length, input_ids, attention_mask):
        waveform, waveform_length, input_ids, attention_mask = input_checks.graph_checks_raw(
            self.rules, waveform, waveform_length, input_ids, attention_mask
        )
        # At least one token position (zero tokens: the text is missing).
        padding = [[0, 0], [0, tf.maximum(1 - tf.shape(input_ids)[1], 0)]]
        input_ids = tf.pad(input_ids, padding)
        attention_mask = tf.pad(attention_mask, padding)
        audio_features, audio_length = self.audio_layer(waveform, waveform_length)
        audio_present = waveform_length >= max(self.rules.min_audio_samples, 1)
        input_ids, real, text_length = self.text_inputs(input_ids, attention_mask)
        words = real
        for special in self.rules.special_token_ids:
            words = tf.logical_and(words, tf.not_equal(input_ids, special))
        text_present = tf.reduce_any(words, axis=1)
        if self.text_backbone is None:
            # The model reads no text: it ignores these (all-zero) vectors.
            text_features = tf.zeros(
                tf.concat([tf.shape(input_ids), [self.model.text_dim]], axis=0), tf.float32
            )
        else:
            hidden = self.text_backbone(
                {
                    "token_ids": input_ids,
                    "segment_ids": tf.zeros_like(input_ids),
                    "padding_mask": real,
                },
                training=False,
            )["sequence_output"]
            # Zero the padding positions, like the padded features of training.
            text_features = tf.cast(hidden, tf.float32) * tf.cast(real, tf.float32)[
                :, :, tf.newaxis
            ]
        return self._run(
            RAW_SIGNATURE, audio_features, audio_length, text_features,
            text_length, audio_present=audio_present, text_present=text_present,
        )

    def answer(self, outputs, inputs, audio_present=None, text_present=None,
               signature_key=FEATURES_SIGNATURE):
        """The serving outputs from the model's output dict.

        Args:
            outputs: the output dict of the model (with the semantic
                attentions, see `_semantic_attention_outputs`).
            inputs: the model's input dict.
            audio_present, text_present: bool `[batch]`, which rows have
                each modality; `None` means every row.
            signature_key: the signature being built, for messages.

        Returns:
            The signature's output dict. Rows with one modality are answered
            by its unimodal head; the modality rules are asserted, and every
            output depends on those assertions.
        """
        batch = tf.shape(inputs["audio_length"])[0]
        if audio_present is None:
            audio_present = tf.ones([batch], tf.bool)
        if text_present is None:
            text_present = tf.ones([batch], tf.bool)
        checks, modality = input_checks.graph_check_modalities(
            self.rules, signature_key, audio_present, text_present
        )
        probabilities = tf.cast(outputs["probabilities"], tf.float32)
        attention = {}
        for name in ("audio", "text"):
            key = f"{name}_attention"
            if key in outputs:
                attention[name] = tf.cast(outputs[key], tf.float32)
            else:
                # A unimodal variant has no attention over the other modality.
                attention[name] = tf.zeros_like(inputs[f"{name}_features"][:, :, 0])
        if len(self.rules.modalities) == 2 and self.rules.unimodal_heads:
            both = tf.logical_and(audio_present, text_present)
            for name, present in (("audio", audio_present), ("text", text_present)):
                alone = tf.logical_and(present, tf.logical_not(both))
                probabilities = tf.where(
                    alone[:, tf.newaxis],
                    tf.cast(outputs[f"{name}_probabilities"], tf.float32),
                    probabilities,
                )
                semantic = tf.cast(outputs[f"{name}_semantic_attention"], tf.float32)
                attention[name] = tf.where(
                    both[:, tf.newaxis],
                    attention[name],
                    tf.where(alone[:, tf.newaxis], semantic, tf.zeros_like(semantic)),
                )
        with tf.control_dependencies(checks):
            probabilities = tf.identity(probabilities)
            modality = tf.identity(modality)
            attention = {name: tf.identity(value) for name, value in attention.items()}
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
            "modality": modality,
            "audio_attention": attention["audio"],
            "text_attention": attention["text"],
        }


def _at_least_one_step(features):
    """`features` `[batch, time, dim]` zero-padded to at least one time step."""
    return tf.pad(features, [[0, 0], [0, tf.maximum(1 - tf.shape(features)[1], 0)], [0, 0]])
