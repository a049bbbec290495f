"""Sharded TFRecords of variable-length features, and their JSON manifest.

A prepared corpus is a directory of shards `shard-00000-of-00012.tfrecord`
holding one `tf.train.Example` per utterance, plus `manifest.json` describing
them. Each example stores:

- `utterance_id`, `speaker`, `group`: bytes.
- `label`: int64, the index of the class in the manifest's `class_names`.
- `audio_features`: float16 bytes, row-major `[audio_frames, audio_dim]`.
- `audio_frames`, `audio_dim`: int64.
- `text_features`: float16 bytes, row-major `[text_tokens, text_dim]`.
- `text_tokens`, `text_dim`: int64.
- `augmentation`: bytes, only in the records of an augmented directory
  (`AUGMENTED_DIRNAME`): how the copy was made, e.g. `"speed=0.9"`. Parsed
  with default `""`, so records without it read the same as before.

Features are stored as raw little-endian float16 (half the size of float32,
and far more precision than log-Mel energies or BERT activations need) and
come back as float32 from `parse_example`.

Every file is written atomically (a temporary name, then `os.replace`), so a
crash never leaves a half-written shard or manifest under its final name.
"""

import copy
import dataclasses
import json
import os
import typing

import numpy as np

from smcn_tf.features.settings import FeatureSettings
from smcn_tf.io_utils import read_json, remove_quietly, write_json_atomic

MANIFEST_FILENAME = "manifest.json"
FORMAT_VERSION = 1
# The records directory's subdirectory of augmented copies (speed perturbation),
# a complete records directory of its own; the main manifest's `augmentation`
# says that it was written.
AUGMENTED_DIRNAME = "augmented"
# An augmented copy's id is `<base id>` + this + the factor: `Ses01F_impro01_F000@speed0.9`.
SPEED_ID_SEPARATOR = "@speed"

# Manifest key -> the JSON types it may hold.
_MANIFEST_TYPES = {
    "format_version": (int,),
    "corpus": (str,),
    "class_names": (list,),
    "audio_dim": (int,),
    "text_dim": (int,),
    "text_encoder": (str, type(None)),
    "pooling": (int, type(None)),
    "max_frames": (int, type(None)),
    "max_tokens": (int, type(None)),
    "shards": (list,),
    "num_examples": (int,),
    "groups": (list,),
    "counts": (dict,),
}
REQUIRED_MANIFEST_KEYS = tuple(_MANIFEST_TYPES)
# Optional manifest key -> the JSON types it may hold (absent or null: unknown).
_OPTIONAL_MANIFEST_TYPES = {
    "sample_rate": (int,),
    "min_seconds": (int, float),
}


def _tf():
    # Lazy on purpose (start-up time): TensorFlow is imported on first use so
    # that importing this module (e.g. for `shard_name`, `Manifest` or
    # `read_manifest`, which the CLI and the reports use) stays cheap.
    import tensorflow as tf

    return tf


def speed_copy_id(utterance_id, factor):
    """The id of `utterance_id`'s copy perturbed to `factor` times its speed.

    >>> speed_copy_id("Ses01F_impro01_F000", 0.9)
    'Ses01F_impro01_F000@speed0.9'
    """
    return f"{utterance_id}{SPEED_ID_SEPARATOR}{float(factor):g}"


def base_utterance_id(utterance_id):
    """The id an augmented copy was made from (the part before the last `@`).

    For ids of an augmented directory only: a corpus' own id may hold an `@`.

    >>> base_utterance_id("Ses01F_impro01_F000@speed0.9")
    'Ses01F_impro01_F000'
    """
    return utterance_id.rsplit("@", 1)[0]


def _feature_description():
    tf = _tf()
    string = tf.io.FixedLenFeature([], tf.string)
    integer = tf.io.FixedLenFeature([], tf.int64)
    return {
        "augmentation": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "utterance_id": string,
        "speaker": string,
        "group": string,
        "label": integer,
        "audio_features": string,
        "audio_frames": integer,
        "audio_dim": integer,
        "text_features": string,
        "text_tokens": integer,
        "text_dim": integer,
    }


def _matrix_to_float16(name, utterance_id, values):
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(
            f"Utterance {utterance_id!r}: {name} must be a non-empty 2-D array "
            f"[steps, dim], got shape {values.shape}."
        )
    if not np.issubdtype(values.dtype, np.floating) and not np.issubdtype(
        values.dtype, np.integer
    ):
        raise ValueError(
            f"Utterance {utterance_id!r}: {name} must be numeric, got dtype {values.dtype}."
        )
    with np.errstate(over="ignore"):  # Overflow is reported below, with the id.
        half = np.ascontiguousarray(values, dtype="<f2")
    # float16 overflows past 65504; catch it here rather than train on inf.
    if not np.all(np.isfinite(half)):
        raise ValueError(
            f"Utterance {utterance_id!r}: {name} has values that are not finite "
            f"in float16 (NaN, inf, or |x| > 65504)."
        )
    return half


