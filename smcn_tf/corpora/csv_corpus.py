"""Your own corpus as a CSV manifest: one row per utterance (`smcn prepare csv`).

The manifest is a UTF-8 CSV file (a byte-order mark and CRLF line ends are
fine) whose first row names the columns, in any order:

- `path` (required): the audio file (WAV, FLAC, or a media file such as
  mp4/m4a/mp3); a relative path is read from the manifest's folder.
- `transcript` (required): the words spoken.
- `label` (required): the emotion label (merged by the label map, see below).
- `group` (required): the fold key, a speaker or a session; `evaluation.folds`
  names these.
- `speaker` (optional): the speaker id stored with the example; default: the
  group.
- `start`, `end` (optional): seconds; the utterance is this segment of the
  file (an empty cell: from the start / to the end of the file).
- `id` (optional): a unique utterance id; default: the path as written, plus
  `@<start>-<end>` for a segment.

Column names are matched without regard to case or surrounding spaces. A
column of another name is an error that lists the known ones (a misspelt
`strat` would otherwise be ignored in silence). Example:

```
path,transcript,label,group
audio/alice_01.wav,I can't believe you did that!,ang,alice
audio/bob_01.wav,"Well, that went nicely.",exc,bob
```

Classes are `classes` in the order given, or else the labels in order of
first appearance (after the label map). The label map merges labels before
that: `{"exc": "hap"}` turns every `exc` into `hap`. A row whose label is
not one of the classes is dropped and counted (as IEMOCAP drops labels
outside its four classes), not an error.

Errors name the file, the line and the column: a missing required column, an
unknown column, an empty required cell, a start or end that is not a number
of seconds >= 0 or an end that is not after the start, a duplicate id (both
lines), a row with the wrong number of fields. A missing audio file is
skipped, with its line, in the report (or raises with `strict`). Files that
exist but cannot be decoded (or are cut off) are found when
`smcn_tf.records.prepare` reads them, and reported with their line too;
audio at any rate and with any number of channels is resampled to 16 kHz
and averaged to mono there.
"""

import dataclasses
import math
import os
import pathlib
import typing

from smcn_tf.corpora.adapter import (
    CorpusAdapter,
    CorpusDefaults,
    LoadedCorpus,
    count_reasons,
    count_row,
)
from smcn_tf.corpora.utterance import CorpusFormatError, Utterance, read_csv_rows

REQUIRED_COLUMNS = ("path", "transcript", "label", "group")
OPTIONAL_COLUMNS = ("speaker", "start", "end", "id")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


@dataclasses.dataclass
class CsvParseResult:
    """What `parse_csv_corpus` found.

    Args:
        manifest: the manifest file, absolute.
        utterances: the kept utterances, in manifest order.
        class_names: the class names (given, or in order of first appearance).
        skipped: `(utterance_id, reason)` for rows left out because their
            audio file is missing (only when `strict=False`).
        dropped_labels: label (after the label map) -> rows dropped because
            it is not one of the classes.
        kept_labels: label as written -> kept rows, e.g. `{"exc": 3, "hap": 2}`
            when `exc` is merged into `hap`.
        rows: data rows in the manifest.
        listed_counts: group -> rows whose label is one of the classes, kept
            or skipped (what `plan_shards` sizes each group by).
        lines: utterance id -> the line of its row, for every row with a
            label in the classes.
    """

    manifest: str
    utterances: typing.List[Utterance]
    class_names: typing.Tuple[str, ...]
    skipped: typing.List[typing.Tuple[str, str]]
    dropped_labels: typing.Dict[str, int]
    kept_labels: typing.Dict[str, int]
    rows: int
    listed_counts: typing.Dict[str, int]
    lines: typing.Dict[str, int]

    def counts(self):
        """Summarise the parse.

        Returns:
            A dict with `rows`, `total` (kept utterances), `by_label` (every
            class, zeros included), `by_group`, `by_raw_label` (kept rows by
            the label as written), `dropped_labels` and `skipped` (a count).
        """
        by_label = dict.fromkeys(self.class_names, 0)
        by_group = {}
        for utterance in self.utterances:
            by_label[utterance.label] += 1
            by_group[utterance.group] = by_group.get(utterance.group, 0) + 1
        return {
            "rows": self.rows,
            "total": len(self.utterances),
            "by_label": by_label,
            "by_group": dict(sorted(by_group.items())),
            "by_raw_label": dict(sorted(self.kept_labels.items())),
            "dropped_labels": dict(sorted(self.dropped_labels.items())),
            "skipped": len(self.skipped),
        }


