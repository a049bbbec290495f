"""Tests for smcn_tf.features.audio against an independent numpy reference."""

import math

import keras
import numpy as np
import pytest
import soundfile

from smcn_tf.features import audio

SAMPLE_RATE = 16000


# --------------------------------------------------------------------------
# Independent numpy reference (loops over the formulas; float64 throughout).
# --------------------------------------------------------------------------


def reference_mel_filterbank(num_mel_bins=26, fft_length=512, sample_rate=16000,
                             lower_hertz=0.0, upper_hertz=8000.0):
    """HTK triangles, linear in mel, with mel = 2595 * log10(1 + f / 700)."""

    def to_mel(frequency):
        return 2595.0 * math.log10(1.0 + frequency / 700.0)

    low, high = to_mel(lower_hertz), to_mel(upper_hertz)
    points = [low + (high - low) * i / (num_mel_bins + 1) for i in range(num_mel_bins + 2)]
    matrix = np.zeros([fft_length // 2 + 1, num_mel_bins])
    for band in range(num_mel_bins):
        left, center, right = points[band], points[band + 1], points[band + 2]
        for k in range(fft_length // 2 + 1):
            mel = to_mel(k * sample_rate / fft_length)
            if left <= mel <= center:
                matrix[k, band] = (mel - left) / (center - left)
            elif center < mel <= right:
                matrix[k, band] = (right - mel) / (right - center)
    return matrix


def reference_delta(values, half_width=2):
    num_frames = values.shape[0]
    normalizer = 2.0 * sum(n * n for n in range(1, half_width + 1))
    delta = np.zeros_like(values)
    for t in range(num_frames):
        for n in range(1, half_width + 1):
            after = values[min(t + n, num_frames - 1)]
            before = values[max(t - n, 0)]
            delta[t] += n * (after - before)
    return delta / normalizer


def reference_features(waveform, pooling, max_frames=500):
    waveform = np.asarray(waveform, dtype=np.float64)
    window_length, hop, fft_length = 400, 160, 512
    if waveform.size < window_length:
        waveform = np.concatenate([waveform, np.zeros(window_length - waveform.size)])
    num_frames = 1 + (waveform.size - window_length) // hop
    hann = np.array(
        [0.5 - 0.5 * math.cos(2.0 * math.pi * n / window_length) for n in range(window_length)]
    )
    filterbank = reference_mel_filterbank()
    log_mel = np.zeros([num_frames, 26])
    for t in range(num_frames):
        frame = waveform[t * hop : t * hop + window_length] * hann
        power = np.abs(np.fft.rfft(frame, n=fft_length)) ** 2
        log_mel[t] = np.log(power @ filterbank + 1e-6)
    delta = reference_delta(log_mel)
    delta_delta = reference_delta(delta)
    frames = np.concatenate([log_mel, delta, delta_delta], axis=1)
    pooled = [
        frames[start : start + pooling].mean(axis=0)
        for start in range(0, num_frames, pooling)
    ]
    return np.stack(pooled)[:max_frames]


def synthetic_waveform(num_samples, seed):
    rng = np.random.default_rng(seed)
    time = np.arange(num_samples) / SAMPLE_RATE
    tone = 0.4 * np.sin(2 * np.pi * 440.0 * time) + 0.2 * np.sin(2 * np.pi * 2300.0 * time)
    return (tone + 0.05 * rng.standard_normal(num_samples)).astype(np.float32)


def run_single(layer, waveform):
    features, length = layer(waveform[np.newaxis], np.array([waveform.size], "int32"))
    return features.numpy()[0], int(length.numpy()[0])


# --------------------------------------------------------------------------
# Tests.
# --------------------------------------------------------------------------


def test_mel_filterbank_matches_htk_formula_and_tf():
    import tensorflow as tf

    expected = reference_mel_filterbank()
    actual = audio.mel_filterbank(26, 512, SAMPLE_RATE, 0.0, 8000.0)
    assert actual.shape == (257, 26)
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    tf_matrix = tf.signal.linear_to_mel_weight_matrix(26, 257, SAMPLE_RATE, 0.0, 8000.0).numpy()
    # TF always zeroes the DC row; it has zero weight here anyway.
    np.testing.assert_allclose(actual[1:], tf_matrix[1:], atol=1e-5)
    np.testing.assert_array_equal(actual[0], 0.0)


@pytest.mark.parametrize("pooling", [5, 4])
@pytest.mark.parametrize("seconds, seed", [(0.37, 1), (1.21, 2)])
def test_layer_matches_numpy_reference(pooling, seconds, seed):
    waveform = synthetic_waveform(int(round(seconds * SAMPLE_RATE)), seed)
    layer = audio.LogMelFeatures(pooling=pooling)
    features, length = run_single(layer, waveform)
    expected = reference_features(waveform, pooling)
    assert length == expected.shape[0]
    assert features.shape == expected.shape
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_padding_does_not_change_results():
    short = synthetic_waveform(5920, seed=3)
    long = synthetic_waveform(19360, seed=4)
    layer = audio.LogMelFeatures(pooling=4, max_frames=None)
    short_alone, short_length = run_single(layer, short)
    long_alone, long_length = run_single(layer, long)

    batch = np.zeros([2, long.size + 3000], dtype=np.float32)
    batch[0, : short.size] = short
    batch[1, : long.size] = long
    features, lengths = layer(batch, np.array([short.size, long.size], "int32"))
    features, lengths = features.numpy(), lengths.numpy()

    assert lengths.tolist() == [short_length, long_length]
    np.testing.assert_allclose(features[0, :short_length], short_alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features[1, :long_length], long_alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features[0, short_length:], 0.0)
    np.testing.assert_array_equal(features[1, long_length:], 0.0)

    # Non-zero junk past an item's length is ignored too, also by an item
    # shorter than one window (whose single window reaches into the padding).
    tiny = synthetic_waveform(100, seed=5)
    tiny_alone, _ = run_single(layer, tiny)
    batch[0, short.size :] = 0.7
    junk_batch = np.full([3, batch.shape[1]], 0.7, dtype=np.float32)
    junk_batch[:2] = batch
    junk_batch[2, : tiny.size] = tiny
    junk_features, junk_lengths = layer(
        junk_batch, np.array([short.size, long.size, tiny.size], "int32")
    )
    junk_features = junk_features.numpy()
    assert junk_lengths.numpy().tolist() == [short_length, long_length, 1]
    np.testing.assert_allclose(junk_features[:2], features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(junk_features[2, :1], tiny_alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(junk_features[2, 1:], 0.0)


def test_output_shape_and_lengths():
    layer = audio.LogMelFeatures(pooling=5)
    # 16000 samples -> 98 frames -> 20 pooled; 5920 -> 35 -> 7; 100 -> 1 -> 1.
    lengths = np.array([16000, 5920, 100, 400, 399], dtype=np.int32)
    waveform = np.zeros([lengths.size, 16000], dtype=np.float32)
    for row, length in enumerate(lengths):
        waveform[row, :length] = synthetic_waveform(int(length), seed=row)
    features, feature_length = layer(waveform, lengths)
    assert tuple(features.shape) == (5, 20, 78)
    assert features.dtype == "float32" and feature_length.dtype == "int32"
    assert feature_length.numpy().tolist() == [20, 7, 1, 1, 1]
    assert layer.compute_output_shape((5, 16000)) == ((5, 20, 78), (5,))


def test_shorter_than_one_window_gives_one_frame():
    waveform = synthetic_waveform(100, seed=5)
    layer = audio.LogMelFeatures(pooling=4)
    features, length = run_single(layer, waveform)
    assert length == 1 and features.shape == (1, 78)
    np.testing.assert_allclose(features, reference_features(waveform, 4), rtol=1e-4, atol=1e-4)
    # A single frame has no neighbours: deltas are exactly zero.
    np.testing.assert_array_equal(features[0, 26:], 0.0)


def test_truncation_to_max_frames_is_exact():
    truncated = audio.LogMelFeatures(pooling=5, max_frames=7)
    full = audio.LogMelFeatures(pooling=5, max_frames=None)
    # Frame counts around the 7 * 5 + 2 * 2 = 39 frames the truncation keeps.
    frame_counts = [30, 34, 35, 36, 38, 39, 40, 41, 98]
    lengths = np.array([400 + 160 * (count - 1) for count in frame_counts], dtype=np.int32)
    waveform = np.zeros([lengths.size, lengths.max()], dtype=np.float32)
    for row, length in enumerate(lengths):
        waveform[row, :length] = synthetic_waveform(int(length), seed=10 + row)
    features, feature_length = truncated(waveform, lengths)
    full_features, full_length = full(waveform, lengths)
    assert features.shape[1] == 7
    expected_length = [min(math.ceil(count / 5), 7) for count in frame_counts]
    assert feature_length.numpy().tolist() == expected_length
    assert full_length.numpy().tolist() == [math.ceil(count / 5) for count in frame_counts]
    np.testing.assert_allclose(
        features.numpy(), full_features.numpy()[:, :7], rtol=1e-5, atol=1e-5
    )


def test_config_round_trip_and_registration():
    assert keras.saving.get_registered_object("smcn_tf>LogMelFeatures") is audio.LogMelFeatures
    layer = audio.LogMelFeatures(pooling=4, max_frames=7, lower_edge_hertz=20.0, name="logmel")
    config = layer.get_config()
    assert config["pooling"] == 4 and config["max_frames"] == 7 and config["name"] == "logmel"
    restored = audio.LogMelFeatures.from_config(config)
    assert restored.get_config() == config
    deserialized = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(deserialized, audio.LogMelFeatures)
    waveform = synthetic_waveform(8000, seed=6)
    np.testing.assert_allclose(run_single(deserialized, waveform)[0], run_single(layer, waveform)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pooling": 0}, "pooling"),
        ({"window_ms": 40.0}, "fft_length"),
        ({"max_frames": 0}, "max_frames"),
        ({"delta_window": 0}, "delta_window"),
        ({"upper_edge_hertz": 9000.0}, "upper_edge_hertz"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        audio.LogMelFeatures(**kwargs)


def test_extract_audio_features_matches_layer_and_traces_once():
    class CountingLogMel(audio.LogMelFeatures):
        traces = 0

        def call(self, waveform, waveform_length=None):
            CountingLogMel.traces += 1
            return super().call(waveform, waveform_length)

    layer = CountingLogMel(pooling=4)
    waveforms = [synthetic_waveform(n, seed=n) for n in (3000, 9000, 100, 5920, 16000)]
    results = audio.extract_audio_features(waveforms, layer, batch_size=2)
    assert CountingLogMel.traces == 1  # three batch shapes, one trace
    assert len(results) == len(waveforms)
    for waveform, result in zip(waveforms, results):
        expected = reference_features(waveform, 4)
        assert result.dtype == np.float32 and result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def dominant_frequency(waveform, sample_rate):
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    return np.argmax(spectrum) * sample_rate / waveform.size


def test_read_waveform_stereo_16k(tmp_path):
    time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    left = 0.5 * np.sin(2 * np.pi * 300.0 * time)
    right = 0.3 * np.sin(2 * np.pi * 1200.0 * time)
    path = tmp_path / "stereo16k.wav"
    soundfile.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="PCM_16")
    waveform = audio.read_waveform(path)
    assert waveform.dtype == np.float32 and waveform.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(waveform, (left + right) / 2, atol=2.0 / 32768)


def test_read_waveform_resamples_8k(tmp_path):
    rate = 8000
    time = np.arange(rate) / rate  # 1 s
    tone = 0.6 * np.sin(2 * np.pi * 1000.0 * time)
    path = tmp_path / "stereo8k.wav"
    soundfile.write(path, np.stack([tone, tone], axis=1), rate, subtype="PCM_16")
    waveform = audio.read_waveform(path, sample_rate=SAMPLE_RATE)
    assert waveform.dtype == np.float32 and waveform.shape == (SAMPLE_RATE,)
    assert dominant_frequency(waveform, SAMPLE_RATE) == pytest.approx(1000.0, abs=2.0)
    # Away from the edges, the interpolation reproduces the band-limited tone.
    out_time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    middle = slice(2000, -2000)
    np.testing.assert_allclose(
        waveform[middle], 0.6 * np.sin(2 * np.pi * 1000.0 * out_time)[middle], atol=2e-3
    )


def test_read_waveform_downsampling_does_not_alias(tmp_path):
    rate = 48000
    time = np.arange(rate // 2) / rate  # 0.5 s
    # 11 kHz is above the 8 kHz target Nyquist: it must be removed, not folded to 5 kHz.
    signal = 0.4 * np.sin(2 * np.pi * 1000.0 * time) + 0.4 * np.sin(2 * np.pi * 11000.0 * time)
    path = tmp_path / "mono48k.flac"
    soundfile.write(path, signal, rate, subtype="PCM_16")
    waveform = audio.read_waveform(path)
    assert waveform.shape == (SAMPLE_RATE // 2,)
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    frequencies = np.fft.rfftfreq(waveform.size, 1.0 / SAMPLE_RATE)
    kept = spectrum[np.argmin(np.abs(frequencies - 1000.0))]
    aliased = spectrum[np.abs(frequencies - 5000.0) < 20.0].max()
    assert dominant_frequency(waveform, SAMPLE_RATE) == pytest.approx(1000.0, abs=4.0)
    assert aliased < 1e-3 * kept


def test_read_waveform_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(ValueError, match="garbage.wav"):
        audio.read_waveform(garbage)
    missing = tmp_path / "missing.wav"
    with pytest.raises(ValueError, match="missing.wav"):
        audio.read_waveform(missing)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros([0, 1]), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(ValueError, match="empty.wav"):
        audio.read_waveform(empty)


def _truncated_wav(path, declared=32128, held=10695, channels=1):
    """A 16-bit WAV whose header declares `declared` frames, cut after `held`."""
    soundfile.write(path, np.zeros([declared, channels]), SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + held * 2 * channels])
    return path


def test_wav_frames_sees_a_cut_off_file(tmp_path):
    full = tmp_path / "full.wav"
    soundfile.write(full, np.zeros([32128, 2]), 8000, subtype="PCM_16")
    assert audio.wav_frames(full) == (32128, 32128, 8000)
    audio.check_wav_length(full)  # complete: passes

    cut = _truncated_wav(tmp_path / "cut.wav")
    assert audio.wav_frames(cut) == (32128, 10695, SAMPLE_RATE)
    # libsndfile reads what is there without a word; the header says more.
    assert audio.read_waveform(cut).shape == (10695,)
    with pytest.raises(audio.TruncatedAudioError) as caught:
        audio.check_wav_length(cut)
    assert caught.value.reason == (
        f"truncated audio file {cut}: its header declares 32128 samples (2.008 s), "
        "the file holds 10695 (0.668 s)"
    )
    assert (caught.value.declared_frames, caught.value.held_frames) == (32128, 10695)
    assert isinstance(caught.value, ValueError)
    # A partial last frame of a stereo file counts as missing.
    assert audio.wav_frames(_truncated_wav(tmp_path / "st.wav", 100, 99, 2)) == (100, 99, 16000)

    # Not a RIFF/WAVE file, or no declared length: nothing to check.
    flac = tmp_path / "tone.flac"
    soundfile.write(flac, np.zeros(1600), SAMPLE_RATE)
    assert audio.wav_frames(flac) is None
    streamed = bytearray(full.read_bytes())
    streamed[40:44] = b"\xff\xff\xff\xff"  # the data size of a stream
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert audio.wav_frames(tmp_path / "streamed.wav") is None
    (tmp_path / "stub.wav").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    assert audio.wav_frames(tmp_path / "stub.wav") is None


def test_too_short_reason():
    assert audio.MIN_SECONDS_DEFAULT == 0.1
    assert audio.too_short_reason(1, 16000) == "shorter than 0.1 s: 0.0001 s (1 sample)"
    assert audio.too_short_reason(800, 16000) == "shorter than 0.1 s: 0.05 s (800 samples)"
    assert audio.too_short_reason(1600, 16000) is None  # exactly the limit is enough
    # Rounding never shows a clip as long as the limit.
    assert audio.too_short_reason(4409, 44100) == (
        "shorter than 0.1 s: 0.0999773 s (4409 samples)"
    )
    assert audio.too_short_reason(1, 16000, min_seconds=0) is None
    assert audio.too_short_reason(3000, 16000, min_seconds=0.25).startswith(
        "shorter than 0.25 s: 0.1875 s"
    )
    for bad in (-1, float("nan"), float("inf"), None, True):
        with pytest.raises(ValueError, match="min_seconds"):
            audio.too_short_reason(1, 16000, min_seconds=bad)
    with pytest.raises(ValueError, match="sample_rate"):
        audio.too_short_reason(1, 0)


def test_frame_count_is_the_settings_formula():
    """The layer's lengths and shapes agree with `FeatureSettings.num_frames`."""
    from smcn_tf.features.settings import FeatureSettings

    settings = FeatureSettings(sample_rate=16000, pooling=5, max_frames=30)
    layer = audio.LogMelFeatures(pooling=5, max_frames=30)
    lengths = [1, 399, 400, 401, 560, 16000, 48000]
    waveform = np.zeros((len(lengths), max(lengths)), "float32")
    _, feature_length = layer(waveform, np.array(lengths, "int32"))
    expected = [settings.num_frames(length) for length in lengths]
    assert feature_length.numpy().tolist() == expected
    for length in lengths:
        shape, _ = layer.compute_output_shape((1, length))
        assert shape[1] == settings.num_frames(length)
