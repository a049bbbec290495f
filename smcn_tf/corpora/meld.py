"""Parser for the MELD release (MELD.Raw): three CSVs and three folders of mp4 clips.

The release (`MELD.Raw.tar.gz`, with its inner `train.tar.gz`, `dev.tar.gz` and
`test.tar.gz` extracted in place) looks like::

    MELD.Raw/
      train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
      train_splits/dia0_utt0.mp4 ...
      dev_splits_complete/dia0_utt0.mp4 ...
      output_repeated_splits_test/dia0_utt0.mp4 ...

`root` may be `MELD.Raw` itself or the folder holding it. Each CSV row is one
utterance::

    Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
    1,"Oh my God, he’s lost it. He’s totally lost it.",Phoebe,sadness,negative,0,0,4,7,"00:20:57,256","00:21:00,049"

with CRLF line ends and quoted fields holding commas. The CSVs inside
MELD.Raw.tar.gz are Windows-1252 (cp1252), the copies on GitHub UTF-8; both
are read (UTF-8 is tried strictly first, with or without a byte-order mark,
then cp1252) and the encoding of each file is recorded. Typographic quotes,
dashes and ellipses, and the mojibake that mixed encodings leave behind
(`\x92`, `â€™`), are turned into their ASCII forms, so the same row reads the
same from either copy.

The release has known faults, which are reported, never fatal (unless
`strict`): an annotated clip may be missing (dev `dia110_utt7`) or empty; a
folder may hold clips that no row annotates; a clip may be corrupt (train
`dia125_utt3`) or minutes long. Corrupt and long clips are only found when the
audio is decoded, so `smcn_tf.records.prepare` reports those.
"""

import dataclasses
import os
import pathlib
import re

from smcn_tf.corpora.utterance import CorpusFormatError, Utterance, read_csv_rows

CLASS_NAMES = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
SENTIMENTS = ("negative", "neutral", "positive")
SPLITS = ("train", "dev", "test")

CSV_FILENAMES = {
    "train": "train_sent_emo.csv",
    "dev": "dev_sent_emo.csv",
    "test": "test_sent_emo.csv",
}
MEDIA_FOLDERS = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
# The inner archive of MELD.Raw.tar.gz that unpacks into each media folder.
MEDIA_ARCHIVES = {"train": "train.tar.gz", "dev": "dev.tar.gz", "test": "test.tar.gz"}
# A root may hold the release directly or one level down.
RELEASE_FOLDER = "MELD.Raw"

COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
    "Utterance_ID", "Season", "Episode", "StartTime", "EndTime",
)
# The columns the parser uses; the others are informational and may be absent.
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")

# Rows per CSV of the official release, and their emotions (MELD paper, Table 3).
EXPECTED_ROWS = {"train": 9989, "dev": 1109, "test": 2610}
EXPECTED_ROWS_BY_LABEL = {
    "train": {"neutral": 4710, "surprise": 1205, "fear": 268, "sadness": 683,
              "joy": 1743, "disgust": 271, "anger": 1109},
    "dev": {"neutral": 470, "surprise": 150, "fear": 40, "sadness": 111,
            "joy": 163, "disgust": 22, "anger": 153},
    "test": {"neutral": 1256, "surprise": 281, "fear": 50, "sadness": 208,
             "joy": 402, "disgust": 68, "anger": 345},
}

# How many unannotated file names `counts()` quotes per split.
EXAMPLE_NAMES = 5

_MEDIA_NAME = re.compile(r"^dia(?P<dialogue>\d+)_utt(?P<utterance>\d+)\.mp4$")
_INTEGER = re.compile(r"^\d+$")

# Typographic characters and their ASCII forms. Only punctuation: words are kept.
_TYPOGRAPHIC = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
        "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
        "\u2026": "...", "\u00a0": " ", "\u00ad": "", "\u200b": "", "\ufeff": "",
    }
)
# C1 control characters: cp1252 bytes (0x80-0x9f) that were decoded as Latin-1.
_C1_CONTROLS = re.compile("[\u0080-\u009f]")
# Characters that betray UTF-8 bytes decoded as cp1252 ("â€™" for "’").
_MOJIBAKE_MARKERS = re.compile("[\u00c2\u00c3\u00e2]")


