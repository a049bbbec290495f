"""The record every corpus parser produces, and the error it raises on bad input."""

import csv
import dataclasses
import io


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One labelled utterance of a corpus, before feature extraction.

    Args:
        utterance_id: the corpus' own id, e.g. `"Ses01F_impro01_F000"`.
        audio_path: path of the utterance's audio (a WAV file for IEMOCAP).
        transcript: the words spoken.
        label: the class name after mapping, e.g. `"happy"` for IEMOCAP `exc`.
        speaker: the speaker id, e.g. `"Ses01F"`.
        group: the fold key: `"Session1"` .. `"Session5"` for IEMOCAP, the split
            name (`"train"`, `"dev"`, `"test"`) for MELD.
        start_seconds: where the utterance starts in `audio_path`, in seconds;
            None: at the start of the file.
        end_seconds: where it ends; None: at the end of the file. With
            neither set (IEMOCAP, MELD) the whole file is the utterance.
        speed: speed perturbation: the waveform is resampled to play this
            many times faster (0.9: a slower, longer clip) after it is read;
            1.0, the default, leaves it as read. Set on the augmented copies
            `smcn prepare` writes with `features.speed_perturbation`.
    """

    utterance_id: str
    audio_path: str
    transcript: str
    label: str
    speaker: str
    group: str
    start_seconds: float | None = None
    end_seconds: float | None = None
    speed: float = 1.0

    @property
    def is_segment(self):
        """True when only a part of `audio_path` is the utterance."""
        return self.start_seconds is not None or self.end_seconds is not None


class CorpusFormatError(ValueError):
    """A corpus file is missing or malformed; the message names the file and line."""

    def __init__(self, path, message, line_number=None):
        self.path = str(path)
        self.line_number = line_number
        location = self.path if line_number is None else f"{self.path}:{line_number}"
        super().__init__(f"{location}: {message}")


def read_csv_rows(path, text):
    r"""Yield `(line_number, fields)` per CSV row of `text`, the header first.

    The line number is the physical line the row starts on, so a quoted field
    spanning lines does not shift the numbers that follow; `newline=""` lets
    the csv module handle CRLF and line breaks inside quotes.

    Raises:
        CorpusFormatError: malformed CSV, naming `path` and the line.

    >>> list(read_csv_rows("a.csv", 'x,y\r\n"1\n2",3\r\n4,5\r\n'))
    [(1, ['x', 'y']), (2, ['1\n2', '3']), (4, ['4', '5'])]
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    line_number = 1
    try:
        for fields in reader:
            yield line_number, fields
            line_number = reader.line_num + 1
    except csv.Error as error:
        raise CorpusFormatError(path, f"malformed CSV: {error}", line_number) from error
