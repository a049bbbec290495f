"""A model trained with the small-corpus recipe exports and answers like in-process.

SpecAugment and dropout are training-only: the export leaves them out (no
random op in the served graph), while what inference uses (the global audio
normalisation's statistics, attentive statistics pooling) is carried over.
"""

import keras
import numpy as np
import tensorflow as tf

from smcn_tf.export.exporter import export_model
from smcn_tf.export.exporter_test import (
    CLASS_NAMES, TINY, _as_tensors, _graph_ops, assert_answers_match, feature_settings, pad,
    random_features, waveforms,
)
from smcn_tf.features.audio import LogMelFeatures, extract_audio_features
from smcn_tf.model.normalization import adapt_audio_normalization
from smcn_tf.model.smcn import build_smcn

RECIPE = dict(
    audio_normalization="global", pooling="statistics", recurrent_dropout=0.2, dropout=0.3,
    time_masks=2, time_mask_frames=3, frequency_masks=2, frequency_mask_bands=4,
)
# Ops of the random draws SpecAugment and dropout make in training.
RANDOM_OPS = {"StatelessRandomUniformV2", "StatelessRandomUniform", "RandomUniform"}


def _trained_recipe_model():
    keras.utils.set_random_seed(5)
    model = build_smcn("audio", class_names=CLASS_NAMES, **TINY, **RECIPE)
    inputs = random_features(78, 384)
    labels = np.array([0, 1, 2])
    dataset = tf.data.Dataset.from_tensors((inputs, labels))
    adapt_audio_normalization(model, dataset)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), label_smoothing=0.1)
    model.fit(dataset.repeat(3), epochs=1, verbose=0, shuffle=False)
    return model


def test_a_recipe_model_exports_without_training_only_layers_and_answers_alike(tmp_path):
    model = _trained_recipe_model()
    assert model.get_layer("audio_spec_augment") is not None
    export_dir = export_model(
        model, str(tmp_path), "smcn",
        feature_settings=feature_settings("not-needed-for-audio", max_tokens=None),
    )
    assert not RANDOM_OPS & _graph_ops(export_dir)
    loaded = tf.saved_model.load(export_dir)

    inputs = random_features(78, 384)
    expected = dict(model(inputs))
    expected["text_attention"] = np.zeros(inputs["text_features"].shape[:2], "float32")
    assert_answers_match(loaded.signatures["features"](**_as_tensors(inputs)), expected, 1e-5)

    # The raw waveform path: log-Mel in the graph, then the same model.
    waveform, waveform_length = pad(waveforms())
    request = {
        "waveform": waveform,
        "waveform_length": waveform_length,
        "input_ids": np.array([[101, 7592, 102, 0], [101, 102, 0, 0]], "int32"),
        "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "int32"),
    }
    answer = loaded.signatures["serving_default"](**_as_tensors(request))
    audio_features, audio_length = pad(
        extract_audio_features(waveforms(), LogMelFeatures(pooling=5, max_frames=500))
    )
    expected = dict(model({
        "audio_features": audio_features,
        "audio_length": audio_length,
        "text_features": np.zeros([2, 4, 384], "float32"),
        "text_length": np.array([3, 2], "int32"),
    }))
    expected["text_attention"] = np.zeros([2, 4], "float32")
    assert_answers_match(answer, expected, 1e-4)


def test_an_export_rebuilds_the_front_end_with_the_models_mel_bands(tmp_path):
    keras.utils.set_random_seed(6)
    wide = dict(TINY, audio_dim=3 * 40)
    model = build_smcn("audio", class_names=CLASS_NAMES, **wide)
    export_dir = export_model(
        model, str(tmp_path), "smcn",
        feature_settings=feature_settings(
            "not-needed-for-audio", max_tokens=None, audio_dim=3 * 40),
    )
    loaded = tf.saved_model.load(export_dir)
    waveform, waveform_length = pad(waveforms())
    answer = loaded.signatures["serving_default"](**_as_tensors({
        "waveform": waveform,
        "waveform_length": waveform_length,
        "input_ids": np.array([[101, 102], [101, 102]], "int32"),
        "attention_mask": np.array([[1, 1], [1, 1]], "int32"),
    }))
    layer = LogMelFeatures(pooling=5, max_frames=500, num_mel_bins=40)
    audio_features, audio_length = pad(extract_audio_features(waveforms(), layer))
    expected = dict(model({
        "audio_features": audio_features,
        "audio_length": audio_length,
        "text_features": np.zeros([2, 2, 384], "float32"),
        "text_length": np.array([2, 2], "int32"),
    }))
    expected["text_attention"] = np.zeros([2, 2], "float32")
    assert_answers_match(answer, expected, 1e-4)
