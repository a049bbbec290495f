"""Batch prediction: a manifest of clips in, one row of emotions per clip out.

`predict_manifest(client, manifest, out)` scores every row of a CSV manifest
with an `SMCNClient` (in this process, over gRPC or over REST) and writes one
row per clip to a `.csv` or `.jsonl` file; `smcn predict --manifest` runs it.

The manifest has the columns of `smcn prepare csv`: `path` and `transcript`,
and optionally `id`, `start`, `end` (a segment of the file, in seconds),
`label`, `group` and `speaker`. An empty `path` cell is a row without audio
(the text head answers), an empty `transcript` one without text (the audio
head answers). A relative path is read from the manifest's folder.

Each output row holds `id`, `path`, `class`, one `p_<class>` per class,
`modality` (which input answered: `both`, `audio` or `text`), `top_tokens`
(the most attended word pieces, when asked), `label` (when the manifest has
labels) and `error`: empty, or `<kind>: <reason>` for a row that could not be
scored, with kind one of `missing`, `empty`, `undecodable`, `truncated`,
`too-short`, `no-input` or `refused` (the model refused the
row). A bad row does not stop the run unless `strict=True`.

How it is fast:

- audio is decoded and resampled by a pool of `workers` threads, a window of
  rows ahead of the model;
- each window (`WINDOW_BATCHES` batches of `batch_size` rows) is sorted by
  length and cut into batches, so little padding is sent (training buckets by
  length the same way);
- at most `in_flight` batches are at the model at once (requests to a server,
  or signature calls in this process) while the next ones are decoded and
  tokenized.

How it is safe:

- each answered batch is appended to `<out>.partial` as one JSON line and
  fsync'd; at the end the rows are written in manifest order to a temporary
  file that is renamed over `out`, so `out` is never half written;
- `resume=True` reads `<out>.partial` back, skips the batches it holds and
  builds the same batches for the rest (a window's batches depend on its rows
  alone), so no answered row is scored again and the output is byte for byte
  the one of an uninterrupted run with the same options.

Example, on an export (not run as a test: the output is that model's):

>>> from smcn_tf.serving.client import SMCNClient  # doctest: +SKIP
>>> with SMCNClient(model_dir="export/smcn") as client:  # doctest: +SKIP
...     summary = predict_manifest(client, "calls.csv", "predictions.csv")
>>> summary.predicted, summary.errors  # doctest: +SKIP
(1988, {'missing': 9, 'too-short': 3})
"""

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import time
import typing

import numpy as np

from smcn_tf.contract.errors import ServingError
from smcn_tf.corpora.csv_corpus import (
    _check_manifest_file,
    _find_header,
    _is_blank,
    _parse_seconds,
    _read_header,
    _read_text,
    _segment_id,
)
from smcn_tf.corpora.utterance import CorpusFormatError, read_csv_rows

