"""Experiment configuration: YAML presets in `configs/` mapped onto dataclasses.

A preset has four sections, `features`, `model`, `training` and `evaluation`.
Unknown keys and wrong types are errors that name the file and the field, so a
typo never silently falls back to a default.

Example:

>>> config = load_config("configs/iemocap.yaml", overrides=["training.steps=10"])
>>> config.training.steps
10
"""

import dataclasses
import os
import re
import typing

import yaml

MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
VALIDATIONS = ("none", "group", "fraction")
SELECTIONS = ("last", "best")
OPTIMIZERS = ("adam", "adamw")
# A decimal number as a user types it: 1e-3, 1E-3, .5, 2.5e+2, -4.
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class FeaturesConfig:
    """How raw audio and text become model inputs (section 3.2)."""

    corpus: str = "iemocap"
    sample_rate: int = 16000
    # Log-Mel bands per frame (26, the paper's 78-d frames: bands + deltas +
    # delta-deltas); more bands resolve more of the spectrum (pitch harmonics).
    mel_bands: int = 26
    pooling: int = 5
    max_frames: int = 500
    max_tokens: int = 150
    text_encoder: typing.Optional[str] = None  # None: the installed all-MiniLM-L6-v2
    shard_size: int = 256
    # `smcn prepare` skips shorter clips (smcn_tf.features.audio.MIN_SECONDS_DEFAULT).
    min_seconds: float = 0.1
    # Speed perturbation: `smcn prepare` also writes a copy of every utterance
    # resampled by each of these factors (e.g. [0.9, 1.1]) into
    # <features>/augmented/. Only training reads them, and only those of its
    # fitting groups: a test or validation group never sees an augmented copy.
    speed_perturbation: typing.List[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ModelConfig:
    """Hyper-parameters of `smcn_tf.model.smcn.SMCNModel`."""

    variant: str = "smcn"
    hidden_units: int = 128
    attention_units: typing.Optional[int] = None
    head_units: int = 128
    head_activation: str = "relu"
    first_fusion: str = "add"
    second_fusion: str = "add"
    stop_gradient_target: bool = True
    dropout: float = 0.0
    # "fused" computes the BiGRUs with one fused recurrence (fast on CPU);
    # "keras" uses keras.layers.GRU (cuDNN on a GPU).
    recurrent_core: str = "fused"
    # none | global (training-data statistics, adapted per fold) | utterance (per item).
    audio_normalization: str = "none"
    # attention: the paper's attention pooling (eq. 4-6); statistics: attentive
    # statistics pooling (the attention-weighted mean and standard deviation).
    pooling: str = "attention"
    # Dropout on the BiGRU outputs (every branch), in training only.
    recurrent_dropout: float = 0.0
    # SpecAugment on the audio frames, in training only (the identity at
    # inference): this many time masks of up to `time_mask_frames` frames and
    # frequency masks of up to `frequency_mask_bands` Mel bands (the same bands
    # of the static, delta and delta-delta blocks). 0: off.
    time_masks: int = 0
    time_mask_frames: int = 0
    frequency_masks: int = 0
    frequency_mask_bands: int = 0


@dataclasses.dataclass
class TrainingConfig:
    """Optimiser, schedule and how training runs (the paper: Adam 1e-4, batch 32,
    2500 steps).

    `batch_size` is the GLOBAL batch: with several replicas (GPUs, workers)
    each replica takes `batch_size / replicas` utterances per step, so the
    schedule and the results do not depend on how many machines train.
    """

    learning_rate: float = 1e-4  # the peak rate under a schedule
    batch_size: int = 32  # global: summed over every replica of every worker
    # adam (the paper) | adamw (decoupled weight decay `weight_decay`).
    optimizer: str = "adam"
    weight_decay: float = 0.0
    # constant (the paper) | cosine: linear warm-up over `warmup_steps`, then
    # cosine decay to `final_learning_rate` at `steps`.
    schedule: str = "constant"
    warmup_steps: int = 0
    final_learning_rate: float = 0.0
    # Label smoothing of every cross-entropy term of eq. 17 (0: off).
    label_smoothing: float = 0.0
    # Exponential moving average of the weights (the optimizer's `use_ema`):
    # its momentum, e.g. 0.99; 0: off. The kept model holds the averaged weights.
    ema_momentum: float = 0.0
    steps: int = 2500
    steps_per_epoch: int = 100  # how often logs and checkpoints are written
    shuffle_buffer: int = 2048
    seed: int = 1
    # "balanced" weights each utterance's cross-entropies by N / (C * n_class)
    # over the training groups; "none" (the paper) weighs all alike.
    class_weights: str = "none"
    # Length-aware batching of the training stream: windows of
    # `bucket_window` batches are sorted by length and cut into batches, so a
    # batch pads little. Test data is never bucketed.
    length_bucketing: bool = True
    bucket_window: int = 16
    # none | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, recent CPUs/GPUs);
    # set only while the fold's model is built and trained.
    mixed_precision: str = "none"
    # auto: MirroredStrategy when more than one GPU is visible, else the
    # default strategy. default | mirrored (the GPUs of this machine) |
    # multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG; the run
    # directory must be on a filesystem every worker shares).
    strategy: str = "auto"
    # XLA-compile the train step (model.compile(jit_compile=...)).
    jit_compile: bool = False
    # Which weights a fold keeps: "last" (the paper: fixed steps, last
    # weights) or "best" (the epoch with the best validation UA; needs
    # evaluation.validation). The test group never chooses.
    select: str = "last"
    # Stop a fold after this many epochs without a better validation UA
    # (0: off; needs evaluation.validation).
    early_stopping_patience: int = 0
    # TensorBoard: the confusion matrix of the training groups every this
    # many epochs (0: off; the held-out one is always logged).
    confusion_every_epochs: int = 0
    # TensorBoard: held-out utterances of each class drawn as attention
    # figures (0: none; drawing is a large share of a tiny run's time).
    attention_examples_per_class: int = 2
    # TensorBoard: batches of held-out data the calibration diagnostics read
    # at every epoch end (0: no calibration diagnostics nor learning rate).
    calibration_batches: int = 8


@dataclasses.dataclass
class EvaluationConfig:
    """Which groups are held out.

    `protocol: loso` runs one fold per entry of `folds`, each holding out that
    group (an IEMOCAP session) and training on the rest. `protocol: split`
    trains on `train_groups` and tests on `test_groups` (MELD's official split).
    """

    protocol: str = "loso"
    folds: typing.List[str] = dataclasses.field(
        default_factory=lambda: [f"Session{index}" for index in range(1, 6)]
    )
    train_groups: typing.List[str] = dataclasses.field(default_factory=list)
    test_groups: typing.List[str] = dataclasses.field(default_factory=list)
    # After the folds, also train one model on every training group (fold
    # name "all", nothing held out): the model to export and serve.
    final_model: bool = False
    # A validation set carved out of each fold's TRAINING groups, never its
    # test group: "none" (the paper), "group" (one training group held out:
    # the one after the test group in the records' group order, cyclically;
    # the last group for the final model) or "fraction" (this share of every
    # training group's utterances, chosen by a seeded hash of the id).
    validation: str = "none"
    validation_fraction: float = 0.1


@dataclasses.dataclass
class Config:
    """A whole experiment."""

    features: FeaturesConfig = dataclasses.field(default_factory=FeaturesConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def to_dict(self):
        return dataclasses.asdict(self)


_SECTIONS = {
    "features": FeaturesConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
}


def _coerce(value, annotation, where):
    """Check a YAML value against a dataclass field type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _coerce(value, inner, where)
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        (inner,) = typing.get_args(annotation)
        return [_coerce(item, inner, where) for item in value]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}.")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            # YAML 1.1 reads 1e-3 and .5e2 (no dot, or no digit before it) as strings.
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}.")
        return value
    return value


def _section_from_dict(section_class, values, where):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}.")
    hints = typing.get_type_hints(section_class)
    known = {field.name for field in dataclasses.fields(section_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}."
        )
    return section_class(
        **{
            key: _coerce(value, hints[key], f"{where}.{key}")
            for key, value in values.items()
        }
    )


def config_from_dict(values, source="<config>"):
    """Build and validate a `Config` from a plain dict.

    Args:
        values: a mapping with any of the sections `features`, `model`,
            `training`, `evaluation`.
        source: the file name used in error messages.

    Returns:
        A `Config`.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{source}: the top level must be a mapping of sections.")
    unknown = sorted(set(values) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"{source}: unknown section(s) {unknown}; known sections are "
            f"{sorted(_SECTIONS)}."
        )
    config = Config(
        **{
            name: _section_from_dict(section_class, values.get(name), f"{source}: {name}")
            for name, section_class in _SECTIONS.items()
        }
    )
    validate_config(config, source)
    return config


def validate_config(config, source="<config>"):
    """Range checks that the types alone cannot express.

    Args:
        config: an `ExperimentConfig`.
        source: where it came from, for the error messages.

    Raises:
        ValueError: the first value out of range, in the order: numeric
            ranges, named choices, then the evaluation protocol.
    """
    _check_ranges(config, source)
    _check_choices(config, source)
    _check_evaluation(config, source)


def _check_ranges(config, source):
    """The numeric fields' ranges."""
    checks = [
        ("features.pooling", config.features.pooling >= 1),
        ("features.mel_bands", 1 <= config.features.mel_bands <= 128),
        ("features.max_frames", config.features.max_frames >= 1),
        ("features.max_tokens", config.features.max_tokens >= 3),
        ("features.shard_size", config.features.shard_size >= 1),
        ("features.sample_rate", config.features.sample_rate > 0),
        ("features.min_seconds", 0.0 <= config.features.min_seconds < float("inf")),
        ("model.hidden_units", config.model.hidden_units >= 1),
        ("model.head_units", config.model.head_units >= 1),
        ("model.dropout", 0.0 <= config.model.dropout < 1.0),
        ("model.recurrent_dropout", 0.0 <= config.model.recurrent_dropout < 1.0),
        ("model.time_masks", config.model.time_masks >= 0),
        ("model.time_mask_frames", config.model.time_mask_frames >= 0),
        ("model.frequency_masks", config.model.frequency_masks >= 0),
        ("model.frequency_mask_bands", config.model.frequency_mask_bands >= 0),
        ("features.speed_perturbation",
         all(0.5 <= factor <= 2.0 and factor != 1.0
             for factor in config.features.speed_perturbation)),
        ("training.weight_decay", config.training.weight_decay >= 0),
        ("training.warmup_steps", 0 <= config.training.warmup_steps < config.training.steps),
        ("training.final_learning_rate",
         0 <= config.training.final_learning_rate <= config.training.learning_rate),
        ("training.label_smoothing", 0.0 <= config.training.label_smoothing < 1.0),
        ("training.ema_momentum", 0.0 <= config.training.ema_momentum < 1.0),
        ("training.learning_rate", config.training.learning_rate > 0),
        ("training.batch_size", config.training.batch_size >= 1),
        ("training.steps", config.training.steps >= 1),
        ("training.steps_per_epoch", config.training.steps_per_epoch >= 1),
        ("training.shuffle_buffer", config.training.shuffle_buffer >= 1),
        # A window of one batch sorts nothing: turn length_bucketing off instead.
        ("training.bucket_window", config.training.bucket_window >= 2),
        ("training.early_stopping_patience", config.training.early_stopping_patience >= 0),
        ("training.confusion_every_epochs", config.training.confusion_every_epochs >= 0),
        ("training.attention_examples_per_class",
         config.training.attention_examples_per_class >= 0),
        ("training.calibration_batches", config.training.calibration_batches >= 0),
        ("evaluation.validation_fraction", 0.0 < config.evaluation.validation_fraction < 1.0),
    ]
    for field, ok in checks:
        if not ok:
            raise ValueError(f"{source}: {field} is out of range.")


def _check_choices(config, source):
    """The fields that name one of a few choices."""
    from smcn_tf.model.smcn import POOLINGS, RECURRENT_CORES, VARIANTS  # late: keeps config import light
    from smcn_tf.model.normalization import AUDIO_NORMALIZATIONS

    if config.model.variant not in VARIANTS:
        raise ValueError(
            f"{source}: model.variant {config.model.variant!r} is not one of "
            f"{sorted(VARIANTS)}."
        )
    if config.training.class_weights not in ("none", "balanced"):
        raise ValueError(
            f"{source}: training.class_weights must be 'none' or 'balanced', got "
            f"{config.training.class_weights!r}."
        )
    choices = [
        ("model.recurrent_core", config.model.recurrent_core, RECURRENT_CORES),
        ("model.audio_normalization", config.model.audio_normalization, AUDIO_NORMALIZATIONS),
        ("model.pooling", config.model.pooling, POOLINGS),
        ("training.optimizer", config.training.optimizer, OPTIMIZERS),
        ("training.schedule", config.training.schedule, SCHEDULES),
        ("training.mixed_precision", config.training.mixed_precision, MIXED_PRECISION),
        ("training.strategy", config.training.strategy, STRATEGIES),
        ("training.select", config.training.select, SELECTIONS),
        ("evaluation.validation", config.evaluation.validation, VALIDATIONS),
    ]
    for field, value, allowed in choices:
        if value not in allowed:
            raise ValueError(
                f"{source}: {field} must be one of {list(allowed)}, got {value!r}."
            )


def _check_evaluation(config, source):
    """The evaluation protocol, and what needs a validation set."""
    if config.evaluation.validation == "none":
        if config.training.select == "best":
            raise ValueError(
                f"{source}: training.select: best needs a validation set; set "
                "evaluation.validation to 'group' or 'fraction'."
            )
        if config.training.early_stopping_patience:
            raise ValueError(
                f"{source}: training.early_stopping_patience needs a validation set; "
                "set evaluation.validation to 'group' or 'fraction'."
            )
    if config.evaluation.protocol not in ("loso", "split"):
        raise ValueError(
            f"{source}: evaluation.protocol must be 'loso' or 'split', got "
            f"{config.evaluation.protocol!r}."
        )
    if config.evaluation.protocol == "loso" and not config.evaluation.folds:
        raise ValueError(f"{source}: evaluation.folds is empty.")
    if config.evaluation.protocol == "split" and not (
        config.evaluation.train_groups and config.evaluation.test_groups
    ):
        raise ValueError(
            f"{source}: the split protocol needs evaluation.train_groups and "
            "evaluation.test_groups."
        )


def _apply_override(values, override):
    """Apply one `section.key=value` override (the value is parsed as YAML)."""
    if "=" not in override:
        raise ValueError(f"Override {override!r} must look like section.key=value.")
    path, raw = override.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2:
        raise ValueError(f"Override {override!r} must look like section.key=value.")
    section, key = parts
    values.setdefault(section, {})
    if values[section] is None:
        values[section] = {}
    values[section][key] = yaml.safe_load(raw)


def load_config(path=None, overrides=()):
    """Read a YAML preset, apply `section.key=value` overrides, and validate.

    Args:
        path: a YAML file, or None for the built-in defaults (the paper's
            IEMOCAP settings).
        overrides: strings such as `"training.steps=100"`.

    Returns:
        A `Config`.
    """
    values = {}
    source = "<defaults>"
    if path is not None:
        source = os.fspath(path)
        if not os.path.isfile(source):
            raise ValueError(f"Config file {source} does not exist.")
        with open(source, encoding="utf-8") as handle:
            try:
                values = yaml.safe_load(handle) or {}
            except yaml.YAMLError as error:
                raise ValueError(f"{source}: not valid YAML: {error}") from error
    for override in overrides or ():
        _apply_override(values, override)
    return config_from_dict(values, source)
