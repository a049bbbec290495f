"""Audio tracks of media files (MELD's mp4 clips) as 16 kHz mono float32, with PyAV.

MELD ships its utterances as mp4 video clips whose audio track is AAC, stereo,
at 44.1 or 48 kHz. `read_media_audio` opens a clip with PyAV (FFmpeg), decodes
its first audio stream, resamples it to the requested rate with FFmpeg's
resampler, and averages the channels. Averaging, rather than FFmpeg's own mono
downmix (which weights each channel by sqrt(1/2), 3 dB louder), keeps the
result identical in level to `smcn_tf.features.audio.read_waveform`, which
averages the channels of a WAV file: the same recording gives the same
log-Mel features whichever way it reaches the model.

`read_audio` picks the reader from the file extension, so a corpus may mix
WAV/FLAC files and media files. `decode_audio` is the same with a report of
whether the clip was truncated at `max_seconds` (some MELD clips run for
minutes; a few seconds of them are enough for 500 feature frames), and it
refuses a WAV file that holds fewer samples than its header declares (a copy
cut off: `smcn_tf.features.audio.TruncatedAudioError`), which libsndfile
would read in silence.
"""

import dataclasses
import math
import os

import av
import numpy as np

from smcn_tf.features.audio import check_wav_length, read_waveform

WAVEFORM_EXTENSIONS = (".wav", ".flac")
MEDIA_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mp3", ".m4a")


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    """A decoded waveform and what was left out of it.

    Args:
        waveform: float32 `[samples]`, mono, at the requested rate, in [-1, 1].
        truncated: True when the file holds more audio than `max_seconds` and
            only its first `max_seconds` were decoded.
        source_seconds: the full length of the file's audio in seconds: the
            decoded length when not truncated, else the length the container
            declares (None when it declares none).
    """

    waveform: np.ndarray
    truncated: bool
    source_seconds: float | None


def _validate_arguments(sample_rate, max_seconds):
    """Check the shared arguments of the readers.

    Args:
        sample_rate: must be a positive int.
        max_seconds: None, or a positive finite number.

    Returns:
        The most samples to keep, or None for no limit.

    Raises:
        ValueError: an argument is out of range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"sample_rate must be an int, got {sample_rate!r}.")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}.")
    if max_seconds is None:
        return None
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float, np.integer, np.floating))
        or not math.isfinite(max_seconds)
        or max_seconds <= 0
    ):
        raise ValueError(f"max_seconds must be None or a positive number, got {max_seconds!r}.")
    return max(1, int(round(max_seconds * sample_rate)))


def _declared_seconds(container, stream):
    """The audio length a container declares, in seconds, or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _first_audio_stream(container, path):
    """The container's first audio stream; raises ValueError naming `path` without one."""
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise ValueError(
            f"{path}: the media file has no audio stream (streams: {', '.join(kinds)})."
        )
    return stream


def _decode_stream(container, stream, resampler, limit):
    """Decodes `stream` through `resampler` to mono float64 chunks, stopping
    once past `limit` samples (None: no limit); returns `(chunks, total, truncated)`."""
    chunks = []
    total = 0
    for frame in container.decode(stream):
        for converted in resampler.resample(frame):
            chunk = converted.to_ndarray().mean(axis=0, dtype=np.float64)
            chunks.append(chunk)
            total += chunk.size
        # Stop as soon as the limit is passed: more audio exists, so the
        # clip is truncated, and the rest need not be decoded.
        if limit is not None and total > limit:
            return chunks, total, True
    for converted in resampler.resample(None):  # What the resampler still holds.
        chunk = converted.to_ndarray().mean(axis=0, dtype=np.float64)
        chunks.append(chunk)
        total += chunk.size
    return chunks, total, limit is not None and total > limit


