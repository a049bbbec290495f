"""The record every corpus parser produces, and the error it raises on bad input."""

import dataclasses


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
    """

    utterance_id: str
    audio_path: str
    transcript: str
    label: str
    speaker: str
    group: str
    start_seconds: float | None = None
    end_seconds: float | None = None

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