def serialize_example(
    utterance_id, speaker, group, label, audio_features, text_features, augmentation=None
):
    """Serializes one utterance's features into a `tf.train.Example`.

    Args:
        utterance_id: the utterance id (`str`).
        speaker: the speaker id (`str`).
        group: the fold key, e.g. `"Session1"` (`str`).
        label: the class index (`int`, >= 0).
        audio_features: array `[frames, audio_dim]`, stored as float16.
        text_features: array `[tokens, text_dim]`, stored as float16.
        augmentation: for an augmented copy, how it was made (`str`, e.g.
            `"speed=0.9"`); None or `""`: an original, stored without the
            feature (the bytes of a record without it are unchanged).

    Returns:
        The serialized example (`bytes`), deterministic for equal inputs.

    Example:

    >>> data = serialize_example("Ses01F_impro01_F000", "Ses01F", "Session1", 2,
    ...                          np.zeros((40, 78)), np.zeros((9, 384)))
    >>> parse_example(data)["audio_features"].shape
    TensorShape([40, 78])
    """
    tf = _tf()
    for name, value in (("utterance_id", utterance_id), ("speaker", speaker), ("group", group),
                        ("augmentation", augmentation or "")):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}: {value!r}.")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise ValueError(
            f"Utterance {utterance_id!r}: label must be a class index >= 0, got {label!r}."
        )
    audio = _matrix_to_float16("audio_features", utterance_id, audio_features)
    text = _matrix_to_float16("text_features", utterance_id, text_features)

    def bytes_feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {
        "utterance_id": bytes_feature(utterance_id.encode("utf-8")),
        "speaker": bytes_feature(speaker.encode("utf-8")),
        "group": bytes_feature(group.encode("utf-8")),
        "label": int_feature(label),
        "audio_features": bytes_feature(audio.tobytes()),
        "audio_frames": int_feature(audio.shape[0]),
        "audio_dim": int_feature(audio.shape[1]),
        "text_features": bytes_feature(text.tobytes()),
        "text_tokens": int_feature(text.shape[0]),
        "text_dim": int_feature(text.shape[1]),
    }
    if augmentation:
        # Augmented copies only: an original's bytes stay what they always were.
        feature["augmentation"] = bytes_feature(augmentation.encode("utf-8"))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Deterministic map ordering: re-preparing a corpus gives identical bytes.
    return example.SerializeToString(deterministic=True)


def parse_example(serialized):
    """Parses one serialized example back into tensors.

    Usable inside `tf.data.Dataset.map`.

    Args:
        serialized: a scalar `tf.string` tensor (or `bytes`) from
            `serialize_example`.

    Returns:
        A dict of tensors: `audio_features` float32 `[frames, audio_dim]`,
        `text_features` float32 `[tokens, text_dim]`, `audio_length` int32,
        `text_length` int32, `label` int32, and `group`, `utterance_id`,
        `speaker`, `augmentation` (`""` for an original) as scalar `tf.string`.

    Example:

    >>> import tensorflow as tf
    >>> data = serialize_example("Ses01F_impro01_F000", "Ses01F", "Session1", 2,
    ...                          np.zeros((40, 78)), np.zeros((9, 384)))
    >>> dataset = tf.data.Dataset.from_tensors(data).map(parse_example)
    >>> item = next(iter(dataset))
    >>> int(item["audio_length"]), int(item["text_length"]), int(item["label"])
    (40, 9, 2)
    """
    tf = _tf()
    features = tf.io.parse_single_example(serialized, _feature_description())

    def matrix(name, rows, columns):
        values = tf.io.decode_raw(features[name], tf.float16, little_endian=True)
        shape = tf.stack([features[rows], features[columns]])
        return tf.cast(tf.reshape(values, shape), tf.float32)

    return {
        "audio_features": matrix("audio_features", "audio_frames", "audio_dim"),
        "text_features": matrix("text_features", "text_tokens", "text_dim"),
        "audio_length": tf.cast(features["audio_frames"], tf.int32),
        "text_length": tf.cast(features["text_tokens"], tf.int32),
        "label": tf.cast(features["label"], tf.int32),
        "group": features["group"],
        "utterance_id": features["utterance_id"],
        "speaker": features["speaker"],
        "augmentation": features["augmentation"],
    }


