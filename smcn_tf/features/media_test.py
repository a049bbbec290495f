"""Tests for reading the audio of media files (MELD's mp4 clips) with PyAV."""

import math
import re

import av
import numpy as np
import pytest
import soundfile

from smcn_tf.corpora.demo_meld import write_mp4
from smcn_tf.features import audio, media

SECONDS = 1.5
TONE_HERTZ = 440.0


def _tone(rate, seconds=SECONDS, left=0.3, right=0.1):
    """A stereo 440 Hz tone, louder on the left, as float [2, samples]."""
    time = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * TONE_HERTZ * time)
    return np.stack([left * wave, right * wave]).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """AAC stereo tones: 48 kHz behind a video stream, and 44.1 kHz audio only."""
    folder = tmp_path_factory.mktemp("media")
    paths = {}
    for rate, video in ((48000, True), (44100, False)):
        path = folder / f"tone_{rate}.mp4"
        write_mp4(path, _tone(rate), rate, video=video)
        paths[rate] = path
    return paths


def _peak_hertz(waveform, sample_rate):
    """The frequency of the strongest FFT bin of the middle second."""
    start = len(waveform) // 2 - sample_rate // 2
    middle = waveform[start : start + sample_rate]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    return np.argmax(spectrum) * sample_rate / middle.size


@pytest.mark.parametrize("rate", [48000, 44100])
def test_reads_mono_16k_tone_of_the_right_length(clips, rate):
    with av.open(str(clips[rate])) as container:
        kinds = [stream.type for stream in container.streams]
        (stream,) = container.streams.audio
        assert (stream.rate, stream.channels) == (rate, 2)
    assert kinds == (["video", "audio"] if rate == 48000 else ["audio"])

    waveform = media.read_media_audio(clips[rate], 16000)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    # AAC pads to whole 1024-sample frames: at most one frame more than the input.
    expected = SECONDS * 16000
    one_frame = math.ceil(1024 * 16000 / rate)
    assert expected - 16 <= waveform.size <= expected + one_frame
    assert abs(_peak_hertz(waveform, 16000) - TONE_HERTZ) <= 1.0
    # The channels are averaged (0.3 and 0.1 -> 0.2), as read_waveform does for WAV.
    middle = waveform[4000:-4000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.2 / np.sqrt(2), rel=0.05)


def test_other_sample_rate(clips):
    waveform = media.read_media_audio(clips[48000], sample_rate=8000)
    assert abs(waveform.size - SECONDS * 8000) <= 8000 * 1024 / 48000 + 8
    assert abs(_peak_hertz(waveform, 8000) - TONE_HERTZ) <= 1.0


def test_max_seconds_truncates_and_says_so(clips):
    waveform = media.read_media_audio(clips[48000], 16000, max_seconds=0.5)
    assert waveform.shape == (8000,)
    decoded = media.decode_media_audio(clips[48000], 16000, max_seconds=0.5)
    assert decoded.truncated
    assert decoded.source_seconds == pytest.approx(SECONDS, abs=0.05)
    np.testing.assert_array_equal(decoded.waveform, waveform)
    full = media.read_media_audio(clips[48000], 16000)
    np.testing.assert_allclose(waveform, full[:8000], atol=1e-6)

    longer = media.decode_media_audio(clips[48000], 16000, max_seconds=10)
    assert not longer.truncated
    assert longer.source_seconds == pytest.approx(full.size / 16000)
    np.testing.assert_array_equal(longer.waveform, full)


@pytest.mark.parametrize("max_seconds", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_bad_max_seconds(clips, max_seconds):
    with pytest.raises(ValueError, match="max_seconds"):
        media.read_media_audio(clips[48000], 16000, max_seconds=max_seconds)


def test_garbage_empty_and_missing_files_name_the_file(tmp_path):
    garbage = tmp_path / "dia125_utt3.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x1cftypisom" + bytes(range(256)) * 8)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    missing = tmp_path / "dia110_utt7.mp4"
    for path in (garbage, empty, missing):
        with pytest.raises(ValueError, match=f"^{path}: cannot open media file"):
            media.read_media_audio(path)


def test_no_audio_stream(tmp_path):
    path = tmp_path / "video_only.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ValueError, match=f"^{path}: the media file has no audio stream"):
        media.read_media_audio(path)


def test_read_audio_dispatches_on_extension(tmp_path, clips):
    wav = tmp_path / "tone.WAV"
    soundfile.write(wav, _tone(22050).T, 22050, subtype="PCM_16")
    np.testing.assert_array_equal(
        media.read_audio(wav, 16000), audio.read_waveform(wav, 16000)
    )
    np.testing.assert_array_equal(
        media.read_audio(clips[44100], 16000), media.read_media_audio(clips[44100], 16000)
    )
    cut = media.decode_audio(wav, 16000, max_seconds=1.0)
    assert cut.truncated and cut.waveform.shape == (16000,)
    assert cut.source_seconds == pytest.approx(SECONDS, abs=1e-3)
    assert not media.decode_audio(wav, 16000, max_seconds=2.0).truncated

    # A WAV cut off after a third of what its header declares is refused.
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[: 44 + 11025 * 4])
    with pytest.raises(audio.TruncatedAudioError, match=(
        rf"^truncated audio file {re.escape(str(cut))}: its header declares 33075 samples "
        r"\(1\.500 s\), the file holds 11025 \(0\.500 s\)$"
    )):
        media.decode_audio(cut, 16000)

    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(ValueError, match=r"notes\.txt: unsupported audio file extension '\.txt'"):
        media.read_audio(text, 16000)