def parse_classes(value):
    """Read a class list: `"ang,hap,neu,sad"` or a sequence of names.

    Args:
        value: comma-separated names, or a list / tuple of names.

    Returns:
        The names as a tuple, in the order given.

    Raises:
        ValueError: an empty name, a repeated one, or no name at all.

    Example:

    >>> parse_classes("ang, hap,neu")
    ('ang', 'hap', 'neu')
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [name.strip() if isinstance(name, str) else name for name in names]
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"classes must be non-empty names, got {value!r}.")
    if not names:
        raise ValueError("classes must name at least one class.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"classes names {', '.join(repeated)} more than once: {value!r}.")
    return tuple(names)


def parse_label_map(value):
    """Read a label map: `"exc:hap,sur:neu"` or a dict.

    Args:
        value: comma-separated `label:class` pairs, or a dict label -> class.

    Returns:
        A dict label -> class.

    Raises:
        ValueError: a pair without `:`, an empty name, or a label mapped twice.

    Example:

    >>> parse_label_map("exc:hap, sur:neu")
    {'exc': 'hap', 'sur': 'neu'}
    """
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            if item.count(":") != 1:
                raise ValueError(
                    f"label_map entries must look like label:class, got {item.strip()!r} "
                    f"in {value!r}."
                )
            pairs.append(tuple(part.strip() for part in item.split(":")))
    else:
        raise ValueError(f"label_map must be a dict or 'label:class,...', got {value!r}.")
    mapping = {}
    for label, target in pairs:
        if not (isinstance(label, str) and label and isinstance(target, str) and target):
            raise ValueError(f"label_map needs non-empty label and class names, got {value!r}.")
        if label in mapping and mapping[label] != target:
            raise ValueError(
                f"label_map maps {label!r} twice ({mapping[label]!r} and {target!r})."
            )
        mapping[label] = target
    return mapping


def _read_text(path):
    """The manifest as text, without a byte-order mark.

    Raises:
        CorpusFormatError: the file cannot be read or is not UTF-8 (the
            message names the line of the first bad byte).
    """
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as error:
        raise CorpusFormatError(path, f"cannot read the manifest: {error}") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_number = data[: error.start].count(b"\n") + 1
        raise CorpusFormatError(
            path,
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the manifest as UTF-8",
            line_number,
        ) from error


def _is_blank(fields):
    return all(not field.strip() for field in fields)


def _read_header(path, line_number, fields, required=REQUIRED_COLUMNS, known=COLUMNS):
    """Map column names to positions (`required` must be there, `known` may).

    `smcn predict --manifest` reads its manifests with other columns.

    Raises:
        CorpusFormatError: a repeated, empty or unknown column, or a missing
            required one; the message names the line and the column.
    """
    columns, known = known, ", ".join(known)
    positions = {}
    for index, raw in enumerate(fields):
        name = raw.strip().lower()
        if not name:
            raise CorpusFormatError(
                path, f"column {index + 1} of the header has no name; known columns: {known}",
                line_number,
            )
        if name in positions:
            raise CorpusFormatError(
                path, f"column {name!r} appears twice in the header", line_number
            )
        if name not in columns:
            raise CorpusFormatError(
                path,
                f"unknown column {raw.strip()!r} in the header; known columns: {known} "
                f"(required: {', '.join(required)})",
                line_number,
            )
        positions[name] = index
    missing = [name for name in required if name not in positions]
    if missing:
        raise CorpusFormatError(
            path,
            f"missing column {', '.join(repr(name) for name in missing)} in the header "
            f"(found {[field.strip() for field in fields]}); the first row must name the "
            f"columns, required: {', '.join(required)}",
            line_number,
        )
    return positions


def _parse_seconds(text, column, path, line_number):
    """A start / end cell as seconds; None for an empty cell."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise CorpusFormatError(
            path, f"column {column!r}: expected a number of seconds, got {text!r}", line_number
        )
    if value < 0:
        raise CorpusFormatError(
            path, f"column {column!r}: seconds must be >= 0, got {text!r}", line_number
        )
    return value


def _segment_id(path_text, start, end):
    """The default id of a segment: the path plus `@<start>-<end>`."""
    if start is None and end is None:
        return path_text
    first = f"{start or 0.0:.3f}"
    last = "end" if end is None else f"{end:.3f}"
    return f"{path_text}@{first}-{last}"


