"""Tests for corpus preparation: shards, manifest, report, skipping and resuming."""

import hashlib
import json
import os
import re

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from smcn_tf.records import prepare
from smcn_tf.records import pipeline, format as records
from smcn_tf.corpora import registry
from smcn_tf.corpora.utterance import Utterance
from smcn_tf.features import audio

CLASS_NAMES = ("angry", "happy", "neutral", "sad")
SAMPLE_RATE = 16000


class FakeTextEncoder:
    """A deterministic stand-in for `TextEncoder`: one 8-d vector per word + 2."""

    dim = 8
    max_tokens = 150
    checkpoint_dir = None

    def __init__(self):
        self.encoded = []

    def encode(self, texts, progress=False):
        self.encoded.extend(texts)
        vectors = []
        for text in texts:
            rows = len(text.split()) + 2  # [CLS] words [SEP]
            base = np.arange(rows * self.dim, dtype=np.float32).reshape(rows, self.dim)
            vectors.append(base / 100.0 + len(text) / 10.0)
        return vectors


class CountingReader:
    """`read_waveform` that records its calls and can fail on a given path."""

    def __init__(self, interrupt_on=None):
        self.paths = []
        self.interrupt_on = interrupt_on

    def __call__(self, path, sample_rate):
        if self.interrupt_on is not None and os.path.basename(path) == self.interrupt_on:
            raise KeyboardInterrupt  # Simulates Ctrl-C mid-run.
        self.paths.append(os.path.basename(path))
        return audio.read_waveform(path, sample_rate)


@pytest.fixture(scope="module")
def audio_layer():
    return audio.LogMelFeatures(pooling=5, max_frames=500)


@pytest.fixture
def utterances(tmp_path):
    """Seven utterances in two sessions; ids given out of order on purpose."""
    wav_dir = tmp_path / "wav"
    wav_dir.mkdir()
    rng = np.random.default_rng(0)
    result = []
    for index in range(7):
        session = 1 + index % 2
        utterance_id = f"Ses0{session}F_impro01_F{index:03d}"
        path = wav_dir / f"{utterance_id}.wav"
        seconds = 0.2 + 0.1 * index
        soundfile.write(
            path, 0.1 * rng.standard_normal(int(SAMPLE_RATE * seconds)), SAMPLE_RATE, "PCM_16"
        )
        result.append(
            Utterance(
                utterance_id=utterance_id,
                audio_path=str(path),
                transcript=" ".join(["word"] * (index + 1)),
                label=CLASS_NAMES[index % 4],
                speaker=f"Ses0{session}F",
                group=f"Session{session}",
            )
        )
    return list(reversed(result))


def _prepare(utterances, out_dir, audio_layer, text_encoder=None, read_audio=None, **kwargs):
    return prepare.prepare_utterances(
        utterances,
        out_dir,
        class_names=CLASS_NAMES,
        corpus="demo",
        audio_layer=audio_layer,
        text_encoder=text_encoder or FakeTextEncoder(),
        shard_size=kwargs.pop("shard_size", 3),
        progress=False,
        read_audio=read_audio or audio.read_waveform,
        **kwargs,
    )


def _shard_bytes(out_dir):
    names = sorted(n for n in os.listdir(out_dir) if n.endswith(".tfrecord"))
    return {
        name: [record.numpy() for record in tf.data.TFRecordDataset(str(out_dir / name))]
        for name in names
    }


def _no_temporary_files(out_dir):
    return not [name for name in os.listdir(out_dir) if ".tmp-" in name]


