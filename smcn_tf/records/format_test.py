"""Tests for the TFRecord example format, atomic shard writes and the manifest."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.records import format as records


def _example(utterance_id="Ses01F_impro01_F000", frames=7, tokens=4, seed=0, label=2):
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(frames, 78)).astype(np.float32)
    text = rng.normal(size=(tokens, 16)).astype(np.float32)
    data = records.serialize_example(utterance_id, "Ses01F", "Session1", label, audio, text)
    return data, audio, text


def _manifest(**overrides):
    manifest = {
        "format_version": 1,
        "corpus": "demo",
        "class_names": ["angry", "happy", "neutral", "sad"],
        "audio_dim": 78,
        "text_dim": 16,
        "text_encoder": "fake",
        "pooling": 5,
        "max_frames": 500,
        "max_tokens": 150,
        "shards": [{"file": "shard-00000-of-00001.tfrecord", "count": 2}],
        "num_examples": 2,
        "groups": ["Session1"],
        "counts": {"Session1": {"angry": 0, "happy": 1, "neutral": 1, "sad": 0}},
    }
    manifest.update(overrides)
    return manifest


def test_round_trip():
    data, audio, text = _example(frames=11, tokens=5)
    parsed = records.parse_example(tf.constant(data))
    assert parsed["audio_features"].dtype == tf.float32
    np.testing.assert_allclose(parsed["audio_features"].numpy(), audio, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(parsed["text_features"].numpy(), text, rtol=1e-3, atol=1e-3)
    assert parsed["audio_length"].numpy() == 11 and parsed["audio_length"].dtype == tf.int32
    assert parsed["text_length"].numpy() == 5 and parsed["text_length"].dtype == tf.int32
    assert parsed["label"].numpy() == 2 and parsed["label"].dtype == tf.int32
    assert parsed["utterance_id"].numpy() == b"Ses01F_impro01_F000"
    assert parsed["speaker"].numpy() == b"Ses01F"
    assert parsed["group"].numpy() == b"Session1"


def test_serialization_is_deterministic():
    assert _example(seed=3)[0] == _example(seed=3)[0]


def test_parse_inside_dataset_map(tmp_path):
    path = tmp_path / records.shard_name(0, 1)
    examples = [_example(f"u{i}", frames=3 + i, seed=i)[0] for i in range(3)]
    assert records.write_shard(path, examples) == 3
    dataset = tf.data.TFRecordDataset(str(path)).map(records.parse_example)
    lengths = [int(item["audio_length"]) for item in dataset]
    assert lengths == [3, 4, 5]
    assert records.count_records(path) == 3


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros((0, 78)), "non-empty 2-D"),
        (np.zeros((78,)), "non-empty 2-D"),
        (np.full((2, 78), 1e6), "not finite"),
        (np.full((2, 78), np.nan), "not finite"),
    ],
)
def test_serialize_rejects_bad_features(audio, match):
    with pytest.raises(ValueError, match=f"'u1'.*{match}"):
        records.serialize_example("u1", "s", "g", 0, audio, np.zeros((2, 4)))


def test_serialize_rejects_bad_label():
    with pytest.raises(ValueError, match="label"):
        records.serialize_example("u1", "s", "g", -1, np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="speaker"):
        records.serialize_example("u1", None, "g", 0, np.zeros((2, 4)), np.zeros((2, 4)))


def test_write_shard_is_atomic(tmp_path):
    path = tmp_path / records.shard_name(0, 1)
    records.write_shard(path, [_example()[0]])

    def failing():
        yield _example()[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        records.write_shard(path, failing())
    # The complete earlier shard survives; no temporary file is left.
    assert os.listdir(tmp_path) == [path.name]
    assert records.count_records(path) == 1

    fresh = tmp_path / records.shard_name(0, 2)
    with pytest.raises(KeyboardInterrupt):
        records.write_shard(fresh, failing())
    assert not fresh.exists()
    assert os.listdir(tmp_path) == [path.name]


def test_shard_name():
    assert records.shard_name(3, 12) == "shard-00003-of-00012.tfrecord"
    with pytest.raises(ValueError, match="index"):
        records.shard_name(12, 12)
    with pytest.raises(ValueError, match="index"):
        records.shard_name(-1, 12)


def _write_valid(tmp_path, **overrides):
    records.write_shard(
        tmp_path / "shard-00000-of-00001.tfrecord", [_example()[0], _example("u2")[0]]
    )
    return records.write_manifest(tmp_path, _manifest(**overrides))


def test_manifest_round_trip(tmp_path):
    path = _write_valid(tmp_path)
    assert os.path.basename(path) == "manifest.json"
    assert records.read_manifest(tmp_path).to_json() == _manifest()
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "shard-00000-of-00001.tfrecord"]


def test_read_manifest_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        records.read_manifest(tmp_path)


def _write_raw_manifest(tmp_path, manifest):
    with open(tmp_path / "manifest.json", "w") as file:
        json.dump(manifest, file)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.pop("audio_dim"), r"missing required field\(s\) \['audio_dim'\]"),
        (lambda m: m.update(format_version=2), "format_version"),
        (lambda m: m.update(text_dim="16"), "'text_dim' must be int"),
        (lambda m: m.update(num_examples=3), "num_examples"),
        (lambda m: m["shards"][0].update(count=-1), r"shards\[0\]\.count"),
        (lambda m: m["shards"][0].pop("file"), r"shards\[0\]"),
        (lambda m: m["shards"][0].update(file="../x.tfrecord"), "bare file name"),
        (
            lambda m: m["counts"]["Session1"].update(sad=5),
            "'counts' adds up to 7",
        ),
    ],
)
def test_read_manifest_validation(tmp_path, change, match):
    _write_valid(tmp_path)
    manifest = _manifest()
    change(manifest)
    _write_raw_manifest(tmp_path, manifest)
    with pytest.raises(ValueError, match="manifest.json") as error:
        records.read_manifest(tmp_path)
    assert error.match(match)


def test_read_manifest_missing_shard(tmp_path):
    _write_valid(tmp_path)
    os.remove(tmp_path / "shard-00000-of-00001.tfrecord")
    with pytest.raises(ValueError, match=r"shards\[0\].*does not exist"):
        records.read_manifest(tmp_path)


def test_read_manifest_bad_json(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        records.read_manifest(tmp_path)


def test_write_manifest_validates(tmp_path):
    with pytest.raises(ValueError, match="missing required"):
        records.write_manifest(tmp_path, {"format_version": 1})
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_is_typed_and_round_trips(tmp_path):
    _write_valid(tmp_path, sample_rate=8000, min_seconds=0.1, future_key={"a": 1})
    manifest = records.read_manifest(tmp_path)
    assert isinstance(manifest, records.Manifest)
    assert manifest.class_names == ("angry", "happy", "neutral", "sad")
    assert manifest.groups == ("Session1",) and manifest.num_examples == 2
    assert manifest.sample_rate == 8000 and manifest.extra == {"future_key": {"a": 1}}
    assert manifest.examples_in(["Session1", "Session9"]) == 2
    assert manifest.class_counts(["Session1"]) == [0, 1, 1, 0]
    # Unknown keys survive a rewrite; the JSON form is what was read.
    assert manifest.to_json() == _manifest(sample_rate=8000, min_seconds=0.1,
                                           future_key={"a": 1})
    records.write_manifest(tmp_path, manifest)
    assert records.read_manifest(tmp_path) == manifest
    features = manifest.features
    assert (features.sample_rate, features.pooling, features.max_tokens) == (8000, 5, 150)
    assert features.class_names == manifest.class_names and features.corpus == "demo"
    # No dict-style access: the fields are attributes.
    with pytest.raises(TypeError):
        manifest["class_names"]
    assert not hasattr(manifest, "get")


def test_manifest_checks_on_construction():
    values = _manifest()
    values.pop("format_version")
    manifest = records.Manifest(**values)
    assert manifest.format_version == records.FORMAT_VERSION
    assert manifest.sample_rate is None and "sample_rate" not in manifest.to_json()
    assert manifest.features.sample_rate == 16000  # older manifests: the default
    with pytest.raises(ValueError, match=r"prepared/manifest.json: .*'num_examples'"):
        records.Manifest(**dict(values, num_examples=5), source="prepared/manifest.json")
    with pytest.raises(ValueError, match="'sample_rate' must be int"):
        records.Manifest.from_json(_manifest(sample_rate="16k"))
    with pytest.raises(ValueError, match=r"x.json: .*`pooling`"):
        records.Manifest.from_json(_manifest(pooling=None), source="x.json").features


def test_read_token_strings_from_the_sidecars(tmp_path):
    sidecar = {"utterance_ids": ["a", "b"], "tokens": [["[CLS]", "hi", "[SEP]"], ["[CLS]"]]}
    with open(tmp_path / "shard-00000-of-00001.tfrecord.json", "w") as stream:
        json.dump(sidecar, stream)
    manifest = records.Manifest.from_json(_manifest())
    # The manifest passed down is used; none is read (there is no manifest.json).
    assert records.read_token_strings(tmp_path, ["b", "c", "a"], manifest=manifest) == [
        ["[CLS]"], None, ["[CLS]", "hi", "[SEP]"]
    ]
    assert records.read_token_strings(tmp_path, ["c"], manifest=manifest) is None
    with pytest.raises(FileNotFoundError):
        records.read_token_strings(tmp_path, ["a"])
    (tmp_path / "shard-00000-of-00001.tfrecord").write_bytes(b"")
    records.write_manifest(tmp_path, manifest)
    assert records.read_token_strings(tmp_path, ["a"]) == [["[CLS]", "hi", "[SEP]"]]