def _temporary_path(path):
    return f"{path}.tmp-{os.getpid()}"


def write_shard(path, serialized_examples):
    """Writes serialized examples to a TFRecord file, atomically.

    The records go to `path + ".tmp-<pid>"`, which replaces `path` only once
    complete; on any error (or interruption) the temporary file is removed, so
    `path` is either absent, the previous file, or the complete new shard.

    Args:
        path: the shard's final path.
        serialized_examples: an iterable of `bytes` from `serialize_example`.

    Returns:
        The number of examples written.

    Example:

    >>> data = serialize_example("Ses01F_impro01_F000", "Ses01F", "Session1", 2,
    ...                          np.zeros((40, 78)), np.zeros((9, 384)))
    >>> write_shard("shard-00000-of-00001.tfrecord", [data])
    1
    """
    tf = _tf()
    path = os.fspath(path)
    temporary = _temporary_path(path)
    count = 0
    try:
        with tf.io.TFRecordWriter(temporary) as writer:
            for serialized in serialized_examples:
                writer.write(serialized)
                count += 1
        os.replace(temporary, path)
    except BaseException:
        # BaseException: a Ctrl-C mid-shard must not leave the temporary file.
        remove_quietly(temporary)
        raise
    return count


def count_records(path):
    """Counts the records of a TFRecord file; raises if it is corrupt.

    Args:
        path: a TFRecord file.

    Returns:
        The number of records.
    """
    tf = _tf()
    return sum(1 for _ in tf.data.TFRecordDataset(os.fspath(path)))


def shard_name(index, num_shards):
    """Returns the file name of shard `index` out of `num_shards`.

    Args:
        index: the shard index, `0 <= index < num_shards`.
        num_shards: the total number of shards.

    Returns:
        A name like `"shard-00003-of-00012.tfrecord"`.

    Example:

    >>> shard_name(3, 12)
    'shard-00003-of-00012.tfrecord'
    """
    for name, value in (("index", index), ("num_shards", num_shards)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}.")
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(
            f"Need 0 <= index < num_shards, got index={index}, num_shards={num_shards}."
        )
    return f"shard-{index:05d}-of-{num_shards:05d}.tfrecord"


def _manifest_error(path, message):
    return ValueError(f"{path}: {message}")


def validate_manifest(manifest, path=MANIFEST_FILENAME, records_dir=None):
    """Checks a manifest's keys and types; optionally that its shards exist.

    Args:
        manifest: the manifest, a JSON dict or a `Manifest`.
        path: the manifest's path, named in error messages.
        records_dir: if given, every listed shard must exist in it.

    Raises:
        ValueError: naming the file and the offending field.
    """
    if isinstance(manifest, Manifest):
        manifest = manifest.to_json()
    _check_manifest_fields(manifest, path)
    _check_manifest_shards(manifest, path, records_dir)
    _check_manifest_counts(manifest, path)


def _check_manifest_fields(manifest, path):
    """The JSON object's keys, their types, the format version, the name lists."""
    if not isinstance(manifest, dict):
        raise _manifest_error(path, f"expected a JSON object, got {type(manifest).__name__}.")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise _manifest_error(path, f"missing required field(s) {missing}.")
    for key, types in _MANIFEST_TYPES.items():
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _manifest_error(path, f"field {key!r} must be {expected}, got {value!r}.")
    for key, types in _OPTIONAL_MANIFEST_TYPES.items():
        value = manifest.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)
                                  or value <= 0 and key == "sample_rate"):
            expected = " or ".join(t.__name__ for t in types)
            raise _manifest_error(
                path, f"field {key!r} must be {expected} (or absent), got {value!r}."
            )
    if manifest["format_version"] != FORMAT_VERSION:
        raise _manifest_error(
            path,
            f"field 'format_version' is {manifest['format_version']}, this version of "
            f"smcn-tf reads format {FORMAT_VERSION}; prepare the corpus again.",
        )
    if not all(isinstance(name, str) for name in manifest["class_names"]):
        raise _manifest_error(path, "field 'class_names' must be a list of strings.")
    if not all(isinstance(name, str) for name in manifest["groups"]):
        raise _manifest_error(path, "field 'groups' must be a list of strings.")


