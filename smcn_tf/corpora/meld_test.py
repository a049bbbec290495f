"""Tests for the MELD parser: the real CSV format, encodings, faults and errors."""

import pathlib
import re

import pytest

from smcn_tf.corpora import meld
from smcn_tf.corpora.utterance import CorpusFormatError, Utterance

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
EXCERPT = REPOSITORY.parent / "shared" / "fixtures" / "meld" / "dev_sent_emo.head60.csv"
HEADER = ",".join(meld.COLUMNS)


def _need_excerpt():
    if not EXCERPT.is_file():
        pytest.skip(f"the MELD excerpt {EXCERPT} is not here")
    return EXCERPT.read_bytes()


def _write_split(root, split, csv_bytes, media=None, placeholder=b"mp4"):
    """Write one split's CSV and a placeholder clip for each name in `media`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / meld.CSV_FILENAMES[split]).write_bytes(csv_bytes)
    folder = root / meld.MEDIA_FOLDERS[split]
    folder.mkdir(exist_ok=True)
    for name in media or ():
        (folder / name).write_bytes(placeholder)
    return folder


def _media_names(csv_text):
    """`dia<D>_utt<U>.mp4` for every row of a CSV text."""
    names = []
    for line in csv_text.splitlines()[1:]:
        match = re.search(r",(\d+),(\d+),\d+,\d+,\"?[\d:,]+\"?,\"?[\d:,]+\"?$", line)
        if match:
            names.append(f"dia{match.group(1)}_utt{match.group(2)}.mp4")
    return names


def _row(number, text, speaker, emotion, dialogue, turn, sentiment="neutral"):
    return (
        f'{number},"{text}",{speaker},{emotion},{sentiment},{dialogue},{turn},1,1,'
        f'"00:00:0{turn},000","00:00:0{turn},900"'
    )


def _csv(rows):
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8")


@pytest.fixture
def excerpt_tree(tmp_path):
    """The real 60-row dev excerpt with a placeholder clip for every row."""
    data = _need_excerpt()
    _write_split(tmp_path, "dev", data, _media_names(data.decode("utf-8")))
    return tmp_path


def test_real_excerpt_parses(excerpt_tree):
    result = meld.parse_meld(excerpt_tree, splits=["dev"])
    assert len(result.utterances) == 60 and result.skipped == []
    assert result.encodings == {"dev": "utf-8"}
    assert result.rows == {"dev": 60}
    folder = excerpt_tree / "dev_splits_complete"
    assert result.utterances[:3] == [
        Utterance(
            utterance_id="dev_dia0_utt0",
            audio_path=str(folder / "dia0_utt0.mp4"),
            # The curly apostrophe of the release becomes ASCII.
            transcript="Oh my God, he's lost it. He's totally lost it.",
            label="sadness",
            speaker="Phoebe",
            group="dev",
        ),
        Utterance("dev_dia0_utt1", str(folder / "dia0_utt1.mp4"), "What?", "surprise",
                  "Monica", "dev"),
        Utterance(
            "dev_dia1_utt0",
            str(folder / "dia1_utt0.mp4"),
            "Or! Or, we could go to the bank, close our accounts and cut them off at the source.",
            "neutral",
            "Ross",
            "dev",
        ),
    ]
    by_id = {utterance.utterance_id: utterance for utterance in result.utterances}
    assert by_id["dev_dia4_utt1"].transcript == "Yeah, we were...we were just looking around."
    assert by_id["dev_dia4_utt11"].transcript == (
        "Ross Geller, why do I know that name? It's uh-Wait! Did you write this?"
    )
    assert by_id["dev_dia6_utt4"] == Utterance(
        "dev_dia6_utt4", str(folder / "dia6_utt4.mp4"), "Oh shoot!", "surprise", "Phoebe", "dev"
    )
    # CRLF: no carriage return is left in any field.
    assert not any("\r" in u.transcript or "\r" in u.speaker for u in result.utterances)
    assert all(u.transcript.isascii() for u in result.utterances)
    # Utterances come by dialogue, then utterance number (dia1_utt10 after dia1_utt9).
    ids = [u.utterance_id for u in result.utterances]
    assert ids.index("dev_dia1_utt9") + 1 == ids.index("dev_dia1_utt10")
    counts = result.counts()
    assert counts["by_label"] == {
        "neutral": 24, "surprise": 14, "fear": 0, "sadness": 2, "joy": 6, "disgust": 0,
        "anger": 14,
    }
    assert counts["by_group"] == {"dev": 60} and counts["unannotated_media"] == {"dev": 0}


@pytest.mark.parametrize(
    "encode, encoding",
    [
        (lambda text: text.encode("cp1252"), "cp1252"),
        (lambda text: text.encode("utf-8-sig"), "utf-8-sig"),
        (lambda text: text.replace("\r\n", "\n").encode("utf-8"), "utf-8"),
    ],
    ids=["cp1252", "utf-8-bom", "lf"],
)
def test_other_encodings_parse_identically(tmp_path, excerpt_tree, encode, encoding):
    reference = meld.parse_meld(excerpt_tree, splits="dev").utterances
    text = _need_excerpt().decode("utf-8")
    _write_split(tmp_path / "other", "dev", encode(text), _media_names(text))
    result = meld.parse_meld(tmp_path / "other", splits="dev")
    assert result.encodings == {"dev": encoding}
    relocated = [
        Utterance(**{**u.__dict__, "audio_path": u.audio_path.replace(
            str(excerpt_tree), str(tmp_path / "other"))})
        for u in reference
    ]
    assert result.utterances == relocated


def test_normalize_transcript():
    assert meld.normalize_transcript("he\u2019s \u201cfine\u201d\u2026") == "he's \"fine\"..."
    # cp1252 bytes read as Latin-1, and UTF-8 bytes read as cp1252 (mojibake).
    assert meld.normalize_transcript("He\x92s here \x96 now\x85") == "He's here - now..."
    assert meld.normalize_transcript("he\u00e2\u20ac\u2122s") == "he's"
    # Real accents are words: kept.
    assert meld.normalize_transcript("Caf\u00e9 au lait, s'il vous pla\u00eet") == (
        "Caf\u00e9 au lait, s'il vous pla\u00eet"
    )
    text = "  Perhaps,  perhaps\u00a0not.\r\n"
    assert meld.normalize_transcript(text) == "Perhaps, perhaps not."


def test_undecodable_bytes_fall_back_to_latin1(tmp_path):
    data = _csv([_row(1, "Hi", "Joey", "joy", 0, 0, "positive")]).replace(b"Hi", b"H\x81i \x92")
    _write_split(tmp_path, "dev", data, ["dia0_utt0.mp4"])
    result = meld.parse_meld(tmp_path, splits=["dev"])
    assert result.encodings == {"dev": "latin-1"}
    assert result.utterances[0].transcript == "Hi '"


def test_missing_column_names_file_and_column(tmp_path):
    text = _csv([_row(1, "Hi", "Joey", "joy", 0, 0, "positive")]).decode()
    text = text.replace("Emotion,", "Feeling,", 1)
    _write_split(tmp_path, "train", text.encode(), ["dia0_utt0.mp4"])
    path = tmp_path / "train_sent_emo.csv"
    expected = rf"^{re.escape(str(path))}:1: missing column 'Emotion'"
    with pytest.raises(CorpusFormatError, match=expected) as info:
        meld.parse_meld(tmp_path, splits=["train"])
    assert info.value.path == str(path) and info.value.line_number == 1


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (_row(4, "Hey", "Ross", "joy", "x1", 0),
         r"Dialogue_ID must be a non-negative integer, got 'x1'"),
        (_row(4, "Hey", "Ross", "joy", 2, "-1"),
         r"Utterance_ID must be a non-negative integer, got '-1'"),
        (_row(4, "Hey", "Ross", "happy", 2, 0),
         r"Emotion 'happy' is not one of neutral, surprise"),
        (_row(4, "Hey", "Ross", "joy", 2, 0, "mixed"), r"Sentiment 'mixed' is not one of"),
        ('4,"Hey",Ross,joy,neutral,2,0', r"expected 11 fields as in the header, got 7"),
    ],
    ids=["dialogue", "utterance", "emotion", "sentiment", "fields"],
)
def test_bad_row_names_file_and_line(tmp_path, bad_row, message):
    rows = [
        _row(1, "Hi", "Joey", "joy", 0, 0, "positive"),
        # A quoted field over lines 3-4: the bad row is on line 6, not 5.
        _row(2, "Well,\r\nno", "Rachel", "neutral", 1, 0),
        _row(3, "Sure", "Monica", "neutral", 1, 1),
        bad_row,
    ]
    media = ["dia0_utt0.mp4", "dia1_utt0.mp4", "dia1_utt1.mp4"]
    _write_split(tmp_path, "test", _csv(rows), media)
    path = tmp_path / "test_sent_emo.csv"
    with pytest.raises(CorpusFormatError, match=rf"^{re.escape(str(path))}:6: {message}"):
        meld.parse_meld(tmp_path, splits=["test"])


def _generated_tree(root):
    """Three small splits with the release's faults (placeholder clips)."""
    train_rows = [_row(n + 1, f"Line {n}", "Joey", meld.CLASS_NAMES[n % 7], n // 4, n % 4)
                  for n in range(8)]
    _write_split(root, "train", _csv(train_rows),
                 [f"dia{n // 4}_utt{n % 4}.mp4" for n in range(8)])
    # train dia125_utt3 style: present but not a clip; the parser cannot tell.
    (root / "train_splits" / "dia1_utt3.mp4").write_bytes(b"garbage")
    dev_rows = [_row(n + 1, f"Dev {n}", "Ross", "neutral", 110, n) for n in range(8)]
    dev_media = [f"dia110_utt{n}.mp4" for n in range(8) if n != 7]  # dia110_utt7 is missing
    _write_split(root, "dev", _csv(dev_rows), dev_media)
    (root / "dev_splits_complete" / "dia110_utt2.mp4").write_bytes(b"")  # empty
    test_rows = [_row(n + 1, f"Test {n}", "Monica", "anger", 0, n, "negative") for n in range(3)]
    test_media = ["dia0_utt0.mp4", "dia0_utt1.mp4", "dia0_utt2.mp4",
                  "dia12_utt10.mp4", "dia12_utt9.mp4", "final_videos_testdia0_utt0.mp4",
                  "._dia0_utt0.mp4"]
    _write_split(root, "test", _csv(test_rows), test_media)


def test_faults_are_reported(tmp_path):
    _generated_tree(tmp_path / "MELD.Raw")
    result = meld.parse_meld(tmp_path)  # The root above MELD.Raw is accepted.
    dev_folder = tmp_path / "MELD.Raw" / "dev_splits_complete"
    assert result.skipped == [
        ("dev_dia110_utt2", f"empty media file {dev_folder / 'dia110_utt2.mp4'} (0 bytes)"),
        ("dev_dia110_utt7", f"missing media file {dev_folder / 'dia110_utt7.mp4'}"),
    ]
    assert result.unannotated_media == {
        "train": [],
        "dev": [],
        # By dialogue and utterance number; names of another form last; no dot files.
        "test": ["dia12_utt9.mp4", "dia12_utt10.mp4", "final_videos_testdia0_utt0.mp4"],
    }
    ids = [u.utterance_id for u in result.utterances]
    assert "train_dia1_utt3" in ids  # Corrupt clips are found when decoding, not here.
    assert [u.group for u in result.utterances] == ["train"] * 8 + ["dev"] * 6 + ["test"] * 3
    counts = result.counts()
    assert counts["total"] == 17 and counts["skipped"] == 2
    assert counts["rows"] == {"train": 8, "dev": 8, "test": 3}
    assert counts["by_group"] == {"train": 8, "dev": 6, "test": 3}
    assert counts["unannotated_media"] == {"train": 0, "dev": 0, "test": 3}
    assert counts["unannotated_examples"]["test"][0] == "dia12_utt9.mp4"
    test_folder = tmp_path / "MELD.Raw" / "output_repeated_splits_test"
    assert result.files["test"]["media_folder"] == str(test_folder)

    expected = r"dev_sent_emo\.csv:4: dev_dia110_utt2: empty media"
    with pytest.raises(CorpusFormatError, match=expected):
        meld.parse_meld(tmp_path, strict=True)


def test_duplicate_rows(tmp_path):
    rows = [_row(1, "A", "Joey", "joy", 0, 0), _row(2, "B", "Joey", "joy", 0, 0)]
    _write_split(tmp_path, "dev", _csv(rows), ["dia0_utt0.mp4"])
    result = meld.parse_meld(tmp_path, splits=["dev"])
    assert [u.transcript for u in result.utterances] == ["A"]
    assert result.skipped == [
        ("dev_dia0_utt0", "annotated twice in dev_sent_emo.csv (first on line 2)")
    ]
    expected = r"dev_sent_emo\.csv:3: dev_dia0_utt0: annotated twice"
    with pytest.raises(CorpusFormatError, match=expected):
        meld.parse_meld(tmp_path, splits=["dev"], strict=True)


def test_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(CorpusFormatError, match="MELD root directory does not exist"):
        meld.parse_meld(tmp_path / "nowhere")
    with pytest.raises(CorpusFormatError, match=r"no train_sent_emo\.csv here or in MELD\.Raw/"):
        meld.parse_meld(tmp_path)
    (tmp_path / "dev_sent_emo.csv").write_bytes(_csv([_row(1, "A", "Joey", "joy", 0, 0)]))
    expected = r"dev_splits_complete: missing the dev media folder; extract dev\.tar\.gz"
    with pytest.raises(CorpusFormatError, match=expected):
        meld.parse_meld(tmp_path, splits=["dev"])
    (tmp_path / "dev_splits_complete").mkdir()
    (tmp_path / "dev_sent_emo.csv").write_bytes(b"")
    with pytest.raises(CorpusFormatError, match=r"dev_sent_emo\.csv:1: the file is empty"):
        meld.parse_meld(tmp_path, splits=["dev"])
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        meld.parse_meld(tmp_path, splits=["validation"])
    with pytest.raises(ValueError, match="at least one split"):
        meld.parse_meld(tmp_path, splits=[])


def test_compare_to_expected(excerpt_tree):
    counts = meld.parse_meld(excerpt_tree, splits=["dev"]).counts()
    warnings = meld.compare_to_expected(counts)
    assert warnings[0] == "dev: read 60 rows from dev_sent_emo.csv, the official release has 1109"
    assert "dev emotion neutral: read 24 rows, the official release has 470" in warnings
    assert not any(warning.startswith(("train", "test")) for warning in warnings)  # Not parsed.

    full = {
        "rows": dict(meld.EXPECTED_ROWS),
        "rows_by_label": {
            split: dict(labels) for split, labels in meld.EXPECTED_ROWS_BY_LABEL.items()
        },
    }
    assert meld.compare_to_expected(full) == []
    for split, labels in meld.EXPECTED_ROWS_BY_LABEL.items():
        assert sum(labels.values()) == meld.EXPECTED_ROWS[split]
    full["rows"]["train"] -= 1
    full["rows_by_label"]["train"]["joy"] -= 1
    assert meld.compare_to_expected(full) == [
        "train: read 9988 rows from train_sent_emo.csv, the official release has 9989",
        "train emotion joy: read 1742 rows, the official release has 1743",
    ]
