"""Log-Mel acoustic features for SMCN, computed with stock TensorFlow ops.

The acoustic branch of SMCN reads, per 10 ms frame, 26 log-Mel filterbank
energies with their deltas and delta-deltas (78 values), mean-pooled over
groups of frames (5 for IEMOCAP, 4 for MELD) and truncated to 500 pooled
frames. `LogMelFeatures` computes exactly that from 16 kHz waveforms. It uses
only `tf.signal` / `keras.ops` / core TF ops, so the same layer serves offline
feature preparation (`extract_audio_features`) and a served SavedModel graph.

Choices made here (and mirrored by the reference in `audio_test.py`):

- Mel scale: HTK, `mel(f) = 1127 * ln(1 + f / 700)` (identical to
  `2595 * log10(1 + f / 700)`). Filters are unit-peak triangles that are
  linear in mel, with centres equally spaced in mel between
  `lower_edge_hertz` (default 0 Hz, HTK's default) and `upper_edge_hertz`
  (default Nyquist). No area normalisation.
- Deltas: HTK regression `d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)`
  with the frame indices clamped to each item's own valid frames.
- Resampling in `read_waveform`: scipy's polyphase `resample_poly` with a
  band-limited windowed-sinc low-pass (Kaiser window, beta 8.6, 32 zero
  crossings, cut-off at 94.5% of the lower Nyquist frequency).
"""

import fractions
import functools
import math
import os
import struct
import weakref

import keras
import numpy as np
import scipy.signal
import soundfile
import tensorflow as tf

# The shortest clip worth a training example or a prediction (0.1 s): below it
# the 25 ms windows give a handful of frames at most. `smcn prepare` skips
# shorter clips (`features.min_seconds`); `too_short_reason` says why.
from smcn_tf.features import MIN_SECONDS_DEFAULT
from smcn_tf.features.settings import HOP_MS, WINDOW_MS, frames_of

# HTK mel scale; 1127 * ln(1 + f / 700) == 2595 * log10(1 + f / 700).
_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0

# Windowed-sinc low-pass of the resampler (see `_resample`).
_RESAMPLE_ZERO_CROSSINGS = 32
_RESAMPLE_ROLLOFF = 0.945
_RESAMPLE_KAISER_BETA = 8.6
# `speed_perturb` resamples by the factor's nearest fraction with a
# denominator up to this (0.9 -> 9/10; 0.93 -> 93/100).
SPEED_MAX_DENOMINATOR = 100


def too_short_reason(num_samples, sample_rate, min_seconds=MIN_SECONDS_DEFAULT):
    """Why a clip is too short to use, or None when it is long enough.

    Args:
        num_samples: the clip's length in samples (at `sample_rate`).
        sample_rate: its sample rate, in Hz.
        min_seconds: the shortest clip allowed, in seconds (0 allows any).

    Returns:
        None for a clip of at least `min_seconds`, else a reason such as
        `"shorter than 0.1 s: 0.0001 s (1 sample)"`.

    Raises:
        ValueError: `min_seconds` is negative or not a finite number, or
            `sample_rate` is not positive.

    Example:

    >>> too_short_reason(1, 16000)
    'shorter than 0.1 s: 0.0001 s (1 sample)'
    >>> too_short_reason(16000, 16000) is None
    True
    """
    if (
        isinstance(min_seconds, bool)
        or not isinstance(min_seconds, (int, float, np.integer, np.floating))
        or not math.isfinite(min_seconds)
        or min_seconds < 0
    ):
        raise ValueError(f"min_seconds must be a finite number >= 0, got {min_seconds!r}.")
    if not sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}.")
    seconds = num_samples / sample_rate
    if seconds >= min_seconds:
        return None
    shown = f"{round(seconds, 4):g}"
    if float(shown) >= min_seconds:  # 0.099977 s must not read "0.1 s"
        shown = f"{seconds:.6g}"
    samples = f"{num_samples} sample{'' if num_samples == 1 else 's'}"
    return f"shorter than {min_seconds:g} s: {shown} s ({samples})"


