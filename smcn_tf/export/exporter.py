"""Export a trained SMCN as a SavedModel in TensorFlow Serving's layout.

    <export_base>/<model_name>/<version>/saved_model.pb
                                        /variables/...
                                        /assets.extra/smcn.json      model config, feature
                                                                     settings, class names,
                                                                     the signature contract
                                        /assets.extra/tokenizer/     the text encoder's
                                                                     tokenizer files
                                        /assets.extra/tf_serving_warmup_requests

Versions are integers that only grow; a version is written to a hidden
temporary directory beside it and renamed into place, so a server watching
the base path never sees a half-written export.

Signatures (see `SIGNATURES`):

    serving_default (raw inputs; log-Mel and BERT run inside the graph):
        inputs:  waveform        float32 [batch, samples]   16 kHz mono, zero-padded
                 waveform_length int32   [batch]            valid samples per item
                 input_ids       int32   [batch, tokens]    WordPiece ids, [CLS] .. [SEP]
                 attention_mask  int32   [batch, tokens]    1 on real tokens, 0 on padding
    features (precomputed features, as training reads them):
        inputs:  audio_features  float32 [batch, frames, audio_dim]
                 audio_length    int32   [batch]
                 text_features   float32 [batch, tokens, text_dim]
                 text_length     int32   [batch]
    both answer:
                 probabilities   float32 [batch, classes]
                 class_id        int32   [batch]
                 class_name      string  [batch]
                 modality        string  [batch]            "both", "audio" or "text"
                 audio_attention float32 [batch, frames]
                 text_attention  float32 [batch, tokens]

`audio_attention` / `text_attention` are the attention weights of the branch
that feeds the head that answered (zeros for a modality that did not);
`frames` are the pooled log-Mel frames and `tokens` the (truncated) tokens.

Checks and missing modalities (`smcn_tf.serving.input_checks`): both
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

import json
import logging
import os
import re
import shutil
import socket
import threading
import time

import keras
import tensorflow as tf

from smcn_tf.features.audio import LogMelFeatures
from smcn_tf.model.smcn import VARIANTS, SMCNModel, dtype_policy, load_model
from smcn_tf.serving import input_checks
from smcn_tf.serving.input_checks import DEFAULT_MIN_AUDIO_SECONDS, InputRules

logger = logging.getLogger("smcn_tf.export.exporter")

_VERSION = re.compile(r"^\d+$")

SMCN_JSON = "smcn.json"
WARMUP_FILE = "tf_serving_warmup_requests"
TOKENIZER_DIRECTORY = "tokenizer"
# The files a `transformers` tokenizer loads from; config.json is copied too
# because AutoTokenizer reads the model type from it when tokenizer_config.json
# names no tokenizer class.
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
)
# 2: the `modality` output, the in-graph input checks, `input_checks` in smcn.json.
FORMAT_VERSION = 2
# A temporary export directory of another machine (a shared volume) is only
# removed once nothing in it changed for this long: its pid means nothing here.
STALE_TEMPORARY_SECONDS = 24 * 3600
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-(\d+)(?:-(.+))?$")
# Temporary directories this process is writing right now.
_ACTIVE_TEMPORARIES = set()
_ACTIVE_LOCK = threading.Lock()

_OUTPUTS = {
    "probabilities": ("float32", ["batch", "classes"]),
    "class_id": ("int32", ["batch"]),
    "class_name": ("string", ["batch"]),
    "modality": ("string", ["batch"]),
    "audio_attention": ("float32", ["batch", "frames"]),
    "text_attention": ("float32", ["batch", "tokens"]),
}
# The serving contract: signature -> inputs/outputs -> name -> (dtype, dims).
# A dim is a name: `audio_dim`, `text_dim` and `classes` have the model's
# sizes, every other dim any size.
SIGNATURES = {
    "serving_default": {
        "inputs": {
            "waveform": ("float32", ["batch", "samples"]),
            "waveform_length": ("int32", ["batch"]),
            "input_ids": ("int32", ["batch", "tokens"]),
            "attention_mask": ("int32", ["batch", "tokens"]),
        },
        "outputs": _OUTPUTS,
    },
    "features": {
        "inputs": {
            "audio_features": ("float32", ["batch", "frames", "audio_dim"]),
            "audio_length": ("int32", ["batch"]),
            "text_features": ("float32", ["batch", "tokens", "text_dim"]),
            "text_length": ("int32", ["batch"]),
        },
        "outputs": _OUTPUTS,
    },
}


def signature_contract(audio_dim, text_dim, num_classes):
    """The served signatures with concrete shapes, as `smcn.json` records them.

    Args:
        audio_dim: the model's audio feature size.
        text_dim: the model's text feature size.
        num_classes: the number of classes.

    Returns:
        A dict `{signature: {"inputs"|"outputs": {name: {"dtype", "shape",
        "dims"}}}}` where `shape` uses -1 for a dimension of any size (as
        `saved_model_cli` shows it) and `dims` names each dimension.

    Example:

    >>> signature_contract(78, 384, 4)["features"]["inputs"]["audio_features"]["shape"]
    [-1, -1, 78]
    """
    sizes = {
        "audio_dim": int(audio_dim),
        "text_dim": int(text_dim),
        "classes": int(num_classes),
    }
    contract = {}
    for signature, sides in SIGNATURES.items():
        contract[signature] = {}
        for side, tensors in sides.items():
            contract[signature][side] = {
                name: {
                    "dtype": dtype,
                    "shape": [sizes.get(dim, -1) for dim in dims],
                    "dims": list(dims),
                }
                for name, (dtype, dims) in tensors.items()
            }
    return contract


def existing_versions(model_dir):
    """The integer versions already under `<export_base>/<model_name>`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir) if _VERSION.match(name))


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
    with dtype_policy("float32"):
        copy = SMCNModel.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _positive_int(settings, key, source, allow_none=False, minimum=1):
    value = settings.get(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{source}: `{key}` must be an integer >= {minimum}"
            f"{' or null' if allow_none else ''}, got {value!r}."
        )
    return value


