"""Parser for the IEMOCAP_full_release directory tree (4-class setup).

The release holds five sessions. For each session `N`:

- `SessionN/dialog/EmoEvaluation/<dialog>.txt` holds one label line per turn::

      [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

  followed by per-evaluator lines (`C-E1:`, `A-E2:`, ...) that are ignored, as
  are the `% [START_TIME - END_TIME] ...` header and blank lines. The
  `Categorical/`, `Attribute/` and `Self-evaluation/` subfolders are ignored.
- `SessionN/dialog/transcriptions/<dialog>.txt` holds one line per turn::

      Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.

- `SessionN/sentences/wav/<dialog>/<utterance_id>.wav` holds the audio.

Labels are mapped to the usual four classes (`exc` merged into `happy`); every
other label is dropped and counted.
"""

import dataclasses
import math
import os
import pathlib
import re

from smcn_tf.corpora.utterance import CorpusFormatError, Utterance

CLASS_NAMES = ("angry", "happy", "neutral", "sad")

LABEL_MAP = {
    "ang": "angry",
    "hap": "happy",
    "exc": "happy",
    "neu": "neutral",
    "sad": "sad",
}

ALL_SESSIONS = (1, 2, 3, 4, 5)

# Subfolders of EmoEvaluation that hold per-evaluator files, not the consensus.
IGNORED_EVALUATION_FOLDERS = ("Categorical", "Attribute", "Self-evaluation")

# The 4-class subset of the full release as commonly reported (10039 turns in
# all, 4508 of them with a label outside the four classes).
EXPECTED_COUNTS = {
    "total": 5531,
    "by_label": {"angry": 1103, "happy": 1636, "neutral": 1708, "sad": 1084},
    "by_raw_label": {"ang": 1103, "exc": 1041, "hap": 595, "neu": 1708, "sad": 1084},
    "by_group": {
        "Session1": 1085,
        "Session2": 1023,
        "Session3": 1151,
        "Session4": 1031,
        "Session5": 1241,
    },
    "dropped_labels": {"dis": 2, "fea": 40, "fru": 1849, "oth": 3, "sur": 107, "xxx": 2507},
}

# Ses01F_impro01_F000, Ses01F_script01_1_F000, Ses03M_impro05a_M012: session,
# recording lead, dialog name, then the speaking actor's gender and turn number.
UTTERANCE_ID_PATTERN = re.compile(
    r"^Ses(?P<session>\d{2})(?P<lead>[FM])_(?P<name>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)"
    r"_(?P<gender>[FM])(?P<turn>\d{3})$"
)