@dataclasses.dataclass
class MeldParseResult:
    """What `parse_meld` found.

    Args:
        utterances: the kept utterances, by split, dialogue and utterance number.
        skipped: `(utterance_id, reason)` for annotated rows left out, e.g. a
            missing clip (only when `strict=False`).
        unannotated_media: split -> sorted names of files in its media folder
            that no row annotates.
        encodings: split -> the encoding its CSV was read with: `"utf-8"`,
            `"utf-8-sig"` (UTF-8 with a byte-order mark), `"cp1252"`, or
            `"latin-1"` (cp1252 with bytes cp1252 leaves undefined).
        rows: split -> annotated rows in its CSV, kept or skipped.
        rows_by_label: split -> emotion -> rows (every class, zeros included).
        files: split -> `{"csv": path, "media_folder": path}` as found.
    """

    utterances: list[Utterance]
    skipped: list[tuple[str, str]]
    unannotated_media: dict[str, list[str]]
    encodings: dict[str, str]
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_by_label: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    files: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def counts(self):
        """Summarise the parse.

        Returns:
            A dict with `total` (kept utterances), `by_label` (every class,
            zeros included), `by_group` (kept per split), `rows` and
            `rows_by_label` (CSV rows per split, kept or skipped), `skipped`
            (a count), `unannotated_media` (split -> count) and
            `unannotated_examples` (split -> the first few names).
        """
        by_label = {name: 0 for name in CLASS_NAMES}
        by_group = {}
        for utterance in self.utterances:
            by_label[utterance.label] += 1
            by_group[utterance.group] = by_group.get(utterance.group, 0) + 1
        return {
            "total": len(self.utterances),
            "by_label": by_label,
            "by_group": {split: by_group[split] for split in SPLITS if split in by_group},
            "rows": dict(self.rows),
            "rows_by_label": {split: dict(labels) for split, labels in self.rows_by_label.items()},
            "skipped": len(self.skipped),
            "unannotated_media": {
                split: len(names) for split, names in self.unannotated_media.items()
            },
            "unannotated_examples": {
                split: names[:EXAMPLE_NAMES] for split, names in self.unannotated_media.items()
            },
        }


def normalize_transcript(text):
    """Turn a MELD transcript into plain text with ASCII punctuation.

    Repairs UTF-8 text that was decoded as cp1252 (`"heâ€™s"`) and cp1252
    bytes decoded as Latin-1 (`"he\\x92s"`), maps typographic quotes, dashes
    and ellipses to ASCII, and collapses runs of whitespace. Words are kept.

    Args:
        text: the `Utterance` field as decoded.

    Returns:
        The normalised transcript.

    Example:

    >>> normalize_transcript("Oh my God, he\\u2019s lost it\\u2026  He\\x92s  gone.")
    "Oh my God, he's lost it... He's gone."
    """
    if _MOJIBAKE_MARKERS.search(text):
        try:
            # Only a clean round trip counts as mojibake: "café" read right
            # does not survive it and is kept as it is.
            text = text.encode("cp1252").decode("utf-8")
        except UnicodeError:
            pass
    text = _C1_CONTROLS.sub(
        lambda match: bytes([ord(match.group())]).decode("cp1252", errors="ignore"), text
    )
    text = text.translate(_TYPOGRAPHIC)
    return " ".join(text.split())


def read_csv_text(path):
    """Read a MELD CSV file as text, detecting its encoding.

    Args:
        path: the CSV file.

    Returns:
        `(text, encoding)`: the text without a byte-order mark, and
        `"utf-8"`, `"utf-8-sig"`, `"cp1252"` or `"latin-1"`.

    Raises:
        CorpusFormatError: the file cannot be read.
    """
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as error:
        raise CorpusFormatError(path, f"cannot read the file: {error}") from error
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        # Bytes cp1252 leaves undefined (0x81, 0x8d, ...): Latin-1 keeps every byte.
        return data.decode("latin-1"), "latin-1"


def _validate_splits(splits):
    """Check the `splits` argument of `parse_meld`.

    Args:
        splits: split names, or one split name as a string.

    Returns:
        The distinct split names in release order.

    Raises:
        ValueError: an unknown split, or none.
    """
    names = [splits] if isinstance(splits, str) else splits
    try:
        names = list(names)
    except TypeError as error:
        raise ValueError(f"splits must be split names from {SPLITS}, got {splits!r}") from error
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; MELD has {', '.join(SPLITS)}")
    if not names:
        raise ValueError("splits must name at least one split")
    return [split for split in SPLITS if split in names]


def _candidate_folders(root):
    """The folders a release file may sit in: the root, then `root/MELD.Raw`."""
    return [root, root / RELEASE_FOLDER]


def _find_csv(root, split):
    """Locate a split's CSV under the root.

    Raises:
        CorpusFormatError: it is in none of the candidate folders.
    """
    name = CSV_FILENAMES[split]
    for folder in _candidate_folders(root):
        if (folder / name).is_file():
            return folder / name
    raise CorpusFormatError(
        root, f"no {name} here or in {RELEASE_FOLDER}/ (is this the MELD.Raw folder?)"
    )