def hertz_to_mel(frequencies_hertz):
    """Converts Hz to HTK mel: `1127 * ln(1 + f / 700)`."""
    return _MEL_HIGH_FREQUENCY_Q * np.log1p(
        np.asarray(frequencies_hertz, dtype=np.float64) / _MEL_BREAK_FREQUENCY_HERTZ
    )


def mel_filterbank(
    num_mel_bins, fft_length, sample_rate, lower_edge_hertz, upper_edge_hertz
):
    """Builds an HTK-style mel filterbank matrix.

    Filter `m` is a unit-peak triangle, linear in mel, rising from mel point
    `m` to `m + 1` and falling to `m + 2`, where the `num_mel_bins + 2` mel
    points are equally spaced between `hertz_to_mel(lower_edge_hertz)` and
    `hertz_to_mel(upper_edge_hertz)`. FFT bin `k` sits at
    `k * sample_rate / fft_length` Hz. This is the same matrix as
    `tf.signal.linear_to_mel_weight_matrix` except that TF always zeroes the
    DC bin (which has zero weight here anyway when `lower_edge_hertz` is 0).

    Args:
        num_mel_bins: number of mel bands.
        fft_length: FFT size; the matrix has `fft_length // 2 + 1` rows.
        sample_rate: sample rate of the signal, in Hz.
        lower_edge_hertz: lower edge of the lowest band, in Hz.
        upper_edge_hertz: upper edge of the highest band, in Hz.

    Returns:
        float32 array `[fft_length // 2 + 1, num_mel_bins]`; multiply a power
        spectrum `[..., fft_length // 2 + 1]` by it to get mel energies.

    Raises:
        ValueError: bad arguments, or a band so narrow that no FFT bin falls
            inside it (lower `num_mel_bins` or raise `fft_length`).
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be >= 1, got {num_mel_bins}.")
    if fft_length < 2:
        raise ValueError(f"fft_length must be >= 2, got {fft_length}.")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}.")
    if not 0.0 <= lower_edge_hertz < upper_edge_hertz <= sample_rate / 2.0:
        raise ValueError(
            "Expected 0 <= lower_edge_hertz < upper_edge_hertz <= sample_rate / 2, "
            f"got lower_edge_hertz={lower_edge_hertz}, "
            f"upper_edge_hertz={upper_edge_hertz}, sample_rate={sample_rate}."
        )
    num_spectrogram_bins = fft_length // 2 + 1
    bin_mels = hertz_to_mel(
        np.arange(num_spectrogram_bins) * (sample_rate / fft_length)
    )[:, np.newaxis]
    edge_mels = np.linspace(
        hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz), num_mel_bins + 2
    )
    left, center, right = edge_mels[:-2], edge_mels[1:-1], edge_mels[2:]
    rising = (bin_mels - left) / (center - left)
    falling = (right - bin_mels) / (right - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    empty_bands = np.flatnonzero(weights.sum(axis=0) == 0.0)
    if empty_bands.size:
        raise ValueError(
            f"Mel bands {empty_bands.tolist()} contain no FFT bin with "
            f"num_mel_bins={num_mel_bins}, fft_length={fft_length}, "
            f"sample_rate={sample_rate}; use fewer bands or a longer FFT."
        )
    return weights.astype(np.float32)


@keras.saving.register_keras_serializable(package="smcn_tf")
class LogMelFeatures(keras.layers.Layer):
    """Log-Mel + delta + delta-delta frames, mean-pooled, from padded waveforms.

    Per item: frames of `window_ms` every `hop_ms`, periodic Hann window,
    `|rfft|^2` power spectrum, HTK mel filterbank (see `mel_filterbank`),
    `ln(energy + log_offset)`; deltas and delta-deltas by HTK regression over
    `+-delta_window` frames with edge frames replicated; the three are
    concatenated, averaged over non-overlapping groups of `pooling` frames
    (a last partial group over its valid frames only) and truncated to
    `max_frames`.

    An item of `L` samples has `1 + (L - window) // hop` frames when
    `L >= window`, else 1 (zero-padded to one window), and
    `ceil(frames / pooling)` pooled frames (at most `max_frames`). Each item
    only ever reads its own valid samples and frames, so its result does not
    depend on how much padding the batch adds after it.

    The layer defaults to the `"float32"` dtype policy, also under a global
    mixed-precision policy, because log energies need float32.

    Args:
        sample_rate: sample rate of the input waveforms, in Hz.
        window_ms: frame length in milliseconds (25 ms = 400 samples at 16 kHz).
        hop_ms: frame step in milliseconds (10 ms = 160 samples at 16 kHz).
        fft_length: FFT size; must be >= the window length in samples.
        num_mel_bins: number of mel bands; the output has `3 * num_mel_bins`
            features per frame.
        lower_edge_hertz: lower edge of the lowest mel band. Default 0 Hz,
            HTK's default.
        upper_edge_hertz: upper edge of the highest mel band; `None` means
            `sample_rate / 2`.
        delta_window: the regression half-width `N` of the deltas.
        pooling: number of frames averaged into one output frame (5 for
            IEMOCAP, 4 for MELD); 1 disables pooling.
        max_frames: maximum number of pooled frames kept; `None` keeps all.
        log_offset: added to the mel energies before the natural log.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        waveform: float32 `[batch, samples]`, each item zero-padded at the end.
        waveform_length: int32 `[batch]`, the number of valid samples of each
            item. `None` means every item fills all `samples`.

    Returns:
        A tuple `(features, feature_length)`: float32
        `[batch, frames, 3 * num_mel_bins]` with `[logmel, delta, delta-delta]`
        per frame and zeros past each item's length, and int32 `[batch]` with
        the number of valid pooled frames of each item.

    Example:

    >>> layer = LogMelFeatures(pooling=5, max_frames=500)
    >>> waveform = np.zeros([2, 16000], dtype="float32")
    >>> features, feature_length = layer(waveform, np.array([16000, 8000], "int32"))
    >>> tuple(features.shape), feature_length.numpy().tolist()
    ((2, 20, 78), [20, 10])
    """

    def __init__(
        self,
        sample_rate=16000,
        window_ms=WINDOW_MS,
        hop_ms=HOP_MS,
        fft_length=512,
        num_mel_bins=26,
        lower_edge_hertz=0.0,
        upper_edge_hertz=None,
        delta_window=2,
        pooling=5,
        max_frames=500,
        log_offset=1e-6,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}.")
        window_samples = int(round(sample_rate * window_ms / 1000.0))
        hop_samples = int(round(sample_rate * hop_ms / 1000.0))
        if window_samples < 1:
            raise ValueError(
                f"window_ms={window_ms} gives {window_samples} samples at "
                f"{sample_rate} Hz; it must give at least 1."
            )
        if hop_samples < 1:
            raise ValueError(
                f"hop_ms={hop_ms} gives {hop_samples} samples at "
                f"{sample_rate} Hz; it must give at least 1."
            )
        if window_samples > fft_length:
            raise ValueError(
                f"The window ({window_ms} ms = {window_samples} samples) is "
                f"longer than fft_length={fft_length}; raise fft_length."
            )
        if delta_window < 1:
            raise ValueError(f"delta_window must be >= 1, got {delta_window}.")
        if pooling < 1:
            raise ValueError(f"pooling must be >= 1, got {pooling}.")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}.")
        if log_offset <= 0:
            raise ValueError(f"log_offset must be > 0, got {log_offset}.")

        self.sample_rate = sample_rate
        self.window_ms = window_ms
        self.hop_ms = hop_ms
        self.fft_length = fft_length
        self.num_mel_bins = num_mel_bins
        self.lower_edge_hertz = lower_edge_hertz
        self.upper_edge_hertz = upper_edge_hertz
        self.delta_window = delta_window
        self.pooling = pooling
        self.max_frames = max_frames
        self.log_offset = log_offset

        self.window_samples = window_samples
        self.hop_samples = hop_samples
        resolved_upper_edge = (
            sample_rate / 2.0 if upper_edge_hertz is None else upper_edge_hertz
        )
        self._mel_matrix = mel_filterbank(
            num_mel_bins, fft_length, sample_rate, lower_edge_hertz, resolved_upper_edge
        )
        # No weights: nothing to build.
        self.built = True

    def _num_valid_frames(self, num_samples):
        """Frames of an item with `num_samples` samples (int32 tensor).

        The formula is `settings.frames_of`, which the client shares.
        """
        return frames_of(num_samples, self.window_samples, self.hop_samples, maximum=tf.maximum)

    def _regression_delta(self, values, valid_frames):
        """HTK delta of `values` [batch, frames, bins] over each item's frames."""
        num_frames = tf.shape(values)[1]
        frame_index = tf.range(num_frames, dtype=tf.int32)[tf.newaxis, :]
        last_valid = valid_frames[:, tf.newaxis] - 1
        delta = tf.zeros_like(values)
        for offset in range(1, self.delta_window + 1):
            # Clamp to this item's own valid frames: replicates its edge frames
            # and never reads the batch padding.
            forward = tf.minimum(frame_index + offset, last_valid)
            backward = tf.minimum(tf.maximum(frame_index - offset, 0), last_valid)
            delta += float(offset) * (
                tf.gather(values, forward, batch_dims=1)
                - tf.gather(values, backward, batch_dims=1)
            )
        normalizer = 2.0 * sum(n * n for n in range(1, self.delta_window + 1))
        return delta / normalizer

    def call(self, waveform, waveform_length=None):
        waveform = tf.cast(waveform, tf.float32)
        num_samples = tf.shape(waveform)[1]
        if waveform_length is None:
            waveform_length = tf.fill(tf.shape(waveform)[:1], num_samples)
        waveform_length = tf.minimum(tf.cast(waveform_length, tf.int32), num_samples)

        # Zero everything past each item's length, so stale padding cannot leak
        # into a short item's (zero-padded) single window.
        sample_mask = tf.sequence_mask(waveform_length, num_samples, dtype=tf.float32)
        waveform = waveform * sample_mask
        # At least one full window, so every item has at least one frame.
        waveform = tf.pad(
            waveform, [[0, 0], [0, tf.maximum(0, self.window_samples - num_samples)]]
        )
        if self.max_frames is not None:
            # Output frame t < max_frames reads frames up to
            # max_frames * pooling - 1 + 2 * delta_window (delta of delta);
            # skip the STFT of anything later.
            needed_frames = self.max_frames * self.pooling + 2 * self.delta_window
            needed_samples = (needed_frames - 1) * self.hop_samples + self.window_samples
            waveform = waveform[:, :needed_samples]

        spectrum = tf.signal.stft(
            waveform,
            frame_length=self.window_samples,
            frame_step=self.hop_samples,
            fft_length=self.fft_length,
            window_fn=lambda length, dtype: tf.signal.hann_window(
                length, periodic=True, dtype=dtype
            ),
            pad_end=False,
        )
        power = keras.ops.square(keras.ops.abs(spectrum))
        mel_energy = keras.ops.matmul(
            power, keras.ops.convert_to_tensor(self._mel_matrix, dtype="float32")
        )
        log_mel = keras.ops.log(mel_energy + self.log_offset)

        num_frames = tf.shape(log_mel)[1]
        total_valid_frames = self._num_valid_frames(waveform_length)
        # Frames past the computed ones are only needed by pooled frames that
        # the truncation drops, so clamping to what was computed is exact.
        valid_frames = tf.minimum(total_valid_frames, num_frames)

        delta = self._regression_delta(log_mel, valid_frames)
        delta_delta = self._regression_delta(delta, valid_frames)
        frames = keras.ops.concatenate([log_mel, delta, delta_delta], axis=-1)

        # Mean pooling over groups of `pooling` valid frames.
        num_groups = (num_frames + self.pooling - 1) // self.pooling
        frame_mask = tf.sequence_mask(
            valid_frames, num_groups * self.pooling, dtype=tf.float32
        )
        frames = tf.pad(frames, [[0, 0], [0, num_groups * self.pooling - num_frames], [0, 0]])
        frames = frames * frame_mask[:, :, tf.newaxis]
        feature_size = 3 * self.num_mel_bins
        grouped = tf.reshape(frames, [-1, num_groups, self.pooling, feature_size])
        group_count = tf.reduce_sum(
            tf.reshape(frame_mask, [-1, num_groups, self.pooling]), axis=2
        )
        # Empty groups (past an item's end) sum to 0 and stay 0.
        features = tf.reduce_sum(grouped, axis=2) / tf.maximum(group_count, 1.0)[
            :, :, tf.newaxis
        ]

        feature_length = (total_valid_frames + self.pooling - 1) // self.pooling
        if self.max_frames is not None:
            features = features[:, : self.max_frames]
            feature_length = tf.minimum(feature_length, self.max_frames)
        return features, feature_length

    def compute_output_shape(self, waveform_shape, waveform_length_shape=None):
        batch_size, num_samples = waveform_shape[0], waveform_shape[1]
        num_pooled = None
        if num_samples is not None:
            num_frames = frames_of(int(num_samples), self.window_samples, self.hop_samples)
            num_pooled = -(-num_frames // self.pooling)
            if self.max_frames is not None:
                num_pooled = min(num_pooled, self.max_frames)
        return (batch_size, num_pooled, 3 * self.num_mel_bins), (batch_size,)

    def compute_output_spec(self, waveform, waveform_length=None):
        features_shape, length_shape = self.compute_output_shape(waveform.shape)
        return (
            keras.KerasTensor(features_shape, dtype="float32"),
            keras.KerasTensor(length_shape, dtype="int32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "window_ms": self.window_ms,
                "hop_ms": self.hop_ms,
                "fft_length": self.fft_length,
                "num_mel_bins": self.num_mel_bins,
                "lower_edge_hertz": self.lower_edge_hertz,
                "upper_edge_hertz": self.upper_edge_hertz,
                "delta_window": self.delta_window,
                "pooling": self.pooling,
                "max_frames": self.max_frames,
                "log_offset": self.log_offset,
            }
        )
        return config


@functools.lru_cache(maxsize=16)
def _resampling_filter(up, down):
    """The low-pass FIR of `_resample` for rates `up / down` (in lowest terms),
    at the upsampled rate: unit DC gain, odd length, linear phase."""
    max_rate = max(up, down)
    cutoff = _RESAMPLE_ROLLOFF / max_rate  # of the upsampled Nyquist frequency
    half_length = int(math.ceil(_RESAMPLE_ZERO_CROSSINGS * max_rate / _RESAMPLE_ROLLOFF))
    taps = scipy.signal.firwin(
        2 * half_length + 1, cutoff, window=("kaiser", _RESAMPLE_KAISER_BETA)
    )
    taps.setflags(write=False)
    return taps


def _resample(signal, source_rate, target_rate):
    """Band-limited resampling of a 1-D float signal (`scipy.signal.resample_poly`).

    The rate ratio is reduced to `up / down`; the signal is upsampled by
    `up`, low-pass filtered and downsampled by `down` in one polyphase pass.
    The filter is a Kaiser-windowed sinc (beta 8.6) with its cut-off at 94.5%
    of the lower of the two Nyquist frequencies (so downsampling does not
    alias) and 32 zero crossings on each side. Samples outside the signal
    count as zeros. The output has `ceil(n * target_rate / source_rate)`
    samples, output sample `k` sitting at input position
    `k * source_rate / target_rate`.
    """
    divisor = math.gcd(int(source_rate), int(target_rate))
    up, down = int(target_rate) // divisor, int(source_rate) // divisor
    signal = np.asarray(signal, dtype=np.float64)
    if up == down:
        return signal.copy()
    return scipy.signal.resample_poly(signal, up, down, window=_resampling_filter(up, down))


def speed_perturb(waveform, factor):
    """Kaldi-style speed perturbation: the clip played `factor` times faster.

    Tempo and pitch change together, as with `sox speed`: the waveform is
    resampled by `_resample` as if it had been recorded at `factor` times its
    rate, with `factor` taken as its nearest fraction `p / q` (denominator at
    most `SPEED_MAX_DENOMINATOR`). A clip of `n` samples becomes one of
    `ceil(n * q / p)`: 0.9 gives a longer, lower clip, 1.1 a shorter, higher one.

    Args:
        waveform: a 1-D float waveform.
        factor: the speed factor, > 0; 1 returns a float32 copy.

    Returns:
        float32 array `[ceil(samples / factor)]`, clipped to [-1, 1].

    >>> speed_perturb(np.zeros(16000), 0.9).shape
    (17778,)
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"the speed factor must be a positive number, got {factor!r}.")
    ratio = fractions.Fraction(factor).limit_denominator(SPEED_MAX_DENOMINATOR)
    perturbed = _resample(waveform, ratio.numerator, ratio.denominator)
    return np.clip(perturbed, -1.0, 1.0).astype(np.float32)


def read_waveform(path, sample_rate=16000):
    """Reads a WAV/FLAC file as mono float32 at `sample_rate`.

    Channels are averaged; integer PCM is scaled to [-1, 1) by soundfile; a
    file at another rate is resampled with `scipy.signal.resample_poly` and a
    band-limited windowed-sinc low-pass (Kaiser window, 32 zero crossings,
    cut-off at 94.5% of the lower Nyquist frequency; see `_resample`). The result is clipped to [-1, 1], which only
    touches float files stored above full scale or resampler overshoot.

    Args:
        path: path of the audio file.
        sample_rate: the sample rate to return, in Hz.

    Returns:
        float32 array `[samples]`.

    Raises:
        ValueError: the file cannot be read, holds no samples, or holds
            non-finite samples; the message names the file.
    """
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError, TypeError) as error:
        raise ValueError(f"{path}: cannot read audio: {error}") from error
    if data.size == 0:
        raise ValueError(f"{path}: the audio file holds no samples.")
    waveform = data.mean(axis=1, dtype=np.float64)
    if not np.all(np.isfinite(waveform)):
        raise ValueError(f"{path}: the audio holds NaN or infinite samples.")
    if file_rate != sample_rate:
        waveform = _resample(waveform, file_rate, sample_rate)
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)



class TruncatedAudioError(ValueError):
    """An audio file holds fewer samples than its header declares: a copy cut off.

    Attributes:
        path: the file.
        declared_frames: the sample frames its header declares.
        held_frames: the sample frames the file holds.
        reason: the skip reason `smcn prepare` reports, `"truncated audio file
            <path>: its header declares 32128 samples (2.008 s), the file holds
            10695 (0.668 s)"`.
    """

    def __init__(self, path, declared_frames, held_frames, sample_rate):
        self.path = str(path)
        self.declared_frames = declared_frames
        self.held_frames = held_frames
        self.reason = (
            f"truncated audio file {path}: its header declares {declared_frames} samples "
            f"({declared_frames / sample_rate:.3f} s), the file holds {held_frames} "
            f"({held_frames / sample_rate:.3f} s)"
        )
        super().__init__(self.reason)


# A RIFF data size that declares no length (a stream written before its end
# was known): nothing to check against.
_UNDECLARED_SIZES = (0, 0xFFFFFFFF)


def wav_frames(path):
    """The sample frames a WAV file's header declares, and the frames it holds.

    libsndfile (and so `read_waveform`) reads what a cut-off WAV file holds
    without a word; its header still says how long the recording was.

    Args:
        path: a file; only a little-endian RIFF/WAVE file is looked at.

    Returns:
        `(declared, held, sample_rate)` from the `fmt ` and `data` chunks and
        the file's size, or None when the file is not a RIFF/WAVE file (RF64,
        RIFX, FLAC, ...), its chunks are malformed, or its data chunk declares
        no length (0 or 0xFFFFFFFF).

    Example:

    >>> soundfile.write("tone.wav", np.zeros(32128), 16000, "PCM_16")
    >>> wav_frames("tone.wav")
    (32128, 32128, 16000)
    """
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        file_size = os.fstat(file.fileno()).st_size
        block_align = sample_rate = None
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            start = file.tell()
            if chunk_id == b"fmt ":
                fmt = file.read(16)
                if len(fmt) < 16:
                    return None
                sample_rate = struct.unpack("<I", fmt[4:8])[0]
                block_align = struct.unpack("<H", fmt[12:14])[0]
            elif chunk_id == b"data":
                if not block_align or not sample_rate or size in _UNDECLARED_SIZES:
                    return None
                held = min(size, max(0, file_size - start))
                return size // block_align, held // block_align, sample_rate
            file.seek(start + size + (size & 1))  # Chunks are padded to even sizes.


def check_wav_length(path):
    """Raises `TruncatedAudioError` when a WAV file holds fewer frames than its
    header declares; any other file (see `wav_frames`) passes."""
    frames = wav_frames(path)
    if frames is not None and frames[1] < frames[0]:
        raise TruncatedAudioError(path, *frames)


# One traced function per layer, reused by every call (prepare calls once per
# shard; a fresh tf.function each time would retrace and warn every shard).
_TRACED_CALLS = weakref.WeakKeyDictionary()


def _traced_call(layer):
    if layer not in _TRACED_CALLS:

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ]
        )
        def run_layer(waveform, waveform_length):
            return layer(waveform, waveform_length)

        _TRACED_CALLS[layer] = run_layer
    return _TRACED_CALLS[layer]


def extract_audio_features(waveforms, layer, batch_size=16):
    """Runs `layer` over waveforms in padded batches; returns each item's frames.

    Items are batched in order of length (less padding) and each batch is
    padded to its longest item; the results come back in the input order.
    The layer runs inside one `tf.function` with a `[None, None]` / `[None]`
    signature, so it traces once per call of this function, not per batch.

    Args:
        waveforms: list of 1-D float arrays at `layer.sample_rate`.
        layer: a `LogMelFeatures` layer.
        batch_size: number of waveforms per batch.

    Returns:
        list of float32 arrays `[frames, 3 * layer.num_mel_bins]`, one per
        waveform, holding only its valid pooled frames.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    arrays = []
    for index, waveform in enumerate(waveforms):
        array = np.asarray(waveform, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(
                f"waveforms[{index}] must be 1-D [samples], got shape {array.shape}."
            )
        arrays.append(array)

    run_layer = _traced_call(layer)
    results = [None] * len(arrays)
    order = sorted(range(len(arrays)), key=lambda index: arrays[index].shape[0])
    for start in range(0, len(order), batch_size):
        batch_indices = order[start : start + batch_size]
        lengths = np.array([arrays[i].shape[0] for i in batch_indices], dtype=np.int32)
        batch = np.zeros([len(batch_indices), lengths.max()], dtype=np.float32)
        for row, index in enumerate(batch_indices):
            batch[row, : lengths[row]] = arrays[index]
        features, feature_length = run_layer(tf.constant(batch), tf.constant(lengths))
        features, feature_length = features.numpy(), feature_length.numpy()
        for row, index in enumerate(batch_indices):
            results[index] = features[row, : feature_length[row]].astype(np.float32)
    return results