def parse_csv_corpus(manifest, classes=None, label_map=None, strict=False):
    """Parse a CSV manifest into utterances (see the module docstring for the format).

    Args:
        manifest: the CSV file; relative audio paths are read from its folder.
        classes: the class names in order (a sequence, or `"a,b,c"`); rows
            with another label are dropped and counted. None: every label,
            in order of first appearance (after `label_map`).
        label_map: label -> class (a dict, or `"exc:hap,sur:neu"`), applied
            before `classes`; labels not in it are kept as written.
        strict: raise on a missing audio file instead of skipping the row.

    Returns:
        A `CsvParseResult`; utterances in manifest order.

    Raises:
        CorpusFormatError: the manifest is missing or malformed; the message
            names the file, line and column.
        ValueError: bad `classes` or `label_map`.

    Example, on your own corpus's manifest (not run as a test):

    >>> result = parse_csv_corpus("data/mine/manifest.csv", classes="ang,hap,neu,sad",
    ...                           label_map="exc:hap")  # doctest: +SKIP
    >>> result.counts()["by_label"]  # doctest: +SKIP
    {'ang': 12, 'hap': 20, 'neu': 31, 'sad': 9}
    """
    class_names = None if classes is None else parse_classes(classes)
    mapping = {} if label_map is None else parse_label_map(label_map)
    manifest_path = _check_manifest_file(manifest)
    rows = read_csv_rows(manifest_path, _read_text(manifest_path))
    header_line, header = _find_header(manifest_path, rows)
    positions = _read_header(manifest_path, header_line, header)
    # First pass: every row is checked, whatever its label, so a malformed
    # manifest fails the same way whichever classes are asked for.
    parsed_rows = []
    first_line_of = {}
    for line_number, fields in rows:
        if _is_blank(fields):
            continue
        row = _parse_row(manifest_path, line_number, fields, positions, len(header), mapping)
        if row["id"] in first_line_of:
            column = "id" if row["id_given"] else "path"
            raise CorpusFormatError(
                manifest_path,
                f"column {column!r}: duplicate id {row['id']!r} (first on line "
                f"{first_line_of[row['id']]}, again on line {line_number})",
                line_number,
            )
        first_line_of[row["id"]] = line_number
        parsed_rows.append(row)
    if class_names is None:
        # Over every row, missing files included: the classes (and so the
        # stored label indices) must not depend on which files are present.
        class_names = tuple(dict.fromkeys(row["label"] for row in parsed_rows))
    return _select_rows(manifest_path, parsed_rows, class_names, strict)


def _check_manifest_file(manifest):
    """The manifest as a `pathlib.Path`; raises when it is not a file."""
    manifest_path = pathlib.Path(manifest)
    if manifest_path.is_dir():
        raise CorpusFormatError(
            manifest_path, "is a folder; the csv corpus reads a manifest CSV file"
        )
    if not manifest_path.is_file():
        raise CorpusFormatError(manifest_path, "the manifest CSV file does not exist")
    return manifest_path


def _find_header(manifest_path, rows):
    """`(line number, fields)` of the first non-blank row: the header."""
    for line_number, fields in rows:
        if not _is_blank(fields):
            return line_number, fields
    raise CorpusFormatError(
        manifest_path,
        f"the manifest is empty; expected a header row naming the columns "
        f"({', '.join(REQUIRED_COLUMNS)}, optional {', '.join(OPTIONAL_COLUMNS)})",
        1,
    )


def _parse_row(manifest_path, line_number, fields, positions, width, mapping):
    """One data row, checked, as a dict (`id_given`: its id is in the `id` column)."""
    if len(fields) != width:
        raise CorpusFormatError(
            manifest_path,
            f"expected {width} fields as in the header, got {len(fields)}",
            line_number,
        )

    def cell(name):
        return fields[positions[name]].strip() if name in positions else ""

    for name in REQUIRED_COLUMNS:
        if not cell(name):
            raise CorpusFormatError(
                manifest_path,
                f"column {name!r} is empty; every row needs {', '.join(REQUIRED_COLUMNS)}",
                line_number,
            )
    start = _parse_seconds(cell("start"), "start", manifest_path, line_number)
    end = _parse_seconds(cell("end"), "end", manifest_path, line_number)
    if end is not None and end <= (start or 0.0):
        raise CorpusFormatError(
            manifest_path,
            f"column 'end': {cell('end')} s is not after the start "
            f"({cell('start') or 0} s)",
            line_number,
        )
    path_text = cell("path")
    audio_path = pathlib.Path(path_text)
    if not audio_path.is_absolute():
        audio_path = manifest_path.parent / audio_path
    raw_label = cell("label")
    return {
        "line": line_number,
        "id": cell("id") or _segment_id(path_text, start, end),
        "id_given": bool(cell("id")),
        "audio_path": os.fspath(audio_path),
        "transcript": " ".join(cell("transcript").split()),
        "raw_label": raw_label,
        "label": mapping.get(raw_label, raw_label),
        "group": cell("group"),
        "speaker": cell("speaker") or cell("group"),
        "start": start,
        "end": end,
    }


