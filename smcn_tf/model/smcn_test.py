"""Tests for the SMCN builder: shapes, masks, variants, eq. 17, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.model.layers import Fusion
from smcn_tf.model.smcn import LOSS_TERMS, VARIANTS, build_smcn

AUDIO_DIM, TEXT_DIM, CLASSES = 6, 5, 3
TINY = dict(
    audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, num_classes=CLASSES, hidden_units=4, head_units=4
)


def _batch(rng, batch=4, frames=7, tokens=5, audio_lengths=None, text_lengths=None):
    return {
        "audio_features": rng.normal(size=(batch, frames, AUDIO_DIM)).astype("float32"),
        "audio_length": np.asarray(
            audio_lengths if audio_lengths is not None else rng.integers(1, frames + 1, batch),
            "int32",
        ),
        "text_features": rng.normal(size=(batch, tokens, TEXT_DIM)).astype("float32"),
        "text_length": np.asarray(
            text_lengths if text_lengths is not None else rng.integers(1, tokens + 1, batch),
            "int32",
        ),
    }


def test_parameter_count_at_paper_shapes():
    # 78-d log-Mel frames, 768-d BERT tokens, 128 GRU units, 4 classes: ~2.16 M.
    model = build_smcn(audio_dim=78, text_dim=768, num_classes=4, hidden_units=128)
    assert model.count_params() == 2_163_980


EXPECTED_TERMS = {
    "audio": {"audio_loss"},
    "text": {"text_loss"},
    "cat": {"emotion_loss"},
    **{
        variant: set(LOSS_TERMS)
        for variant in ("intra", "inter", "first_interaction", "second_interaction", "smcn")
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_builds_and_trains_one_step(variant):
    rng = np.random.default_rng(0)
    model = build_smcn(variant, **TINY)
    # No metric (`compile`'s default adds UA / WA / F1): the logs are the loss terms.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=None)
    inputs = _batch(rng)
    labels = rng.integers(0, CLASSES, 4)
    before = [np.array(weight) for weight in model.trainable_weights]
    history = model.fit(inputs, labels, epochs=1, batch_size=4, verbose=0)
    assert set(history.history) == {"loss"} | EXPECTED_TERMS[variant]
    assert all(np.isfinite(values[0]) for values in history.history.values())
    changed = [
        not np.allclose(old, np.array(new))
        for old, new in zip(before, model.trainable_weights)
    ]
    assert any(changed)
    outputs = model(inputs)
    assert outputs["probabilities"].shape == (4, CLASSES)
    np.testing.assert_allclose(np.asarray(outputs["probabilities"]).sum(-1), 1.0, rtol=1e-5)
    for modality in VARIANTS[variant].modalities:
        frames = inputs[f"{modality}_features"].shape[1]
        assert outputs[f"{modality}_attention"].shape == (4, frames)


def test_unimodal_variants_ignore_the_other_modality():
    rng = np.random.default_rng(1)
    model = build_smcn("audio", **TINY)
    inputs = _batch(rng)
    changed = dict(inputs, text_features=inputs["text_features"] + 5.0)
    np.testing.assert_array_equal(
        np.asarray(model(inputs)["probabilities"]), np.asarray(model(changed)["probabilities"])
    )


@pytest.mark.parametrize("variant", ["smcn", "second_interaction"])
def test_padding_never_changes_an_item(variant):
    rng = np.random.default_rng(2)
    model = build_smcn(variant, **TINY)
    item = _batch(rng, batch=1, frames=4, tokens=3, audio_lengths=[4], text_lengths=[3])
    padded = {
        "audio_features": np.concatenate(
            [item["audio_features"], 50 * rng.normal(size=(1, 6, AUDIO_DIM))], axis=1
        ).astype("float32"),
        "audio_length": item["audio_length"],
        "text_features": np.concatenate(
            [item["text_features"], 50 * rng.normal(size=(1, 9, TEXT_DIM))], axis=1
        ).astype("float32"),
        "text_length": item["text_length"],
    }
    alone, with_padding = model(item), model(padded)
    for key, value in alone.items():
        value, other = np.asarray(value), np.asarray(with_padding[key])
        if key.endswith("_attention"):
            assert np.all(other[:, value.shape[1]:] == 0), key
            other = other[:, : value.shape[1]]
        np.testing.assert_allclose(value, other, rtol=1e-5, atol=1e-6, err_msg=key)


def test_serialization_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    model = build_smcn(
        "smcn", first_fusion=Fusion("maximum"), class_names=["a", "b", "c"], **TINY
    )
    inputs = _batch(rng)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    assert restored.get_layer("audio_first_fusion").method == "maximum"
    for key, value in model(inputs).items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(restored(inputs)[key]), atol=1e-6)


def _cross_entropy(labels, probabilities):
    return float(np.mean(-np.log(probabilities[np.arange(len(labels)), labels])))


def test_total_loss_is_equation_17():
    rng = np.random.default_rng(4)
    model = build_smcn("smcn", **TINY)
    inputs, labels = _batch(rng), rng.integers(0, CLASSES, 4)
    outputs = {key: np.asarray(value) for key, value in model(inputs).items()}
    expected = {
        "emotion_loss": _cross_entropy(labels, outputs["probabilities"]),
        "audio_loss": _cross_entropy(labels, outputs["audio_probabilities"]),
        "text_loss": _cross_entropy(labels, outputs["text_probabilities"]),
        # Loss_at = MSE(F^t, Fc^a); Loss_ta = MSE(F^a, Fc^t) (eq. 11).
        "audio_calibration_loss": float(
            np.mean((outputs["text_semantic"] - outputs["audio_calibration"]) ** 2)
        ),
        "text_calibration_loss": float(
            np.mean((outputs["audio_semantic"] - outputs["text_calibration"]) ** 2)
        ),
    }
    terms = model.loss_components(labels, model(inputs))
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
    total = model.compute_loss(inputs, labels, model(inputs))
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-5)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_calibration_target_is_held_fixed_by_default(stop_gradient):
    rng = np.random.default_rng(5)
    model = build_smcn("smcn", stop_gradient_target=stop_gradient, **TINY)
    inputs, labels = _batch(rng), rng.integers(0, CLASSES, 4)
    # The fused core holds both text BiGRUs; take the intra branch's weights.
    intra_weights = [
        weight
        for weight in model.get_layer("text_gru").trainable_weights
        if "/intra_" in weight.path
    ]
    assert len(intra_weights) == 6
    with tf.GradientTape() as tape:
        terms = model.loss_components(labels, model(inputs))
        # Loss_at pulls Fc^a towards F^t, the text intra branch's output.
        calibration = terms["audio_calibration_loss"]
    gradients = tape.gradient(calibration, intra_weights)
    reaches_target = any(
        gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0
        for gradient in gradients
    )
    assert reaches_target is (not stop_gradient)


def test_builder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown variant"):
        build_smcn("late_fusion", **TINY)
    with pytest.raises(ValueError, match="class_names"):
        build_smcn("smcn", class_names=["only", "two"], **TINY)
    with pytest.raises(ValueError, match="fusion"):
        build_smcn("smcn", first_fusion=3, **TINY)


def test_cudnn_free_copy_has_the_same_weight_layout():
    model = build_smcn("smcn", **TINY)
    copy = build_smcn("smcn", use_cudnn=False, **TINY)
    assert [w.shape for w in model.weights] == [w.shape for w in copy.weights]


def test_loss_terms_are_data():
    from smcn_tf.model.smcn import CALIBRATION, CROSS_ENTROPY, LossTerm

    model = build_smcn("smcn", **TINY)
    assert tuple(term.name for term in model.loss_terms) == LOSS_TERMS
    assert model.loss_terms[0] == LossTerm("emotion_loss", "probabilities", CROSS_ENTROPY)
    assert LossTerm(
        "audio_calibration_loss", "audio_calibration", CALIBRATION, target_key="text_semantic"
    ) in model.loss_terms
    # A unimodal variant's own head is its `probabilities` output.
    (term,) = build_smcn("text", **TINY).loss_terms
    assert term == LossTerm("text_loss", "probabilities", CROSS_ENTROPY)


def test_compile_defaults_to_the_paper_and_the_emotion_metrics(tmp_path):
    from smcn_tf.model.smcn import DEFAULT_LEARNING_RATE, load_model

    model = build_smcn("smcn", **TINY)
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(DEFAULT_LEARNING_RATE)
    model.compile(learning_rate=1e-2, jit_compile=False)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2)
    assert model.jit_compile is False
    with pytest.raises(ValueError, match="learning_rate"):
        model.compile(optimizer="sgd", learning_rate=1e-2)
    rng = np.random.default_rng(6)
    history = model.fit(_batch(rng), rng.integers(0, CLASSES, 4), batch_size=4, verbose=0)
    assert {"unweighted_accuracy", "weighted_accuracy", "weighted_f1"} <= set(history.history)
    # A saved model recompiles with its saved optimizer and metrics on load.
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = load_model(path)
    assert float(restored.optimizer.learning_rate) == pytest.approx(1e-2)
    logs = restored.evaluate(_batch(rng), rng.integers(0, CLASSES, 4), verbose=0, return_dict=True)
    assert "unweighted_accuracy" in logs


def test_from_model_config_passes_every_setting():
    import dataclasses

    from smcn_tf.config import ModelConfig
    from smcn_tf.model.smcn import SMCNModel

    settings = ModelConfig(
        variant="inter", hidden_units=4, head_units=4, attention_units=6, dropout=0.1,
        recurrent_core="keras", audio_normalization="utterance", stop_gradient_target=False,
        pooling="statistics", recurrent_dropout=0.2, time_masks=1, time_mask_frames=2,
        frequency_masks=1, frequency_mask_bands=1,
    )
    model = SMCNModel.from_model_config(
        settings, num_classes=CLASSES, class_names=["a", "b", "c"], audio_dim=AUDIO_DIM,
        text_dim=TEXT_DIM, use_cudnn=False,
    )
    config = model.get_config()
    for field, value in dataclasses.asdict(settings).items():
        assert config[field] == value, field
    assert config["use_cudnn"] is False and config["class_names"] == ["a", "b", "c"]
    assert "dtype" not in config


# The small-corpus recipe's model options, all on (AUDIO_DIM = 6: 3 blocks of 2 bands).
RECIPE = dict(
    pooling="statistics", recurrent_dropout=0.2, dropout=0.3, time_masks=2,
    time_mask_frames=2, frequency_masks=1, frequency_mask_bands=1,
)


def test_recipe_options_train_save_and_serve_like_the_paper_graph(tmp_path):
    from smcn_tf.export.serving_module import serving_copy

    rng = np.random.default_rng(7)
    model = build_smcn("smcn", class_names=["a", "b", "c"], **TINY, **RECIPE)
    inputs, labels = _batch(rng), rng.integers(0, CLASSES, 4)
    outputs = model(inputs)
    # Statistics pooling doubles F^i and Fc^i: 2 directions x 4 units x (mean, std).
    assert outputs["audio_semantic"].shape == (4, 16)
    assert outputs["text_calibration"].shape == (4, 16)
    assert model.get_layer("audio_spec_augment") is not None
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(inputs, labels, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    # Inference: SpecAugment and dropout are off, so every copy answers alike.
    served = serving_copy(model)
    assert "audio_spec_augment" not in [layer.name for layer in served.layers]
    for key, value in model(inputs).items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(restored(inputs)[key]), atol=1e-6)
        np.testing.assert_allclose(np.asarray(value), np.asarray(served(inputs)[key]), atol=1e-5)
    # In training the masks and dropout change the outputs.
    trained = np.asarray(model(inputs, training=True)["probabilities"])
    assert not np.allclose(trained, np.asarray(model(inputs)["probabilities"]))


def test_label_smoothing_smooths_every_cross_entropy_term():
    rng = np.random.default_rng(8)
    model = build_smcn("smcn", **TINY)
    model.compile(label_smoothing=0.2)
    inputs, labels = _batch(rng), rng.integers(0, CLASSES, 4)
    outputs = {key: np.asarray(value) for key, value in model(inputs).items()}
    targets = np.full((4, CLASSES), 0.2 / CLASSES)
    targets[np.arange(4), labels] += 0.8
    terms = model.loss_components(labels, model(inputs))
    for name, key in (("emotion_loss", "probabilities"), ("audio_loss", "audio_probabilities"),
                      ("text_loss", "text_probabilities")):
        expected = float(np.mean(-(targets * np.log(outputs[key])).sum(1)))
        assert float(terms[name]) == pytest.approx(expected, rel=1e-5), name
    with pytest.raises(ValueError, match="label_smoothing"):
        model.compile(label_smoothing=1.0)


def test_recipe_options_keep_padding_invariance():
    rng = np.random.default_rng(9)
    model = build_smcn("smcn", **TINY, **RECIPE)
    inputs = _batch(rng, frames=5, tokens=4, audio_lengths=[5, 3, 1, 4], text_lengths=[4, 2, 1, 3])
    padded = dict(inputs)
    padded["audio_features"] = np.concatenate(
        [inputs["audio_features"], rng.normal(size=(4, 3, AUDIO_DIM)).astype("float32")], 1
    )
    alone, other = model(inputs), model(padded)
    np.testing.assert_allclose(
        np.asarray(alone["probabilities"]), np.asarray(other["probabilities"]), atol=1e-5
    )
    with pytest.raises(ValueError, match="pooling"):
        build_smcn("smcn", pooling="max", **TINY)