def _find_media_folder(root, csv_path, split):
    """Locate a split's media folder: beside its CSV, else under the root.

    Raises:
        CorpusFormatError: the folder is in none of the candidate places.
    """
    name = MEDIA_FOLDERS[split]
    for folder in [csv_path.parent, *_candidate_folders(root)]:
        if (folder / name).is_dir():
            return folder / name
    raise CorpusFormatError(
        csv_path.parent / name,
        f"missing the {split} media folder; extract {MEDIA_ARCHIVES[split]} of "
        f"MELD.Raw.tar.gz next to {csv_path.name}",
    )


def _list_media(folder):
    """Map the visible regular files of a media folder to their sizes in bytes.

    macOS copies of the release carry `._<name>.mp4` resource forks; names
    starting with a dot are left out.
    """
    files = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_file():
                files[entry.name] = entry.stat().st_size
    return files


def _read_header(row, path):
    """Map column names to their positions and check the required ones.

    Raises:
        CorpusFormatError: a required column is missing, or a name repeats.
    """
    names = [name.strip() for name in row]
    if names:
        names[0] = names[0].lstrip("\ufeff")  # A BOM inside a cp1252-decoded file.
    positions = {}
    for index, name in enumerate(names):
        if name in positions:
            raise CorpusFormatError(path, f"column {name!r} appears twice in the header", 1)
        positions[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        raise CorpusFormatError(
            path,
            f"missing column {', '.join(repr(name) for name in missing)} in the header "
            f"(found {names}; expected {', '.join(COLUMNS)})",
            1,
        )
    return positions


def _parse_id(value, column, path, line_number):
    """Parse a non-negative integer id field, or raise naming file, line and column."""
    stripped = value.strip()
    if not _INTEGER.match(stripped):
        raise CorpusFormatError(
            path, f"{column} must be a non-negative integer, got {value!r}", line_number
        )
    return int(stripped)


def _parse_split(root, split, strict, result, utterances_by_split):
    """Parse one split's CSV and media folder into `result`."""
    csv_path = _find_csv(root, split)
    media_folder = _find_media_folder(root, csv_path, split)
    media = _list_media(media_folder)
    text, encoding = read_csv_text(csv_path)
    result.encodings[split] = encoding
    result.files[split] = {"csv": os.fspath(csv_path), "media_folder": os.fspath(media_folder)}
    rows = read_csv_rows(csv_path, text)
    header = next(rows, None)
    if header is None:
        raise CorpusFormatError(csv_path, "the file is empty; expected a header line", 1)
    positions = _read_header(header[1], csv_path)

    rows_by_label = {name: 0 for name in CLASS_NAMES}
    row_count = 0
    seen = {}
    used_media = set()
    kept = []
    for line_number, fields in rows:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # A blank line, e.g. at the end of the file.
        row = _parse_row(csv_path, line_number, fields, positions, len(header[1]))
        row_count += 1
        rows_by_label[row["label"]] += 1
        utterance_id = f"{split}_dia{row['dialogue']}_utt{row['turn']}"
        media_name = f"dia{row['dialogue']}_utt{row['turn']}.mp4"
        used_media.add(media_name)
        reason = None
        if utterance_id in seen:
            reason = f"annotated twice in {csv_path.name} (first on line {seen[utterance_id]})"
        else:
            reason = _media_fault(media, media_folder, media_name)
        if reason is not None:
            if strict:
                raise CorpusFormatError(csv_path, f"{utterance_id}: {reason}", line_number)
            result.skipped.append((utterance_id, reason))
            continue
        seen[utterance_id] = line_number
        utterance = Utterance(
            utterance_id=utterance_id,
            audio_path=os.fspath(media_folder / media_name),
            transcript=normalize_transcript(row["utterance"]),
            label=row["label"],
            speaker=" ".join(row["speaker"].split()),
            group=split,
        )
        kept.append(((row["dialogue"], row["turn"]), utterance))

    kept.sort(key=lambda item: item[0])
    utterances_by_split[split] = [utterance for _, utterance in kept]
    result.rows[split] = row_count
    result.rows_by_label[split] = rows_by_label
    result.unannotated_media[split] = sorted(
        (name for name in media if name not in used_media), key=_media_sort_key
    )


def _parse_row(csv_path, line_number, fields, positions, width):
    """One annotated row, checked: `dialogue`, `turn` (ints), `label` (a
    class), and the `utterance` and `speaker` fields as written."""
    if len(fields) != width:
        raise CorpusFormatError(
            csv_path,
            f"expected {width} fields as in the header, got {len(fields)}",
            line_number,
        )

    def field(name):
        return fields[positions[name]]

    dialogue = _parse_id(field("Dialogue_ID"), "Dialogue_ID", csv_path, line_number)
    turn = _parse_id(field("Utterance_ID"), "Utterance_ID", csv_path, line_number)
    label = field("Emotion").strip().lower()
    if label not in CLASS_NAMES:
        raise CorpusFormatError(
            csv_path,
            f"Emotion {field('Emotion')!r} is not one of {', '.join(CLASS_NAMES)}",
            line_number,
        )
    if "Sentiment" in positions:
        sentiment = field("Sentiment").strip().lower()
        if sentiment not in SENTIMENTS:
            raise CorpusFormatError(
                csv_path,
                f"Sentiment {field('Sentiment')!r} is not one of {', '.join(SENTIMENTS)}",
                line_number,
            )
    return {
        "dialogue": dialogue,
        "turn": turn,
        "label": label,
        "utterance": field("Utterance"),
        "speaker": field("Speaker"),
    }


def _media_fault(media, media_folder, media_name):
    """Why a row's clip cannot be used (missing, empty), or None."""
    if media_name not in media:
        return f"missing media file {media_folder / media_name}"
    if media[media_name] == 0:
        return f"empty media file {media_folder / media_name} (0 bytes)"
    return None


def _media_sort_key(name):
    """Sort `dia2_utt10.mp4` after `dia2_utt9.mp4`; other names after, by name."""
    match = _MEDIA_NAME.match(name)
    if match is None:
        return (1, 0, 0, name)
    return (0, int(match.group("dialogue")), int(match.group("utterance")), name)


def parse_meld(root, splits=SPLITS, strict=False):
    """Parse the annotated utterances of a MELD release.

    Args:
        root: the `MELD.Raw` folder (holding the three CSVs and the three media
            folders), or a folder holding `MELD.Raw`.
        splits: the splits to read, from `"train"`, `"dev"`, `"test"`.
        strict: when True an annotated row whose clip is missing or empty, or
            a second row for the same utterance, raises; when False the row is
            left out and listed in `MeldParseResult.skipped`. Malformed rows
            raise either way.

    Returns:
        A `MeldParseResult`. Utterance ids are `"<split>_dia<D>_utt<U>"`, the
        group is the split name and the audio path the mp4 clip.

    Raises:
        CorpusFormatError: a CSV or media folder is missing, a column is
            missing, or a row is malformed (the message names file and line).
        ValueError: `splits` names an unknown split.

    Example, on the MELD.Raw release (not run as a test: it is not shipped):

    >>> result = parse_meld("data/MELD.Raw")  # doctest: +SKIP
    >>> result.counts()["rows"]  # doctest: +SKIP
    {'train': 9989, 'dev': 1109, 'test': 2610}
    """
    split_names = _validate_splits(splits)
    root_path = pathlib.Path(root)
    if not root_path.is_dir():
        raise CorpusFormatError(root_path, "MELD root directory does not exist")
    result = MeldParseResult(utterances=[], skipped=[], unannotated_media={}, encodings={})
    utterances_by_split = {}
    for split in split_names:
        _parse_split(root_path, split, strict, result, utterances_by_split)
    result.utterances = [
        utterance for split in split_names for utterance in utterances_by_split[split]
    ]
    return result


def compare_to_expected(counts, expected_rows=None, expected_rows_by_label=None):
    """List how a parse differs from the row counts of the official release.

    Only the splits present in `counts["rows"]` are compared.

    Args:
        counts: `MeldParseResult.counts()`.
        expected_rows: split -> rows; `EXPECTED_ROWS` when None.
        expected_rows_by_label: split -> emotion -> rows;
            `EXPECTED_ROWS_BY_LABEL` when None.

    Returns:
        Human-readable warnings, one per differing number; empty when the
        parse matches.
    """
    expected_rows = EXPECTED_ROWS if expected_rows is None else expected_rows
    expected_by_label = (
        EXPECTED_ROWS_BY_LABEL if expected_rows_by_label is None else expected_rows_by_label
    )
    warnings = []
    for split, found in counts.get("rows", {}).items():
        expected = expected_rows.get(split)
        if expected is not None and found != expected:
            warnings.append(
                f"{split}: read {found} rows from {CSV_FILENAMES.get(split, split)}, "
                f"the official release has {expected}"
            )
        found_labels = counts.get("rows_by_label", {}).get(split)
        if found_labels is None or split not in expected_by_label:
            continue
        for label, expected_count in expected_by_label[split].items():
            if found_labels.get(label, 0) != expected_count:
                warnings.append(
                    f"{split} emotion {label}: read {found_labels.get(label, 0)} rows, "
                    f"the official release has {expected_count}"
                )
    return warnings