def test_writes_shards_manifest_and_report(tmp_path, utterances, audio_layer):
    out_dir = tmp_path / "records"
    report = _prepare(utterances, out_dir, audio_layer)

    names = sorted(os.listdir(out_dir))
    assert names == [
        "manifest.json",
        "report.json",
        "shard-00000-of-00003.tfrecord",
        "shard-00000-of-00003.tfrecord.json",
        "shard-00001-of-00003.tfrecord",
        "shard-00001-of-00003.tfrecord.json",
        "shard-00002-of-00003.tfrecord",
        "shard-00002-of-00003.tfrecord.json",
    ]
    manifest = records.read_manifest(out_dir)
    assert manifest.num_examples == 7
    assert manifest.audio_dim == 78
    assert manifest.text_dim == 8
    assert manifest.pooling == 5 and manifest.max_frames == 500
    assert manifest.max_tokens == 150
    assert manifest.class_names == CLASS_NAMES
    assert manifest.groups == ("Session1", "Session2")
    # Session1 lists 4 utterances (2 shards of 3), Session2 3 (1 shard).
    plan = prepare.plan_shards(utterances, 3)
    assert [shard["count"] for shard in manifest.shards] == [len(p) for p in plan]
    assert [shard["groups"] for shard in manifest.shards] == [
        {"Session1": len(plan[0])}, {"Session1": len(plan[1])}, {"Session2": 3}
    ]
    assert manifest.counts["Session1"] == {"angry": 2, "happy": 0, "neutral": 2, "sad": 0}
    with open(out_dir / "report.json") as file:
        assert json.load(file) == report
    assert report["num_examples"] == 7 and report["skipped"] == []
    assert report["shards"] == {"total": 3, "computed": 3, "reused": 0}
    assert set(report["timings_seconds"]) == {
        "read_audio", "audio_features", "text_features", "write", "total"
    }
    assert report["features"]["audio_layer"]["num_mel_bins"] == 26
    assert report["features"]["min_seconds"] == 0.1 and manifest.min_seconds == 0.1

    # Shard i holds the i-th planned shard, its utterances sorted by id.
    ordered = [u.utterance_id for shard in plan for u in shard]
    assert sorted(ordered) == sorted(u.utterance_id for u in utterances)
    for index, shard in enumerate(plan):
        with open(out_dir / f"shard-0000{index}-of-00003.tfrecord.json") as file:
            assert json.load(file)["utterance_ids"] == [u.utterance_id for u in shard]

    by_id = {u.utterance_id: u for u in utterances}
    items = {}
    for inputs, labels, metadata in pipeline.make_dataset(
        out_dir, batch_size=4, include_metadata=True
    ):
        for row, value in enumerate(metadata["utterance_id"].numpy()):
            items[value.decode()] = (
                int(labels[row]),
                int(inputs["audio_length"][row]),
                int(inputs["text_length"][row]),
                metadata["group"][row].numpy().decode(),
            )
    assert list(items) == ordered  # Unshuffled reads keep the shard order.
    for utterance_id, (label, audio_length, text_length, group) in items.items():
        utterance = by_id[utterance_id]
        assert CLASS_NAMES[label] == utterance.label
        assert group == utterance.group
        assert text_length == len(utterance.transcript.split()) + 2
        samples = soundfile.info(utterance.audio_path).frames
        frames = 1 + (samples - 400) // 160
        assert audio_length == -(-frames // 5)
    assert pipeline.count_examples(out_dir, groups=["Session2"]) == 3


def test_unreadable_audio_is_skipped_with_reason(tmp_path, utterances, audio_layer):
    broken = utterances[2]
    with open(broken.audio_path, "wb") as file:
        file.write(b"this is not a wav file")
    out_dir = tmp_path / "records"
    report = _prepare(utterances, out_dir, audio_layer)
    assert report["num_examples"] == 6
    assert report["num_skipped"] == 1
    (skipped,) = report["skipped"]
    assert skipped["utterance_id"] == broken.utterance_id
    assert skipped["audio_path"] == broken.audio_path
    assert "cannot read audio" in skipped["reason"]
    manifest = records.read_manifest(out_dir)
    assert manifest.num_examples == 6
    assert sum(shard["count"] for shard in manifest.shards) == 6
    ids = [
        value.decode()
        for _, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for value in metadata["utterance_id"].numpy()
    ]
    assert broken.utterance_id not in ids and len(ids) == 6


def test_truncated_wav_is_skipped_with_reason(tmp_path, utterances, audio_layer):
    from smcn_tf.features import media

    cut = utterances[0]  # 0.8 s: 12800 samples declared
    with open(cut.audio_path, "rb") as file:
        data = file.read()
    with open(cut.audio_path, "wb") as file:
        file.write(data[: 44 + 4000 * 2])  # 4000 samples left
    report = _prepare(utterances, tmp_path / "records", audio_layer, read_audio=media.decode_audio)
    assert report["num_examples"] == 6 and report["num_skipped"] == 1
    assert report["skipped"] == [
        {
            "utterance_id": cut.utterance_id,
            "audio_path": cut.audio_path,
            "reason": f"truncated audio file {cut.audio_path}: its header declares 12800 "
                      "samples (0.800 s), the file holds 4000 (0.250 s)",
            "stage": "read_audio",
        }
    ]
    assert report["dropped"]["by_reason"] == {"truncated audio file": 1}
    assert report["truncated"] == []  # that list is for clips cut at max_seconds
    with pytest.raises(ValueError, match=r"truncated audio file .*\(strict: stopping"):
        _prepare(utterances, tmp_path / "strict", audio_layer, read_audio=media.decode_audio,
                 strict=True)


def test_interrupt_and_resume(tmp_path, utterances, audio_layer):
    reference_dir = tmp_path / "reference"
    _prepare(utterances, reference_dir, audio_layer)

    out_dir = tmp_path / "records"
    plan = prepare.plan_shards(utterances, 3)
    # Crash while reading shard 1's 2nd utterance: shard 0 is done, shard 1 is not.
    crashing = CountingReader(interrupt_on=os.path.basename(plan[1][1].audio_path))
    with pytest.raises(KeyboardInterrupt):
        _prepare(utterances, out_dir, audio_layer, read_audio=crashing)
    assert sorted(os.listdir(out_dir)) == [
        "shard-00000-of-00003.tfrecord",
        "shard-00000-of-00003.tfrecord.json",
    ]
    first_shard = (out_dir / "shard-00000-of-00003.tfrecord").stat().st_mtime_ns
    with pytest.raises(FileNotFoundError):
        records.read_manifest(out_dir)  # An unfinished directory has no manifest.

    reader = CountingReader()
    encoder = FakeTextEncoder()
    report = _prepare(utterances, out_dir, audio_layer, text_encoder=encoder, read_audio=reader)
    # Shard 0 was not recomputed: neither read nor encoded again.
    resumed = plan[1] + plan[2]
    assert reader.paths == [os.path.basename(u.audio_path) for u in resumed]
    assert encoder.encoded == [u.transcript for u in resumed]
    assert (out_dir / "shard-00000-of-00003.tfrecord").stat().st_mtime_ns == first_shard
    assert report["shards"] == {"total": 3, "computed": 2, "reused": 1}
    assert report["num_examples"] == 7
    assert _shard_bytes(out_dir) == _shard_bytes(reference_dir)
    assert _no_temporary_files(out_dir)

    # A third run has nothing left to do.
    reader = CountingReader()
    report = _prepare(utterances, out_dir, audio_layer, read_audio=reader)
    assert reader.paths == []
    assert report["shards"]["reused"] == 3
    assert records.read_manifest(out_dir) == records.read_manifest(reference_dir)


def test_changed_inputs_are_recomputed(tmp_path, utterances, audio_layer):
    out_dir = tmp_path / "records"
    _prepare(utterances, out_dir, audio_layer)
    # A relabelled utterance changes only its own shard's plan.
    plan = prepare.plan_shards(utterances, 3)
    relabelled = plan[1][0]
    changed = [
        Utterance(**{**u.__dict__, "label": "sad"}) if u is relabelled else u
        for u in utterances
    ]
    reader = CountingReader()
    report = _prepare(changed, out_dir, audio_layer, read_audio=reader)
    assert report["shards"] == {"total": 3, "computed": 1, "reused": 2}
    assert reader.paths == [os.path.basename(u.audio_path) for u in plan[1]]
    # Another shard size re-plans every shard and removes the stale ones.
    report = _prepare(changed, out_dir, audio_layer, shard_size=4)
    assert report["shards"] == {"total": 2, "computed": 2, "reused": 0}
    assert sorted(n for n in os.listdir(out_dir) if n.endswith(".tfrecord")) == [
        "shard-00000-of-00002.tfrecord",
        "shard-00001-of-00002.tfrecord",
    ]
    assert records.read_manifest(out_dir).counts["Session1"]["sad"] == 1
    # Another minimum duration re-extracts every shard.
    report = _prepare(changed, out_dir, audio_layer, shard_size=4, min_seconds=0.15)
    assert report["shards"] == {"total": 2, "computed": 2, "reused": 0}


def test_corrupt_shard_is_recomputed(tmp_path, utterances, audio_layer):
    out_dir = tmp_path / "records"
    _prepare(utterances, out_dir, audio_layer)
    with open(out_dir / "shard-00001-of-00003.tfrecord", "r+b") as file:
        file.truncate(40)
    (out_dir / "shard-00002-of-00003.tfrecord.json.tmp-stale").write_text("{")
    report = _prepare(utterances, out_dir, audio_layer)
    assert report["shards"] == {"total": 3, "computed": 1, "reused": 2}
    expected = len(prepare.plan_shards(utterances, 3)[1])
    assert records.count_records(out_dir / "shard-00001-of-00003.tfrecord") == expected
    assert _no_temporary_files(out_dir)


def test_input_validation(tmp_path, utterances, audio_layer):
    with pytest.raises(ValueError, match="No utterances"):
        _prepare([], tmp_path / "a", audio_layer)
    bad = [Utterance(**{**utterances[0].__dict__, "label": "fru"})]
    with pytest.raises(ValueError, match=f"{utterances[0].utterance_id}.*'fru'"):
        _prepare(bad, tmp_path / "b", audio_layer)
    with pytest.raises(ValueError, match="Duplicate utterance id"):
        _prepare(utterances[:1] * 2, tmp_path / "c", audio_layer)
    with pytest.raises(ValueError, match="shard_size"):
        _prepare(utterances, tmp_path / "d", audio_layer, shard_size=0)


def test_nothing_readable_is_an_error(tmp_path, utterances, audio_layer):
    def unreadable(path, sample_rate):
        raise ValueError(f"{path}: cannot read audio")

    out_dir = tmp_path / "records"
    with pytest.raises(ValueError, match="None of the 7 utterances"):
        _prepare(utterances, out_dir, audio_layer, read_audio=unreadable)
    assert not (out_dir / "manifest.json").exists()
    assert (out_dir / "report.json").exists()


def test_prepare_corpus_rejects_unknown_corpus(tmp_path):
    known = r"\['iemocap', 'demo', 'meld', 'demo-meld', 'csv'\]"
    with pytest.raises(ValueError, match=rf"'cmu-mosei'.*{known}"):
        prepare.prepare_corpus(
            "cmu-mosei", tmp_path, tmp_path / "out", pooling=5, max_frames=500, max_tokens=150
        )


def test_prepare_corpus_demo_end_to_end(tmp_path):
    from smcn_tf.corpora import demo

    corpus_dir = demo.write_demo_corpus(tmp_path / "demo", seed=0, utterances_per_speaker=4)
    report = prepare.prepare_corpus(
        "demo",
        corpus_dir,
        tmp_path / "records",
        pooling=5,
        max_frames=100,
        max_tokens=32,
        shard_size=16,
        progress=False,
    )
    assert report["num_examples"] == 40
    assert report["parser"]["dropped_labels"] == {"fru": 10, "xxx": 10}
    assert report["parser"]["skipped"] == []
    manifest = records.read_manifest(tmp_path / "records")
    assert manifest.text_dim == 384 and manifest.audio_dim == 78
    assert manifest.groups == tuple(f"Session{n}" for n in range(1, 6))
    inputs, labels = next(iter(pipeline.make_dataset(tmp_path / "records", batch_size=40)))
    assert labels.shape == (40,)
    assert int(tf.reduce_max(inputs["audio_length"])) <= 100
    assert int(tf.reduce_max(inputs["text_length"])) <= 32


# --------------------------------------------------------------------------
# Clip truncation, the MELD layout, and the published-counts check.
# --------------------------------------------------------------------------


def test_max_seconds_truncates_and_reports(tmp_path, utterances, audio_layer):
    def reader(path, sample_rate, max_seconds=None):
        return audio.read_waveform(path, sample_rate)  # Ignores the limit: prepare cuts.

    out_dir = tmp_path / "records"
    report = _prepare(utterances, out_dir, audio_layer, read_audio=reader, max_seconds=0.5)
    ordered = [u for shard in prepare.plan_shards(utterances, 3) for u in shard]
    long_ones = [u for u in ordered if soundfile.info(u.audio_path).duration > 0.5]
    assert [item["utterance_id"] for item in report["truncated"]] == [
        u.utterance_id for u in long_ones
    ]
    assert report["num_truncated"] == len(long_ones) == 3
    for item, utterance in zip(report["truncated"], long_ones):
        assert item["kept_seconds"] == 0.5
        duration = soundfile.info(utterance.audio_path).duration
        assert item["source_seconds"] == pytest.approx(duration)
    assert report["features"]["max_seconds"] == 0.5
    lengths = {
        value.decode(): int(inputs["audio_length"][row])
        for inputs, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for row, value in enumerate(metadata["utterance_id"].numpy())
    }
    frames = 1 + (8000 - 400) // 160
    assert {lengths[u.utterance_id] for u in long_ones} == {-(-frames // 5)}

    # The limit is part of the plan: the same one reuses shards, another recomputes them.
    again = _prepare(utterances, out_dir, audio_layer, read_audio=reader, max_seconds=0.5)
    assert again["shards"]["reused"] == 3 and again["truncated"] == report["truncated"]
    other = _prepare(utterances, out_dir, audio_layer, read_audio=reader, max_seconds=0.6)
    assert other["shards"]["computed"] == 3 and other["num_truncated"] == 2
    with pytest.raises(ValueError, match="max_seconds"):
        _prepare(utterances, out_dir, audio_layer, max_seconds=0)


@pytest.fixture(scope="module")
def demo_meld_root(tmp_path_factory):
    from smcn_tf.corpora import demo_meld

    return demo_meld.write_demo_meld(
        tmp_path_factory.mktemp("demo_meld") / "MELD.Raw", seed=0, utterances_per_class=2
    )


def _prepare_corpus(corpus, data_dir, out_dir, **kwargs):
    return prepare.prepare_corpus(
        corpus,
        data_dir,
        out_dir,
        pooling=kwargs.pop("pooling", 4),
        max_frames=500,
        max_tokens=100,
        shard_size=kwargs.pop("shard_size", 8),
        progress=False,
        text_encoder=FakeTextEncoder(),
        **kwargs,
    )


def test_prepare_corpus_demo_meld_end_to_end(tmp_path, demo_meld_root, capsys):
    from smcn_tf.corpora import demo_meld, meld

    root = demo_meld_root
    out_dir = tmp_path / "records"
    report = _prepare_corpus("demo-meld", root, out_dir, max_seconds=3.0)
    assert "WARNING" not in capsys.readouterr().err  # No published counts for the demo.

    corrupt, missing, long_clip = (demo_meld.QUIRKS[key] for key in ("corrupt", "missing", "long"))
    assert report["num_utterances"] == 41 and report["num_examples"] == 40
    assert report["kept"]["total"] == 40
    assert report["kept"]["by_group"] == {"dev": 13, "test": 14, "train": 13}
    assert sum(report["kept"]["by_label"].values()) == 40
    # Parser: the missing dev clip, and the extra test clip no row annotates.
    missing_path = os.path.join(root, "dev_splits_complete", "dia1_utt0.mp4")
    assert report["parser"]["skipped"] == [[missing, f"missing media file {missing_path}"]]
    assert report["parser"]["unannotated_media"] == {
        "train": {"count": 0, "examples": []},
        "dev": {"count": 0, "examples": []},
        "test": {"count": 1, "examples": ["dia999_utt0.mp4"]},
    }
    assert report["parser"]["encodings"] == demo_meld.CSV_ENCODINGS
    # One list: the parser's skip first, then the corrupt clip with the decoder's reason.
    assert report["num_skipped"] == 2
    parsed, skipped = report["skipped"]
    assert parsed == {
        "utterance_id": missing, "reason": f"missing media file {missing_path}", "stage": "parse"
    }
    corrupt_path = os.path.join(root, "train_splits", "dia1_utt1.mp4")
    assert skipped["utterance_id"] == corrupt and skipped["audio_path"] == corrupt_path
    assert skipped["reason"].startswith(
        f"cannot read audio: ValueError: {corrupt_path}: cannot open media file"
    )
    assert skipped["stage"] == "read_audio"
    assert report["dropped"] == {
        "total": 2, "by_reason": {"cannot read audio": 1, "missing media file": 1}
    }
    # The long clip is cut at max_seconds.
    (truncated,) = report["truncated"]
    assert truncated["utterance_id"] == long_clip and truncated["kept_seconds"] == 3.0
    assert truncated["source_seconds"] >= demo_meld.LONG_CLIP_SECONDS
    with open(out_dir / "report.json") as file:
        assert json.load(file) == report

    manifest = records.read_manifest(out_dir)
    assert manifest.corpus == "demo-meld" and manifest.class_names == meld.CLASS_NAMES
    assert manifest.groups == ("dev", "test", "train") and manifest.num_examples == 40
    lengths = {
        value.decode(): int(inputs["audio_length"][row])
        for inputs, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for row, value in enumerate(metadata["utterance_id"].numpy())
    }
    assert corrupt not in lengths and missing not in lengths
    assert lengths[long_clip] == -(-(1 + (48000 - 400) // 160) // 4)

    check = report["counts_check"]
    assert check["reference"] is None and check["warnings"] == []
    table = prepare.format_counts_table(report)
    assert table.splitlines()[0] == "counts of 'demo-meld' vs no published counts (demo corpus)"
    assert re.search(r"^rows train\s+14\s+13\s+-$", table, re.MULTILINE)
    assert re.search(r"^rows total\s+42\s+40\s+-$", table, re.MULTILINE)

    # A rerun reuses every shard and reports the same.
    again = _prepare_corpus("demo-meld", root, out_dir, max_seconds=3.0)
    assert again["shards"]["reused"] == again["shards"]["total"] == 6
    for key in ("kept", "dropped", "skipped", "truncated", "parser", "counts_check"):
        assert again[key] == report[key]


def test_meld_counts_warning(tmp_path, demo_meld_root, capsys):
    # The demo in the real corpus' place: its row counts are far from MELD's.
    report = _prepare_corpus("meld", demo_meld_root, tmp_path / "records")
    error = capsys.readouterr().err
    assert (
        "WARNING: read 42 rows (train 14, dev 14, test 14), the official MELD release has "
        "13708 (train 9989, dev 1109, test 2610)." in error
    )
    assert "- train: read 14 rows from train_sent_emo.csv, the official release has 9989" in error
    check = report["counts_check"]
    assert check["reference"] == "the official MELD release (train 9989, dev 1109, test 2610 rows)"
    assert check["warnings"][0] == (
        "train: read 14 rows from train_sent_emo.csv, the official release has 9989"
    )
    table = prepare.format_counts_table(report)
    assert re.search(r"^rows dev\s+14\s+13\s+1109  <-- differs$", table, re.MULTILINE)
    assert re.search(r"^emotion joy\s+6\s+\d+\s+2308  <-- differs$", table, re.MULTILINE)
    assert report["features"]["max_seconds"] == 30.0  # MELD's default limit.


def _write_tiny_iemocap(root):
    """Five sessions, one kept turn (ang, hap, neu, sad, exc) and one fru turn each."""
    rng = np.random.default_rng(1)
    for session, label in zip(range(1, 6), ("ang", "hap", "neu", "sad", "exc")):
        dialog = f"Ses0{session}F_impro01"
        base = root / f"Session{session}"
        evaluation = base / "dialog" / "EmoEvaluation"
        transcriptions = base / "dialog" / "transcriptions"
        wav_dir = base / "sentences" / "wav" / dialog
        for folder in (evaluation, transcriptions, wav_dir):
            folder.mkdir(parents=True)
        (evaluation / f"{dialog}.txt").write_text(
            "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            f"[1.0000 - 2.0000]\t{dialog}_F000\t{label}\t[2.5000, 2.5000, 2.5000]\n\n"
            f"[3.0000 - 4.0000]\t{dialog}_M000\tfru\t[2.0000, 3.5000, 3.5000]\n"
        )
        (transcriptions / f"{dialog}.txt").write_text(
            f"{dialog}_F000 [001.0000-002.0000]: Excuse me.\n"
            f"{dialog}_M000 [003.0000-004.0000]: Do you have your forms?\n"
        )
        for turn in ("F000", "M000"):
            samples = 0.1 * rng.standard_normal(int(0.4 * SAMPLE_RATE))
            soundfile.write(wav_dir / f"{dialog}_{turn}.wav", samples, SAMPLE_RATE, "PCM_16")
    return root


def test_iemocap_counts_warning(tmp_path, capsys):
    from smcn_tf.corpora import iemocap

    root = _write_tiny_iemocap(tmp_path / "IEMOCAP_full_release")
    report = _prepare_corpus("iemocap", root, tmp_path / "records", pooling=5)
    error = capsys.readouterr().err
    assert "WARNING: parsed 5 utterances, the standard 4-class set has 5531." in error
    assert "- total: parsed 5 utterances, the full release has 5531 in the 4-class set" in error
    assert "report.json" in error

    counts = iemocap.parse_iemocap(root).counts()
    check = report["counts_check"]
    assert check["warnings"] == iemocap.compare_to_expected(counts)
    assert check["reference"] == "IEMOCAP_full_release, 4-class set (5531 utterances)"
    assert report["parser"]["dropped_labels"] == {"fru": 5}
    assert report["dropped"] == {
        "total": 5, "by_reason": {"label fru (not one of the classes)": 5}
    }
    assert report["num_examples"] == 5 and report["features"]["max_seconds"] is None
    with open(tmp_path / "records" / "report.json") as file:
        assert json.load(file)["counts_check"] == check
    table = prepare.format_counts_table(report)
    assert re.search(r"^total\s+5\s+5\s+5531  <-- differs$", table, re.MULTILINE)
    assert re.search(r"^class happy\s+2\s+2\s+1636  <-- differs$", table, re.MULTILINE)
    assert re.search(r"^Session1\s+1\s+1\s+1085  <-- differs$", table, re.MULTILINE)
    assert re.search(r"^dropped label fru\s+5\s+-\s+1849  <-- differs$", table, re.MULTILINE)

    # The same tree as the demo corpus: no published counts, no warning.
    report = _prepare_corpus("demo", root, tmp_path / "demo_records", pooling=5)
    assert "WARNING" not in capsys.readouterr().err
    assert report["counts_check"]["warnings"] == []
    table = prepare.format_counts_table(report)
    assert re.search(r"^total\s+5\s+5\s+-$", table, re.MULTILINE)


# --------------------------------------------------------------------------
# Too-short clips, the console list of skips, and the stable shard plan.
# --------------------------------------------------------------------------


def test_too_short_clip_is_skipped_with_reason(tmp_path, utterances, audio_layer):
    short = utterances[3]
    soundfile.write(short.audio_path, np.array([0.25]), SAMPLE_RATE, "PCM_16")  # 1 sample
    out_dir = tmp_path / "records"
    report = _prepare(utterances, out_dir, audio_layer)
    assert report["num_examples"] == 6
    assert report["skipped"] == [
        {
            "utterance_id": short.utterance_id,
            "audio_path": short.audio_path,
            "reason": "shorter than 0.1 s: 0.0001 s (1 sample)",
            "stage": "read_audio",
        }
    ]
    assert report["dropped"]["by_reason"] == {"shorter than 0.1 s": 1}
    with open(out_dir / "report.json") as file:
        assert json.load(file)["skipped"] == report["skipped"]
    assert prepare.format_skipped(report).splitlines()[1:] == [
        f"  {short.utterance_id}: shorter than 0.1 s: 0.0001 s (1 sample)"
    ]
    ids = [
        value.decode()
        for _, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for value in metadata["utterance_id"].numpy()
    ]
    assert short.utterance_id not in ids and len(ids) == 6

    # The limit is a setting: below it, 0.3 s clips are skipped too.
    report = _prepare(utterances, out_dir, audio_layer, min_seconds=0.3)
    assert report["dropped"]["by_reason"] == {"shorter than 0.3 s": 2}
    assert report["shards"]["reused"] == 0

    with pytest.raises(ValueError, match="min_seconds must be a number >= 0"):
        _prepare(utterances, out_dir, audio_layer, min_seconds=-0.1)
    with pytest.raises(ValueError, match=r"min_seconds \(0.6\) is above max_seconds \(0.5\)"):
        _prepare(utterances, out_dir, audio_layer, min_seconds=0.6, max_seconds=0.5)


def _skip_report(count, out_dir="records"):
    return {
        "out_dir": out_dir,
        "num_examples": 100,
        "skipped": [
            {"utterance_id": f"Ses01F_impro01_F{n:03d}",
             "reason": f"missing audio file w{n}.wav", "stage": "parse"}
            for n in range(count)
        ] + [
            {"utterance_id": "Ses05M_script01_M000", "audio_path": "x.wav",
             "reason": "cannot read audio: ValueError: x.wav: bad\nheader", "stage": "read_audio"}
        ],
    }


def test_format_skipped_caps_the_list():
    assert prepare.format_skipped({"out_dir": "r", "num_examples": 3, "skipped": []}) == ""
    lines = prepare.format_skipped(_skip_report(3)).splitlines()
    assert lines == [
        f"Skipped 4 of 104 utterances (report: {os.path.join('records', 'report.json')}):",
        "  Ses01F_impro01_F000: missing audio file w0.wav",
        "  Ses01F_impro01_F001: missing audio file w1.wav",
        "  Ses01F_impro01_F002: missing audio file w2.wav",
        "  Ses05M_script01_M000: cannot read audio: ValueError: x.wav: bad header",
    ]
    lines = prepare.format_skipped(_skip_report(12), report_path="out/report.json").splitlines()
    assert len(lines) == 1 + 10 + 1
    assert lines[0] == "Skipped 13 of 113 utterances (report: out/report.json):"
    assert lines[10] == "  Ses01F_impro01_F009: missing audio file w9.wav"
    assert lines[-1] == "  ... and 3 more (see out/report.json)"
    assert prepare.format_skipped(_skip_report(12), limit=2).splitlines()[-1].startswith(
        "  ... and 11 more"
    )
    assert prepare.format_skipped(_skip_report(12), report_path="r.json", names=False) == (
        "Skipped 13 of 113 utterances (report: r.json)."
    )


def test_min_seconds_config_field():
    from smcn_tf import config as config_module

    assert config_module.load_config().features.min_seconds == audio.MIN_SECONDS_DEFAULT == 0.1
    zero = config_module.load_config(overrides=["features.min_seconds=0"])
    assert zero.features.min_seconds == 0
    for bad in ("-0.5", ".inf", ".nan"):
        with pytest.raises(ValueError, match="features.min_seconds is out of range"):
            config_module.load_config(overrides=[f"features.min_seconds={bad}"])
    with pytest.raises(ValueError, match="features.min_seconds: expected a number"):
        config_module.load_config(overrides=["features.min_seconds=short"])


def _many_utterances(count=40, groups=("Session1", "Session2")):
    return [
        Utterance(
            utterance_id=f"Ses0{1 + n % len(groups)}F_impro01_F{n:03d}",
            audio_path=f"/nowhere/{n}.wav",
            transcript="word",
            label=CLASS_NAMES[n % 4],
            speaker="Ses01F",
            group=groups[n % len(groups)],
        )
        for n in range(count)
    ]


def test_plan_shards_is_stable():
    import hashlib

    many = _many_utterances()
    plan = prepare.plan_shards(many, 4)
    # 20 utterances per group: 5 shards each, ordered by group, then bucket.
    assert len(plan) == 10
    assert sorted(u.utterance_id for shard in plan for u in shard) == sorted(
        u.utterance_id for u in many
    )
    for index, shard in enumerate(plan):
        group, bucket = ("Session1", "Session2")[index // 5], index % 5
        assert [u.utterance_id for u in shard] == sorted(u.utterance_id for u in shard)
        for utterance in shard:
            key = hashlib.sha256(utterance.utterance_id.encode()).digest()[:8]
            assert utterance.group == group
            assert int.from_bytes(key, "big") % 5 == bucket
    # Deterministic, whatever the input order.
    assert prepare.plan_shards(list(reversed(many)), 4) == plan

    # Dropping utterances changes their own shards only, while the listed
    # counts still count them; the number of shards stays.
    dropped = {plan[0][0].utterance_id, plan[7][-1].utterance_id}
    fewer = [u for u in many if u.utterance_id not in dropped]
    replanned = prepare.plan_shards(fewer, 4, {"Session1": 20, "Session2": 20})
    assert len(replanned) == 10
    changed = [index for index in range(10) if replanned[index] != plan[index]]
    assert changed == [0, 7]
    # Without them, Session1's 19 utterances still need 5 shards, but 16 need 4.
    assert len(prepare.plan_shards(fewer, 4)) == 10
    assert len(prepare.plan_shards(many[8:], 4)) == 8
    # A group the corpus lists but nothing survived from keeps its (empty) shards.
    assert [len(s) for s in prepare.plan_shards(many[:2], 4, {"Session3": 5})][2:] == [0, 0]

    with pytest.raises(ValueError, match="shard_size"):
        prepare.plan_shards(many, 0)
    with pytest.raises(ValueError, match=r"listed_counts\['Session1'\]"):
        prepare.plan_shards(many, 4, {"Session1": -1})


def test_empty_shard_is_written_and_skipped_by_the_pipeline(tmp_path, utterances, audio_layer):
    # 7 utterances listed as 30 in Session1: 10 shards there, some of them empty.
    out_dir = tmp_path / "records"
    report = _prepare(utterances, out_dir, audio_layer, listed_counts={"Session1": 30})
    manifest = records.read_manifest(out_dir)
    counts = [shard["count"] for shard in manifest.shards]
    assert len(counts) == 11 and 0 in counts and sum(counts) == 7
    assert report["shards"] == {"total": 11, "computed": 11, "reused": 0}
    assert pipeline.count_examples(out_dir) == 7
    assert sum(int(labels.shape[0]) for _, labels in pipeline.make_dataset(out_dir)) == 7
    again = _prepare(utterances, out_dir, audio_layer, listed_counts={"Session1": 30})
    assert again["shards"] == {"total": 11, "computed": 0, "reused": 11}


def _shard_mtimes(out_dir):
    return {
        name: (out_dir / name).stat().st_mtime_ns
        for name in os.listdir(out_dir)
        if name.endswith(".tfrecord")
    }


def test_missing_file_recomputes_only_its_shard(tmp_path):
    from smcn_tf.corpora import demo

    root = demo.write_demo_corpus(tmp_path / "demo", seed=0, utterances_per_speaker=4)
    out_dir = tmp_path / "records"
    first = _prepare_corpus("demo", root, out_dir, shard_size=4)
    # 8 utterances in each of 5 sessions: 2 shards each.
    assert first["shards"] == {"total": 10, "computed": 10, "reused": 0}
    before = _shard_mtimes(out_dir)

    # The first utterance of the corpus loses its wav.
    parsed = registry.get_corpus("demo").load(root).utterances
    earliest = min(u.utterance_id for u in parsed)
    wav = next(u.audio_path for u in parsed if u.utterance_id == earliest)
    with open(out_dir / "shard-00000-of-00010.tfrecord.json") as file:
        in_first_shard = earliest in json.load(file)["utterance_ids"]
    holder = "shard-00000-of-00010.tfrecord" if in_first_shard else "shard-00001-of-00010.tfrecord"
    os.remove(wav)
    report = _prepare_corpus("demo", root, out_dir, shard_size=4)
    assert report["shards"] == {"total": 10, "computed": 1, "reused": 9}
    assert report["num_examples"] == first["num_examples"] - 1
    assert report["parser"]["skipped"] == [[earliest, f"missing audio file {wav}"]]
    after = _shard_mtimes(out_dir)
    assert set(after) == set(before)
    assert [name for name in sorted(after) if after[name] != before[name]] == [holder]
    assert earliest not in {
        value.decode()
        for _, _, metadata in pipeline.make_dataset(out_dir, include_metadata=True)
        for value in metadata["utterance_id"].numpy()
    }


def test_cli_prepare_lists_skips(tmp_path, monkeypatch, capsys):
    from smcn_tf import cli
    from smcn_tf.corpora import demo

    monkeypatch.setattr(prepare, "TextEncoder", lambda *args, **kwargs: FakeTextEncoder())
    root = demo.write_demo_corpus(tmp_path / "demo", seed=0, utterances_per_speaker=4)
    parsed = registry.get_corpus("demo").load(root).utterances
    by_id = sorted(parsed, key=lambda u: u.utterance_id)
    for utterance in by_id[:12]:  # 12 missing wavs: more than the console lists
        os.remove(utterance.audio_path)
    short = by_id[-1]
    soundfile.write(short.audio_path, np.array([0.25]), SAMPLE_RATE, "PCM_16")
    out_dir = tmp_path / "records"
    arguments = ["prepare", "demo", "--data-dir", str(root), "--out", str(out_dir),
                 "--set", "features.shard_size=8"]

    assert cli.main(arguments) == 0
    out = capsys.readouterr().out
    report_path = os.path.join(str(out_dir), "report.json")
    assert f"Skipped 13 of 40 utterances (report: {report_path}):" in out
    listed = [line for line in out.splitlines() if line.startswith("  Ses0")]
    assert listed == [
        f"  {u.utterance_id}: missing audio file {u.audio_path}" for u in by_id[:10]
    ]
    assert f"  ... and 3 more (see {report_path})" in out
    with open(report_path) as file:
        written = json.load(file)
    # One list, as the console counts it: the 12 missing wavs, then the short clip.
    assert written["num_skipped"] == len(written["skipped"]) == 13
    assert [item["stage"] for item in written["skipped"]] == ["parse"] * 12 + ["read_audio"]
    assert written["skipped"][-1]["reason"] == "shorter than 0.1 s: 0.0001 s (1 sample)"

    # --quiet: the count alone. --min-seconds 0 keeps the 1-sample clip.
    assert cli.main(arguments + ["--quiet", "--min-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert f"Skipped 12 of 40 utterances (report: {report_path})." in out
    assert "  Ses0" not in out and "... and" not in out


# --------------------------------------------------------------------------
# Speed perturbation: the augmented directory.
# --------------------------------------------------------------------------


def _records_of(out_dir):
    """Every record of a records directory, parsed, by utterance id."""
    items = {}
    for shard in records.read_manifest(out_dir).shards:
        for serialized in tf.data.TFRecordDataset(os.path.join(str(out_dir), shard["file"])):
            item = records.parse_example(serialized)
            items[item["utterance_id"].numpy().decode()] = item
    return items


def test_speed_copies_are_prepared_into_augmented(tmp_path, utterances, audio_layer):
    out_dir = tmp_path / "records"
    _prepare(utterances, out_dir, audio_layer)
    before = _shard_bytes(out_dir)
    settings = dict(
        class_names=CLASS_NAMES, corpus="demo", audio_layer=audio_layer,
        text_encoder=FakeTextEncoder(), shard_size=3, progress=False,
        read_audio=audio.read_waveform,
    )
    report, summary = prepare.prepare_speed_copies(utterances, out_dir, [0.9, 1.1], **settings)

    augmented_dir = out_dir / records.AUGMENTED_DIRNAME
    assert _shard_bytes(out_dir) == before  # the originals are not touched
    assert summary == {"dir": "augmented", "speed": [0.9, 1.1], "num_examples": 14,
                       "by_speed": {"0.9": 7, "1.1": 7}, "num_skipped": 0}
    manifest = records.read_manifest(augmented_dir)
    assert manifest.num_examples == report["num_examples"] == 14
    assert manifest.extra["augmentation"] == {"speed": [0.9, 1.1]}
    assert report["augmentation"]["speed"] == [0.9, 1.1]
    originals = _records_of(out_dir)
    copies = _records_of(augmented_dir)
    assert sorted(copies) == sorted(
        f"{u.utterance_id}@speed{f}" for u in utterances for f in ("0.9", "1.1")
    )
    assert {item["augmentation"].numpy() for item in originals.values()} == {b""}
    for copy_id, item in copies.items():
        base, factor = copy_id.split("@speed")
        original = originals[base]
        assert item["augmentation"].numpy().decode() == f"speed={factor}"
        for key in ("label", "group", "speaker"):
            assert item[key].numpy() == original[key].numpy()
        np.testing.assert_array_equal(item["text_features"], original["text_features"])
        # A 0.9 copy lasts 1 / 0.9 as long: ~1.11 times the frames (pooled by 5).
        ratio = int(item["audio_length"]) / int(original["audio_length"])
        assert ratio == pytest.approx(1 / float(factor), abs=0.12)
    assert int(copies["Ses01F_impro01_F006@speed0.9"]["audio_length"]) > int(
        originals["Ses01F_impro01_F006"]["audio_length"]
    ) > int(copies["Ses01F_impro01_F006@speed1.1"]["audio_length"])

    # Resumable like any records directory.
    again, _ = prepare.prepare_speed_copies(utterances, out_dir, [0.9, 1.1], **settings)
    assert again["shards"]["computed"] == 0 and again["shards"]["reused"] > 0
    with pytest.raises(ValueError, match="other than 1"):
        prepare.prepare_speed_copies(utterances, out_dir, [1.0], **settings)
    with pytest.raises(ValueError, match="twice"):
        prepare.check_speeds([0.9, 0.90])


def test_speed_copies_are_cut_at_max_frames_and_max_seconds(tmp_path, utterances):
    asked = set()

    def reader(path, sample_rate, max_seconds=None):
        asked.add(max_seconds)
        return audio.read_waveform(path, sample_rate)  # Ignores the limit: prepare cuts.

    # 0.6 s give 58 frames, 12 pooled: more than 10, cut like any other clip.
    layer = audio.LogMelFeatures(pooling=5, max_frames=10)
    out_dir = tmp_path / "records"
    settings = dict(
        class_names=CLASS_NAMES, corpus="demo", audio_layer=layer,
        text_encoder=FakeTextEncoder(), shard_size=3, progress=False,
        read_audio=reader, max_seconds=0.6,
    )
    _, summary = prepare.prepare_speed_copies(utterances, out_dir, [0.5], **settings)
    assert asked == {0.3}  # the source seconds that become 0.6 s at half speed
    copies = _records_of(out_dir / records.AUGMENTED_DIRNAME)
    assert summary["by_speed"] == {"0.5": 7}
    # 0.2 s .. 0.8 s become 0.4 s .. 1.6 s, cut at 0.6 s.
    lengths = {name: int(item["audio_length"]) for name, item in copies.items()}
    assert max(lengths.values()) == 10
    assert lengths["Ses01F_impro01_F000@speed0.5"] < lengths["Ses01F_impro01_F002@speed0.5"]
    assert lengths["Ses01F_impro01_F002@speed0.5"] == lengths["Ses02F_impro01_F005@speed0.5"]
    report = json.loads((out_dir / records.AUGMENTED_DIRNAME / "report.json").read_text())
    assert {item["kept_seconds"] for item in report["truncated"]} == {0.6}
    assert len(report["truncated"]) == 5  # not the 0.2 s, 0.3 s clips (0.4 s, 0.6 s)


def test_prepare_with_speed_perturbation_keeps_the_main_records(tmp_path, monkeypatch, capsys):
    from smcn_tf import cli
    from smcn_tf.corpora import demo

    monkeypatch.setattr(prepare, "TextEncoder", lambda *args, **kwargs: FakeTextEncoder())
    root = demo.write_demo_corpus(tmp_path / "demo", seed=0, utterances_per_speaker=4)
    plain, augmented = tmp_path / "plain", tmp_path / "augmented_run"
    common = ["prepare", "demo", "--data-dir", str(root), "--quiet",
              "--set", "features.shard_size=16", "--set", "features.max_frames=60"]
    assert cli.main(common + ["--out", str(plain)]) == 0
    assert "speed-perturbed" not in capsys.readouterr().out
    assert cli.main(common + ["--out", str(augmented),
                              "--set", "features.speed_perturbation=[0.9, 1.1]"]) == 0
    out = capsys.readouterr().out
    copies_dir = os.path.join(str(augmented), "augmented")
    assert (f"Wrote 80 speed-perturbed copies to {copies_dir}: 40 at speed 0.9, "
            "40 at speed 1.1.") in out

    # The main records are byte for byte those of a run without speed perturbation.
    assert _shard_bytes(augmented) == _shard_bytes(plain)
    main = records.read_manifest(augmented)
    assert main.extra["augmentation"]["speed"] == [0.9, 1.1]
    assert main.shards == records.read_manifest(plain).shards
    report = json.loads((augmented / "report.json").read_text())
    assert report["augmentation"]["by_speed"] == {"0.9": 40, "1.1": 40}
    copies = records.read_manifest(augmented / "augmented")
    assert copies.num_examples == 80 and copies.groups == main.groups
    assert copies.counts == {
        group: {label: 2 * count for label, count in by_label.items()}
        for group, by_label in main.counts.items()
    }
    assert pipeline.count_examples(augmented, augmented=True) == 120
    assert pipeline.count_examples(augmented, groups=["Session2"], augmented=True) == 24

    # Again without speed perturbation: the main records say no copies exist.
    assert cli.main(common + ["--out", str(augmented)]) == 0
    assert "augmentation" not in records.read_manifest(augmented).extra
    with pytest.raises(ValueError, match="speed_perturbation"):
        pipeline.count_examples(augmented, augmented=True)


def test_mel_bands_widen_the_frames_and_enter_the_manifest(tmp_path):
    from smcn_tf.corpora import demo
    from smcn_tf.records.format import read_manifest

    root = demo.write_demo_corpus(tmp_path / "demo", seed=0, utterances_per_speaker=4)
    _prepare_corpus("demo", root, tmp_path / "records", mel_bands=40)
    manifest = read_manifest(str(tmp_path / "records"))
    assert manifest.audio_dim == 120  # 40 bands + deltas + delta-deltas
    assert manifest.features.audio_dim == 120


# --------------------------------------------------------------------------
# The demo corpus, byte for byte: every shard, sidecar and the manifest.
# --------------------------------------------------------------------------

# sha256 of what `demo_features` (conftest.py: the demo corpus, seed 0,
# prepared with the configs/demo.yaml features) writes. Recorded on
# 2026-12-07 from the code before `prepare_utterances` was split into stages
# (main at 39db6af), on a 2-core AMD EPYC x86-64 machine, CPU only (TF 2.21,
# the installed all-MiniLM-L6-v2). Shard files are hashed as written. The
# sidecars and manifest.json are hashed with their machine-dependent fields
# replaced by a marker, keys in file order: a sidecar's `digest` (it hashes
# the audio paths under pytest's tmp directory and the encoder's path) and
# the manifest's `text_encoder` (the checkpoint's path in the venv; checked
# on its own below). report.json holds timings and paths and is not hashed.
# The log-Mel frames and MiniLM vectors are float32 computed on the CPU, so
# another CPU or TensorFlow build may change their last bits: then re-record.
# To re-record, run
#   .venv/bin/python -m pytest -q -p no:cacheprovider \
#     smcn_tf/records/prepare_test.py -k demo_shards_and_manifest_sha256
# and paste the dict literal the failure prints.
DEMO_SHA256 = {
    "manifest.json":
        "b8746686338fef3577b63cae4d18c7d69859278559f4b95d26e4a360b596f871",
    "shard-00000-of-00005.tfrecord":
        "0b4afae24595d5f9dda56de1f139c80b817e3f436e8a8114105fefb6fdb67755",
    "shard-00000-of-00005.tfrecord.json":
        "8c6628191336a107669c1c78b662fd09840526f7773f5773a1d121978dbf4d9c",
    "shard-00001-of-00005.tfrecord":
        "667bcd16473831d6c2541691c4baea3a4af131f7da72505c0e04a8fcfd98a182",
    "shard-00001-of-00005.tfrecord.json":
        "341333f78ada4d92019fd34c41f3cb3034f659b877d5c50f1cdb887fa7e90e03",
    "shard-00002-of-00005.tfrecord":
        "8e20fdc3d3480ec1017599686a6724b8d4fe31f2e4443a01b694e922f94f8cce",
    "shard-00002-of-00005.tfrecord.json":
        "f3c078591e1ae14f2b03cecf810bf952d5be6116311f86b8cbab255e7b3a180d",
    "shard-00003-of-00005.tfrecord":
        "661bb5ffac7f74a0f049244cc3e4d4a7e34f46f881b224aae0c8d940ad90e806",
    "shard-00003-of-00005.tfrecord.json":
        "31d2caf828cadcad8e93e47ae4f226e41656e8274a061c7da070a8b539e0f24d",
    "shard-00004-of-00005.tfrecord":
        "584277d1126b5038799336bda87c46f7ac02a8b97e767332db65f516478efb24",
    "shard-00004-of-00005.tfrecord.json":
        "0216957c76a10531e6ae4ef838197774c7a3c11e6e91913736858339a771d7b2",
}


def _canonical_json_sha256(path, machine_fields):
    """sha256 of a JSON file, with `machine_fields` replaced by a marker."""
    with open(path, encoding="utf-8") as file:
        values = json.load(file)
    for key in machine_fields:
        if key in values:
            values[key] = "<machine-dependent>"
    text = json.dumps(values, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _demo_sha256(records_dir):
    figures = {}
    for name in sorted(os.listdir(records_dir)):
        path = os.path.join(records_dir, name)
        if name.endswith(".tfrecord"):
            with open(path, "rb") as file:
                figures[name] = hashlib.sha256(file.read()).hexdigest()
        elif name.endswith(".tfrecord.json"):
            figures[name] = _canonical_json_sha256(path, ("digest",))
        elif name == records.MANIFEST_FILENAME:
            figures[name] = _canonical_json_sha256(path, ("text_encoder",))
    return figures


def test_demo_shards_and_manifest_sha256(demo_features):
    from smcn_tf import config as config_module
    from smcn_tf.features.text import default_checkpoint_dir

    # demo_features prepares with these settings; they must stay configs/demo.yaml's.
    repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    features = config_module.load_config(os.path.join(repository, "configs", "demo.yaml")).features
    assert (features.corpus, features.sample_rate, features.mel_bands) == ("demo", 16000, 26)
    assert (features.pooling, features.max_frames, features.max_tokens) == (5, 500, 150)
    assert (features.text_encoder, features.shard_size, features.min_seconds) == (None, 64, 0.1)
    assert features.speed_perturbation == []

    manifest = records.read_manifest(demo_features)
    assert manifest.text_encoder == default_checkpoint_dir()
    figures = _demo_sha256(demo_features)
    literal = "{\n" + "".join(f'    "{k}":\n        "{v}",\n' for k, v in figures.items()) + "}"
    assert figures == DEMO_SHA256, f"The demo records changed; now:\nDEMO_SHA256 = {literal}"
