"""Test support: a tiny SavedModel with SMCN's serving contract (tests, benchmarks).

`write_contract_model` exports a `tf.Module` whose two signatures have
exactly the inputs, outputs, dtypes and shapes of a real SMCN export
(`serving_default` on waveforms and token ids, `features` on precomputed
features), with cheap stand-in math: frame energies and token values,
attention as a masked softmax over them, and a linear layer (a variable, so
the SavedModel has variables) on the attended summaries. Like the real
export it checks its inputs in the graph (`input_checks`) and answers a row
with one modality from a stand-in unimodal head (the linear layer on that
modality's summary alone), saying so in `modality`. It also writes
`assets.extra/smcn.json` (with `input_checks`) and a small WordPiece
tokenizer in `assets.extra/tokenizer/`, the way the real export lays them out.

It lets the serving code and its tests run without training or exporting a
real model, and in milliseconds. Not part of the shipped package: tests,
the repository's conftest.py and scripts/ import it from `tests/`.
(`start_serve_process`, which starts `smcn serve` in a child process, is
operational and ships: `smcn_tf.serving.local.process`.)
"""

import json
import os

import numpy as np
import tensorflow as tf

from smcn_tf.contract import input_checks
from smcn_tf.contract.description import ExportDescription
from smcn_tf.contract.input_checks import InputRules
from smcn_tf.contract.layout import write_version
from smcn_tf.contract.requests import predict_request
from smcn_tf.contract.signatures import FEATURES_SIGNATURE, RAW_SIGNATURE, signature_specs
from smcn_tf.features.settings import FeatureSettings

CLASS_NAMES = ("angry", "happy", "neutral", "sad")
AUDIO_DIM = 6
TEXT_DIM = 5
SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms at 16 kHz
HOP_SAMPLES = 160  # 10 ms at 16 kHz
POOLING = 5
MAX_FRAMES = 500
MAX_TOKENS = 32
MIN_AUDIO_SAMPLES = 1600  # 0.1 s
CLS_ID, SEP_ID = 2, 3
# The real export's input signatures, at the stand-in's sizes.
_SPECS = signature_specs(AUDIO_DIM, TEXT_DIM)

_VOCABULARY = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] i you we he she it they am is are was were be "
    "so very not no yes happy sad angry glad mad upset calm fine good bad great "
    "today now here there me him her us them leave alone hello world what why "
    "really love hate this that the a an and or but to of in on . , ! ? ' ##s ##ed ##ing"
).split()


def contract_rules():
    """The `InputRules` of the contract model."""
    return InputRules(
        variant="contract", vocab_size=len(_VOCABULARY), cls_token_id=CLS_ID,
        separator_token_id=SEP_ID, min_audio_samples=MIN_AUDIO_SAMPLES,
        sample_rate=SAMPLE_RATE,
    )


def _masked_softmax(scores, mask):
    """Softmax over positions where `mask`, exactly 0 elsewhere."""
    scores = tf.where(mask, scores, tf.fill(tf.shape(scores), -1e9))
    scores = scores - tf.reduce_max(scores, axis=-1, keepdims=True)
    weights = tf.where(mask, tf.exp(scores), tf.zeros_like(scores))
    return weights / tf.maximum(tf.reduce_sum(weights, axis=-1, keepdims=True), 1e-12)


