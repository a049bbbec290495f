"""`FeatureSettings`: how raw audio and text became the model's inputs, typed.

One object crosses every stage that needs it, read once and passed down:

    configs/*.yaml features:  ->  smcn prepare  ->  <records>/manifest.json
    ->  smcn train  ->  <run>/features.json  ->  smcn export  ->  smcn.json
    ->  the client (frame counts, token limit)

Each stage writes it with `to_json` and the next reads it back with
`from_json`, which checks every field and names the file and the field when
one is wrong. The frame count of a clip (`num_frames`) is defined here once:
`LogMelFeatures` and the client both compute it through `frames_of`.
"""

import dataclasses
import math
import typing

from smcn_tf.checks import integer_at_least

# The log-Mel analysis window and hop (section 3.2: 25 ms / 10 ms frames).
WINDOW_MS = 25.0
HOP_MS = 10.0


def frames_of(num_samples, window_samples, hop_samples, maximum=max):
    """Log-Mel frames of a clip of `num_samples` samples, before pooling.

    At least one frame: a clip shorter than the window gives one (padded).
    Works on Python ints, and on tensors with `maximum=tf.maximum`.

    >>> frames_of(16000, 400, 160)
    98
    >>> frames_of(100, 400, 160)
    1
    """
    return 1 + maximum(num_samples - window_samples, 0) // hop_samples


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """The feature settings a model's inputs were computed with.

    Args:
        sample_rate: the waveform rate (Hz) the log-Mel frames are computed at.
        pooling: log-Mel frames averaged into one model frame.
        max_frames: the most model frames kept per utterance (None: all).
        max_tokens: the most word pieces kept per transcript, `[CLS]` and
            `[SEP]` included (None for audio-only features).
        audio_dim: the width of an audio frame (78: 26 log-Mel + Δ + ΔΔ).
        text_dim: the width of a token vector (the text encoder's).
        text_encoder: the text encoder's checkpoint directory (or name).
        corpus: the corpus the records were prepared from.
        class_names: the class names, in label-id order.

    Example:

    >>> settings = FeatureSettings(sample_rate=16000, pooling=5, max_frames=500,
    ...                            max_tokens=150, audio_dim=78, text_dim=384)
    >>> settings.num_frames(16000)   # one second: 98 frames, pooled by 5
    20
    >>> FeatureSettings.from_json(settings.to_json()) == settings
    True
    """

    sample_rate: int = 16000
    pooling: int = 5
    max_frames: typing.Optional[int] = 500
    max_tokens: typing.Optional[int] = 150
    audio_dim: typing.Optional[int] = None
    text_dim: typing.Optional[int] = None
    text_encoder: typing.Optional[str] = None
    corpus: typing.Optional[str] = None
    class_names: typing.Optional[typing.Tuple[str, ...]] = None

    @property
    def window_samples(self):
        """Samples per analysis window."""
        return int(round(self.sample_rate * WINDOW_MS / 1000.0))

    @property
    def hop_samples(self):
        """Samples per hop."""
        return int(round(self.sample_rate * HOP_MS / 1000.0))

    def num_frames(self, num_samples):
        """Model frames of a clip of `num_samples` samples: pooled, then capped."""
        pooled = math.ceil(frames_of(int(num_samples), self.window_samples, self.hop_samples)
                           / self.pooling)
        return min(pooled, self.max_frames) if self.max_frames else pooled

    def to_json(self):
        """A JSON-ready dict (the keys of manifest.json / features.json / smcn.json)."""
        values = dataclasses.asdict(self)
        if values["class_names"] is not None:
            values["class_names"] = list(values["class_names"])
        return values

    @classmethod
    def from_json(cls, values, source="<feature settings>"):
        """Read and check the settings from a dict (extra keys are ignored).

        Raises:
            ValueError: a field is missing or wrong; the message names
                `source` and the field.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: the feature settings must be a mapping, got {values!r}.")
        if "pooling" not in values:
            raise ValueError(f"{source}: the feature settings have no `pooling`.")
        class_names = values.get("class_names")
        if class_names is not None:
            if not isinstance(class_names, (list, tuple)) or not all(
                isinstance(name, str) for name in class_names
            ):
                raise ValueError(f"{source}: `class_names` must be a list of strings.")
            class_names = tuple(class_names)
        for field in ("text_encoder", "corpus"):
            value = values.get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{source}: `{field}` must be a string, got {value!r}.")
        def integer(field, minimum=1, allow_none=True):
            return integer_at_least(values.get(field), f"{source}: `{field}`", minimum, allow_none)

        values = {"sample_rate": 16000, **values}
        return cls(
            sample_rate=integer("sample_rate", allow_none=False),
            pooling=integer("pooling", allow_none=False),
            max_frames=integer("max_frames"),
            max_tokens=integer("max_tokens", minimum=2),
            audio_dim=integer("audio_dim"),
            text_dim=integer("text_dim"),
            text_encoder=values.get("text_encoder"),
            corpus=values.get("corpus"),
            class_names=class_names,
        )