REQUIRED_COLUMNS = ("path", "transcript")
OPTIONAL_COLUMNS = ("id", "start", "end", "label", "group", "speaker")
OUTPUT_FORMATS = (".csv", ".jsonl")
ERROR_KINDS = (
    "missing", "empty", "undecodable", "truncated", "too-short", "no-input",
    "refused",
)
# A window is this many batches: the rows sorted by length together.
WINDOW_BATCHES = 4
# Windows decoded ahead of the one at the model.
DECODE_AHEAD = 2
# The journal is flushed after every batch (a killed process loses nothing
# flushed) and fsync'd at most this often (a power cut loses at most this much).
JOURNAL_FSYNC_SECONDS = 1.0
_JOURNAL_FORMAT = "smcn predict --manifest journal 1"


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One row of a prediction manifest.

    Attributes:
        index: the row's position among the data rows (0 first).
        line: the line of the manifest it starts on.
        id: the `id` cell, else the path as written (plus `@<start>-<end>`
            for a segment), else `line-<line>`.
        path: the `path` cell as written ("" for no audio).
        audio_path: the file to read (relative to the manifest's folder),
            or `None` for no audio.
        transcript: the transcript, whitespace collapsed ("" for no text).
        start: the segment's start in seconds, or `None`.
        end: the segment's end in seconds, or `None`.
        label: the `label` cell, or `None` when empty or absent.
    """

    index: int
    line: int
    id: str
    path: str
    audio_path: typing.Optional[str]
    transcript: str
    start: typing.Optional[float] = None
    end: typing.Optional[float] = None
    label: typing.Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The rows of a prediction manifest.

    Attributes:
        path: the manifest file, absolute.
        rows: the `ManifestRow`s, in file order.
        has_labels: whether the manifest has a `label` column.
    """

    path: str
    rows: typing.Tuple[ManifestRow, ...]
    has_labels: bool


@dataclasses.dataclass
class BatchSummary:
    """What `predict_manifest` did.

    Attributes:
        out: the output file.
        rows: rows in the manifest.
        predicted: rows with a prediction.
        errors: error kind -> rows written with that error.
        resumed: rows read back from an interrupted run's `<out>.partial`.
        seconds: wall time of this call.
        scores: with labels, the `smcn_tf.evaluate.score_predictions` report
            of the rows with a prediction and a label among the classes
            (plus `num_unscored`); else `None`.
    """

    out: str
    rows: int
    predicted: int
    errors: typing.Dict[str, int]
    resumed: int
    seconds: float
    scores: typing.Optional[dict] = None


class BadRowError(ValueError):
    """A bad row with `strict=True`: the message names the line, id and reason."""

    def __init__(self, row, reason):
        self.row = row
        self.reason = reason
        super().__init__(
            f"line {row.line} (id {row.id!r}): {reason} (--strict stops at the first bad row; "
            "without it the row is written with its error and the run goes on)"
        )


def read_manifest(path):
    """Reads a prediction manifest (see the module docstring for its columns).

    Args:
        path: the CSV file.

    Returns:
        A `Manifest`.

    Raises:
        CorpusFormatError: the file is missing or malformed (an unknown or
            missing column, a bad start / end, a duplicate id, no rows); the
            message names the file, line and column.
    """
    manifest_path = _check_manifest_file(path)
    lines = read_csv_rows(manifest_path, _read_text(manifest_path))
    header_line, header = _find_header(manifest_path, lines)
    positions = _read_header(
        manifest_path, header_line, header, REQUIRED_COLUMNS, REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    )
    rows, first_line_of = [], {}
    for line, fields in lines:
        if _is_blank(fields):
            continue
        row = _parse_row(manifest_path, line, fields, positions, len(header), len(rows))
        if row.id in first_line_of:
            raise CorpusFormatError(
                manifest_path,
                f"duplicate id {row.id!r} (first on line {first_line_of[row.id]}, again on "
                f"line {line}); ids name the output rows and must be unique",
                line,
            )
        first_line_of[row.id] = line
        rows.append(row)
    if not rows:
        raise CorpusFormatError(manifest_path, "no rows after the header", header_line)
    return Manifest(os.path.abspath(manifest_path), tuple(rows), "label" in positions)


def _parse_row(path, line, fields, positions, width, index):
    """One data row as a `ManifestRow`; raises on a bad field count or segment."""
    if len(fields) != width:
        raise CorpusFormatError(path, f"expected {width} fields as in the header, got "
                                f"{len(fields)}", line)

    def cell(name):
        return fields[positions[name]].strip() if name in positions else ""

    start = _parse_seconds(cell("start"), "start", path, line)
    end = _parse_seconds(cell("end"), "end", path, line)
    if end is not None and end <= (start or 0.0):
        raise CorpusFormatError(
            path, f"column 'end': {cell('end')} s is not after the start ({cell('start') or 0} s)",
            line,
        )
    path_text = cell("path")
    audio_path = None
    if path_text:
        audio_path = pathlib.Path(path_text)
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        audio_path = os.fspath(audio_path)
    return ManifestRow(
        index=index,
        line=line,
        id=cell("id") or (path_text and _segment_id(path_text, start, end)) or f"line-{line}",
        path=path_text,
        audio_path=audio_path,
        transcript=" ".join(cell("transcript").split()),
        start=start,
        end=end,
        label=cell("label") or None,
    )


@dataclasses.dataclass(frozen=True)
class AudioLimits:
    """What audio a model takes: its rate and the shortest / longest clip.

    Attributes:
        sample_rate: the waveform rate, in Hz.
        min_samples: a clip shorter than this is a `too-short` row (the
            model would treat it as missing audio).
        max_samples: a clip longer than this is cut to it (the model reads
            no further; its graph refuses longer rows); `None`: no bound known.
    """

    sample_rate: int
    min_samples: int
    max_samples: typing.Optional[int] = None

    @classmethod
    def of_client(cls, client):
        """The limits of a client's model: its export's, else the defaults."""
        from smcn_tf.contract.input_checks import DEFAULT_MIN_AUDIO_SECONDS

        rules = getattr(client.backend, "input_rules", None)
        if rules is not None:
            return cls(client.sample_rate, rules.min_audio_samples, rules.max_waveform_samples)
        return cls(client.sample_rate, int(round(DEFAULT_MIN_AUDIO_SECONDS * client.sample_rate)))


@dataclasses.dataclass
class DecodedRow:
    """A manifest row with its audio decoded, or the reason it cannot be scored.

    Attributes:
        row: the `ManifestRow`.
        waveform: float32 samples at the model's rate, or `None` (no audio).
        error: `<kind>: <reason>` for a bad row, else `None`.
    """

    row: ManifestRow
    waveform: typing.Optional[np.ndarray] = None
    error: typing.Optional[str] = None

    @property
    def samples(self):
        return 0 if self.waveform is None else int(self.waveform.shape[0])


class _BadAudio(ValueError):
    """An audio file that cannot be scored; the message is `<kind>: <reason>`."""


def decode_row(row, limits):
    """Reads a row's audio (its segment, resampled), or says why the row is bad.

    Args:
        row: a `ManifestRow`.
        limits: the model's `AudioLimits`.

    Returns:
        A `DecodedRow`; bad rows have `error` set, nothing raises.
    """
    if row.audio_path is None:
        if not row.transcript:
            return DecodedRow(row, error="no-input: the row has neither a path nor a transcript")
        return DecodedRow(row)  # text only: the text head answers
    try:
        waveform = _read_audio(row, limits.sample_rate)
    except _BadAudio as error:
        return DecodedRow(row, error=str(error))
    rate = limits.sample_rate
    if waveform.shape[0] < max(limits.min_samples, 1):
        return DecodedRow(row, error=(
            f"too-short: {waveform.shape[0] / rate:.3f} s of audio in {row.path}; the model "
            f"needs at least {limits.min_samples / rate:.3f} s"
        ))
    if limits.max_samples:
        # The model reads only the first max_frames frames: the rest cannot
        # change the answer, and the exported graph refuses longer rows.
        waveform = waveform[:limits.max_samples]
    return DecodedRow(row, waveform)


def _read_audio(row, sample_rate):
    """The row's waveform (its segment when it has one); raises `_BadAudio`."""
    # features.audio loads TensorFlow: imported when audio is read.
    from smcn_tf.features.audio import TruncatedAudioError, check_wav_length, read_waveform

    path = row.audio_path
    if not os.path.exists(path):
        raise _BadAudio(f"missing: no such file {path}")
    if os.path.isdir(path):
        raise _BadAudio(f"undecodable: {path} is a folder, not an audio file")
    try:
        if os.path.getsize(path) == 0:
            raise _BadAudio(f"empty: {path} is an empty file (0 bytes)")
        check_wav_length(path)
        waveform = read_waveform(path, sample_rate=sample_rate)
    except TruncatedAudioError as error:
        raise _BadAudio(f"truncated: {error}") from None
    except ValueError as error:
        if isinstance(error, _BadAudio):
            raise
        kind = "empty" if "holds no samples" in str(error) else "undecodable"
        raise _BadAudio(f"{kind}: {error}") from None
    except OSError as error:
        raise _BadAudio(f"undecodable: {path}: {error}") from None
    if row.start is None and row.end is None:
        return waveform
    first = int(round((row.start or 0.0) * sample_rate))
    last = waveform.shape[0] if row.end is None else int(round(row.end * sample_rate))
    if first >= waveform.shape[0]:
        raise _BadAudio(
            f"too-short: the segment starts at {row.start} s, at or past the end of {path} "
            f"({waveform.shape[0] / sample_rate:.3f} s)"
        )
    return waveform[first:last]


def plan_batches(decoded, batch_size):
    """The batches of a window: its good rows sorted by length, `batch_size` a batch.

    Args:
        decoded: the `DecodedRow`s of one window.
        batch_size: the most rows per batch.

    Returns:
        A list of batches, each a list of `DecodedRow`; rows with an error
        are left out. The same rows always give the same batches.
    """
    good = [item for item in decoded if item.error is None]
    good.sort(key=lambda item: (item.samples, len(item.row.transcript), item.row.index))
    return [good[start:start + batch_size] for start in range(0, len(good), batch_size)]


def _short_float(value):
    """A float32 as the shortest float that reads back as it (exact, and short text)."""
    return float(str(np.float32(value)))


def make_record(row, prediction=None, error=None, top_tokens=0):
    """One output row as a JSON-ready dict (the journal's form of a row).

    Args:
        row: the `ManifestRow`.
        prediction: its `Prediction`, or `None` for a bad row.
        error: `<kind>: <reason>` for a bad row.
        top_tokens: how many attended tokens to keep (0: none).

    Returns:
        A dict with `index`, `id`, `path`, `class`, `probabilities` (a list,
        or `None`), `modality`, `top_tokens` (a list of `[token, weight]`),
        `label` and `error`.
    """
    record = {"index": row.index, "id": row.id, "path": row.path, "class": None,
              "probabilities": None, "modality": None, "top_tokens": []}
    if prediction is not None:
        record["class"] = prediction.class_name
        record["probabilities"] = [_short_float(value) for value in prediction.probabilities]
        record["modality"] = prediction.modality
        if top_tokens:
            record["top_tokens"] = [
                [token, round(float(weight), 4)]
                for token, weight in prediction.top_tokens(top_tokens)
            ]
    record["label"] = row.label
    record["error"] = " ".join(error.split()) if error else None  # one line
    return record


def _fsync_directory(directory):
    """Makes a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class Journal:
    """`<out>.partial`: the header of a run, then its answered batches, one JSON line each.

    Each line is written whole and flushed (and fsync'd at most every
    `JOURNAL_FSYNC_SECONDS`: an fsync per batch costs more than decoding it);
    a line cut off by a kill or a power cut is not valid JSON and is dropped
    (with its batch) when the run is resumed.

    Args:
        path: the journal file.
        header: what a resumed run must match (manifest, options, classes).
        resume: continue the journal when it exists; without it an existing
            journal is an error, so an interrupted run is never lost silently.

    Attributes:
        records: row index -> record, of the batches read back.

    Raises:
        ValueError: a journal exists and `resume` is False, or it belongs to
            another manifest or other options.
    """

    def __init__(self, path, header, resume):
        self.path = path
        self.records = {}
        self._synced = time.monotonic()
        if os.path.exists(path):
            if not resume:
                raise ValueError(
                    f"{path} holds an interrupted run: add --resume to continue it, or delete "
                    "it to start over."
                )
            self._stream = self._reopen(header)
        else:
            self._stream = open(path, "wb")
            self._write_line(header)

    def _reopen(self, header):
        """Reads the journal back; returns it open for appending after its last whole line."""
        with open(self.path, "rb") as stream:
            data = stream.read()
        lines = data.split(b"\n")
        try:
            found = json.loads(lines[0])
        except ValueError:
            found = None
        if found != header:
            changed = sorted(
                key for key in header if not isinstance(found, dict) or found.get(key) != header[key]
            )
            raise ValueError(
                f"{self.path} was written by a run with another manifest or other options "
                f"({', '.join(changed) or 'unreadable header'} differ): resume with the same "
                "ones, or delete it to start over."
            )
        kept = len(lines[0]) + 1
        for line in lines[1:-1]:  # the last piece has no newline: cut off or empty
            try:
                batch = json.loads(line)
            except ValueError:
                break
            for record in batch:
                self.records[record["index"]] = record
            kept += len(line) + 1
        stream = open(self.path, "r+b")
        stream.truncate(kept)
        stream.seek(kept)
        return stream

    def _write_line(self, value):
        self._stream.write(
            json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        )
        self._stream.flush()
        if time.monotonic() - self._synced >= JOURNAL_FSYNC_SECONDS:
            os.fsync(self._stream.fileno())
            self._synced = time.monotonic()

    def append(self, records):
        """Appends one batch of records as one line (see the class docstring)."""
        self._write_line(records)

    def close(self):
        """Makes what was written durable and closes the journal."""
        if not self._stream.closed:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()

    def remove(self):
        """Closes and deletes the journal (the output is complete)."""
        self._stream.close()
        os.remove(self.path)


def output_columns(class_names, top_tokens, has_labels):
    """The CSV columns of an output: id, path, class, p_<class>..., modality, ..."""
    columns = ["id", "path", "class"] + [f"p_{name}" for name in class_names] + ["modality"]
    if top_tokens:
        columns.append("top_tokens")
    if has_labels:
        columns.append("label")
    return columns + ["error"]


def write_output(path, records, class_names, top_tokens, has_labels):
    """Writes the records in order, atomically: a temporary file renamed over `path`.

    Args:
        path: the `.csv` or `.jsonl` output file.
        records: the `make_record` dicts, in manifest order.
        class_names: the class names (`p_<class>` columns, JSONL keys).
        top_tokens: whether records carry attended tokens.
        has_labels: whether to write the `label` column.
    """
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            if path.lower().endswith(".jsonl"):
                for record in records:
                    stream.write(json.dumps(
                        _json_row(record, class_names, top_tokens, has_labels),
                        ensure_ascii=False,
                    ) + "\n")
            else:
                writer = csv.writer(stream, lineterminator="\n")
                writer.writerow(output_columns(class_names, top_tokens, has_labels))
                for record in records:
                    writer.writerow(_csv_row(record, class_names, top_tokens, has_labels))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def _csv_row(record, class_names, top_tokens, has_labels):
    probabilities = record["probabilities"] or [None] * len(class_names)
    row = [record["id"], record["path"], record["class"]] + [
        "" if value is None else repr(value) for value in probabilities
    ] + [record["modality"]]
    if top_tokens:
        row.append(" ".join(f"{token}:{weight}" for token, weight in record["top_tokens"]))
    if has_labels:
        row.append(record["label"])
    return ["" if value is None else value for value in row + [record["error"]]]


def _json_row(record, class_names, top_tokens, has_labels):
    row = {"id": record["id"], "path": record["path"], "class": record["class"]}
    row["probabilities"] = None if record["probabilities"] is None else dict(
        zip(class_names, record["probabilities"])
    )
    row["modality"] = record["modality"]
    if top_tokens:
        row["top_tokens"] = record["top_tokens"]
    if has_labels:
        row["label"] = record["label"]
    row["error"] = record["error"]
    return row


def score_records(records, class_names):
    """UA, WA, weighted F1 and the confusion matrix of the labelled rows.

    The scoring of `smcn evaluate` (`smcn_tf.evaluate.score_predictions`)
    over the rows with a prediction and a label among the classes.

    Args:
        records: the `make_record` dicts.
        class_names: the class names, in class order.

    Returns:
        The `score_predictions` report plus `num_unscored` (rows with a label
        left out: an error, or a label outside the classes), or `None` when
        no row can be scored.
    """
    from smcn_tf.evaluate import score_predictions

    class_ids = {name: index for index, name in enumerate(class_names)}
    labelled = [record for record in records if record["label"] is not None]
    pairs = [
        (class_ids[record["label"]], class_ids[record["class"]])
        for record in labelled
        if record["error"] is None and record["label"] in class_ids
        and record["class"] in class_ids
    ]
    if not pairs:
        return None
    labels, predictions = (np.asarray(values, np.int64) for values in zip(*pairs))
    report = score_predictions(labels, predictions, list(class_names))
    report["num_unscored"] = len(labelled) - len(pairs)
    return report


def format_scores(report):
    """UA / WA / W-F1 (in %) and the confusion matrix of a `score_records` report."""
    names = report["class_names"]
    lines = [
        f"Scored {report['num_examples']} labelled rows"
        + (f" ({report['num_unscored']} more left out: an error or a label outside the "
           "classes)" if report.get("num_unscored") else "") + ":",
        f"UA {100 * report['unweighted_accuracy']:.2f}  WA "
        f"{100 * report['weighted_accuracy']:.2f}  W-F1 {100 * report['weighted_f1']:.2f}",
        "Confusion matrix (rows: true, columns: predicted):",
    ]
    width = max(len(name) for name in names + ["true"])
    cell = max(5, *(len(name) for name in names))
    lines.append(" " * width + "".join(f" {name:>{cell}}" for name in names))
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + "".join(f" {value:>{cell}}" for value in row))
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """How `predict_manifest` runs (see its Args)."""

    batch_size: int = 32
    workers: int = 4
    in_flight: int = 2
    strict: bool = False
    top_tokens: int = 0

    def __post_init__(self):
        for name in ("batch_size", "workers", "in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if isinstance(self.top_tokens, bool) or not isinstance(self.top_tokens, int) or (
                self.top_tokens < 0):
            raise ValueError(f"top_tokens must be an integer >= 0, got {self.top_tokens!r}.")

    @property
    def window(self):
        """Rows sorted by length together: `WINDOW_BATCHES` batches."""
        return self.batch_size * WINDOW_BATCHES


class _Run:
    """One pass over a manifest's rows not in the journal yet.

    Decoding runs in `decoders` (threads, windows ahead), the model in
    `model` (at most `in_flight` batches); this object, on the caller's
    thread, tokenizes, submits, and records answers as they come.
    """

    def __init__(self, client, manifest, options, journal, progress):
        self.client = client
        self.manifest = manifest
        self.options = options
        self.journal = journal
        self.progress = progress
        self.limits = AudioLimits.of_client(client)
        self.records = dict(journal.records)
        self.pending = collections.deque()  # (batch, inputs, token lists, future)
        self._decoding = []  # every decoding future, to cancel on an error

    def run(self):
        workers, in_flight = self.options.workers, self.options.in_flight
        with concurrent.futures.ThreadPoolExecutor(workers, "smcn-decode") as decoders, \
                concurrent.futures.ThreadPoolExecutor(in_flight, "smcn-model") as model:
            try:
                for decoded in self._decoded_windows(decoders):
                    self._submit_window(decoded, model)
                self._wait(0)
            except BaseException:
                for _, _, _, future in self.pending:
                    future.cancel()
                for future in self._decoding:
                    future.cancel()
                raise
        return self.records

    def _decoded_windows(self, decoders):
        """The windows with rows still to score, decoded, `DECODE_AHEAD` ahead."""
        size = self.options.window
        rows = self.manifest.rows
        windows = [
            rows[start:start + size] for start in range(0, len(rows), size)
            if not all(row.index in self.records for row in rows[start:start + size])
        ]
        submitted = collections.deque()
        for position in range(len(windows)):
            while len(submitted) < DECODE_AHEAD and position + len(submitted) < len(windows):
                futures = [decoders.submit(decode_row, row, self.limits)
                           for row in windows[position + len(submitted)]]
                self._decoding.extend(futures)
                submitted.append(futures)
            yield [future.result() for future in submitted.popleft()]

    def _submit_window(self, decoded, model):
        """Records a window's bad rows and sends its batches still to score."""
        bad = [item for item in decoded if item.error and item.row.index not in self.records]
        if bad and self.options.strict:
            raise BadRowError(bad[0].row, bad[0].error)
        if bad:
            self._commit([make_record(item.row, error=item.error) for item in bad])
        for batch in plan_batches(decoded, self.options.batch_size):
            done = [item.row.index in self.records for item in batch]
            if all(done):
                continue
            if any(done):
                raise ValueError(
                    f"{self.journal.path} holds part of a batch: it was written with other "
                    "options or other files; delete it to start over."
                )
            self._wait(self.options.in_flight - 1)
            items = [(item.waveform, item.row.transcript or None) for item in batch]
            inputs, token_lists = self.client.make_inputs(items)
            future = model.submit(self.client.predict_raw, inputs)
            self.pending.append((batch, inputs, token_lists, future))
            self._collect(block=False)

    def _wait(self, limit):
        """Records answers until at most `limit` batches are at the model."""
        while len(self.pending) > limit:
            concurrent.futures.wait(
                [entry[3] for entry in self.pending],
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            self._collect(block=False)

    def _collect(self, block):
        """Records every answered batch (in the order they were sent)."""
        still = collections.deque()
        while self.pending:
            entry = self.pending.popleft()
            if not (block or entry[3].done()):
                still.append(entry)
                continue
            self._commit(self._answer(*entry))
        self.pending = still

    def _answer(self, batch, inputs, token_lists, future):
        """The records of one sent batch; a refused batch is sent again row by row."""
        top = self.options.top_tokens
        try:
            outputs, version = future.result()
        except ServingError as error:
            if error.code != "INVALID_ARGUMENT":
                raise  # the server is down or broken: stop, the journal keeps what is done
            if len(batch) > 1:
                return [record for item in batch for record in self._answer_alone(item)]
            if self.options.strict:
                raise BadRowError(batch[0].row, f"refused: {error.message}") from None
            return [make_record(batch[0].row, error=f"refused: {error.message}")]
        predictions = self.client.read_predictions(inputs, token_lists, outputs, version)
        return [
            make_record(item.row, prediction, top_tokens=top)
            for item, prediction in zip(batch, predictions)
        ]

    def _answer_alone(self, item):
        inputs, token_lists = self.client.make_inputs(
            [(item.waveform, item.row.transcript or None)]
        )
        future = concurrent.futures.Future()
        try:
            future.set_result(self.client.predict_raw(inputs))
        except ServingError as error:
            future.set_exception(error)
        return self._answer([item], inputs, token_lists, future)

    def _commit(self, records):
        self.journal.append(records)
        for record in records:
            self.records[record["index"]] = record
        self.progress.update(len(records))


def _journal_header(manifest, options, client):
    ids = "\n".join(row.id for row in manifest.rows).encode("utf-8")
    return {
        "format": _JOURNAL_FORMAT,
        "manifest": manifest.path,
        "rows": len(manifest.rows),
        "ids_sha256": hashlib.sha256(ids).hexdigest(),
        "batch_size": options.batch_size,
        "window": options.window,
        "top_tokens": options.top_tokens,
        "class_names": list(client.class_names) if client.class_names else None,
    }


def _class_names(client, records):
    """The client's class names, else `"0"`, `"1"`, ... for as many as answered."""
    if client.class_names:
        return [str(name) for name in client.class_names]
    count = max((len(record["probabilities"] or ()) for record in records), default=0)
    return [str(index) for index in range(count)]


def _check_output_path(out):
    out = os.fspath(out)
    if not out.lower().endswith(OUTPUT_FORMATS):
        raise ValueError(f"the output must end with .csv or .jsonl, got {out!r}.")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise ValueError(f"the output's folder {directory} does not exist.")
    if os.path.isdir(out):
        raise ValueError(f"the output {out} is a folder; name a .csv or .jsonl file.")
    return out


def predict_manifest(client, manifest, out, batch_size=32, workers=4, in_flight=2,
                     strict=False, resume=False, top_tokens=0, progress=False):
    """Scores every row of a manifest and writes one output row per clip.

    Args:
        client: an `SMCNClient` (in-process, gRPC or REST).
        manifest: the CSV manifest (a path), or a `Manifest`.
        out: the output file, `.csv` or `.jsonl` (see the module docstring).
        batch_size: the most rows per request.
        workers: threads decoding and resampling audio.
        in_flight: the most batches at the model at once.
        strict: raise `BadRowError` at the first bad row instead of writing
            it with its error.
        resume: continue the interrupted run kept in `<out>.partial`.
        top_tokens: how many attended tokens to write per row (0: none).
        progress: show a progress bar (rows, rows/s) on stderr.

    Returns:
        A `BatchSummary`; its `scores` when the manifest has labels.

    Raises:
        ValueError: a malformed manifest, a bad option or output path, an
            existing `<out>.partial` without `resume`, or a bad row with
            `strict` (the rows answered so far stay in `<out>.partial`).
        ServingError: the model or server failed other than by refusing a
            row (the rows answered so far stay in `<out>.partial`).
    """
    import tqdm

    started = time.perf_counter()
    options = BatchOptions(batch_size, workers, in_flight, bool(strict), top_tokens)
    out = _check_output_path(out)
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    journal = Journal(f"{out}.partial", _journal_header(manifest, options, client), resume)
    resumed = len(journal.records)
    try:
        with tqdm.tqdm(total=len(manifest.rows), initial=resumed, unit="clip",
                       desc="predict", disable=not progress, smoothing=0.1) as bar:
            records = _Run(client, manifest, options, journal, bar).run()
    except BaseException:
        journal.close()
        raise
    ordered = [records[row.index] for row in manifest.rows]
    class_names = _class_names(client, ordered)
    write_output(out, ordered, class_names, top_tokens, manifest.has_labels)
    journal.remove()
    errors = collections.Counter(
        record["error"].split(":", 1)[0] for record in ordered if record["error"]
    )
    return BatchSummary(
        out=out, rows=len(ordered), predicted=len(ordered) - sum(errors.values()),
        errors=dict(sorted(errors.items())), resumed=resumed,
        seconds=time.perf_counter() - started,
        scores=score_records(ordered, class_names) if manifest.has_labels else None,
    )


def add_arguments(parser):
    """Adds the `--manifest` options to `smcn predict`'s parser."""
    group = parser.add_argument_group(
        "a manifest of clips (instead of --audio / --text)",
        "Score every row of a CSV manifest (columns path, transcript, and optional id, start, "
        "end, label, group, speaker) and write one row per clip to --out.",
    )
    group.add_argument("--manifest", metavar="FILE.csv", help="The clips to score.")
    group.add_argument(
        "--out", metavar="FILE", help="Output .csv or .jsonl (written atomically when done)."
    )
    group.add_argument(
        "--batch-size", type=int, default=32, help="Most rows per request (default 32)."
    )
    group.add_argument(
        "--workers", type=int, default=4,
        help="Threads decoding and resampling audio (default 4).",
    )
    group.add_argument(
        "--in-flight", type=int, default=2,
        help="Most batches at the model or server at once (default 2).",
    )
    group.add_argument(
        "--strict", action="store_true",
        help="Stop at the first bad row (default: write it with its error and go on).",
    )
    group.add_argument(
        "--resume", action="store_true",
        help="Continue an interrupted run from OUT.partial, scoring only the rows not done.",
    )
    group.add_argument(
        "--progress", action="store_true",
        help="Show a progress bar with clips/s (default: only when stderr is a terminal or "
        "with smcn --verbose).",
    )


def check_arguments(args):
    """Raises `ValueError` when `--manifest` is mixed with single-clip options."""
    if args.manifest is None:
        stray = [name for name in ("out", "resume", "strict") if getattr(args, name)]
        if stray:
            raise ValueError(f"--{stray[0]} goes with --manifest.")
        return
    if args.audio is not None or args.text is not None:
        raise ValueError("give --manifest or --audio / --text, not both.")
    if args.json:
        raise ValueError("--json prints one clip; with --manifest name a .jsonl --out.")
    if not args.out:
        raise ValueError("--manifest needs --out FILE.csv (or .jsonl).")


def command_predict_manifest(args, client):
    """Runs `smcn predict --manifest`; prints a summary and, with labels, the scores."""
    from smcn_tf import quiet

    summary = predict_manifest(
        client, args.manifest, args.out, batch_size=args.batch_size, workers=args.workers,
        in_flight=args.in_flight, strict=args.strict, resume=args.resume,
        top_tokens=args.top_tokens or 0,
        progress=args.progress or sys.stderr.isatty() or quiet.verbose_requested([]),
    )
    errors = ", ".join(f"{count} {kind}" for kind, count in summary.errors.items())
    resumed = f", {summary.resumed} of them from the interrupted run" if summary.resumed else ""
    print(
        f"Wrote {summary.rows} rows to {summary.out}{resumed}: {summary.predicted} predicted"
        + (f", {sum(summary.errors.values())} with an error ({errors})" if errors else "")
        + f"; {summary.seconds:.1f} s."
    )
    if summary.scores is not None:
        print(format_scores(summary.scores))
    return 0