def _check_manifest_shards(manifest, path, records_dir):
    """Each shard entry (and its file, given `records_dir`); their counts' sum."""
    total = 0
    for position, shard in enumerate(manifest["shards"]):
        field = f"shards[{position}]"
        if not isinstance(shard, dict) or not isinstance(shard.get("file"), str):
            raise _manifest_error(path, f"field {field} must be an object with a 'file' string.")
        count = shard.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _manifest_error(
                path, f"field {field}.count must be an integer >= 0, got {count!r}."
            )
        if os.path.basename(shard["file"]) != shard["file"]:
            raise _manifest_error(
                path, f"field {field}.file must be a bare file name, got {shard['file']!r}."
            )
        if records_dir is not None:
            shard_path = os.path.join(records_dir, shard["file"])
            if not os.path.isfile(shard_path):
                raise _manifest_error(
                    path, f"field {field} lists {shard['file']}, but {shard_path} does not exist."
                )
        total += count
    if total != manifest["num_examples"]:
        raise _manifest_error(
            path,
            f"field 'num_examples' is {manifest['num_examples']}, but the shard counts "
            f"add up to {total}.",
        )


def _check_manifest_counts(manifest, path):
    """The per-group class counts: counts >= 0 that add up to `num_examples`."""
    for group, by_class in manifest["counts"].items():
        if not isinstance(by_class, dict) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in by_class.values()
        ):
            raise _manifest_error(
                path, f"field counts[{group!r}] must map class names to counts >= 0."
            )
    counted = sum(sum(by_class.values()) for by_class in manifest["counts"].values())
    if counted != manifest["num_examples"]:
        raise _manifest_error(
            path,
            f"field 'counts' adds up to {counted} examples, but 'num_examples' is "
            f"{manifest['num_examples']}.",
        )