_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_LABEL_LINE_PATTERN = re.compile(
    rf"^\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]"
    r"\s+(?P<utterance_id>\S+)\s+(?P<label>[A-Za-z]+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
_TRANSCRIPTION_LINE_PATTERN = re.compile(
    rf"^(?P<utterance_id>\S+)\s+\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]"
    r"\s*:\s?(?P<text>.*)$"
)


@dataclasses.dataclass
class ParseResult:
    """What `parse_iemocap` found.

    Args:
        utterances: the kept utterances, sorted by utterance id.
        dropped_labels: raw label -> number of turns dropped because the label
            is outside the four classes, e.g. `{"fru": 1849, "xxx": 2507}`.
        skipped: `(utterance_id, reason)` for labelled turns left out because
            their transcription or audio is missing (only when `strict=False`).
        kept_labels: raw label -> number of kept turns, e.g. `{"exc": 1041}`.
    """

    utterances: list[Utterance]
    dropped_labels: dict[str, int]
    skipped: list[tuple[str, str]]
    kept_labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def counts(self):
        """Summarise the parse.

        Returns:
            A dict with `total`, `by_label` (every class name, zeros included),
            `by_raw_label`, `by_group`, `dropped_labels` and `skipped` (a count).
        """
        by_label = {name: 0 for name in CLASS_NAMES}
        by_group = {}
        for utterance in self.utterances:
            by_label[utterance.label] = by_label.get(utterance.label, 0) + 1
            by_group[utterance.group] = by_group.get(utterance.group, 0) + 1
        return {
            "total": len(self.utterances),
            "by_label": by_label,
            "by_raw_label": dict(sorted(self.kept_labels.items())),
            "by_group": dict(sorted(by_group.items())),
            "dropped_labels": dict(sorted(self.dropped_labels.items())),
            "skipped": len(self.skipped),
        }


def parse_utterance_id(utterance_id):
    """Split an IEMOCAP utterance id into its parts.

    Args:
        utterance_id: e.g. `"Ses01F_script01_1_M012"`.

    Returns:
        A dict with `session` (int), `dialog` (`"Ses01F_script01_1"`) and
        `speaker` (`"Ses01M"`: the session plus the speaking actor's gender), or
        None when the string is not an utterance id (e.g. `Ses01F_impro01_MXX0`).
    """
    match = UTTERANCE_ID_PATTERN.match(utterance_id)
    if match is None:
        return None
    session = match.group("session")
    return {
        "session": int(session),
        "dialog": utterance_id.rsplit("_", 1)[0],
        "speaker": f"Ses{session}{match.group('gender')}",
    }


def read_text_lines(path):
    """Read a text file as a list of lines, tolerant of stray bytes and CRLF.

    Args:
        path: the file to read.

    Returns:
        The lines without their line endings; `lines[0]` is line 1.
    """
    data = pathlib.Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # A few release files carry Latin-1 bytes; keep the line, mark the byte.
        text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    # Split on "\n" only: str.splitlines would also split on form feeds and
    # other separators and so shift the line numbers in error messages.
    return [line.rstrip("\r") for line in text.split("\n")]


def _text_files(directory):
    """List the `.txt` files directly inside a directory, sorted by name.

    Args:
        directory: a `pathlib.Path`.

    Returns:
        The regular `.txt` files, leaving out subfolders and dot files (macOS
        copies of the release carry `._<name>.txt` resource forks).
    """
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and path.suffix == ".txt" and not path.name.startswith(".")
    )


def _parse_time_pair(start_text, end_text):
    """Turn two time stamps into floats, or return None when they are not valid.

    Args:
        start_text: the start time as written.
        end_text: the end time as written.

    Returns:
        `(start, end)` in seconds, or None if either is not finite, negative, or
        the end precedes the start.
    """
    start, end = float(start_text), float(end_text)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
        return None
    return start, end


def _parse_label_line(line, path, line_number, session):
    """Parse one `[start - end]<TAB>id<TAB>label<TAB>[V, A, D]` line.

    Args:
        line: the line, starting with `[`.
        path: the file, for error messages.
        line_number: 1-based, for error messages.
        session: the session number of the folder the file is in.

    Returns:
        `(utterance_id, raw_label)`.

    Raises:
        CorpusFormatError: the line does not parse.
    """
    match = _LABEL_LINE_PATTERN.match(line.strip())
    if match is None:
        raise CorpusFormatError(
            path,
            "malformed label line, expected "
            f"'[START - END]<TAB>UTTERANCE_ID<TAB>LABEL<TAB>[V, A, D]', got {line.strip()!r}",
            line_number,
        )
    if _parse_time_pair(match.group("start"), match.group("end")) is None:
        raise CorpusFormatError(
            path,
            f"malformed label line, bad time stamps {match.group('start')} - "
            f"{match.group('end')}",
            line_number,
        )
    vad_parts = [part.strip() for part in match.group("vad").split(",")]
    if len(vad_parts) != 3 or not all(re.fullmatch(_NUMBER, part) for part in vad_parts):
        raise CorpusFormatError(
            path,
            f"malformed label line, expected three numbers in [V, A, D], got "
            f"[{match.group('vad')}]",
            line_number,
        )
    utterance_id = match.group("utterance_id")
    parts = parse_utterance_id(utterance_id)
    if parts is None:
        raise CorpusFormatError(
            path,
            "malformed label line, expected an utterance id like "
            f"Ses01F_impro01_F000, got {utterance_id!r}",
            line_number,
        )
    if parts["session"] != session:
        raise CorpusFormatError(
            path,
            f"utterance {utterance_id} belongs to session {parts['session']}, "
            f"but the file is in Session{session}",
            line_number,
        )
    return utterance_id, match.group("label")