def _check_feature_settings(model, feature_settings, source):
    """The validated front-end settings (pooling, max_frames, max_tokens, ...)."""
    if not isinstance(feature_settings, dict):
        raise ValueError(
            f"{source}: expected a JSON object with the run's feature settings, "
            f"got {type(feature_settings).__name__}."
        )
    for key, expected in (("audio_dim", model.audio_dim), ("text_dim", model.text_dim)):
        value = feature_settings.get(key)
        if value is not None and value != expected:
            raise ValueError(
                f"{source}: `{key}` is {value} but the model expects {expected}; "
                "the features and the model come from different runs."
            )
    names = feature_settings.get("class_names")
    if names is not None and model.class_names is not None and list(names) != list(
        model.class_names
    ):
        raise ValueError(
            f"{source}: `class_names` {list(names)} differ from the model's "
            f"{list(model.class_names)}."
        )
    checked = {
        "pooling": _positive_int(feature_settings, "pooling", source),
        "max_frames": _positive_int(feature_settings, "max_frames", source, allow_none=True),
        "max_tokens": _positive_int(
            feature_settings, "max_tokens", source, allow_none="text" not in model.modalities,
            minimum=2,
        ),
        "sample_rate": _positive_int(
            {"sample_rate": feature_settings.get("sample_rate", 16000)}, "sample_rate", source
        ),
        "text_encoder": feature_settings.get("text_encoder"),
    }
    text_encoder = checked["text_encoder"]
    if "text" in model.modalities and not (
        isinstance(text_encoder, str) and os.path.isfile(os.path.join(text_encoder, "config.json"))
    ):
        raise ValueError(
            f"{source}: `text_encoder` must be the Hugging Face checkpoint directory the "
            f"text features were computed with (config.json, model.safetensors, vocab.txt); "
            f"{text_encoder!r} is not one on this machine. The served graph runs that "
            "encoder, so point `text_encoder` at a local copy of the same checkpoint."
        )
    return checked


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
        self.rules = rules
        self.features = tf.function(
            self._predict_features,
            input_signature=[
                tf.TensorSpec([None, None, self.model.audio_dim], tf.float32, "audio_features"),
                tf.TensorSpec([None], tf.int32, "audio_length"),
                tf.TensorSpec([None, None, self.model.text_dim], tf.float32, "text_features"),
                tf.TensorSpec([None], tf.int32, "text_length"),
            ],
        )
        self.max_tokens = max_tokens
        self.separator_token_id = separator_token_id
        if audio_layer is not None:
            self.serving_default = tf.function(
                self._predict_raw,
                input_signature=[
                    tf.TensorSpec([None, None], tf.float32, "waveform"),
                    tf.TensorSpec([None], tf.int32, "waveform_length"),
                    tf.TensorSpec([None, None], tf.int32, "input_ids"),
                    tf.TensorSpec([None, None], tf.int32, "attention_mask"),
                ],
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
            input_checks.FEATURES_SIGNATURE, audio_features, audio_length, text_features,
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
            input_checks.RAW_SIGNATURE, audio_features, audio_length, text_features,
            text_length, audio_present=audio_present, text_present=text_present,
        )

    def answer(self, outputs, inputs, audio_present=None, text_present=None,
               signature_key=input_checks.FEATURES_SIGNATURE):
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


