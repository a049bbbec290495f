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

`export_model` runs named steps, each a function of this module or of its
neighbours:

    choose_version       `layout.next_version`: one more than the newest
    build_serving_copy   the float32 `SMCNServingModule` with the run's front end
    save_signatures      `tf.saved_model.save` with both signatures
    copy_tokenizer       the text encoder's tokenizer files into assets.extra/
    write_warmup         TF Serving's warm-up requests
    describe             the `ExportDescription` written as smcn.json
    publish              `layout.write_version`: the temporary directory renamed

The signatures and what runs inside them are documented in
`serving_module.py`; `smcn.json`'s fields in `description.py`; the version
directories and their temporary directories in `layout.py`.
"""

import dataclasses
import logging
import os
import re
import shutil

import tensorflow as tf

from smcn_tf.contract import layout
from smcn_tf.contract.description import (
    DESCRIPTION_NAME,
    FORMAT_VERSION,
    TOKENIZER_DIRECTORY,
    ExportDescription,
)
from smcn_tf.contract.input_checks import DEFAULT_MIN_AUDIO_SECONDS
from smcn_tf.contract.requests import predict_request
from smcn_tf.contract.signatures import signature_contract
from smcn_tf.export.serving_module import SMCNServingModule, input_rules, serving_copy
from smcn_tf.features.audio import LogMelFeatures
from smcn_tf.features.settings import FeatureSettings
from smcn_tf.features.text import TextEncoder
from smcn_tf.io_utils import jsonable, read_json
from smcn_tf.model.smcn import SMCNModel, load_model

logger = logging.getLogger("smcn_tf.export.exporter")

# Re-exported: the names the CLI, scripts and tests import from here.
__all__ = [
    "SMCNServingModule",
    "existing_versions",
    "export_from_run",
    "export_model",
    "input_rules",
    "load_tokenizer",
    "serving_copy",
]

SMCN_JSON = DESCRIPTION_NAME
WARMUP_FILE = "tf_serving_warmup_requests"
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


def existing_versions(model_dir):
    """Every integer version name under `<export_base>/<model_name>` (loadable or not)."""
    return layout.list_versions(model_dir, loadable_only=False)


def _check_feature_settings(model, feature_settings, source):
    """The run's feature settings, checked against the model, as a `FeatureSettings`.

    `FeatureSettings.from_json` checks each field; what is checked here is
    what only the model knows: its feature sizes, class names and modalities.
    """
    settings = FeatureSettings.from_json(feature_settings, source)
    for key, expected in (("audio_dim", model.audio_dim), ("text_dim", model.text_dim)):
        value = getattr(settings, key)
        if value is not None and value != expected:
            raise ValueError(
                f"{source}: `{key}` is {value} but the model expects {expected}; "
                "the features and the model come from different runs."
            )
    names = settings.class_names
    if names is not None and model.class_names is not None and list(names) != list(
        model.class_names
    ):
        raise ValueError(
            f"{source}: `class_names` {list(names)} differ from the model's "
            f"{list(model.class_names)}."
        )
    if "text" in model.modalities and settings.max_tokens is None:
        raise ValueError(f"{source}: `max_tokens` must be an integer >= 2, got None.")
    _check_text_encoder(model, settings.text_encoder, source)
    return dataclasses.replace(
        settings,
        audio_dim=model.audio_dim,
        text_dim=model.text_dim,
        class_names=tuple(model.class_names) if model.class_names else None,
    )


def _check_text_encoder(model, text_encoder, source):
    """Refuses a text model whose encoder checkpoint is not on this machine."""
    if "text" in model.modalities and not (
        isinstance(text_encoder, str) and os.path.isfile(os.path.join(text_encoder, "config.json"))
    ):
        raise ValueError(
            f"{source}: `text_encoder` must be the Hugging Face checkpoint directory the "
            f"text features were computed with (config.json, model.safetensors, vocab.txt); "
            f"{text_encoder!r} is not one on this machine. The served graph runs that "
            "encoder, so point `text_encoder` at a local copy of the same checkpoint."
        )


def _check_model_name(model_name):
    if not re.match(r"^[A-Za-z0-9_.-]+$", model_name):
        raise ValueError(
            f"model_name {model_name!r} must use letters, digits, '.', '_' or '-'."
        )


def build_serving_copy(model, settings, min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS):
    """The float32 serving module of `model` with the raw front end of `settings`.

    Returns:
        `(module, tokenizer)`: the `SMCNServingModule` and the text encoder's
        tokenizer (`None` without text).
    """
    # A frame is 3 x the bands (log-Mel, delta, delta-delta): the model's
    # audio_dim says how many bands it was trained on.
    if model.audio_dim % 3:
        raise ValueError(
            f"The model expects audio_dim={model.audio_dim}, which is not 3 x a number "
            "of log-Mel bands: it was not trained on the log-Mel front end."
        )
    audio_layer = LogMelFeatures(
        sample_rate=settings.sample_rate,
        pooling=settings.pooling,
        max_frames=settings.max_frames,
        num_mel_bins=model.audio_dim // 3,
    )
    if 3 * audio_layer.num_mel_bins != model.audio_dim:
        raise ValueError(
            f"The log-Mel front end gives {3 * audio_layer.num_mel_bins} values per "
            f"frame but the model expects audio_dim={model.audio_dim}."
        )
    backbone, separator, tokenizer, vocab_size = None, None, None, None
    if "text" in model.modalities:
        encoder = TextEncoder(settings.text_encoder, max_tokens=settings.max_tokens)
        if encoder.dim != model.text_dim:
            raise ValueError(
                f"The text encoder {encoder.checkpoint_dir} gives {encoder.dim}-d token "
                f"vectors but the model expects text_dim={model.text_dim}."
            )
        backbone, tokenizer = encoder.backbone, encoder.tokenizer
        separator = tokenizer.sep_token_id
        vocab_size = int(backbone.vocabulary_size)
    rules = input_rules(
        model, tokenizer, vocab_size=vocab_size, sample_rate=settings.sample_rate,
        min_audio_seconds=min_audio_seconds,
    )
    module = SMCNServingModule(
        model,
        audio_layer=audio_layer,
        text_backbone=backbone,
        max_tokens=settings.max_tokens,
        separator_token_id=separator,
        rules=rules,
    )
    return module, tokenizer


def copy_tokenizer(settings, extra_dir):
    """Copies the text encoder's tokenizer files into `assets.extra/tokenizer/`.

    Returns:
        The names of the copied files (`[]` without a text encoder checkpoint).
    """
    checkpoint_dir = settings.text_encoder
    if not (isinstance(checkpoint_dir, str) and os.path.isdir(checkpoint_dir)):
        return []
    destination = os.path.join(extra_dir, TOKENIZER_DIRECTORY)
    copied = []
    for name in TOKENIZER_FILES:
        source = os.path.join(checkpoint_dir, name)
        if os.path.isfile(source):
            os.makedirs(destination, exist_ok=True)
            shutil.copyfile(source, os.path.join(destination, name))
            copied.append(name)
    return copied


def write_warmup(path, model_name, module, tokenizer):
    """Writes TF Serving's warmup file: one small request per signature.

    TF Serving replays `assets.extra/tf_serving_warmup_requests` before it
    marks a version available, so the first client request does not pay for
    graph optimisation and the BERT kernels' first run. Skipped (returns
    False) without tensorflow-serving-api.
    """
    try:
        # Optional dependency: without it the export has no warm-up file.
        from tensorflow_serving.apis import prediction_log_pb2
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
            request = predict_request(
                model_name, signature, {name: value.numpy() for name, value in inputs.items()}
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return True


def export_model(
    model, export_base, model_name="smcn", version=None, feature_settings=None,
    min_audio_seconds=DEFAULT_MIN_AUDIO_SECONDS,
):
    """Writes `model` as `<export_base>/<model_name>/<version>/` for TF Serving.

    The SavedModel has the raw-input `serving_default` signature and the
    precomputed-features `features` signature (see
    `smcn_tf.contract.signatures.SIGNATURES`); `assets.extra/smcn.json` records the model config, the feature
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
    `smcn_tf.contract.layout.remove_stale_temporaries`.

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

