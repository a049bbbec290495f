"""Tests for the demo corpus: layout, determinism, and where the emotion cues are."""

import collections
import pathlib
import re

import numpy
import pytest
import soundfile

from smcn_tf.corpora import demo, iemocap

LABEL_LINE = re.compile(
    r"^\[\d+\.\d{4} - \d+\.\d{4}\]\t(Ses\d{2}[FM]_\w+_[FM]\d{3})\t([a-z]{3})\t"
    r"\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$"
)
TRANSCRIPTION_LINE = re.compile(r"^(Ses\d{2}[FM]_\w+) \[\d{3}\.\d{4}-\d{3}\.\d{4}\]: \S.*$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default demo corpus and its parse."""
    root = demo.write_demo_corpus(tmp_path_factory.mktemp("demo") / "IEMOCAP_full_release")
    return root, iemocap.parse_iemocap(root)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, read_tree):
    first = read_tree(demo.write_demo_corpus(tmp_path / "a", seed=3, utterances_per_speaker=4))
    second = read_tree(demo.write_demo_corpus(tmp_path / "b", seed=3, utterances_per_speaker=4))
    other = read_tree(demo.write_demo_corpus(tmp_path / "c", seed=4, utterances_per_speaker=4))
    assert first == second
    assert set(other) == set(first)
    differing = [name for name in first if first[name] != other[name]]
    assert len(differing) > 0.9 * len(first)


def test_returns_root_as_string(tmp_path):
    root = demo.write_demo_corpus(tmp_path / "corpus", utterances_per_speaker=4)
    assert root == str(tmp_path / "corpus")


def test_parse_counts(corpus):
    _, result = corpus
    assert result.counts() == {
        "total": 240,
        "by_label": {"angry": 60, "happy": 60, "neutral": 60, "sad": 60},
        "by_raw_label": {"ang": 60, "exc": 20, "hap": 40, "neu": 60, "sad": 60},
        "by_group": {f"Session{number}": 48 for number in range(1, 6)},
        "dropped_labels": {"fru": 10, "xxx": 10},
        "skipped": 0,
    }
    per_speaker = collections.Counter(
        (utterance.speaker, utterance.label) for utterance in result.utterances
    )
    speakers = {speaker for speaker, _ in per_speaker}
    assert speakers == {f"Ses{number:02d}{gender}" for number in range(1, 6) for gender in "FM"}
    assert set(per_speaker.values()) == {6}
    for utterance in result.utterances:
        assert utterance.group == f"Session{int(utterance.speaker[3:5])}"


def test_layout_and_line_formats(corpus):
    root, result = corpus
    root = pathlib.Path(root)
    assert sorted(path.name for path in root.iterdir()) == [f"Session{n}" for n in range(1, 6)]
    label_files = sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt"))
    assert len(label_files) == 20
    names = {path.stem.split("_", 1)[1] for path in label_files}
    assert names == {"impro01", "impro05a", "script01_1", "script02_2"}
    label_ids = []
    for path in label_files:
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
        for line in lines:
            if line.startswith("["):
                match = LABEL_LINE.match(line)
                assert match, line
                assert match.group(1).rsplit("_", 1)[0] == path.stem
                label_ids.append(match.group(1))
        assert any(line.startswith("C-E1:\t") for line in lines)
    assert len(label_ids) == 260
    transcription_files = sorted(root.glob("Session*/dialog/transcriptions/*.txt"))
    assert [path.name for path in transcription_files] == [path.name for path in label_files]
    skipped_lines = 0
    for path in transcription_files:
        for line in path.read_text(encoding="utf-8").splitlines():
            assert TRANSCRIPTION_LINE.match(line), line
            skipped_lines += "XX0 [" in line
    assert skipped_lines == 20
    for utterance in result.utterances:
        assert utterance.audio_path == str(
            root / f"Session{int(utterance.speaker[3:5])}" / "sentences" / "wav"
            / utterance.utterance_id.rsplit("_", 1)[0] / f"{utterance.utterance_id}.wav"
        )