class ContractModule(tf.Module):
    """SMCN's two serving signatures with stand-in math.

    Args:
        class_names: the class names (`class_name` output).
        seed: seeds the linear layer, so two versions can answer differently.
    """

    def __init__(self, class_names=CLASS_NAMES, seed=0):
        super().__init__(name="smcn_contract")
        rng = np.random.default_rng(seed)
        num_classes = len(class_names)
        self.kernel = tf.Variable(0.3 * rng.normal(size=(3, num_classes)).astype("float32"))
        self.bias = tf.Variable(rng.normal(size=(num_classes,)).astype("float32"))
        self.class_names = tf.constant(list(class_names))
        self.rules = contract_rules()

    def _answer(self, audio_scores, audio_mask, token_values, text_mask, audio_present,
                text_present, signature):
        audio_attention = _masked_softmax(audio_scores, audio_mask)
        text_attention = _masked_softmax(2.0 * token_values, text_mask)
        summary = tf.stack(
            [
                tf.reduce_sum(audio_attention * audio_scores, axis=-1),
                tf.reduce_sum(text_attention * token_values, axis=-1),
                tf.math.log1p(tf.reduce_sum(tf.cast(text_mask, tf.float32), axis=-1)),
            ],
            axis=-1,
        )
        probabilities = tf.nn.softmax(tf.matmul(summary, self.kernel) + self.bias)
        # Stand-in unimodal heads: the linear layer on one modality's summary.
        audio_head = tf.nn.softmax(tf.matmul(summary[:, :1], self.kernel[:1]) + self.bias)
        text_head = tf.nn.softmax(tf.matmul(summary[:, 1:], self.kernel[1:]) + self.bias)
        audio_only = tf.logical_and(audio_present, tf.logical_not(text_present))
        text_only = tf.logical_and(text_present, tf.logical_not(audio_present))
        probabilities = tf.where(audio_only[:, tf.newaxis], audio_head, probabilities)
        probabilities = tf.where(text_only[:, tf.newaxis], text_head, probabilities)
        audio_attention = tf.where(
            audio_present[:, tf.newaxis], audio_attention, tf.zeros_like(audio_attention)
        )
        text_attention = tf.where(
            text_present[:, tf.newaxis], text_attention, tf.zeros_like(text_attention)
        )
        checks, modality = input_checks.graph_check_modalities(
            self.rules, signature, audio_present, text_present
        )
        with tf.control_dependencies(checks):
            probabilities = tf.identity(probabilities)
            modality = tf.identity(modality)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
            "modality": modality,
            "audio_attention": audio_attention,
            "text_attention": text_attention,
        }

    @tf.function(input_signature=_SPECS["serving_default"])
    def serving_default(self, waveform, waveform_length, input_ids, attention_mask):
        waveform, waveform_length, input_ids, attention_mask = input_checks.graph_checks_raw(
            self.rules, waveform, waveform_length, input_ids, attention_mask
        )
        # Frames of 400 samples every 160, like the log-Mel front end.
        padding = tf.maximum(WINDOW_SAMPLES - tf.shape(waveform)[1], 0)
        waveform = tf.pad(waveform, [[0, 0], [0, padding]])
        frames = tf.signal.frame(waveform, WINDOW_SAMPLES, HOP_SAMPLES)
        energy = tf.math.log(tf.reduce_mean(tf.square(frames), axis=-1) + 1e-6)
        frame_count = tf.shape(energy)[1]
        pooled_count = (frame_count + POOLING - 1) // POOLING
        energy = tf.pad(energy, [[0, 0], [0, pooled_count * POOLING - frame_count]])
        pooled = tf.reduce_mean(tf.reshape(energy, [tf.shape(energy)[0], -1, POOLING]), -1)
        pooled = pooled[:, :MAX_FRAMES]
        valid_frames = tf.where(
            waveform_length >= WINDOW_SAMPLES,
            1 + (waveform_length - WINDOW_SAMPLES) // HOP_SAMPLES,
            tf.ones_like(waveform_length),
        )
        valid_pooled = tf.minimum((valid_frames + POOLING - 1) // POOLING, MAX_FRAMES)
        audio_mask = tf.sequence_mask(valid_pooled, tf.shape(pooled)[1])
        token_values = tf.sin(0.37 * tf.cast(input_ids, tf.float32))
        real = tf.logical_and(
            attention_mask > 0,
            input_checks.graph_checked_positions(input_ids, attention_mask, SEP_ID),
        )
        words = tf.logical_and(real, tf.logical_and(input_ids != CLS_ID, input_ids != SEP_ID))
        return self._answer(
            pooled, audio_mask, token_values, real,
            audio_present=waveform_length >= MIN_AUDIO_SAMPLES,
            text_present=tf.reduce_any(words, axis=1), signature=RAW_SIGNATURE,
        )

    @tf.function(input_signature=_SPECS["features"])
    def features(self, audio_features, audio_length, text_features, text_length):
        audio_features, audio_length, text_features, text_length = (
            input_checks.graph_checks_features(
                audio_features, audio_length, text_features, text_length
            )
        )
        audio_mask = tf.sequence_mask(audio_length, tf.shape(audio_features)[1])
        text_mask = tf.sequence_mask(text_length, tf.shape(text_features)[1])
        return self._answer(
            tf.reduce_mean(audio_features, axis=-1),
            audio_mask,
            tf.reduce_mean(text_features, axis=-1),
            text_mask,
            audio_present=audio_length > 0,
            text_present=text_length > 0,
            signature=FEATURES_SIGNATURE,
        )


def write_tokenizer(directory):
    """Writes a small lower-casing WordPiece (BERT) tokenizer to `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(_VOCABULARY) + "\n")
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as stream:
        json.dump(
            {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512},
            stream,
        )
    return directory


def write_contract_model(
    model_base_path, version=1, class_names=CLASS_NAMES, seed=None, warmup=False,
    with_input_checks=True,
):
    """Exports a `ContractModule` as `<model_base_path>/<version>/`.

    Written to a hidden temporary directory and renamed into place, as the
    real export does, so a polling server never sees half of it.

    Args:
        model_base_path: `<export_base>/<model_name>`.
        version: the integer version.
        class_names: the class names.
        seed: seeds the weights; default `version`, so versions differ.
        warmup: also write `assets.extra/tf_serving_warmup_requests`.
        with_input_checks: record the `input_checks` in `smcn.json` (the
            local server then checks requests before the graph does); False
            leaves the checks to the graph alone.

    Returns:
        The version directory.

    Example:

    >>> write_contract_model("export/smcn", version=1)
    'export/smcn/1'
    """
    module = ContractModule(class_names, seed=version if seed is None else seed)
    final = os.path.join(model_base_path, str(version))
    if os.path.exists(final):
        raise ValueError(f"{final} already exists.")
    with write_version(model_base_path, version) as temporary:
        tf.saved_model.save(
            module,
            temporary,
            signatures={
                "serving_default": module.serving_default.get_concrete_function(),
                "features": module.features.get_concrete_function(),
            },
        )
        extra = os.path.join(temporary, "assets.extra")
        write_tokenizer(os.path.join(extra, "tokenizer"))
        ExportDescription(
            features=FeatureSettings(
                sample_rate=SAMPLE_RATE, pooling=POOLING, max_frames=MAX_FRAMES,
                max_tokens=MAX_TOKENS,
            ),
            feature_settings_record={
                "sample_rate": SAMPLE_RATE,
                "pooling": POOLING,
                "max_frames": MAX_FRAMES,
                "max_tokens": MAX_TOKENS,
            },
            model_name=os.path.basename(os.path.normpath(model_base_path)),
            version=version,
            class_names=tuple(class_names),
            tokenizer={
                "directory": "tokenizer", "max_tokens": MAX_TOKENS,
                "separator_token_id": SEP_ID,
            },
            input_checks=module.rules.to_json() if with_input_checks else None,
        ).write(temporary)
        if warmup:
            _write_warmup(os.path.join(extra, "tf_serving_warmup_requests"))
    return final


def _write_warmup(path):
    from tensorflow_serving.apis import prediction_log_pb2

    request = predict_request(
        "", "serving_default", raw_inputs(batch_size=1, samples=SAMPLE_RATE, tokens=4)
    )
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())


def raw_inputs(batch_size=2, samples=16000, tokens=8, seed=0, vocabulary_size=len(_VOCABULARY)):
    """Random `serving_default` inputs: padded waveforms and token ids.

    Item `i` has `samples - i * samples // (2 * batch_size)` valid samples and
    `tokens - i` real tokens (at least 2), zero-padded, so padding is exercised.
    """
    rng = np.random.default_rng(seed)
    waveform = (0.1 * rng.standard_normal((batch_size, samples))).astype("float32")
    waveform_length = np.array(
        [samples - index * samples // (2 * batch_size) for index in range(batch_size)], "int32"
    )
    input_ids = rng.integers(5, vocabulary_size, size=(batch_size, tokens)).astype("int32")
    attention_mask = np.zeros((batch_size, tokens), "int32")
    for row in range(batch_size):
        waveform[row, waveform_length[row]:] = 0.0
        real = max(2, tokens - row)
        attention_mask[row, :real] = 1
        input_ids[row, 0], input_ids[row, real - 1] = 2, 3  # [CLS] ... [SEP]
        input_ids[row, real:] = 0
    return {
        "waveform": waveform,
        "waveform_length": waveform_length,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
    }


def feature_inputs(batch_size=2, frames=10, tokens=6, seed=0):
    """Random `features` inputs with per-item lengths."""
    rng = np.random.default_rng(seed)
    return {
        "audio_features": rng.standard_normal((batch_size, frames, AUDIO_DIM)).astype("float32"),
        "audio_length": np.array([max(1, frames - i) for i in range(batch_size)], "int32"),
        "text_features": rng.standard_normal((batch_size, tokens, TEXT_DIM)).astype("float32"),
        "text_length": np.array([max(1, tokens - i) for i in range(batch_size)], "int32"),
    }