def _read_transcriptions(directory):
    """Read every transcription file of one session.

    Args:
        directory: `SessionN/dialog/transcriptions`; may be missing.

    Returns:
        A dict utterance id -> transcript text (stripped).

    Raises:
        CorpusFormatError: a line with an utterance id does not parse, or one
            id has two different transcripts.
    """
    transcripts = {}
    if not directory.is_dir():
        return transcripts
    for path in _text_files(directory):
        for line_number, line in enumerate(read_text_lines(path), start=1):
            stripped = line.strip()
            if not stripped:
                continue
            first_token = stripped.split(maxsplit=1)[0]
            # Lines of non-utterance speakers (Ses01F_impro01_MXX0, "M:", ...)
            # have no audio and no label; they are skipped on purpose.
            if parse_utterance_id(first_token) is None:
                continue
            match = _TRANSCRIPTION_LINE_PATTERN.match(stripped)
            if match is None or _parse_time_pair(match.group("start"), match.group("end")) is None:
                raise CorpusFormatError(
                    path,
                    "malformed transcription line, expected "
                    f"'UTTERANCE_ID [START-END]: TEXT', got {stripped!r}",
                    line_number,
                )
            text = match.group("text").strip()
            previous = transcripts.get(first_token)
            if previous is not None and previous != text:
                raise CorpusFormatError(
                    path,
                    f"second, different transcription for {first_token}",
                    line_number,
                )
            transcripts[first_token] = text
    return transcripts


def _validate_sessions(sessions):
    """Check the `sessions` argument of `parse_iemocap`.

    Args:
        sessions: an iterable of session numbers.

    Returns:
        The distinct session numbers, sorted.

    Raises:
        ValueError: a session is not an int in 1..5, or none is given.
    """
    try:
        numbers = list(sessions)
    except TypeError as error:
        raise ValueError(
            f"sessions must be an iterable of ints in 1..5, got {sessions!r}"
        ) from error
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int) or number not in ALL_SESSIONS:
            raise ValueError(f"sessions must be ints in 1..5, got {number!r}")
    if not numbers:
        raise ValueError("sessions must name at least one session")
    return sorted(set(numbers))


@dataclasses.dataclass
class _Found:
    """What `parse_iemocap` has found so far, over the sessions it read."""

    utterances: list = dataclasses.field(default_factory=list)
    dropped_labels: dict = dataclasses.field(default_factory=dict)
    kept_labels: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)
    # utterance id -> (label file, line) of its label, to name a second one.
    labelled_at: dict = dataclasses.field(default_factory=dict)


def parse_iemocap(root, sessions=ALL_SESSIONS, strict=True):
    """Parse the 4-class utterances of an IEMOCAP_full_release tree.

    Args:
        root: the release directory, holding `Session1` .. `Session5`.
        sessions: the session numbers to read.
        strict: when True a labelled turn without a transcription line or a
            WAV file raises; when False it is left out and listed in
            `ParseResult.skipped`. Malformed lines raise either way.

    Returns:
        A `ParseResult` whose utterances are sorted by utterance id.

    Raises:
        CorpusFormatError: the root or a session's `dialog/EmoEvaluation`
            folder is missing, a line is malformed, a turn is labelled twice,
            or (strict) a labelled turn lacks its transcription or audio.
        ValueError: `sessions` is not a set of session numbers.
    """
    session_numbers = _validate_sessions(sessions)
    root_path = pathlib.Path(root)
    if not root_path.is_dir():
        raise CorpusFormatError(root_path, "IEMOCAP root directory does not exist")
    found = _Found()
    for session in session_numbers:
        _parse_session(root_path / f"Session{session}", session, strict, found)
    found.utterances.sort(key=lambda utterance: utterance.utterance_id)
    found.skipped.sort()
    return ParseResult(
        utterances=found.utterances,
        dropped_labels=dict(sorted(found.dropped_labels.items())),
        skipped=found.skipped,
        kept_labels=dict(sorted(found.kept_labels.items())),
    )


