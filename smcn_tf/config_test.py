"""Tests for the YAML presets and their validation."""

import os

import pytest

from smcn_tf.config import load_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def test_iemocap_preset_carries_the_papers_settings():
    config = load_config(os.path.join(CONFIGS, "iemocap.yaml"))
    assert (config.features.pooling, config.features.max_frames) == (5, 500)
    assert config.features.max_tokens == 150
    assert config.model.hidden_units == 128 and config.model.variant == "smcn"
    assert config.model.stop_gradient_target is True
    assert config.training.learning_rate == pytest.approx(1e-4)
    assert (config.training.batch_size, config.training.steps) == (32, 2500)
    assert config.evaluation.folds == [f"Session{i}" for i in range(1, 6)]


def test_meld_preset_carries_the_papers_settings():
    config = load_config(os.path.join(CONFIGS, "meld.yaml"))
    assert (config.features.pooling, config.features.max_tokens) == (4, 100)
    assert config.training.steps == 2000
    assert config.evaluation.protocol == "split"


def test_every_preset_loads():
    for name in os.listdir(CONFIGS):
        if name.endswith(".yaml"):
            load_config(os.path.join(CONFIGS, name))


def test_overrides_are_parsed_as_yaml():
    config = load_config(
        os.path.join(CONFIGS, "iemocap.yaml"),
        overrides=["training.steps=10", "model.variant=cat", "model.stop_gradient_target=false"],
    )
    assert config.training.steps == 10
    assert config.model.variant == "cat"
    assert config.model.stop_gradient_target is False


def test_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  stpes: 10\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: training.*stpes"):
        load_config(path)
    path.write_text("training:\n  steps: ten\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: training\.steps: expected an integer"):
        load_config(path)
    path.write_text("model:\n  variant: bigger\n")
    with pytest.raises(ValueError, match="model.variant"):
        load_config(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(overrides=["steps=3"])


def test_scale_settings_have_defaults_and_overrides():
    config = load_config(os.path.join(CONFIGS, "iemocap.yaml"))
    training = config.training
    assert (training.length_bucketing, training.bucket_window) == (True, 16)
    assert (training.mixed_precision, training.strategy) == ("none", "auto")
    assert training.jit_compile is False
    assert config.model.recurrent_core == "fused"
    config = load_config(
        os.path.join(CONFIGS, "iemocap.yaml"),
        overrides=[
            "training.length_bucketing=false",
            "training.bucket_window=4",
            "training.mixed_precision=mixed_bfloat16",
            "training.strategy=multi_worker",
            "training.jit_compile=true",
            "model.recurrent_core=keras",
        ],
    )
    training = config.training
    assert (training.length_bucketing, training.bucket_window) == (False, 4)
    assert (training.mixed_precision, training.strategy) == ("mixed_bfloat16", "multi_worker")
    assert training.jit_compile is True and config.model.recurrent_core == "keras"


@pytest.mark.parametrize(
    "override, field",
    [
        ("training.bucket_window=1", "training.bucket_window"),
        ("training.bucket_window=0", "training.bucket_window"),
        ("training.bucket_window=2.5", "training.bucket_window"),
        ("training.length_bucketing=yes please", "training.length_bucketing"),
        ("training.mixed_precision=float16", "training.mixed_precision"),
        ("training.mixed_precision=true", "training.mixed_precision"),
        ("training.strategy=tpu", "training.strategy"),
        ("training.jit_compile=auto", "training.jit_compile"),
        ("model.recurrent_core=cudnn", "model.recurrent_core"),
    ],
)
def test_bad_scale_settings_name_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(os.path.join(CONFIGS, "iemocap.yaml"), overrides=[override])


@pytest.mark.parametrize(
    "typed, expected", [("1e-3", 1e-3), ("1E-3", 1e-3), (".5", 0.5), ("2.5e+2", 250.0)]
)
def test_numbers_parse_as_a_user_types_them(tmp_path, typed, expected):
    # YAML 1.1 reads these as strings; they are numbers, in --set and in a preset.
    config = load_config(overrides=[f"training.learning_rate={typed}"])
    assert config.training.learning_rate == pytest.approx(expected)
    path = tmp_path / "preset.yaml"
    path.write_text(f"training:\n  learning_rate: {typed}\n  weight_decay: {typed}\n")
    config = load_config(path)
    assert config.training.learning_rate == pytest.approx(expected)
    assert config.training.weight_decay == pytest.approx(expected)
    with pytest.raises(ValueError, match="training.learning_rate: expected a number"):
        load_config(overrides=["training.learning_rate=1e-3x"])


def test_small_corpus_recipe_changes_training_not_the_papers_presets():
    recipe = load_config(os.path.join(CONFIGS, "small_corpus.yaml"))
    paper = load_config(os.path.join(CONFIGS, "iemocap.yaml"))
    assert recipe.features.speed_perturbation == [0.9, 1.1]
    assert (recipe.model.pooling, recipe.training.schedule) == ("statistics", "cosine")
    assert recipe.training.optimizer == "adamw" and recipe.training.ema_momentum > 0
    assert recipe.model.time_masks > 0 and recipe.model.frequency_masks > 0
    # The model's shape is the paper's; the paper preset has every lever off.
    assert recipe.model.hidden_units == paper.model.hidden_units == 128
    assert paper.features.speed_perturbation == []
    assert (paper.model.pooling, paper.model.time_masks, paper.model.recurrent_dropout) == (
        "attention", 0, 0.0)
    assert (paper.training.optimizer, paper.training.schedule) == ("adam", "constant")
    assert (paper.training.label_smoothing, paper.training.ema_momentum) == (0.0, 0.0)


@pytest.mark.parametrize(
    "override, field",
    [
        ("features.speed_perturbation=[1.0]", "features.speed_perturbation"),
        ("features.speed_perturbation=[3]", "features.speed_perturbation"),
        ("model.pooling=max", "model.pooling"),
        ("model.time_masks=-1", "model.time_masks"),
        ("model.recurrent_dropout=1.0", "model.recurrent_dropout"),
        ("training.optimizer=sgd", "training.optimizer"),
        ("training.schedule=linear", "training.schedule"),
        ("training.warmup_steps=2500", "training.warmup_steps"),
        ("training.final_learning_rate=1", "training.final_learning_rate"),
        ("training.label_smoothing=1", "training.label_smoothing"),
        ("training.ema_momentum=1", "training.ema_momentum"),
        ("training.attention_examples_per_class=-1", "training.attention_examples_per_class"),
        ("training.calibration_batches=-1", "training.calibration_batches"),
    ],
)
def test_bad_recipe_settings_name_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(overrides=[override])