def decode_media_audio(path, sample_rate=16000, max_seconds=None):
    """Decode the first audio stream of a media file to mono float32.

    Args:
        path: the media file (mp4, mkv, avi, mp3, m4a, ... anything FFmpeg reads).
        sample_rate: the rate to return, in Hz.
        max_seconds: decode at most this many seconds from the start; None
            decodes everything.

    Returns:
        A `DecodedAudio`.

    Raises:
        ValueError: the file cannot be opened, has no audio stream, fails to
            decode, or holds no samples; the message names the file.

    Example:

    >>> from smcn_tf.corpora.demo_meld import write_mp4
    >>> tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)  # 1 s
    >>> write_mp4("dia0_utt0.mp4", np.stack([tone, tone]), 48000)
    >>> decoded = decode_media_audio("dia0_utt0.mp4", max_seconds=30)
    >>> decoded.waveform.dtype, decoded.truncated
    (dtype('float32'), False)
    >>> decode_media_audio("dia0_utt0.mp4", max_seconds=0.5).waveform.shape
    (8000,)
    """
    limit = _validate_arguments(sample_rate, max_seconds)
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot open media file: {error}") from error
    with container:
        stream = _first_audio_stream(container, path)
        # Keep the channels (layout None) and average them; see the module docstring.
        resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
        try:
            chunks, total, truncated = _decode_stream(container, stream, resampler, limit)
        except (av.FFmpegError, ValueError) as error:
            # ValueError: PyAV's resampler refuses a frame whose format changed mid-stream.
            raise ValueError(f"{path}: cannot decode the audio stream: {error}") from error
        declared = _declared_seconds(container, stream)

    if total == 0:
        raise ValueError(f"{path}: the audio stream holds no samples.")
    waveform = np.concatenate(chunks)
    if not np.all(np.isfinite(waveform)):
        raise ValueError(f"{path}: the audio holds NaN or infinite samples.")
    source_seconds = waveform.size / sample_rate
    if truncated:
        waveform = waveform[:limit]
        source_seconds = declared
    # AAC decoding can overshoot full scale a little; clip as read_waveform does.
    return DecodedAudio(
        waveform=np.clip(waveform, -1.0, 1.0).astype(np.float32),
        truncated=truncated,
        source_seconds=source_seconds,
    )


def read_media_audio(path, sample_rate=16000, max_seconds=None):
    """Read the first audio stream of a media file as mono float32.

    Args:
        path: the media file, e.g. MELD's `train_splits/dia0_utt0.mp4`.
        sample_rate: the rate to return, in Hz.
        max_seconds: keep at most this many seconds from the start (decoding
            stops there); None keeps everything.

    Returns:
        float32 array `[samples]` in [-1, 1].

    Raises:
        ValueError: the file cannot be opened, has no audio stream, fails to
            decode, or holds no samples; the message names the file.

    Example:

    >>> from smcn_tf.corpora.demo_meld import write_mp4
    >>> tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)  # 1 s
    >>> write_mp4("dia0_utt0.mp4", tone[None], 48000)
    >>> waveform = read_media_audio("dia0_utt0.mp4")
    >>> waveform.dtype, round(len(waveform) / 16000, 1)  # AAC adds a few samples
    (dtype('float32'), 1.0)
    """
    return decode_media_audio(path, sample_rate, max_seconds).waveform


def decode_audio(path, sample_rate=16000, max_seconds=None):
    """Decode an audio or media file, picking the reader by its extension.

    `.wav` / `.flac` go through `smcn_tf.features.audio.read_waveform` (and are
    cut to `max_seconds` after reading); the extensions in `MEDIA_EXTENSIONS`
    go through `decode_media_audio`.

    Args:
        path: the file.
        sample_rate: the rate to return, in Hz.
        max_seconds: keep at most this many seconds; None keeps everything.

    Returns:
        A `DecodedAudio`.

    Raises:
        TruncatedAudioError: a WAV file holds fewer samples than its header
            declares (`smcn_tf.features.audio.check_wav_length`).
        ValueError: an unsupported extension, or the file cannot be read; the
            message names the file.
    """
    limit = _validate_arguments(sample_rate, max_seconds)
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension in WAVEFORM_EXTENSIONS:
        waveform = read_waveform(path, sample_rate)
        # After the read, which names a file it cannot open: a cut-off copy
        # reads without error, but is not the recording its label describes.
        check_wav_length(path)
        source_seconds = waveform.size / sample_rate
        truncated = limit is not None and waveform.size > limit
        if truncated:
            waveform = waveform[:limit]
        return DecodedAudio(waveform, truncated, source_seconds)
    if extension in MEDIA_EXTENSIONS:
        return decode_media_audio(path, sample_rate, max_seconds)
    raise ValueError(
        f"{path}: unsupported audio file extension {extension or '(none)'!r}; supported: "
        f"{', '.join(WAVEFORM_EXTENSIONS + MEDIA_EXTENSIONS)}."
    )


def read_audio(path, sample_rate=16000, max_seconds=None):
    """Read an audio or media file as mono float32, picking the reader by extension.

    Args:
        path: a `.wav` / `.flac` file, or a media file (`.mp4`, `.mkv`, `.avi`,
            `.mp3`, `.m4a`).
        sample_rate: the rate to return, in Hz.
        max_seconds: keep at most this many seconds; None keeps everything.

    Returns:
        float32 array `[samples]` in [-1, 1].

    Raises:
        ValueError: an unsupported extension, or the file cannot be read; the
            message names the file.

    Example:

    >>> import soundfile
    >>> soundfile.write("Ses01F_impro01_F000.wav", np.zeros(8000), 8000)  # 1 s at 8 kHz
    >>> waveform = read_audio("Ses01F_impro01_F000.wav", 16000)
    >>> waveform.dtype, waveform.shape
    (dtype('float32'), (16000,))
    """
    return decode_audio(path, sample_rate, max_seconds).waveform