def _select_rows(manifest_path, parsed_rows, class_names, strict):
    """The second pass: keeps the rows of the classes whose audio file exists;
    returns the `CsvParseResult`."""
    wanted = set(class_names)
    utterances, skipped = [], []
    dropped_labels, kept_labels, listed, lines = {}, {}, {}, {}
    for row in parsed_rows:
        if row["label"] not in wanted:
            dropped_labels[row["label"]] = dropped_labels.get(row["label"], 0) + 1
            continue
        listed[row["group"]] = listed.get(row["group"], 0) + 1
        lines[row["id"]] = row["line"]
        if not os.path.isfile(row["audio_path"]):
            if strict:
                raise CorpusFormatError(
                    manifest_path,
                    f"column 'path': missing audio file {row['audio_path']}",
                    row["line"],
                )
            skipped.append(
                (row["id"], f"missing audio file {row['audio_path']} (line {row['line']})")
            )
            continue
        kept_labels[row["raw_label"]] = kept_labels.get(row["raw_label"], 0) + 1
        utterances.append(
            Utterance(
                utterance_id=row["id"],
                audio_path=row["audio_path"],
                transcript=row["transcript"],
                label=row["label"],
                speaker=row["speaker"],
                group=row["group"],
                start_seconds=row["start"],
                end_seconds=row["end"],
            )
        )
    return CsvParseResult(
        manifest=os.path.abspath(manifest_path),
        utterances=utterances,
        class_names=class_names,
        skipped=skipped,
        dropped_labels=dict(sorted(dropped_labels.items())),
        kept_labels=dict(sorted(kept_labels.items())),
        rows=len(parsed_rows),
        listed_counts=dict(sorted(listed.items())),
        lines=lines,
    )


def _counts_check(counts):
    """The counts table of a manifest: parsed counts only, no published ones."""
    rows = [count_row("rows", "rows", None, counts["rows"], None)]
    rows.append(count_row("total", "total", None, counts["total"], None))
    for label, count in counts["by_label"].items():
        rows.append(count_row(f"class {label}", "label", label, count, None))
    for group, count in counts["by_group"].items():
        rows.append(count_row(group, "group", group, count, None))
    for label, count in counts["dropped_labels"].items():
        rows.append(count_row(f"dropped label {label}", "dropped_label", label, count, None))
    return {
        "reference": None,
        "headline": None,
        "rows": rows,
        "warnings": [],
        "note": "no published counts (a CSV manifest)",
    }


class CsvCorpus(CorpusAdapter):
    """The `csv` corpus: a CSV manifest of your own utterances.

    `load(manifest, strict=False, classes=None, label_map=None)`; see
    `parse_csv_corpus`. The root is the manifest file, not a folder.
    """

    name = "csv"
    description = "your own corpus: a CSV manifest (path, transcript, label, group)"
    defaults = CorpusDefaults(max_seconds=None, real_release=False)
    option_names = ("classes", "label_map")
    root_kind = "file"

    def load(self, root, *, strict=False, **options):
        self.check_options(options)
        parsed = parse_csv_corpus(
            root,
            classes=options.get("classes"),
            label_map=options.get("label_map"),
            strict=strict,
        )
        counts = parsed.counts()
        parser_report = {
            "manifest": parsed.manifest,
            "rows": parsed.rows,
            "classes": list(parsed.class_names),
            "label_map": parse_label_map(options.get("label_map") or {}),
            "dropped_labels": parsed.dropped_labels,
            "kept_labels": parsed.kept_labels,
            "skipped": parsed.skipped,
            "counts": counts,
        }
        dropped = count_reasons(parsed.skipped)
        for label, count in parsed.dropped_labels.items():
            dropped[f"label {label} (not one of the classes)"] = count
        return LoadedCorpus(
            name=self.name,
            root=os.fspath(root),
            utterances=parsed.utterances,
            class_names=parsed.class_names,
            parser_report=parser_report,
            dropped=dropped,
            counts_check=_counts_check(counts),
            listed_counts=parsed.listed_counts,
            lines=parsed.lines,
        )