def _check_model_name(model_name):
    if not re.match(r"^[A-Za-z0-9_.-]+$", model_name):
        raise ValueError(
            f"model_name {model_name!r} must use letters, digits, '.', '_' or '-'."
        )


def _build_module(model, settings, min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS):
    """The serving module with the raw front end of `settings`."""
    audio_layer = LogMelFeatures(
        sample_rate=settings["sample_rate"],
        pooling=settings["pooling"],
        max_frames=settings["max_frames"],
    )
    if 3 * audio_layer.num_mel_bins != model.audio_dim:
        raise ValueError(
            f"The log-Mel front end gives {3 * audio_layer.num_mel_bins} values per "
            f"frame but the model expects audio_dim={model.audio_dim}."
        )
    backbone, separator, tokenizer, vocab_size = None, None, None, None
    if "text" in model.modalities:
        from smcn_tf.features.text import TextEncoder

        encoder = TextEncoder(settings["text_encoder"], max_tokens=settings["max_tokens"])
        if encoder.dim != model.text_dim:
            raise ValueError(
                f"The text encoder {encoder.checkpoint_dir} gives {encoder.dim}-d token "
                f"vectors but the model expects text_dim={model.text_dim}."
            )
        backbone, tokenizer = encoder.backbone, encoder.tokenizer
        separator = tokenizer.sep_token_id
        vocab_size = int(backbone.vocabulary_size)
    rules = input_rules(
        model, tokenizer, vocab_size=vocab_size, sample_rate=settings["sample_rate"],
        min_audio_seconds=min_audio_seconds,
    )
    module = SMCNServingModule(
        model,
        audio_layer=audio_layer,
        text_backbone=backbone,
        max_tokens=settings["max_tokens"],
        separator_token_id=separator,
        rules=rules,
    )
    return module, tokenizer


def _copy_tokenizer(checkpoint_dir, destination):
    """Copies the tokenizer files of `checkpoint_dir`; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        source = os.path.join(checkpoint_dir, name)
        if os.path.isfile(source):
            os.makedirs(destination, exist_ok=True)
            shutil.copyfile(source, os.path.join(destination, name))
            copied.append(name)
    return copied


def _write_warmup_requests(path, model_name, module, tokenizer):
    """Writes TF Serving's warmup file: one small request per signature.

    TF Serving replays `assets.extra/tf_serving_warmup_requests` before it
    marks a version available, so the first client request does not pay for
    graph optimisation and the BERT kernels' first run. Skipped (returns
    False) without tensorflow-serving-api.
    """
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        return False
    sample_rate = module.audio_layer.sample_rate
    if tokenizer is not None:
        # One word between [CLS] and [SEP]: a request with both modalities.
        word = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        token_ids = [[tokenizer.cls_token_id, word, tokenizer.sep_token_id]]
    else:
        token_ids = [[0, 0, 0]]
    requests = {
        "serving_default": {
            "waveform": tf.zeros([1, sample_rate], tf.float32),
            "waveform_length": tf.constant([sample_rate], tf.int32),
            "input_ids": tf.constant(token_ids, tf.int32),
            "attention_mask": tf.ones([1, 3], tf.int32),
        },
        "features": {
            "audio_features": tf.zeros([1, 4, module.model.audio_dim], tf.float32),
            "audio_length": tf.constant([4], tf.int32),
            "text_features": tf.zeros([1, 2, module.model.text_dim], tf.float32),
            "text_length": tf.constant([2], tf.int32),
        },
    }
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return True


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def export_model(
    model, export_base, model_name="smcn", version=None, feature_settings=None,
    min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS,
):
    """Writes `model` as `<export_base>/<model_name>/<version>/` for TF Serving.

    The SavedModel has the raw-input `serving_default` signature and the
    precomputed-features `features` signature (see `SIGNATURES` and the module
    docstring); `assets.extra/smcn.json` records the model config, the feature
    settings, the class names and the signature contract, and
    `assets.extra/tokenizer/` holds the text encoder's tokenizer files (see
    `load_tokenizer`).

    Args:
        model: a trained `SMCNModel`.
        export_base: the base path a server watches.
        model_name: the model's name on the server.
        version: an integer version; by default one more than the newest.
        feature_settings: the run's `features.json` dict (`pooling`,
            `max_frames`, `max_tokens`, `text_encoder`, ...): the served graph
            rebuilds the features the model was trained on from them.
        min_audio_seconds: a waveform shorter than this counts as missing
            audio: the text head answers (default 0.1 s).

    Returns:
        The path of the new version directory.

    Raises:
        ValueError: no or inconsistent `feature_settings`, a bad name or
            version, or a version that already exists.

    Temporary directories (`.tmp-<version>-<pid>-<host>`) that killed
    exports left in `<export_base>/<model_name>` are removed first: see
    `remove_stale_temporaries`.

    Example, with a trained `model` and its run's feature settings (not run
    as a test: it needs a training run):

    >>> settings = read_json("runs/iemocap/features.json")  # doctest: +SKIP
    >>> export_model(model, "export", feature_settings=settings)  # doctest: +SKIP
    'export/smcn/1'
    """
    _check_model_name(model_name)
    if feature_settings is None:
        raise ValueError(
            "export_model needs feature_settings (the run's features.json: pooling, "
            "max_frames, max_tokens, text_encoder): the served `serving_default` "
            "signature computes log-Mel and BERT features inside the graph and must "
            "compute them as training did. Use export_from_run(<run>/<fold>/model.keras, "
            "...) to read them from the run."
        )
    return _export(
        model, export_base, model_name, version, feature_settings, "feature_settings",
        min_audio_seconds,
    )


def _host_name():
    """This machine's name, as it goes into temporary directory names."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except OverflowError:
        return False
    return True


