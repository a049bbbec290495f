"""Tests for the MELD-layout demo corpus: layout, encodings, faults, cues, determinism."""

import collections
import csv
import io
import pathlib

import av
import numpy
import pytest

from smcn_tf.corpora import demo_meld, meld
from smcn_tf.features import media

PER_CLASS = 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small demo corpus one level below its root, and its parse."""
    parent = tmp_path_factory.mktemp("demo_meld")
    root = demo_meld.write_demo_meld(parent / "MELD.Raw", seed=0, utterances_per_class=PER_CLASS)
    return pathlib.Path(root), meld.parse_meld(parent)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, read_tree):
    first = read_tree(demo_meld.write_demo_meld(tmp_path / "a", seed=5, utterances_per_class=1))
    second = read_tree(demo_meld.write_demo_meld(tmp_path / "b", seed=5, utterances_per_class=1))
    other = read_tree(demo_meld.write_demo_meld(tmp_path / "c", seed=6, utterances_per_class=1))
    assert first == second
    assert set(other) == set(first)
    differing = [name for name in first if first[name] != other[name]]
    assert len(differing) > 0.9 * len(first)


def test_layout_encodings_and_line_ends(corpus):
    root, result = corpus
    assert sorted(path.name for path in root.iterdir()) == sorted(
        list(meld.CSV_FILENAMES.values()) + list(meld.MEDIA_FOLDERS.values())
    )
    assert result.encodings == {"train": "cp1252", "dev": "utf-8", "test": "utf-8-sig"}
    for split, name in meld.CSV_FILENAMES.items():
        data = (root / name).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") == 7 * PER_CLASS + 1
        text = data.decode(demo_meld.CSV_ENCODINGS[split])
        assert text.lstrip("\ufeff").startswith(
            "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,"
            "Episode,StartTime,EndTime\r\n"
        )
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))[1:]
        assert [row[0] for row in rows] == [str(n) for n in range(1, len(rows) + 1)]
        assert all(row[9].count(",") == 1 for row in rows)  # "00:12:24,660", quoted
        assert any("," in row[1] for row in rows)
    # Typographic apostrophes, as cp1252 byte 0x92 in train and UTF-8 elsewhere.
    assert b"\x92" in (root / "train_sent_emo.csv").read_bytes()
    assert "\u2019".encode() in (root / "dev_sent_emo.csv").read_bytes()
    assert all(utterance.transcript.isascii() for utterance in result.utterances)


def test_parse_counts_and_faults(corpus):
    root, result = corpus
    rows = 7 * PER_CLASS
    counts = result.counts()
    assert counts["rows"] == {"train": rows, "dev": rows, "test": rows}
    for split in meld.SPLITS:
        assert set(counts["rows_by_label"][split].values()) == {PER_CLASS}
    assert counts["total"] == 3 * rows - 1
    missing_split, _, missing_name = demo_meld.QUIRKS["missing"].partition("_")
    assert result.skipped == [
        (
            demo_meld.QUIRKS["missing"],
            f"missing media file {root / 'dev_splits_complete' / (missing_name + '.mp4')}",
        )
    ]
    assert missing_split == "dev"
    extra_split, extra_name = demo_meld.QUIRKS["unannotated"]
    assert result.unannotated_media == {"train": [], "dev": [], "test": [extra_name]}
    assert (root / meld.MEDIA_FOLDERS[extra_split] / extra_name).is_file()
    speakers = {utterance.speaker for utterance in result.utterances}
    assert speakers <= {name for name, _ in demo_meld.CHARACTERS} and len(speakers) > 3
    # No real-release comparison applies, but the helper reports the small size.
    assert meld.compare_to_expected(counts)[0].startswith("train: read 14 rows")


def test_clips_decode_with_the_faults_where_planned(corpus):
    _, result = corpus
    by_id = {utterance.utterance_id: utterance for utterance in result.utterances}
    corrupt = by_id[demo_meld.QUIRKS["corrupt"]]
    with pytest.raises(ValueError, match=f"^{corrupt.audio_path}: cannot open media file"):
        media.read_media_audio(corrupt.audio_path)

    long_clip = media.decode_media_audio(by_id[demo_meld.QUIRKS["long"]].audio_path,
                                         max_seconds=3.0)
    assert long_clip.truncated and long_clip.waveform.size == 3 * 16000
    assert long_clip.source_seconds >= demo_meld.LONG_CLIP_SECONDS

    rms_by_arousal = collections.defaultdict(list)
    rates = set()
    for utterance in result.utterances:
        if utterance.utterance_id in (demo_meld.QUIRKS["corrupt"], demo_meld.QUIRKS["long"]):
            continue
        with av.open(utterance.audio_path) as container:
            assert [stream.type for stream in container.streams] == ["video", "audio"]
            stream = container.streams.audio[0]
            assert stream.channels == 2 and stream.codec_context.name == "aac"
            rates.add(stream.rate)
        waveform = media.read_media_audio(utterance.audio_path)
        assert 0.9 <= waveform.size / 16000 <= 2.5
        arousal, _ = demo_meld.CLASS_CUES[utterance.label]
        rms_by_arousal[arousal].append(float(numpy.sqrt(numpy.mean(waveform**2))))
    assert rates == set(demo_meld.SOURCE_RATES)
    # Arousal is in the voice: louder from low to medium to high.
    low, medium, high = (numpy.median(rms_by_arousal[level]) for level in ("low", "medium", "high"))
    assert low < medium < high


def test_valence_is_in_the_words(corpus):
    from smcn_tf.corpora import demo

    _, result = corpus
    endings = {
        valence: tuple(ending.rstrip(".!?") for ending in demo.ENDINGS[valence] if len(ending) > 3)
        for valence in demo.ENDINGS
    }
    for utterance in result.utterances:
        _, valence = demo_meld.CLASS_CUES[utterance.label]
        others = [other for other in endings if other != valence]
        for other in others:
            assert not any(ending in utterance.transcript for ending in endings[other])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="utterances_per_class must be at least 1"):
        demo_meld.write_demo_meld(tmp_path, utterances_per_class=0)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        demo_meld.write_demo_meld(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="seed must be an int"):
        demo_meld.write_demo_meld(tmp_path, seed=1.5)
    with pytest.raises(ValueError, match="samples must be"):
        demo_meld.write_mp4(tmp_path / "x.mp4", numpy.zeros((3, 10)), 48000)
