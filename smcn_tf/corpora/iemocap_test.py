"""Tests for the IEMOCAP_full_release parser, on tiny hand-written release trees."""

import os
import re

import numpy
import pytest
import soundfile

from smcn_tf.corpora import iemocap
from smcn_tf.corpora.utterance import CorpusFormatError, Utterance

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"

# Session1, dialog Ses01F_impro01: CRLF endings, header, evaluator lines, an
# exc turn, a fru and an xxx turn (dropped).
IMPRO_LABELS = [
    HEADER,
    "",
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]",
    "C-E2:\tNeutral;\t()",
    "C-E3:\tNeutral;\t()",
    "A-E3:\tval 3; act 2; dom  2;\t()",
    "",
    "[10.0100 - 11.3925]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.5000]",
    "C-E2:\tFrustration;\t()",
    "",
    "[14.8872 - 18.0175]\tSes01F_impro01_M000\texc\t[4.0000, 3.5000, 3.0000]",
    "C-E2:\tExcited;\t()",
    "A-E1:\tval 4; act 4; dom  3;\t(happy about the forms)",
    "",
    "[19.2900 - 20.7875]\tSes01F_impro01_M001\txxx\t[2.5000, 2.5000, 2.5000]",
    "C-E2:\tFrustration;\t()",
    "C-E3:\tAnger;\t()",
    "",
]
IMPRO_TRANSCRIPTS = [
    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.",
    "Ses01F_impro01_F001 [010.0100-011.3925]: Do you have your forms?",
    "Ses01F_impro01_MXX0 [012.0000-012.5000]: [LAUGHTER]",
    "Ses01F_impro01_M000 [014.8872-018.0175]: Yeah, I got them!",
    "Ses01F_impro01_M001 [019.2900-020.7875]: Hmm.",
    "M: [BREATHING]",
    "",
]
# Session1, dialog Ses01F_script01_1: LF endings.
SCRIPT_LABELS = [
    HEADER,
    "",
    "[0.5000 - 2.0000]\tSes01F_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]",
    "C-E1:\tAnger;\t()",
    "",
    "[2.5000 - 4.0000]\tSes01F_script01_1_M000\tsad\t[1.5000, 1.5000, 2.0000]",
    "",
    "[4.5000 - 6.0000]\tSes01F_script01_1_M001\thap\t[4.5000, 3.0000, 3.0000]",
    "",
]
SCRIPT_TRANSCRIPTS = [
    "Ses01F_script01_1_F000 [000.5000-002.0000]: Get out of here.",
    "Ses01F_script01_1_M000 [002.5000-004.0000]: I miss her so much.",
    "Ses01F_script01_1_M001 [004.5000-006.0000]: What a lovely day!",
]
# Session2, dialog Ses02M_impro05a (a dialog name with a letter suffix), with
# a stray Latin-1 byte in the transcription.
SESSION2_LABELS = [
    HEADER,
    "",
    "[1.0000 - 3.0000]\tSes02M_impro05a_F012\tneu\t[3.0000, 2.0000, 2.5000]",
    "",
]
SESSION2_TRANSCRIPTS = b"Ses02M_impro05a_F012 [001.0000-003.0000]: A caf\xe9 au lait.\n"

KEPT_IDS = (
    "Ses01F_impro01_F000",
    "Ses01F_impro01_M000",
    "Ses01F_script01_1_F000",
    "Ses01F_script01_1_M000",
    "Ses01F_script01_1_M001",
    "Ses02M_impro05a_F012",
)


def write_lines(path, lines, newline="\n"):
    """Write lines to a file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode("utf-8"))


def write_wav(path):
    """Write a short 16 kHz mono PCM16 WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (numpy.sin(numpy.arange(400) * 0.1) * 8000).astype(numpy.int16)
    soundfile.write(path, samples, 16000, subtype="PCM_16")


def wav_path(root, session, utterance_id):
    """The release's audio path of an utterance."""
    dialog = utterance_id.rsplit("_", 1)[0]
    return root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance_id}.wav"


def label_path(root, session, dialog):
    """The release's label file of a dialog."""
    return root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def transcription_path(root, session, dialog):
    """The release's transcription file of a dialog."""
    return root / f"Session{session}" / "dialog" / "transcriptions" / f"{dialog}.txt"


