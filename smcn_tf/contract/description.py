"""`ExportDescription`: `assets.extra/smcn.json`, typed, written and read in one place.

The exporter writes it (`ExportDescription.to_json`); the clients and
`smcn serve`'s model store read it (`ExportDescription.read`). Every field
but the feature settings is optional on reading, so exports of older
formats and SavedModels written by other tools (the contract stand-in of
the tests) are read too; a field of the wrong type is refused with the file
and the field named.

No TensorFlow here: the clients import it cheaply.
"""

import dataclasses
import json
import os
import typing

from smcn_tf.features.settings import FeatureSettings
from smcn_tf.contract.input_checks import InputRules

DESCRIPTION_NAME = "smcn.json"
# Relative to a version directory.
DESCRIPTION_FILE = os.path.join("assets.extra", DESCRIPTION_NAME)
TOKENIZER_DIRECTORY = "tokenizer"
# 2: the `modality` output, the in-graph input checks, `input_checks` in smcn.json.
FORMAT_VERSION = 2


def _optional(values, key, kind, source):
    value = values.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{source}: `{key}` must be a {names}, got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True)
class ExportDescription:
    """What `smcn.json` says about an export.

    Attributes:
        features: the typed feature settings (from `feature_settings`, with
            the `audio` section's rate, pooling and frame cap), or `None`
            when the file has none.
        feature_settings_record: the run's `features.json` as it was passed
            to the export, kept verbatim under `feature_settings`.
        format_version: 2 for exports with `input_checks` (`None`: unknown).
        model_name, version: where the export was written.
        model_config: the model's Keras config.
        class_names: the class names in label-id order.
        tokenizer: the `tokenizer` section (`directory`, `files`,
            `max_tokens`, `separator_token_id`, `pad_token_id`, `usage`).
        signatures: the signature contract (`signature_contract`).
        input_checks: the `InputRules.to_json()` section, or `None`.
        warmup_requests: the warm-up file's name, or `None`.
        tensorflow_version: the TensorFlow that wrote the SavedModel.

    Example:

    >>> description = ExportDescription(
    ...     features=FeatureSettings(pooling=5, max_frames=500, max_tokens=32),
    ...     class_names=("angry", "sad"))
    >>> ExportDescription.from_json(description.to_json()).max_tokens
    32
    """

    features: typing.Optional[FeatureSettings] = None
    feature_settings_record: typing.Optional[dict] = None
    format_version: typing.Optional[int] = None
    model_name: typing.Optional[str] = None
    version: typing.Optional[int] = None
    model_config: dict = dataclasses.field(default_factory=dict)
    class_names: typing.Optional[typing.Tuple[str, ...]] = None
    tokenizer: dict = dataclasses.field(default_factory=dict)
    signatures: typing.Optional[dict] = None
    input_checks: typing.Optional[dict] = None
    warmup_requests: typing.Optional[str] = None
    tensorflow_version: typing.Optional[str] = None

    # What readers ask.
    @property
    def max_tokens(self):
        """The most tokens per transcript, `[CLS]`/`[SEP]` included, or `None`."""
        value = self.tokenizer.get("max_tokens")
        if value is None and self.features is not None:
            value = self.features.max_tokens
        return value

    @property
    def tokenizer_directory(self):
        """The tokenizer's directory under `assets.extra`, or `None`."""
        return self.tokenizer.get("directory")

    @property
    def all_class_names(self):
        """`class_names`, else the model config's, as a list, else `None`."""
        names = self.class_names or self.model_config.get("class_names")
        return list(names) if names else None

    def input_rules(self):
        """The `InputRules` the export's signatures enforce (see `InputRules.from_description`)."""
        return InputRules.from_description(self.to_json())

    def to_json(self):
        """The `smcn.json` dict (the key order of the file)."""
        features = self.features
        record = self.feature_settings_record
        if record is None and features is not None:
            record = features.to_json()
        values = {
            "format_version": self.format_version,
            "model_name": self.model_name,
            "version": self.version,
            "model_config": self.model_config,
            "class_names": None if self.class_names is None else list(self.class_names),
            "feature_settings": record,
            "audio": None if features is None else {
                "sample_rate": features.sample_rate,
                "pooling": features.pooling,
                "max_frames": features.max_frames,
            },
            "tokenizer": self.tokenizer,
            "signatures": self.signatures,
            "input_checks": self.input_checks,
            "warmup_requests": self.warmup_requests,
            "tensorflow_version": self.tensorflow_version,
        }
        if self.format_version is not None:
            return values  # as `export_model` writes it: every key, null when unknown
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_json(cls, values, source="smcn.json"):
        """Reads and checks a `smcn.json` dict.

        Raises:
            ValueError: a field has the wrong type; the message names
                `source` and the field.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(values).__name__}.")
        for key, kind in (("model_config", dict), ("tokenizer", dict), ("audio", dict),
                          ("feature_settings", dict), ("signatures", dict),
                          ("input_checks", dict)):
            _optional(values, key, kind, source)
        record = values.get("feature_settings")
        audio = values.get("audio") or {}
        features = None
        if record is not None or audio:
            merged = dict(record or {})
            merged.update({key: value for key, value in audio.items() if value is not None})
            if "pooling" in merged:
                features = FeatureSettings.from_json(merged, f"{source}: feature_settings")
        class_names = values.get("class_names")
        if class_names is not None:
            if not isinstance(class_names, list) or not all(
                isinstance(name, str) for name in class_names
            ):
                raise ValueError(f"{source}: `class_names` must be a list of strings.")
            class_names = tuple(class_names)
        return cls(
            features=features,
            feature_settings_record=record,
            format_version=_optional(values, "format_version", int, source),
            model_name=_optional(values, "model_name", str, source),
            version=_optional(values, "version", int, source),
            model_config=values.get("model_config") or {},
            class_names=class_names,
            tokenizer=values.get("tokenizer") or {},
            signatures=values.get("signatures"),
            input_checks=values.get("input_checks"),
            warmup_requests=_optional(values, "warmup_requests", str, source),
            tensorflow_version=_optional(values, "tensorflow_version", str, source),
        )

    # Files.
    def write(self, version_dir):
        """Writes `<version_dir>/assets.extra/smcn.json`; returns its path."""
        path = os.path.join(version_dir, DESCRIPTION_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(self.to_json(), stream, indent=2)
            stream.write("\n")
        return path

    @classmethod
    def read(cls, version_dir):
        """The description of an export, or `None` when it has no `smcn.json`.

        Raises:
            ValueError: the file is not JSON or a field is wrong (names the file).
        """
        path = os.path.join(os.fspath(version_dir), DESCRIPTION_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as stream:
                values = json.load(stream)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the export description: {error}") from error
        return cls.from_json(values, path)