def _parse_session(session_path, session, strict, found):
    """Adds the labelled turns of one session to `found`."""
    evaluation_path = session_path / "dialog" / "EmoEvaluation"
    if not evaluation_path.is_dir():
        raise CorpusFormatError(
            evaluation_path, f"missing the EmoEvaluation folder of Session{session}"
        )
    transcription_path = session_path / "dialog" / "transcriptions"
    transcripts = _read_transcriptions(transcription_path)
    for label_path in _text_files(evaluation_path):
        for line_number, line in enumerate(read_text_lines(label_path), start=1):
            # Only label lines start with "["; the header ("%"), blank lines
            # and per-evaluator lines ("C-E1:", "A-E2:") are not labels.
            if not line.lstrip().startswith("["):
                continue
            utterance_id, raw_label = _parse_label_line(line, label_path, line_number, session)
            if utterance_id in found.labelled_at:
                first_path, first_line = found.labelled_at[utterance_id]
                raise CorpusFormatError(
                    label_path,
                    f"{utterance_id} is labelled twice (first at {first_path}:{first_line})",
                    line_number,
                )
            found.labelled_at[utterance_id] = (label_path, line_number)
            label = LABEL_MAP.get(raw_label)
            if label is None:
                found.dropped_labels[raw_label] = found.dropped_labels.get(raw_label, 0) + 1
                continue
            parts = parse_utterance_id(utterance_id)
            audio_path = (
                session_path / "sentences" / "wav" / parts["dialog"] / f"{utterance_id}.wav"
            )
            reason = _missing_reason(utterance_id, transcripts, transcription_path, audio_path)
            if reason is not None:
                if strict:
                    raise CorpusFormatError(label_path, f"{utterance_id}: {reason}", line_number)
                found.skipped.append((utterance_id, reason))
                continue
            found.kept_labels[raw_label] = found.kept_labels.get(raw_label, 0) + 1
            found.utterances.append(
                Utterance(
                    utterance_id=utterance_id,
                    audio_path=os.fspath(audio_path),
                    transcript=transcripts[utterance_id],
                    label=label,
                    speaker=parts["speaker"],
                    group=f"Session{session}",
                )
            )


def _missing_reason(utterance_id, transcripts, transcription_path, audio_path):
    """Why a labelled turn cannot be kept (no transcription, no audio), or None."""
    if utterance_id not in transcripts:
        dialog = parse_utterance_id(utterance_id)["dialog"]
        return f"no transcription line in {transcription_path / (dialog + '.txt')}"
    if not audio_path.is_file():
        return f"missing audio file {audio_path}"
    return None


def compare_to_expected(counts, expected=None):
    """List how a full-release parse differs from the published 4-class counts.

    Args:
        counts: `ParseResult.counts()` of a parse of all five sessions.
        expected: the reference counts; `EXPECTED_COUNTS` when None.

    Returns:
        Human-readable warnings, one per differing number; empty when the parse
        matches. Sections missing from `counts` are not compared.
    """
    expected = EXPECTED_COUNTS if expected is None else expected
    warnings = []
    if "total" in counts and counts["total"] != expected["total"]:
        warnings.append(
            f"total: parsed {counts['total']} utterances, the full release has "
            f"{expected['total']} in the 4-class set"
        )
    sections = (
        ("by_label", "class"),
        ("by_raw_label", "raw label"),
        ("by_group", "group"),
        ("dropped_labels", "dropped label"),
    )
    for section, noun in sections:
        if section not in counts:
            continue
        found = counts[section]
        for key, expected_count in expected[section].items():
            found_count = found.get(key, 0)
            if found_count != expected_count:
                warnings.append(
                    f"{noun} {key}: parsed {found_count}, the full release has {expected_count}"
                )
        for key in sorted(set(found) - set(expected[section])):
            if found[key]:
                warnings.append(
                    f"{noun} {key}: parsed {found[key]}, the full release has none"
                )
    return warnings