def save_signatures(module, directory):
    """`tf.saved_model.save` of `module` with its two signatures."""
    tf.saved_model.save(
        module,
        directory,
        signatures={
            "serving_default": module.serving_default.get_concrete_function(),
            "features": module.features.get_concrete_function(),
        },
    )


def describe(model, model_name, version, settings, feature_settings, module, tokenizer,
             tokenizer_files, warmup):
    """The export's `ExportDescription` (what smcn.json says)."""
    return ExportDescription(
        features=settings,
        feature_settings_record=jsonable(feature_settings),
        format_version=FORMAT_VERSION,
        model_name=model_name,
        version=version,
        model_config=jsonable(model.get_config()),
        class_names=tuple(name.decode() for name in module.class_names.numpy()),
        tokenizer={
            "directory": TOKENIZER_DIRECTORY if tokenizer_files else None,
            "files": tokenizer_files,
            "max_tokens": settings.max_tokens,
            "separator_token_id": module.separator_token_id,
            "pad_token_id": getattr(tokenizer, "pad_token_id", None),
            "usage": "tokenizer(texts, truncation=True, max_length=max_tokens, "
            "padding=True); send input_ids and attention_mask as int32",
        },
        signatures=signature_contract(model.audio_dim, model.text_dim, model.num_classes),
        input_checks=module.rules.to_json(),
        warmup_requests=WARMUP_FILE if warmup else None,
        tensorflow_version=tf.__version__,
    )


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
    version = layout.next_version(model_dir, version)  # choose_version
    with layout.write_version(model_dir, version) as temporary:  # publish on success
        module, tokenizer = build_serving_copy(model, settings, min_audio_seconds)
        save_signatures(module, temporary)
        extra = os.path.join(temporary, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        tokenizer_files = copy_tokenizer(settings, extra)
        warmup = write_warmup(os.path.join(extra, WARMUP_FILE), model_name, module, tokenizer)
        describe(
            model, model_name, version, settings, feature_settings, module, tokenizer,
            tokenizer_files, warmup,
        ).write(temporary)
    return os.path.join(model_dir, str(version))


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
    import transformers  # only `load_tokenizer` needs it: not at the module's start-up

    return transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