def _json_value(value):
    """A field's JSON form: tuples become lists, containers are copied."""
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return copy.deepcopy(value)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The manifest of a records directory (`manifest.json`), checked and typed.

    Built by `smcn prepare`, read once by `read_manifest` and passed down
    (pipeline, training, evaluation). Constructing one validates it: a wrong
    field raises a `ValueError` naming `source` and the field.

    Attributes:
        corpus: the corpus the records were prepared from.
        class_names: the class names, in label-id order.
        audio_dim, text_dim: the widths of an audio frame and a token vector.
        text_encoder: the text encoder's checkpoint (None: unknown).
        pooling, max_frames, max_tokens: the feature settings (None: unknown).
        shards: one dict per shard: `file` (a bare name), `count`, and what
            else prepare recorded (`groups`).
        num_examples: the examples over all shards.
        groups: the fold keys, sorted.
        counts: group -> class name -> examples.
        sample_rate: the rate the log-Mel frames were computed at (None: an
            older manifest without it; `features` then assumes 16000).
        min_seconds: the shortest clip kept (None: not recorded).
        format_version: the records format, `FORMAT_VERSION`.
        extra: keys this version does not know, kept when written back.
        source: where the manifest came from, named in errors (not compared).

    Example:

    >>> manifest = Manifest(
    ...     corpus="demo", class_names=["angry", "sad"], audio_dim=78, text_dim=384,
    ...     text_encoder=None, pooling=5, max_frames=500, max_tokens=150,
    ...     shards=[{"file": "shard-00000-of-00001.tfrecord", "count": 3}],
    ...     num_examples=3, groups=["Session1"],
    ...     counts={"Session1": {"angry": 1, "sad": 2}}, sample_rate=16000)
    >>> manifest.class_names, manifest.examples_in(["Session1"])
    (('angry', 'sad'), 3)
    >>> manifest.features.num_frames(16000)
    20
    >>> Manifest.from_json(manifest.to_json()) == manifest
    True
    """

    corpus: str
    class_names: typing.Tuple[str, ...]
    audio_dim: int
    text_dim: int
    text_encoder: typing.Optional[str]
    pooling: typing.Optional[int]
    max_frames: typing.Optional[int]
    max_tokens: typing.Optional[int]
    shards: typing.Tuple[dict, ...]
    num_examples: int
    groups: typing.Tuple[str, ...]
    counts: typing.Dict[str, typing.Dict[str, int]]
    sample_rate: typing.Optional[int] = None
    min_seconds: typing.Optional[float] = None
    format_version: int = FORMAT_VERSION
    extra: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    source: str = dataclasses.field(default=MANIFEST_FILENAME, compare=False, repr=False)

    def __post_init__(self):
        validate_manifest(self.to_json(), path=self.source)
        for name in ("class_names", "groups"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "shards", tuple(copy.deepcopy(list(self.shards))))
        object.__setattr__(self, "counts", copy.deepcopy(self.counts))
        object.__setattr__(self, "extra", copy.deepcopy(dict(self.extra)))

    def _json_fields(self):
        """The JSON keys -> the field values (not copied)."""
        values = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ("extra", "source")
        }
        for key in _OPTIONAL_MANIFEST_TYPES:
            if values[key] is None:
                del values[key]  # Written only when known, as before.
        clashes = sorted(set(self.extra) & set(values) | set(self.extra) & {"extra", "source"})
        if clashes:
            raise _manifest_error(self.source, f"extra keys {clashes} are manifest fields.")
        values.update(self.extra)
        return values

    def to_json(self):
        """The JSON dict of `manifest.json` (a fresh copy)."""
        return {key: _json_value(value) for key, value in self._json_fields().items()}

    @classmethod
    def from_json(cls, values, source=MANIFEST_FILENAME, records_dir=None):
        """Reads and checks a manifest from its JSON dict.

        Args:
            values: the dict of `manifest.json`.
            source: its path, named in error messages.
            records_dir: if given, every listed shard must exist in it.

        Raises:
            ValueError: a field is missing or wrong; the message names
                `source` and the field.
        """
        validate_manifest(values, path=source, records_dir=records_dir)
        names = {field.name for field in dataclasses.fields(cls)} - {"extra", "source"}
        known = {key: value for key, value in values.items() if key in names}
        extra = {key: value for key, value in values.items() if key not in names}
        return cls(**known, extra=extra, source=source)

    @property
    def features(self):
        """The `FeatureSettings` the records were computed with."""
        return FeatureSettings.from_json(self._json_fields(), source=self.source)

    def examples_in(self, groups):
        """The number of examples of `groups`, from the counts."""
        return sum(sum(self.counts.get(group, {}).values()) for group in groups)

    def class_counts(self, groups):
        """Examples per class (in `class_names` order) over `groups`."""
        return [
            sum(self.counts.get(group, {}).get(name, 0) for group in groups)
            for name in self.class_names
        ]


def write_manifest(out_dir, manifest):
    """Validates `manifest` and writes it to `out_dir/manifest.json`, atomically.

    Args:
        out_dir: the records directory.
        manifest: a `Manifest`, or a dict with the keys in
            `REQUIRED_MANIFEST_KEYS`.

    Returns:
        The manifest's path.

    Example, with the `manifest` of a prepared corpus (not run as a test):

    >>> write_manifest("records/iemocap", manifest)  # doctest: +SKIP
    'records/iemocap/manifest.json'
    """
    path = os.path.join(os.fspath(out_dir), MANIFEST_FILENAME)
    values = manifest.to_json() if isinstance(manifest, Manifest) else manifest
    validate_manifest(values, path=path)
    write_json_atomic(path, values)
    return path


def read_token_strings(records_dir, utterance_ids, manifest=None):
    """The token strings `smcn prepare` kept for these utterances, or None.

    They are in the shard sidecars (`"tokens"`, aligned with
    `"utterance_ids"`); records prepared without them give None.

    Args:
        records_dir: a records directory.
        utterance_ids: the utterances wanted.
        manifest: `records_dir`'s `Manifest`, if the caller has read it
            (None: read it now).

    Returns:
        A list of token-string lists in the order of `utterance_ids` (None for
        an utterance without them), or None when none has them.
    """
    wanted = set(utterance_ids)
    found = {}
    if manifest is None:
        manifest = read_manifest(records_dir)
    for shard in manifest.shards:
        path = os.path.join(os.fspath(records_dir), shard["file"] + ".json")
        if not wanted - set(found) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as stream:
            sidecar = json.load(stream)
        tokens = sidecar.get("tokens")
        if not tokens:
            continue
        for utterance_id, strings in zip(sidecar.get("utterance_ids", ()), tokens):
            if utterance_id in wanted:
                found[utterance_id] = list(strings)
    if not found:
        return None
    return [found.get(utterance_id) for utterance_id in utterance_ids]


def read_manifest(out_dir):
    """Reads and validates `out_dir/manifest.json`.

    Checks the required fields, their types, the format version, that counts
    add up, and that every listed shard exists.

    Args:
        out_dir: the records directory.

    Returns:
        The `Manifest`.

    Raises:
        FileNotFoundError: there is no manifest (the corpus was not prepared,
            or its preparation did not finish).
        ValueError: the manifest is malformed; the message names the file and
            the field.

    Example, on the records of `smcn prepare iemocap` (not run as a test):

    >>> read_manifest("records/iemocap").class_names  # doctest: +SKIP
    ('angry', 'happy', 'neutral', 'sad')
    """
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, MANIFEST_FILENAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist: {out_dir} is not a prepared records directory "
            f"(run the prepare step, and let it finish)."
        )
    return Manifest.from_json(read_json(path), source=path, records_dir=out_dir)