def test_wavs_are_16k_mono_pcm16(corpus):
    _, result = corpus
    for utterance in result.utterances:
        info = soundfile.info(utterance.audio_path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= info.duration <= 2.5


def test_other_sample_rate(tmp_path):
    root = demo.write_demo_corpus(tmp_path / "corpus", utterances_per_speaker=4, sample_rate=8000)
    result = iemocap.parse_iemocap(root)
    assert len(result.utterances) == 40
    assert soundfile.info(result.utterances[0].audio_path).samplerate == 8000


@pytest.mark.parametrize(
    "arguments",
    [
        {"utterances_per_speaker": 6},
        {"utterances_per_speaker": 0},
        {"seed": -1},
        {"seed": 1.5},
        {"sample_rate": 4000},
    ],
)
def test_invalid_arguments(tmp_path, arguments):
    with pytest.raises(ValueError):
        demo.write_demo_corpus(tmp_path / "corpus", **arguments)


def estimate_pitch(samples, sample_rate):
    """Median autocorrelation pitch (Hz) over the louder 40 ms frames."""
    frame = int(0.04 * sample_rate)
    starts = range(0, len(samples) - frame, frame // 2)
    frames = numpy.stack([samples[start:start + frame] for start in starts])
    frames = frames[numpy.sqrt(numpy.mean(frames**2, axis=1)) >= numpy.sqrt(numpy.mean(samples**2))]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = numpy.fft.rfft(frames, n=2 * frame, axis=1)
    autocorrelation = numpy.fft.irfft(numpy.abs(spectrum) ** 2, axis=1)[:, :frame]
    shortest, longest = int(sample_rate / 500), int(sample_rate / 60)
    lags = shortest + numpy.argmax(autocorrelation[:, shortest:longest], axis=1)
    return float(numpy.median(sample_rate / lags))


@pytest.fixture(scope="module")
def acoustics(corpus):
    """Per-utterance (label, gender, RMS energy, pitch estimate)."""
    _, result = corpus
    rows = []
    for utterance in result.utterances:
        samples, sample_rate = soundfile.read(utterance.audio_path)
        rms = float(numpy.sqrt(numpy.mean(samples**2)))
        rows.append((utterance.label, utterance.speaker[-1], rms,
                     estimate_pitch(samples, sample_rate)))
    return rows


def mean_of(rows, labels, column, gender=None):
    """Mean of one column over rows with one of the labels (and the gender)."""
    values = [row[column] for row in rows
              if row[0] in labels and (gender is None or row[1] == gender)]
    return float(numpy.mean(values))


def test_arousal_is_in_the_voice(acoustics):
    rms_high = mean_of(acoustics, ("angry", "happy"), 2)
    rms_neutral = mean_of(acoustics, ("neutral",), 2)
    rms_sad = mean_of(acoustics, ("sad",), 2)
    assert rms_high > 1.6 * rms_neutral > 1.6 * 1.6 * rms_sad
    for gender in "FM":
        pitch_high = mean_of(acoustics, ("angry", "happy"), 3, gender)
        pitch_sad = mean_of(acoustics, ("sad",), 3, gender)
        assert pitch_high > 1.3 * pitch_sad
    # Female voices are higher than male ones at every arousal level.
    for label in ("angry", "happy", "neutral", "sad"):
        assert mean_of(acoustics, (label,), 3, "F") > 1.5 * mean_of(acoustics, (label,), 3, "M")


def test_audio_cannot_tell_angry_from_happy(acoustics):
    for column, tolerance in ((2, 0.1), (3, 0.05)):
        angry = mean_of(acoustics, ("angry",), column)
        happy = mean_of(acoustics, ("happy",), column)
        assert abs(angry - happy) < tolerance * (angry + happy) / 2


def core_patterns(cores):
    """Regexes matching the sentences a pool of core templates can produce."""
    fillers = {
        "person": demo.PEOPLE, "thing": demo.THINGS, "time": demo.TIMES,
        "clock": demo.CLOCK_TIMES,
    }
    patterns = []
    for core in cores:
        pattern = re.escape(core)
        for slot, words in fillers.items():
            pattern = pattern.replace(
                re.escape("{" + slot + "}"), "(?:" + "|".join(map(re.escape, words)) + ")"
            )
        patterns.append(re.compile(pattern, re.IGNORECASE))
    return patterns


def matching_cores(transcript):
    """The (valence, core index) pairs whose template matches the transcript."""
    return [
        (valence, index)
        for valence, cores in demo.CORES.items()
        for index, pattern in enumerate(core_patterns(cores))
        if pattern.search(transcript)
    ]


def test_valence_is_in_the_words(corpus):
    _, result = corpus
    expected_valence = {"angry": "negative", "sad": "negative", "happy": "positive",
                        "neutral": "neutral"}
    used_cores = collections.defaultdict(set)
    for utterance in result.utterances:
        matches = matching_cores(utterance.transcript)
        assert {valence for valence, _ in matches} == {expected_valence[utterance.label]}, (
            utterance.transcript
        )
        used_cores[utterance.label].update(index for _, index in matches)
    # Angry and sad draw from one pool: they use mostly the same core sentences.
    shared = used_cores["angry"] & used_cores["sad"]
    assert len(shared) >= 0.6 * len(used_cores["angry"] | used_cores["sad"])
    assert len(used_cores["happy"]) >= 15


def test_angry_and_sad_share_vocabulary_happy_does_not(corpus):
    _, result = corpus
    vocabulary = collections.defaultdict(set)
    for utterance in result.utterances:
        vocabulary[utterance.label].update(re.findall(r"[a-z']+", utterance.transcript.lower()))

    def overlap(first, second):
        shared = vocabulary[first] & vocabulary[second]
        return len(shared) / len(vocabulary[first] | vocabulary[second])

    assert overlap("angry", "sad") > overlap("angry", "happy") + 0.2
    assert overlap("angry", "sad") > overlap("sad", "happy") + 0.2
    # Sentences are composed, not repeated: most transcripts are distinct.
    transcripts = [utterance.transcript for utterance in result.utterances]
    assert len(set(transcripts)) > 0.9 * len(transcripts)