@pytest.fixture
def release(tmp_path):
    """A two-session release tree; returns its root."""
    root = tmp_path / "IEMOCAP_full_release"
    write_lines(label_path(root, 1, "Ses01F_impro01"), IMPRO_LABELS, newline="\r\n")
    write_lines(transcription_path(root, 1, "Ses01F_impro01"), IMPRO_TRANSCRIPTS, newline="\r\n")
    write_lines(label_path(root, 1, "Ses01F_script01_1"), SCRIPT_LABELS)
    write_lines(transcription_path(root, 1, "Ses01F_script01_1"), SCRIPT_TRANSCRIPTS)
    write_lines(label_path(root, 2, "Ses02M_impro05a"), SESSION2_LABELS)
    transcription = transcription_path(root, 2, "Ses02M_impro05a")
    transcription.parent.mkdir(parents=True, exist_ok=True)
    transcription.write_bytes(SESSION2_TRANSCRIPTS)

    # Files the parser must ignore: per-evaluator subfolders holding lines that
    # look like label lines, a non-.txt file, and a macOS resource fork.
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation"
    decoy = "[1.0000 - 2.0000]\tSes01F_impro01_F009\tang\t[1.0000, 1.0000, 1.0000]"
    write_lines(evaluation / "Categorical" / "Ses01F_impro01_e1_cat.txt",
                ["Ses01F_impro01_F000 :Neutral state; ()", decoy])
    write_lines(evaluation / "Attribute" / "Ses01F_impro01_atr.txt", [decoy])
    write_lines(evaluation / "Self-evaluation" / "Ses01F_impro01.txt", [decoy])
    write_lines(evaluation / "Ses01F_impro01.anvil", [decoy])
    (evaluation / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07[\xff\xfe")

    for utterance_id in KEPT_IDS:
        write_wav(wav_path(root, int(utterance_id[4]), utterance_id))
    # Dropped turns have audio in the release too.
    write_wav(wav_path(root, 1, "Ses01F_impro01_F001"))
    return root


def expected_utterances(root):
    """The exact utterances the `release` fixture must parse to."""
    def make(session, utterance_id, transcript, label, speaker):
        return Utterance(
            utterance_id=utterance_id,
            audio_path=os.fspath(wav_path(root, session, utterance_id)),
            transcript=transcript,
            label=label,
            speaker=speaker,
            group=f"Session{session}",
        )

    return [
        make(1, "Ses01F_impro01_F000", "Excuse me.", "neutral", "Ses01F"),
        make(1, "Ses01F_impro01_M000", "Yeah, I got them!", "happy", "Ses01M"),
        make(1, "Ses01F_script01_1_F000", "Get out of here.", "angry", "Ses01F"),
        make(1, "Ses01F_script01_1_M000", "I miss her so much.", "sad", "Ses01M"),
        make(1, "Ses01F_script01_1_M001", "What a lovely day!", "happy", "Ses01M"),
        make(2, "Ses02M_impro05a_F012", "A caf\ufffd au lait.", "neutral", "Ses02F"),
    ]


def replace_line(path, line_number, new_line):
    """Replace one 1-based line of a file, keeping its line endings."""
    data = path.read_bytes()
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    lines = data.split(newline)
    lines[line_number - 1] = new_line.encode("utf-8")
    path.write_bytes(newline.join(lines))


def test_parses_exact_utterances(release):
    result = iemocap.parse_iemocap(release, sessions=(1, 2))
    assert result.utterances == expected_utterances(release)
    assert result.dropped_labels == {"fru": 1, "xxx": 1}
    assert result.skipped == []
    assert result.kept_labels == {"ang": 1, "exc": 1, "hap": 1, "neu": 2, "sad": 1}


def test_accepts_string_root_and_session_order(release):
    by_path = iemocap.parse_iemocap(release, sessions=(1, 2))
    by_string = iemocap.parse_iemocap(str(release), sessions=[2, 1, 2])
    assert by_string == by_path


def test_counts(release):
    counts = iemocap.parse_iemocap(release, sessions=(1, 2)).counts()
    assert counts == {
        "total": 6,
        "by_label": {"angry": 1, "happy": 2, "neutral": 2, "sad": 1},
        "by_raw_label": {"ang": 1, "exc": 1, "hap": 1, "neu": 2, "sad": 1},
        "by_group": {"Session1": 5, "Session2": 1},
        "dropped_labels": {"fru": 1, "xxx": 1},
        "skipped": 0,
    }


def test_session_subset(release):
    result = iemocap.parse_iemocap(release, sessions=(2,))
    assert [utterance.utterance_id for utterance in result.utterances] == ["Ses02M_impro05a_F012"]
    assert result.dropped_labels == {}


def test_speaker_is_the_speaking_actor():
    assert iemocap.parse_utterance_id("Ses05F_script02_2_M041") == {
        "session": 5, "dialog": "Ses05F_script02_2", "speaker": "Ses05M",
    }
    assert iemocap.parse_utterance_id("Ses03M_impro05a_F012")["speaker"] == "Ses03F"
    assert iemocap.parse_utterance_id("Ses01F_impro01_MXX0") is None
    assert iemocap.parse_utterance_id("M:") is None


def test_every_other_label_is_dropped():
    assert set(iemocap.LABEL_MAP.values()) == set(iemocap.CLASS_NAMES)
    for raw_label in ("fru", "sur", "fea", "dis", "oth", "xxx"):
        assert raw_label not in iemocap.LABEL_MAP


@pytest.mark.parametrize(
    "bad_line",
    [
        "[0.5000 - ]\tSes01F_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]",
        "[2.0000 - 0.5000]\tSes01F_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]",
        "[0.5000 - 2.0000]\tSes01F_script01_1_F000\t[1.5000, 4.0000, 4.0000]",
        "[0.5000 - 2.0000]\tSes01F_script01_1_F000\tang",
        "[0.5000 - 2.0000]\tSes01F_script01_1_F000\tang\t[1.5000, 4.0000]",
        "[0.5000 - 2.0000]\tSes01F_script01_1_X000\tang\t[1.5000, 4.0000, 4.0000]",
        "[0.5000 - 2.0000]\tSes02F_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]",
        "[0.5000 - 2.0000]",
    ],
)
def test_malformed_label_line(release, bad_line):
    path = label_path(release, 1, "Ses01F_script01_1")
    replace_line(path, 3, bad_line)
    with pytest.raises(CorpusFormatError) as error:
        iemocap.parse_iemocap(release, sessions=(1, 2))
    assert f"{path}:3: " in str(error.value)
    assert error.value.line_number == 3
    # Malformed lines are errors in non-strict mode too.
    with pytest.raises(CorpusFormatError):
        iemocap.parse_iemocap(release, sessions=(1, 2), strict=False)


def test_malformed_label_line_in_crlf_file(release):
    path = label_path(release, 1, "Ses01F_impro01")
    replace_line(path, 11, "[14.8872 - 18.0175]\tSes01F_impro01_M000")
    with pytest.raises(CorpusFormatError, match=re.escape(f"{path}:11: ")):
        iemocap.parse_iemocap(release, sessions=(1,))


def test_duplicate_label_is_an_error(release):
    path = label_path(release, 1, "Ses01F_script01_1")
    replace_line(path, 6, "[2.5000 - 4.0000]\tSes01F_script01_1_F000\tsad\t[1.5, 1.5, 2.0]")
    with pytest.raises(CorpusFormatError, match=re.escape(f"{path}:6: ") + ".*labelled twice"):
        iemocap.parse_iemocap(release, sessions=(1,))


@pytest.mark.parametrize(
    "bad_line",
    [
        "Ses01F_impro01_M000 006.2901-008.2357: Yeah, I got them!",
        "Ses01F_impro01_M000 [014.8872-018.0175] Yeah, I got them!",
        "Ses01F_impro01_M000 [014.8872]: Yeah, I got them!",
        "Ses01F_impro01_M000",
    ],
)
def test_malformed_transcription_line(release, bad_line):
    path = transcription_path(release, 1, "Ses01F_impro01")
    replace_line(path, 4, bad_line)
    with pytest.raises(CorpusFormatError) as error:
        iemocap.parse_iemocap(release, sessions=(1,))
    assert f"{path}:4: " in str(error.value)
    assert "transcription" in str(error.value)


def test_missing_wav_strict(release):
    missing = wav_path(release, 1, "Ses01F_script01_1_M000")
    missing.unlink()
    path = label_path(release, 1, "Ses01F_script01_1")
    with pytest.raises(CorpusFormatError) as error:
        iemocap.parse_iemocap(release, sessions=(1, 2))
    message = str(error.value)
    assert message.startswith(f"{path}:6: ")
    assert "Ses01F_script01_1_M000" in message and str(missing) in message


def test_missing_wav_not_strict(release):
    missing = wav_path(release, 1, "Ses01F_script01_1_M000")
    missing.unlink()
    result = iemocap.parse_iemocap(release, sessions=(1, 2), strict=False)
    assert result.skipped == [("Ses01F_script01_1_M000", f"missing audio file {missing}")]
    expected = [
        utterance for utterance in expected_utterances(release)
        if utterance.utterance_id != "Ses01F_script01_1_M000"
    ]
    assert result.utterances == expected
    assert result.counts()["skipped"] == 1


def test_missing_transcription(release):
    transcripts = transcription_path(release, 1, "Ses01F_script01_1")
    write_lines(transcripts, SCRIPT_TRANSCRIPTS[1:])
    path = label_path(release, 1, "Ses01F_script01_1")
    expected_message = f"{path}:3: Ses01F_script01_1_F000: no transcription"
    with pytest.raises(CorpusFormatError, match=re.escape(expected_message)):
        iemocap.parse_iemocap(release, sessions=(1,))
    result = iemocap.parse_iemocap(release, sessions=(1,), strict=False)
    assert result.skipped == [
        ("Ses01F_script01_1_F000", f"no transcription line in {transcripts}")
    ]
    assert len(result.utterances) == 4


def test_missing_session_dir(release):
    with pytest.raises(CorpusFormatError) as error:
        iemocap.parse_iemocap(release, sessions=(1, 2, 3))
    assert os.fspath(release / "Session3" / "dialog" / "EmoEvaluation") in str(error.value)


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CorpusFormatError, match=re.escape(str(missing))):
        iemocap.parse_iemocap(missing)


@pytest.mark.parametrize("sessions", [(), (0,), (6,), ("1",), (True,), 3])
def test_invalid_sessions(release, sessions):
    with pytest.raises(ValueError, match="sessions"):
        iemocap.parse_iemocap(release, sessions=sessions)


def test_expected_counts_are_consistent():
    expected = iemocap.EXPECTED_COUNTS
    assert sum(expected["by_label"].values()) == expected["total"] == 5531
    assert sum(expected["by_group"].values()) == expected["total"]
    assert sum(expected["by_raw_label"].values()) == expected["total"]
    assert expected["by_raw_label"]["hap"] + expected["by_raw_label"]["exc"] == 1636
    assert expected["total"] + sum(expected["dropped_labels"].values()) == 10039


def test_compare_to_expected():
    matching = {key: value for key, value in iemocap.EXPECTED_COUNTS.items()}
    assert iemocap.compare_to_expected(matching) == []
    differing = {
        "total": 5530,
        "by_label": {"angry": 1103, "happy": 1635, "neutral": 1708, "sad": 1084},
        "by_group": {"Session1": 1085, "Session2": 1023, "Session3": 1151, "Session4": 1031,
                     "Session5": 1240, "Session9": 1},
    }
    warnings = iemocap.compare_to_expected(differing)
    assert len(warnings) == 4
    assert any("5530" in warning and "5531" in warning for warning in warnings)
    assert any("happy" in warning and "1635" in warning for warning in warnings)
    assert any("Session5" in warning and "1240" in warning for warning in warnings)
    assert any("Session9" in warning for warning in warnings)


def test_compare_to_expected_on_a_small_parse(release):
    counts = iemocap.parse_iemocap(release, sessions=(1, 2)).counts()
    warnings = iemocap.compare_to_expected(counts)
    assert any("Session3" in warning and "parsed 0" in warning for warning in warnings)