def _newest_change(path):
    newest = os.stat(path).st_mtime
    for root, directories, files in os.walk(path):
        for name in directories + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def remove_stale_temporaries(model_dir, stale_seconds=STALE_TEMPORARY_SECONDS):
    """Removes the temporary directories of exports that died before finishing.

    An export writes `.tmp-<version>-<pid>-<host>` and renames it into place;
    a killed export leaves it behind (up to the size of a whole version). One
    is removed when its export cannot be running any more:

    - written on this machine (its host, or no host for older names) by a
      process that no longer exists, or by this process but not by an export
      running in it now;
    - written on another machine (a shared volume): when nothing in it has
      changed for `stale_seconds` (a pid of another machine means nothing
      here).

    A running export's directory is never removed.

    Args:
        model_dir: `<export_base>/<model_name>`.
        stale_seconds: the age after which another machine's directory is stale.

    Returns:
        The removed paths.
    """
    try:
        names = os.listdir(model_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    host, now = _host_name(), time.time()
    for name in sorted(names):
        match = _TEMPORARY.match(name)
        path = os.path.join(model_dir, name)
        if not match or not os.path.isdir(path) or os.path.islink(path):
            continue
        pid, writer = int(match.group(2)), match.group(3)
        if writer is None or writer == host:
            if pid == os.getpid():
                with _ACTIVE_LOCK:
                    if os.path.abspath(path) in _ACTIVE_TEMPORARIES:
                        continue
            elif _pid_alive(pid):
                continue
        else:
            try:
                if now - _newest_change(path) < stale_seconds:
                    continue
            except OSError:
                continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            logger.warning("Removed %s, left by an export that did not finish.", path)
            removed.append(path)
    return removed


def _export(model, export_base, model_name, version, feature_settings, source,
            min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS):
    """`export_model`, with `source` naming where the feature settings came from."""
    if not isinstance(model, SMCNModel):
        raise ValueError(
            f"Expected an SMCNModel (a model.keras written by `smcn train`), got "
            f"{type(model).__name__}."
        )
    settings = _check_feature_settings(model, feature_settings, source)
    model_dir = os.path.join(export_base, model_name)
    versions = existing_versions(model_dir)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    version = int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}.")
    if version in versions:
        raise ValueError(
            f"{os.path.join(model_dir, str(version))} already exists; versions only grow."
        )
    final = os.path.join(model_dir, str(version))
    temporary = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}-{_host_name()}")
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temporaries(model_dir)
    if os.path.exists(temporary):
        shutil.rmtree(temporary)
    with _ACTIVE_LOCK:
        _ACTIVE_TEMPORARIES.add(os.path.abspath(temporary))
    try:
        module, tokenizer = _build_module(model, settings, min_audio_seconds)
        tf.saved_model.save(
            module,
            temporary,
            signatures={
                "serving_default": module.serving_default.get_concrete_function(),
                "features": module.features.get_concrete_function(),
            },
        )
        extra = os.path.join(temporary, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        tokenizer_files = []
        text_encoder = settings["text_encoder"]
        if isinstance(text_encoder, str) and os.path.isdir(text_encoder):
            tokenizer_files = _copy_tokenizer(
                text_encoder, os.path.join(extra, TOKENIZER_DIRECTORY)
            )
        warmup = _write_warmup_requests(
            os.path.join(extra, WARMUP_FILE), model_name, module, tokenizer
        )
        description = {
            "format_version": FORMAT_VERSION,
            "model_name": model_name,
            "version": version,
            "model_config": _jsonable(model.get_config()),
            "class_names": [name.decode() for name in module.class_names.numpy()],
            "feature_settings": _jsonable(feature_settings),
            "audio": {
                "sample_rate": settings["sample_rate"],
                "pooling": settings["pooling"],
                "max_frames": settings["max_frames"],
            },
            "tokenizer": {
                "directory": TOKENIZER_DIRECTORY if tokenizer_files else None,
                "files": tokenizer_files,
                "max_tokens": settings["max_tokens"],
                "separator_token_id": module.separator_token_id,
                "pad_token_id": getattr(tokenizer, "pad_token_id", None),
                "usage": "tokenizer(texts, truncation=True, max_length=max_tokens, "
                "padding=True); send input_ids and attention_mask as int32",
            },
            "signatures": signature_contract(
                model.audio_dim, model.text_dim, model.num_classes
            ),
            "input_checks": module.rules.to_json(),
            "warmup_requests": WARMUP_FILE if warmup else None,
            "tensorflow_version": tf.__version__,
        }
        with open(os.path.join(extra, SMCN_JSON), "w", encoding="utf-8") as stream:
            json.dump(description, stream, indent=2)
            stream.write("\n")
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TEMPORARIES.discard(os.path.abspath(temporary))
    return final


def export_from_run(
    model_path, export_base, model_name="smcn", version=None,
    min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS,
):
    """Exports a `model.keras` of a training run, with the run's feature settings.

    The feature settings come from `<run>/features.json`, where the model is
    `<run>/<fold>/model.keras`.

    Args:
        model_path: a `model.keras` written by `smcn train`.
        export_base: the base path a server watches.
        model_name: the model's name on the server.
        version: an integer version; by default one more than the newest.
        min_audio_seconds: shorter audio counts as missing (see `export_model`).

    Returns:
        The path of the new version directory.

    Raises:
        ValueError: the model or the run's `features.json` is missing or
            broken, or `export_model` refuses.

    Example, on a run of `smcn train` (not run as a test: it needs a training run):

    >>> export_from_run("runs/iemocap/all/model.keras", "export")  # doctest: +SKIP
    'export/smcn/1'
    """
    from smcn_tf.io_utils import read_json

    model_path = os.fspath(model_path)
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(model_path)))
    settings_path = os.path.join(run_dir, "features.json")
    if not os.path.isfile(model_path):
        raise ValueError(f"No saved model at {model_path}.")
    if not os.path.isfile(settings_path):
        raise ValueError(
            f"{settings_path} is missing: export reads the feature settings of the run "
            f"that trained {model_path} (`smcn train` writes <run>/features.json beside "
            "the fold directories)."
        )
    settings = read_json(settings_path)
    _check_model_name(model_name)
    model = load_model(model_path, compile=False)
    return _export(
        model, export_base, model_name, version, settings, settings_path, min_audio_seconds
    )


def load_tokenizer(export_version_dir):
    """Loads the tokenizer an export ships in `assets.extra/tokenizer/`.

    It tokenizes exactly like the text encoder the model was trained with,
    without the original checkpoint. Tokenize with
    `truncation=True, max_length=<smcn.json tokenizer.max_tokens>`.

    Args:
        export_version_dir: an export's version directory
            (`<export_base>/<model_name>/<version>`).

    Returns:
        A `transformers` tokenizer, loaded with local files only.

    Raises:
        ValueError: the export holds no tokenizer.

    Example, on an export of `smcn export` (not run as a test: it needs a
    trained model):

    >>> tokenizer = load_tokenizer("export/smcn/1")  # doctest: +SKIP
    >>> tokenizer(["I am so happy."], max_length=150, truncation=True)["input_ids"]  # doctest: +SKIP
    [[101, 1045, 2572, 2061, 3407, 1012, 102]]
    """
    directory = os.path.join(os.fspath(export_version_dir), "assets.extra", TOKENIZER_DIRECTORY)
    if not os.path.isdir(directory):
        raise ValueError(
            f"{directory} does not exist: the export holds no tokenizer (a model "
            "without text, or an export made without a text encoder checkpoint)."
        )
    import transformers

    return transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
