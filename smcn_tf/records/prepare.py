"""Corpus -> audio and text features -> sharded TFRecords, resumably.

`prepare_corpus` parses a corpus, extracts log-Mel frames and frozen BERT token
vectors for every utterance, and writes them to a records directory:

```
out_dir/
  shard-00000-of-00022.tfrecord        # the examples (see smcn_tf.records.format)
  shard-00000-of-00022.tfrecord.json   # its sidecar: what the shard holds
  ...
  report.json                          # kept / dropped and why, counts check, timings
  manifest.json                        # written last: the directory is complete
```

Example, on the MELD.Raw release (not run as a test: it is not shipped), and
on utterances parsed from IEMOCAP into `parsed`:

>>> report = prepare_corpus("meld", "data/MELD.Raw", "records/meld",
...                         pooling=4, max_frames=500, max_tokens=100)  # doctest: +SKIP
>>> report = prepare_utterances(
...     parsed.utterances, "records/iemocap", class_names=CLASS_NAMES,
...     corpus="iemocap", audio_layer=LogMelFeatures(),
...     text_encoder=TextEncoder())  # doctest: +SKIP
>>> report["num_examples"]  # doctest: +SKIP
5531

Corpora come from the registry (`smcn_tf.corpora.registry`, `corpus_names()`):
`"iemocap"` and `"demo"` (the built-in demo in the IEMOCAP layout) are read by
`smcn_tf.corpora.iemocap.parse_iemocap`; `"meld"` and `"demo-meld"` (the
built-in demo in the MELD.Raw layout) by `smcn_tf.corpora.meld.parse_meld`;
`"csv"` (your own corpus, a CSV manifest of path, transcript, label, group
and optional start / end segments) by
`smcn_tf.corpora.csv_corpus.parse_csv_corpus`. Each adapter gives the
utterances, the class names, the parser's report and the counts check, and
its defaults (`max_seconds`; whether there are published counts). Audio is
read by `smcn_tf.features.media.decode_audio`, which takes WAV/FLAC files (at
any rate, any number of channels: resampled to 16 kHz, averaged to mono) and
media files (MELD's mp4 clips) alike, and cuts clips at `max_seconds` (MELD
has clips of minutes; by default 30 s are kept, more than the 500 pooled
frames of 40 ms need). An utterance with `start_seconds` / `end_seconds` (a
CSV row with `start` / `end`) is that segment of its file.

The report says what was kept and what was dropped and why: the parser's skips
(missing or empty media, missing transcriptions), labels outside the classes,
media no row annotates, clips that could not be decoded, WAV files that hold
fewer samples than their header declares (a copy cut off: skipped, with the
reason `"truncated audio file <path>: its header declares 32128 samples (2.008
s), the file holds 10695 (0.668 s)"`, never prepared from what is there, since
the label describes the whole recording; `strict` stops at one), clips shorter
than `min_seconds` (default `MIN_SECONDS_DEFAULT`, 0.1 s: a 1-sample file
would otherwise become a 1-frame example), and clips that were truncated at
`max_seconds`. `format_skipped` lays out the skipped utterances for the
console. For the real releases ("iemocap", "meld") the report also compares
the parsed counts with the published ones (`counts_check`; print it with
`format_counts_table`), and a loud warning goes to stderr when they differ.

The report (`report.json`, and what `prepare_utterances` returns) holds
`corpus`, `out_dir`, `num_utterances`, `num_examples`, `num_skipped`,
`num_truncated`, `num_warnings`, `groups`, `counts` (`{group: {class: n}}`),
`kept` (`total`, `by_group`, `by_label`), `dropped` (`total` and `by_reason`:
the parser's drops plus this stage's), `skipped` (every utterance left out,
once: `[{"utterance_id", "audio_path", "reason", "stage", "line"}]`, the
parser's skips first with stage `"parse"` and no `audio_path`, then this
stage's; `line`, the manifest line, for csv only; `num_skipped` is its length
and `format_skipped`'s count), `truncated` (`[{"utterance_id", "audio_path",
"kept_seconds", "source_seconds"}]`: clips cut at `max_seconds`), `warnings`
(`[{"utterance_id", "warning", "line"}]`: prepared utterances whose transcript
maps to no known word piece, e.g. emoji alone, which become `[CLS] [UNK]
[SEP]`; `format_warnings` lays them out for the console), `shards` (`total`,
`computed`, `reused`), `timings_seconds` per stage and `features` (the feature
settings). `prepare_corpus` adds `data_dir`, `parser` (for IEMOCAP layouts
`dropped_labels`, `skipped`, `kept_labels`, `counts`; for MELD layouts
`skipped`, `unannotated_media` (per split `count` and `examples`),
`encodings`, `files`, `counts`; for csv `manifest`, `rows`, `classes`,
`label_map`, `dropped_labels`, `kept_labels`, `skipped`, `counts`) and
`counts_check` (`reference`, `headline`, `rows` of parsed and expected counts,
`warnings`; see `format_counts_table`), and with speed perturbation
`augmentation` (the summary of `prepare_speed_copies`; also in the manifest).

Shards are planned by a stable key, not by position (`plan_shards`): each
group (IEMOCAP session, MELD split) gets `ceil(listed / shard_size)` shards,
where `listed` counts the utterances the corpus lists in that group before any
were skipped (a missing wav still counts), and an utterance goes to shard
`sha256(utterance id) mod that` of its group; a shard holds its utterances
sorted by id. So an utterance's shard depends on its id and its group's listed
size alone: a file that goes missing changes the plan of its own shard only,
and the number of shards does not change. An utterance added to the corpus (or
relabelled into or out of the classes) changes its own shard only as well,
unless its group's listed size crosses a multiple of `shard_size`: then the
number of shards changes and every shard is recomputed. Shard sizes vary
around `shard_size`; a shard may even be empty (count 0, which the pipeline
skips). Shards are group-pure, so a pipeline reading one group (a LOSO test
fold) opens that group's shards alone. The plan does not depend on which
audio files turn out to be unreadable either: such an utterance is left out of
its shard (the shard is smaller) and recorded in the sidecar.

Resuming: each shard is written atomically, then its sidecar. The sidecar
holds the example count, the kept utterance ids, the skipped ones with their
reasons, and a digest of the planned utterances plus the feature settings. A
rerun reuses a shard when its sidecar exists, its digest matches the current
plan, and the shard file holds the recorded number of examples; every other
shard is recomputed. So an interrupted run loses at most the shard it was
working on, and a change of corpus or settings never reuses stale features.
`manifest.json` is removed when a run starts and written only when it
completes, so a directory with a manifest is always a complete one.

Speed perturbation (`prepare_corpus(speed_perturbation=[0.9, 1.1])`,
`features.speed_perturbation`): after `out_dir` is complete, every utterance
prepared there is prepared again once per factor `f`, its waveform
resampled to play `f` times faster (`smcn_tf.features.audio.speed_perturb`;
0.9 gives a longer clip, cut at `max_frames` like any other), into
`out_dir/augmented/`: a records directory of its own, in the same format,
written and resumed the same way, with the same feature settings. A copy's id
is `<id>@speed<f>` (label, speaker and group are the original's) and its
record has the string feature `augmentation` (`"speed=0.9"`), which the
records of `out_dir` never have: they are byte for byte what a run without
speed perturbation writes. Then `augmentation` (the factors and the copies
kept per factor) is added to `out_dir`'s report and manifest, the manifest
last. Only `smcn_tf.records.pipeline.make_dataset(augmented=True)` reads the
copies.
"""

import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
import sys
import time

import numpy as np
import tqdm

from smcn_tf.records import format as records
from smcn_tf.corpora import registry
from smcn_tf.features import media
from smcn_tf.features.audio import (
    MIN_SECONDS_DEFAULT,
    LogMelFeatures,
    TruncatedAudioError,
    extract_audio_features,
    speed_perturb,
    too_short_reason,
)
from smcn_tf.features.text import SPECIAL_TOKENS, TextEncoder, known_word_pieces
from smcn_tf.io_utils import jsonable, remove_quietly, write_json_atomic

# How many unannotated media file names the report quotes per split.
REPORT_EXAMPLE_NAMES = registry.REPORT_EXAMPLE_NAMES
REPORT_FILENAME = "report.json"
# How many skipped utterances `format_skipped` lists before "... and N more".
CONSOLE_SKIPPED_LINES = 10
# How many word pieces a warning on a transcript quotes.
_SHOWN_TOKENS = 12
SIDECAR_SUFFIX = ".json"

_SHARD_FILE = re.compile(r"^shard-\d{5}-of-\d{5}\.tfrecord(\.json)?$")
_TEMPORARY_FILE = re.compile(
    r"^(shard-\d{5}-of-\d{5}\.tfrecord(\.json)?|manifest\.json|report\.json)\.tmp-\w+$"
)
_STAGES = ("read_audio", "audio_features", "text_features", "write")


def _audio_layer_settings(audio_layer):
    """The audio layer's config minus what does not change the features."""
    config = {}
    get_config = getattr(audio_layer, "get_config", None)
    if callable(get_config):
        config = dict(get_config())
    # Auto-generated names ("log_mel_features_3") differ between runs.
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    for key in ("pooling", "max_frames", "sample_rate"):
        if key not in config and hasattr(audio_layer, key):
            config[key] = getattr(audio_layer, key)
    return jsonable(config)


def _text_encoder_source(text_encoder):
    """What manifest.json records as `text_encoder`: the checkpoint directory.

    A path, not a display name (`features.text.text_encoder_name` makes one).
    """
    checkpoint_dir = getattr(text_encoder, "checkpoint_dir", None)
    return str(checkpoint_dir) if checkpoint_dir else type(text_encoder).__name__


def _digest(settings, planned):
    fields = []
    for u in planned:
        field = [u.utterance_id, str(u.audio_path), u.transcript, u.label, u.speaker, u.group]
        # Only for segments, so shards of whole-file corpora keep their digests.
        if getattr(u, "is_segment", False):
            field.append([u.start_seconds, u.end_seconds])
        # Only for augmented copies, so the originals' digests stay as they were.
        if _speed_of(u) != 1.0:
            field.append(["speed", _speed_of(u)])
        fields.append(field)
    text = json.dumps([settings, fields], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sidecar_path(shard_path):
    return shard_path + SIDECAR_SUFFIX


def _load_completed_shard(shard_path, digest):
    """The sidecar of a finished shard matching `digest`, else `None`."""
    sidecar_path = _sidecar_path(shard_path)
    if not (os.path.isfile(shard_path) and os.path.isfile(sidecar_path)):
        return None
    try:
        with open(sidecar_path, encoding="utf-8") as file:
            sidecar = json.load(file)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("digest") != digest:
        return None
    try:
        count = records.count_records(shard_path)
    except Exception:  # A corrupt shard (DataLossError): recompute it.
        return None
    if count != sidecar.get("count") or count != len(sidecar.get("utterance_ids", ())):
        return None
    return sidecar


def _validate_utterances(utterances, class_names):
    ordered = sorted(utterances, key=lambda u: u.utterance_id)
    if not ordered:
        raise ValueError("No utterances to prepare.")
    seen = set()
    for utterance in ordered:
        if utterance.utterance_id in seen:
            raise ValueError(f"Duplicate utterance id {utterance.utterance_id!r}.")
        seen.add(utterance.utterance_id)
        if utterance.label not in class_names:
            raise ValueError(
                f"Utterance {utterance.utterance_id!r} has label {utterance.label!r}, "
                f"which is not one of class_names {list(class_names)}."
            )
    return ordered


class _SegmentSource:
    """The last whole file read for a segment, so that segments of one
    recording that share a shard decode it once."""

    def __init__(self, read_audio):
        self.read_audio = read_audio
        self.path = None
        self.waveform = None

    def waveform_of(self, path, sample_rate):
        if self.path != path:
            self.path, self.waveform = None, None  # Never a stale file after a failure.
            decoded = self.read_audio(path, sample_rate)
            self.waveform = np.asarray(getattr(decoded, "waveform", decoded))
            self.path = path
        return self.waveform


def _cut_segment(waveform, path, sample_rate, start_seconds, end_seconds):
    """The part of a whole-file waveform from `start_seconds` to `end_seconds`.

    An end past the end of the file keeps what there is (rounding in a
    manifest); a start at or past it is an error.
    """
    total = waveform.shape[-1]
    first = int(round((start_seconds or 0.0) * sample_rate))
    last = total if end_seconds is None else min(total, int(round(end_seconds * sample_rate)))
    if first >= total:
        raise ValueError(
            f"{path}: the segment starts at {start_seconds} s, at or past the end of the "
            f"audio ({total / sample_rate:.3f} s)"
        )
    return waveform[..., first:last]


def _speed_of(utterance):
    """An utterance's speed-perturbation factor (1.0: none)."""
    return float(getattr(utterance, "speed", 1.0))


def _augmentation_of(utterance):
    """The `augmentation` feature of an utterance's record: None for an original."""
    speed = _speed_of(utterance)
    return None if speed == 1.0 else f"speed={speed:g}"


def _read_one(read_audio, path, sample_rate, max_seconds, utterance=None, segments=None):
    """Reads one file with `read_audio`; returns `(waveform, truncated, source_seconds)`.

    `read_audio` may return an array or a `media.DecodedAudio` (which says
    whether the reader cut the clip). An array longer than `max_seconds` is
    cut here. For an `utterance` that is a segment of its file, the whole file
    is read (through `segments`, a `_SegmentSource`, when given), the segment
    cut out, and `max_seconds` applies to the segment. An utterance with a
    `speed` other than 1 is speed-perturbed (`speed_perturb`) before the cut
    at `max_seconds`, which then applies to the perturbed clip (the reader
    is asked for `max_seconds * speed` seconds, what becomes `max_seconds`).
    """
    speed = 1.0 if utterance is None else _speed_of(utterance)
    read_limit = None if max_seconds is None else max_seconds * speed
    waveform, truncated, source_seconds = _read_source(
        read_audio, path, sample_rate, read_limit, utterance, segments
    )
    if speed != 1.0 and waveform.ndim == 1 and waveform.size:
        waveform = speed_perturb(waveform, speed)
    return _cut_at(waveform, sample_rate, max_seconds, truncated, source_seconds)


def _read_source(read_audio, path, sample_rate, max_seconds, utterance, segments):
    """The utterance's waveform as read (a segment cut out of its file), not
    yet cut at `max_seconds`; returns `(waveform, truncated, source_seconds)`."""
    if utterance is not None and getattr(utterance, "is_segment", False):
        source = segments or _SegmentSource(read_audio)
        waveform = _cut_segment(
            source.waveform_of(path, sample_rate), path, sample_rate,
            utterance.start_seconds, utterance.end_seconds,
        )
        return waveform, False, None
    if max_seconds is None:
        decoded = read_audio(path, sample_rate)
    else:
        decoded = read_audio(path, sample_rate, max_seconds=max_seconds)
    if hasattr(decoded, "waveform"):
        return (
            np.asarray(decoded.waveform),
            bool(getattr(decoded, "truncated", False)),
            getattr(decoded, "source_seconds", None),
        )
    return np.asarray(decoded), False, None


def _cut_at(waveform, sample_rate, max_seconds, truncated, source_seconds):
    """`waveform` cut at `max_seconds` (None: not cut); returns
    `(waveform, truncated, source_seconds)`, `source_seconds` None unless
    the clip was cut (here or by the reader)."""
    if max_seconds is not None and waveform.ndim == 1:
        limit = max(1, int(round(max_seconds * sample_rate)))
        if waveform.size > limit:
            truncated, source_seconds = True, waveform.size / sample_rate
            waveform = waveform[:limit]
    if not truncated:
        source_seconds = None
    return waveform, truncated, source_seconds


@dataclasses.dataclass(frozen=True)
class _Extraction:
    """How every shard of a run is computed: made once, passed to each shard.

    `class_index` maps a label to its index; `read_audio`, `extract_audio`,
    `max_seconds`, `min_seconds` and `strict` are `prepare_utterances`'
    arguments of those names.
    """

    class_index: dict
    audio_layer: object
    text_encoder: object
    sample_rate: int
    read_audio: object
    extract_audio: object
    max_seconds: object = None
    min_seconds: float = 0.0
    strict: bool = False


class _ShardLog:
    """The utterances one shard's computation skipped or cut, with why."""

    def __init__(self, strict):
        self.strict = strict
        self.skipped = []
        self.truncated = []

    def skip(self, utterance, reason, stage):
        """Records a skipped utterance; with `strict`, a fault raises instead."""
        if self.strict and _is_fault(reason):
            raise ValueError(
                f"utterance {utterance.utterance_id!r} ({utterance.audio_path}): {reason} "
                "(strict: stopping instead of skipping it)"
            )
        self.skipped.append(
            {
                "utterance_id": utterance.utterance_id,
                "audio_path": str(utterance.audio_path),
                "reason": reason,
                "stage": stage,
            }
        )

    def cut(self, utterance, kept_seconds, source_seconds):
        """Records an utterance whose clip was cut at `max_seconds`."""
        self.truncated.append(
            {
                "utterance_id": utterance.utterance_id,
                "audio_path": str(utterance.audio_path),
                "kept_seconds": round(kept_seconds, 3),
                "source_seconds": (
                    None if source_seconds is None else round(float(source_seconds), 3)
                ),
            }
        )


def _compute_shard(planned, shard_path, digest, extraction):
    """Extracts and writes one shard, then its sidecar; returns `(sidecar, timings)`.

    The stages: read the audio, extract the audio features, encode the
    transcripts, write. With `extraction.strict`, audio that cannot be read
    raises instead of being skipped (too-short clips are still skipped: they
    are a filter, not a fault).
    """
    timings = dict.fromkeys(_STAGES, 0.0)
    log = _ShardLog(extraction.strict)

    start = time.perf_counter()
    readable, waveforms = _read_shard_audio(planned, extraction, log)
    timings["read_audio"] = time.perf_counter() - start

    start = time.perf_counter()
    kept, kept_audio = _shard_audio_features(readable, waveforms, extraction, log)
    timings["audio_features"] = time.perf_counter() - start

    start = time.perf_counter()
    text_features, tokens = _shard_text_features(kept, extraction.text_encoder)
    timings["text_features"] = time.perf_counter() - start

    start = time.perf_counter()
    serialized = [
        records.serialize_example(
            utterance.utterance_id,
            utterance.speaker,
            utterance.group,
            extraction.class_index[utterance.label],
            audio,
            text,
            augmentation=_augmentation_of(utterance),
        )
        for utterance, audio, text in zip(kept, kept_audio, text_features)
    ]
    count = records.write_shard(shard_path, serialized)
    sidecar = _shard_sidecar(
        shard_path, count, digest, kept, kept_audio, text_features, tokens, log
    )
    write_json_atomic(_sidecar_path(shard_path), sidecar)
    timings["write"] = time.perf_counter() - start
    return sidecar, timings


def _read_shard_audio(planned, extraction, log):
    """The read stage: `(readable utterances, their waveforms)`, skips in `log`."""
    segments = _SegmentSource(extraction.read_audio)
    readable, waveforms = [], []
    for utterance in planned:
        waveform = _read_checked(utterance, extraction, segments, log)
        if waveform is not None:
            readable.append(utterance)
            waveforms.append(waveform)
    return readable, waveforms


def _read_checked(utterance, extraction, segments, log):
    """One utterance's waveform, cut at `max_seconds`; None when it is skipped."""
    sample_rate = extraction.sample_rate
    # Exception, not BaseException: Ctrl-C must stop the run, not skip a file.
    try:
        waveform, was_truncated, source_seconds = _read_one(
            extraction.read_audio, utterance.audio_path, sample_rate, extraction.max_seconds,
            utterance=utterance, segments=segments,
        )
    except TruncatedAudioError as error:
        # Skipped, not prepared from what is there: the label describes the
        # whole recording, and a cut-off copy is a fault to fix at its source.
        log.skip(utterance, error.reason, "read_audio")
        return None
    except Exception as error:
        log.skip(utterance, f"cannot read audio: {type(error).__name__}: {error}", "read_audio")
        return None
    if waveform.ndim != 1 or waveform.size == 0:
        log.skip(
            utterance,
            f"expected a non-empty mono waveform, got shape {waveform.shape}",
            "read_audio",
        )
        return None
    short = too_short_reason(waveform.size, sample_rate, extraction.min_seconds)
    if short is not None:
        log.skip(utterance, short, "read_audio")
        return None
    if was_truncated:
        log.cut(utterance, waveform.size / sample_rate, source_seconds)
    return waveform


def _shard_audio_features(readable, waveforms, extraction, log):
    """The audio stage: `(kept utterances, their [frames, dim] features)`."""
    extract_audio = extraction.extract_audio
    audio_features = list(extract_audio(waveforms, extraction.audio_layer)) if waveforms else []
    if len(audio_features) != len(waveforms):
        raise ValueError(
            f"The audio extractor returned {len(audio_features)} feature arrays for "
            f"{len(waveforms)} waveforms."
        )
    kept, kept_audio = [], []
    for utterance, features in zip(readable, audio_features):
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] == 0:
            log.skip(
                utterance, f"audio too short: features of shape {features.shape}", "audio_features"
            )
            continue
        kept.append(utterance)
        kept_audio.append(features)
    return kept, kept_audio


def _shard_text_features(kept, text_encoder):
    """The text stage: `(token vectors per transcript, word pieces or None)`."""
    transcripts = [utterance.transcript for utterance in kept]
    text_features = list(text_encoder.encode(transcripts, progress=False)) if kept else []
    if len(text_features) != len(kept):
        raise ValueError(
            f"The text encoder returned {len(text_features)} arrays for {len(kept)} transcripts."
        )
    # The word pieces, for TensorBoard's attention figures (encoders without
    # a tokenizer, such as test fakes, have none).
    tokens = None
    if kept and hasattr(text_encoder, "token_strings"):
        tokens = text_encoder.token_strings(transcripts)
    return text_features, tokens


def _shard_sidecar(shard_path, count, digest, kept, kept_audio, text_features, tokens, log):
    """The sidecar of a written shard: what it holds and what it left out."""
    kept_ids = {utterance.utterance_id for utterance in kept}
    return {
        "file": os.path.basename(shard_path),
        "count": count,
        "digest": digest,
        "utterance_ids": [utterance.utterance_id for utterance in kept],
        "tokens": tokens,
        "skipped": log.skipped,
        "truncated": [item for item in log.truncated if item["utterance_id"] in kept_ids],
        "audio_dim": int(kept_audio[0].shape[1]) if kept else None,
        "text_dim": int(np.asarray(text_features[0]).shape[1]) if kept else None,
    }


# The kind of a skip reason ("missing media file", "cannot read audio", ...),
# which the report counts drops by; shared with the corpus adapters.
_reason_kind = registry.reason_kind


def _is_fault(reason):
    """True for a skip that `strict` turns into an error: unreadable or cut-off
    audio, not a clip below `min_seconds`."""
    return _reason_kind(reason) in (
        "cannot read audio", "truncated audio file", "expected a non-empty mono waveform"
    )


def _remove_leftovers(out_dir):
    """Removes temporary files of crashed runs, and the previous run's manifest."""
    for name in os.listdir(out_dir):
        if _TEMPORARY_FILE.match(name):
            remove_quietly(os.path.join(out_dir, name))
    remove_quietly(os.path.join(out_dir, records.MANIFEST_FILENAME))


def _shard_key(utterance_id):
    """A stable, uniform 64-bit number for an utterance id (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(utterance_id.encode("utf-8")).digest()[:8], "big")


def plan_shards(utterances, shard_size, listed_counts=None):
    """Plans which utterances each shard holds, by a stable key.

    Group `g` (an IEMOCAP session, a MELD split) gets
    `n_g = ceil(listed_counts[g] / shard_size)` shards (at least one), and
    an utterance of `g` goes to its group's shard
    `sha256(utterance_id) mod n_g`. Shards are ordered by group name, then by
    that index; each holds its utterances sorted by id.

    An utterance's shard thus depends on its id, its group and the group's
    listed size only, never on which other utterances are present: dropping
    one (a wav went missing) changes its own shard's plan and no other, as
    long as `listed_counts` still counts it. Shards hold about `shard_size`
    utterances each, some fewer or more, and may be empty.

    Args:
        utterances: `Utterance` objects with distinct ids.
        shard_size: utterances planned per shard, on average.
        listed_counts: `{group: n}`, the number of utterances the corpus
            lists in each group before any were skipped; a group's count is
            raised to the utterances given when it is smaller, and groups
            missing from it count the utterances given. Default: the
            utterances given.

    Returns:
        A list of shards, each a list of utterances sorted by id.

    Example:

    With `shard_size` 256, IEMOCAP's sessions of 1085, 1023, 1151, 1031 and
    1241 utterances get 5, 4, 5, 5 and 5 shards, whichever of them are given
    (here none, so every shard is empty):

    >>> sessions = {"Session1": 1085, "Session2": 1023, "Session3": 1151,
    ...             "Session4": 1031, "Session5": 1241}
    >>> len(plan_shards([], 256, listed_counts=sessions))
    24
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
    by_group = {}
    for utterance in utterances:
        by_group.setdefault(utterance.group, []).append(utterance)
    listed = {}
    for group, count in (listed_counts or {}).items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(
                f"listed_counts[{group!r}] must be an integer >= 0, got {count!r}."
            )
        listed[group] = count
    shards = []
    for group in sorted(set(by_group) | set(listed), key=str):
        members = by_group.get(group, [])
        num_buckets = max(1, math.ceil(max(listed.get(group, 0), len(members)) / shard_size))
        buckets = [[] for _ in range(num_buckets)]
        for utterance in members:
            buckets[_shard_key(utterance.utterance_id) % num_buckets].append(utterance)
        shards.extend(sorted(bucket, key=lambda u: u.utterance_id) for bucket in buckets)
    return shards


def prepare_utterances(
    utterances, out_dir, *, class_names, corpus, audio_layer, text_encoder,
    sample_rate=16000, shard_size=256, progress=True, read_audio=media.decode_audio,
    extract_audio=extract_audio_features, report_extra=None, max_seconds=None,
    dropped_by_parser=None, min_seconds=MIN_SECONDS_DEFAULT, listed_counts=None,
    strict=False, manifest_extra=None, skipped_by_parser=None, manifest_lines=None,
):
    """Extracts features of utterances into sharded TFRecords, resumably.

    Three stages: plan (check the arguments, plan the shards), compute (reuse the shards
    an earlier run completed with the same utterances and settings, compute the others)
    and report (write `report.json`, then `manifest.json`). An utterance whose audio
    cannot be read is skipped, with the reason, in the report.

    Args:
        utterances: `smcn_tf.corpora.utterance.Utterance` objects.
        out_dir: the records directory (created if missing).
        class_names: the class names; a label is stored as its index here.
        corpus: the corpus name, recorded in the manifest.
        audio_layer: the audio feature layer, e.g. `LogMelFeatures`.
        text_encoder: a `smcn_tf.features.text.TextEncoder` (or any object with `dim`,
            `max_tokens` and `encode(texts, progress=False)`; one with `token_strings`
            too has transcripts that map to no known word piece listed in `warnings`).
        sample_rate: the rate audio is read at.
        shard_size: utterances planned per shard, on average (`plan_shards`).
        progress: show a tqdm progress bar over the utterances.
        read_audio: `read_audio(path, sample_rate) -> np.ndarray [samples]` (called
            with `max_seconds=` too when it is set), or one returning a `media.DecodedAudio`
            to report truncation itself; an exception skips the utterance with its message
            as the reason. Default: `media.decode_audio` (WAV, FLAC, mp4, ...). A segment
            (`start_seconds`, `end_seconds`) is cut here from its file, read whole.
        extract_audio: `extract_audio(waveforms, layer) -> list of [frames, dim] arrays`.
        report_extra: more JSON-able entries for the report.
        max_seconds: keep at most this many seconds of each clip (a cut clip
            is listed under `truncated`); None keeps all.
        dropped_by_parser: reason -> count of utterances the corpus parser
            dropped, added to the report's `dropped`.
        skipped_by_parser: the parser's `(utterance_id, reason)` skips, listed
            first in the report's `skipped` (stage `"parse"`).
        manifest_lines: `{utterance_id: line}` of a manifest corpus (csv): the
            report gives each skipped or warned utterance's `line`.
        min_seconds: skip clips shorter than this (after any cut), with the
            reason `"shorter than 0.1 s: 0.0001 s (1 sample)"`; 0 keeps
            every non-empty clip.
        listed_counts: `{group: n}` utterances the corpus lists per group before the
            parser skipped any, so that the shard plan does not change when a file goes
            missing (`plan_shards`). Default: the utterances given.
        strict: raise ValueError, naming the utterance and its file, on audio
            that cannot be read (or a segment past the end of its file)
            instead of skipping it; short clips are skipped either way.
        manifest_extra: more JSON-able entries for the manifest (kept in
            `Manifest.extra`), e.g. an augmented directory's `augmentation`.

    Returns:
        The report, also written to `out_dir/report.json` (its fields: see
        "The report" in the module docstring).

    Raises:
        ValueError: no utterances, a duplicate id, a label not in
            `class_names`, a bad `shard_size`, `max_seconds`, `min_seconds`
            or `listed_counts`, or no readable utterance.
    """
    plan = _plan_run(
        utterances, out_dir, class_names, audio_layer, text_encoder, sample_rate,
        shard_size, max_seconds, min_seconds, listed_counts,
    )
    extraction = _Extraction(
        class_index={name: index for index, name in enumerate(plan.class_names)},
        audio_layer=audio_layer, text_encoder=text_encoder, sample_rate=sample_rate,
        read_audio=read_audio, extract_audio=extract_audio, max_seconds=max_seconds,
        min_seconds=min_seconds, strict=strict,
    )
    outcome = _compute_shards(plan, extraction, corpus, progress)
    summary = _summarise_shards(plan, outcome.sidecars, text_encoder)
    parsed = _ParserFindings(dropped_by_parser, skipped_by_parser, manifest_lines)
    report = _run_report(plan, outcome, summary, parsed, corpus, report_extra)
    _write_run_manifest(plan, summary, report["features"], corpus, manifest_extra)
    return report


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The plan stage's result, read by the compute and report stages.

    Attributes:
        out_dir: the records directory (a string).
        ordered: the utterances, sorted by id.
        class_names: the class names (a list).
        settings: the feature settings, hashed into every shard's digest.
        shards: `plan_shards`' plan, one list of utterances per shard.
        shard_size: the `shard_size` asked for.
        max_seconds: as given (None: clips are not cut).
        min_seconds: as given.
    """

    out_dir: str
    ordered: list
    class_names: list
    settings: dict
    shards: list
    shard_size: int
    max_seconds: object
    min_seconds: float


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """The compute stage's result: a sidecar per planned shard, and how long it took."""

    sidecars: list
    computed: int
    reused: int
    timings: dict


def _check_limits(shard_size, max_seconds, min_seconds):
    """Raises ValueError on a bad `shard_size`, `max_seconds` or `min_seconds`."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
    if max_seconds is not None and (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not math.isfinite(max_seconds)
        or max_seconds <= 0
    ):
        raise ValueError(f"max_seconds must be None or a positive number, got {max_seconds!r}.")
    if (
        isinstance(min_seconds, bool)
        or not isinstance(min_seconds, (int, float))
        or not math.isfinite(min_seconds)
        or min_seconds < 0
    ):
        raise ValueError(f"min_seconds must be a number >= 0, got {min_seconds!r}.")
    if max_seconds is not None and min_seconds > max_seconds:
        raise ValueError(
            f"min_seconds ({min_seconds}) is above max_seconds ({max_seconds}): every clip "
            "would be skipped."
        )


def _feature_settings(class_names, sample_rate, audio_layer, text_encoder, max_seconds,
                      min_seconds):
    """The settings a shard's features depend on (hashed into its digest)."""
    settings = {
        "format_version": records.FORMAT_VERSION,
        "class_names": class_names,
        "sample_rate": sample_rate,
        "audio_layer": _audio_layer_settings(audio_layer),
        "text_encoder": _text_encoder_source(text_encoder),
        "text_encoder_type": type(text_encoder).__name__,
        "max_tokens": getattr(text_encoder, "max_tokens", None),
        "text_dim": getattr(text_encoder, "dim", None),
    }
    if max_seconds is not None:
        # Only when set, so records prepared before the option existed still resume.
        settings["max_seconds"] = float(max_seconds)
    # Always: records of versions without the limit may hold 1-frame examples.
    settings["min_seconds"] = float(min_seconds)
    return settings


def _plan_run(utterances, out_dir, class_names, audio_layer, text_encoder, sample_rate,
              shard_size, max_seconds, min_seconds, listed_counts):
    """The plan stage: checks the arguments, clears `out_dir` of a previous
    run's temporary files and manifest, and plans the shards; returns a `_Plan`."""
    _check_limits(shard_size, max_seconds, min_seconds)
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names) or not class_names:
        raise ValueError(f"class_names must be distinct and non-empty, got {class_names}.")
    ordered = _validate_utterances(utterances, class_names)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _remove_leftovers(out_dir)
    settings = _feature_settings(
        class_names, sample_rate, audio_layer, text_encoder, max_seconds, min_seconds
    )
    return _Plan(
        out_dir=out_dir,
        ordered=ordered,
        class_names=class_names,
        settings=settings,
        shards=plan_shards(ordered, shard_size, listed_counts),
        shard_size=shard_size,
        max_seconds=max_seconds,
        min_seconds=min_seconds,
    )


def _compute_shards(plan, extraction, corpus, progress):
    """The compute stage: reuses or computes every planned shard, in order,
    then removes the shards of an earlier plan; returns an `_Outcome`."""
    timings = dict.fromkeys(_STAGES, 0.0)
    started = time.perf_counter()
    sidecars = []
    computed = reused = 0
    with tqdm.tqdm(
        total=len(plan.ordered), desc=f"prepare {corpus}", unit="utt", disable=not progress
    ) as bar:
        for index, planned in enumerate(plan.shards):
            shard_path = os.path.join(plan.out_dir, records.shard_name(index, len(plan.shards)))
            digest = _digest(plan.settings, planned)
            sidecar = _load_completed_shard(shard_path, digest)
            if sidecar is not None:
                if extraction.strict:
                    _check_strict_reuse(sidecar)
                reused += 1
            else:
                # A sidecar only ever sits beside the shard it describes.
                remove_quietly(_sidecar_path(shard_path))
                sidecar, shard_timings = _compute_shard(planned, shard_path, digest, extraction)
                computed += 1
                for stage, seconds in shard_timings.items():
                    timings[stage] += seconds
            sidecars.append(sidecar)
            bar.update(len(planned))
    timings["total"] = time.perf_counter() - started
    _remove_stale_shards(plan.out_dir, sidecars)
    return _Outcome(sidecars=sidecars, computed=computed, reused=reused, timings=timings)


def _check_strict_reuse(sidecar):
    """Raises on a finished shard a non-strict run wrote with unreadable audio in it."""
    faults = [item for item in sidecar["skipped"] if _is_fault(item["reason"])]
    if faults:
        raise ValueError(
            f"utterance {faults[0]['utterance_id']!r} ({faults[0]['audio_path']}): "
            f"{faults[0]['reason']} (strict: stopping instead of skipping it)"
        )


def _remove_stale_shards(out_dir, sidecars):
    """Removes the shards (and sidecars) of an earlier plan, with another shard count."""
    current = {sidecar["file"] for sidecar in sidecars}
    current |= {name + SIDECAR_SUFFIX for name in current}
    for name in os.listdir(out_dir):
        if _SHARD_FILE.match(name) and name not in current:
            remove_quietly(os.path.join(out_dir, name))


@dataclasses.dataclass(frozen=True)
class _Summary:
    """What the shards of a run hold, summed from their sidecars once.

    Attributes:
        counts: `{group: {class: n}}`, groups sorted.
        shards: the manifest's shard list (`file`, `count`, `groups`).
        skipped: every skipped utterance, in shard order.
        truncated: every kept utterance that was cut, in shard order.
        num_examples: the examples written.
        warnings: every kept utterance whose transcript maps to no known
            word piece (`_word_piece_warning`), in shard order.
    """

    counts: dict
    shards: list
    skipped: list
    truncated: list
    num_examples: int
    warnings: list


def _word_piece_warning(utterance, tokens, special_tokens):
    """A report's warning on a transcript the text encoder saw nothing of
    (`[CLS] [UNK] [SEP]`), or None; None too when the encoder gave no word
    pieces (`tokens` None: an encoder without `token_strings`)."""
    if tokens is None or known_word_pieces(tokens, special_tokens):
        return None
    shown = " ".join(tokens[:_SHOWN_TOKENS]) + (" ..." if len(tokens) > _SHOWN_TOKENS else "")
    return {
        "utterance_id": utterance.utterance_id,
        "warning": f"no known word piece: the transcript {utterance.transcript!r} becomes {shown}",
    }


def _summarise_shards(plan, sidecars, text_encoder):
    """The `_Summary` of a run's sidecars (their word pieces are checked
    against `text_encoder`'s special tokens)."""
    by_id = {utterance.utterance_id: utterance for utterance in plan.ordered}
    special_tokens = getattr(text_encoder, "special_tokens", SPECIAL_TOKENS)
    counts, shards, skipped, truncated, warnings = {}, [], [], [], []
    for sidecar in sidecars:
        for utterance_id, tokens in zip(sidecar["utterance_ids"], sidecar.get("tokens") or ()):
            warning = _word_piece_warning(by_id[utterance_id], tokens, special_tokens)
            if warning is not None:
                warnings.append(warning)
        shard_groups = {}
        for utterance_id in sidecar["utterance_ids"]:
            utterance = by_id[utterance_id]
            group_counts = counts.setdefault(utterance.group, dict.fromkeys(plan.class_names, 0))
            group_counts[utterance.label] += 1
            shard_groups[utterance.group] = shard_groups.get(utterance.group, 0) + 1
        shards.append(
            {"file": sidecar["file"], "count": sidecar["count"], "groups": shard_groups}
        )
        skipped.extend(sidecar["skipped"])
        truncated.extend(sidecar.get("truncated", []))
    return _Summary(
        counts={group: counts[group] for group in sorted(counts)},
        shards=shards,
        skipped=skipped,
        truncated=truncated,
        num_examples=sum(shard["count"] for shard in shards),
        warnings=warnings,
    )


def _report_features(plan, sidecars):
    """The report's `features`: the settings and the dims of the prepared frames."""
    dims = [(s["audio_dim"], s["text_dim"]) for s in sidecars if s["audio_dim"] is not None]
    audio_dim, text_dim = dims[0] if dims else (None, None)
    audio_settings = plan.settings["audio_layer"]
    return {
        "sample_rate": plan.settings["sample_rate"],
        "pooling": audio_settings.get("pooling"),
        "max_frames": audio_settings.get("max_frames"),
        "max_tokens": plan.settings["max_tokens"],
        "audio_dim": audio_dim,
        "text_dim": text_dim,
        "text_encoder": plan.settings["text_encoder"],
        "audio_layer": audio_settings,
        "shard_size": plan.shard_size,
        "max_seconds": plan.max_seconds,
        "min_seconds": float(plan.min_seconds),
    }


def _dropped_reasons(dropped_by_parser, skipped):
    """`{reason kind: count}`: the parser's drops plus this stage's skips."""
    dropped = {str(reason): int(count) for reason, count in (dropped_by_parser or {}).items()}
    for item in skipped:
        reason = _reason_kind(item["reason"])
        dropped[reason] = dropped.get(reason, 0) + 1
    return dropped


@dataclasses.dataclass(frozen=True)
class _ParserFindings:
    """What the corpus parser found, for the report: `prepare_utterances`'
    `dropped_by_parser`, `skipped_by_parser` and `manifest_lines` (None: none)."""

    dropped: object = None
    skipped: object = None
    lines: object = None

    def with_lines(self, items):
        """Copies of the report entries `items`, each with its manifest `line`
        where the manifest lists its utterance."""
        lines = self.lines or {}
        copies = [dict(item) for item in items]  # Never the sidecars' own dicts.
        for item in copies:
            if item["utterance_id"] in lines:
                item["line"] = lines[item["utterance_id"]]
        return copies

    def skipped_list(self, stage_skipped):
        """The report's `skipped`: every utterance left out, once, with its reason.

        The parser's skips first, in its order (stage `"parse"`), then the
        feature stage's `stage_skipped` in shard order; each with its line.
        """
        parsed = [
            {"utterance_id": str(utterance_id), "reason": str(reason), "stage": "parse"}
            for utterance_id, reason in (self.skipped or ())
        ]
        return self.with_lines(parsed + list(stage_skipped))


def _run_report(plan, outcome, summary, parsed, corpus, report_extra):
    """The report stage: builds and writes `report.json` (`parsed`: the
    `_ParserFindings`); raises when no utterance could be prepared (after
    writing it: it says why)."""
    counts, num_examples = summary.counts, summary.num_examples
    by_label = dict.fromkeys(plan.class_names, 0)
    for group_counts in counts.values():
        for label, count in group_counts.items():
            by_label[label] += count
    dropped = _dropped_reasons(parsed.dropped, summary.skipped)
    skipped, warnings = parsed.skipped_list(summary.skipped), parsed.with_lines(summary.warnings)
    report = {
        "corpus": corpus,
        "out_dir": os.path.abspath(plan.out_dir),
        "num_utterances": len(plan.ordered),
        "num_examples": num_examples,
        "num_skipped": len(skipped),
        "num_truncated": len(summary.truncated),
        "num_warnings": len(warnings),
        "groups": sorted(counts),
        "counts": counts,
        "kept": {
            "total": num_examples,
            "by_group": {group: sum(values.values()) for group, values in counts.items()},
            "by_label": by_label,
        },
        "dropped": {"total": sum(dropped.values()), "by_reason": dict(sorted(dropped.items()))},
        "skipped": skipped,
        "truncated": summary.truncated,
        "warnings": warnings,
        "shards": {
            "total": len(plan.shards), "computed": outcome.computed, "reused": outcome.reused
        },
        "timings_seconds": {stage: round(seconds, 3) for stage, seconds in outcome.timings.items()},
        "features": _report_features(plan, outcome.sidecars),
    }
    for key, value in (report_extra or {}).items():
        if key in report:
            raise ValueError(f"report_extra key {key!r} clashes with a report field.")
        report[key] = jsonable(value)
    report_path = os.path.join(plan.out_dir, REPORT_FILENAME)
    write_json_atomic(report_path, report)
    if num_examples == 0:
        first = summary.skipped[0]
        raise ValueError(
            f"None of the {len(plan.ordered)} utterances could be prepared (see "
            f"{report_path}); first reason: {first['utterance_id']}: {first['reason']}."
        )
    return report


def _write_run_manifest(plan, summary, features, corpus, manifest_extra):
    """Writes `manifest.json`, last: it marks the directory as complete."""
    manifest = records.Manifest(
        format_version=records.FORMAT_VERSION,
        corpus=corpus,
        class_names=plan.class_names,
        audio_dim=features["audio_dim"],
        text_dim=features["text_dim"],
        text_encoder=plan.settings["text_encoder"],
        # The rate the log-Mel frames were computed at: the export's front end
        # must read waveforms at it.
        sample_rate=int(plan.settings["sample_rate"]),
        pooling=features["pooling"],
        max_frames=features["max_frames"],
        max_tokens=features["max_tokens"],
        shards=summary.shards,
        num_examples=summary.num_examples,
        groups=sorted(summary.counts),
        counts=summary.counts,
        # Not read by the pipeline: the shortest clip the examples were cut from.
        min_seconds=float(plan.min_seconds),
        extra=jsonable(manifest_extra or {}),
        source=os.path.join(plan.out_dir, records.MANIFEST_FILENAME),
    )
    records.write_manifest(plan.out_dir, manifest)


# The most differences the stderr warning lists; report.json has all of them.
_WARNING_LINES = 12


def _warn_loudly(corpus, data_dir, counts_check, stream):
    """Print a banner listing how the parsed counts differ from the published ones."""
    warnings = counts_check["warnings"]
    rule = "!" * 78
    lines = [
        "",
        rule,
        f"WARNING: {counts_check['headline']}.",
        f"  corpus {corpus!r} at {os.path.abspath(os.fspath(data_dir))}",
        f"  differs from {counts_check['reference']}:",
    ]
    lines += [f"    - {warning}" for warning in warnings[:_WARNING_LINES]]
    if len(warnings) > _WARNING_LINES:
        lines.append(f"    ... and {len(warnings) - _WARNING_LINES} more")
    lines += [
        "  Results on this data are not comparable with published ones unless that is",
        "  intended (a subset, a partial download). Every difference is in report.json",
        "  under counts_check.",
        rule,
        "",
    ]
    print("\n".join(lines), file=stream, flush=True)


def format_counts_table(report):
    """Lay out a report's parsed, prepared and expected counts as a text table.

    Args:
        report: the report of `prepare_corpus` (its `counts_check`, `counts`
            and `num_examples`).

    Returns:
        The table, one row per count, `<-- differs` beside a count that is not
        the published one; `-` where a column does not apply (no published
        counts for the demo corpora; labels the parser drops are never
        prepared). An empty string when the report has no `counts_check`.

    Example, with the `report` of `prepare_corpus` on IEMOCAP (not run as a
    test: the corpus is not shipped):

    >>> print(format_counts_table(report))  # doctest: +SKIP
    counts of 'iemocap' vs IEMOCAP_full_release, 4-class set (5531 utterances)
                   parsed  prepared  expected
    total            5531      5531      5531
    class angry      1103      1103      1103
    ...
    """
    check = report.get("counts_check")
    if not check:
        return ""
    counts = report.get("counts", {})

    def prepared(row):
        if row["section"] == "total":
            return report.get("num_examples")
        if row["section"] == "group":
            return sum(counts.get(row["key"], {}).values())
        if row["section"] == "label":
            return sum(group.get(row["key"], 0) for group in counts.values())
        return None

    def cell(value):
        return "-" if value is None else str(value)

    reference = check.get("reference") or check.get("note") or "no published counts (demo corpus)"
    lines = [f"counts of {report.get('corpus')!r} vs {reference}"]
    table = [("", "parsed", "prepared", "expected", "")]
    for row in check["rows"]:
        differs = row["expected"] is not None and row["parsed"] != row["expected"]
        table.append(
            (row["name"], cell(row["parsed"]), cell(prepared(row)), cell(row["expected"]),
             "<-- differs" if differs else "")
        )
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    for line in table:
        text = line[0].ljust(widths[0]) + "".join(
            "  " + value.rjust(width) for value, width in zip(line[1:4], widths[1:])
        )
        lines.append((text + ("  " + line[4] if line[4] else "")).rstrip())
    return "\n".join(lines)


def skipped_utterances(report):
    """Every utterance a report says was left out, as `(utterance_id, reason)`.

    The report's `skipped`, in its order: the corpus parser's skips (missing
    media, missing transcriptions, ...), then the feature stage's (unreadable,
    cut-off or too short clips) in shard order. A manifest line the reason
    does not name yet is added to it: `"... (line 7)"`. Labels outside the
    classes are not listed (they are counted under `dropped`).
    """
    return [
        (str(item["utterance_id"]), _with_line_note(str(item["reason"]), item))
        for item in report.get("skipped", [])
    ]


def _with_line_note(text, item):
    """`text` ending in `(line N)` when the report entry `item` has a manifest
    line that `text` does not name yet."""
    where = f"(line {item['line']})" if "line" in item else ""
    return f"{text} {where}" if where and where not in text else text


def format_skipped(report, limit=CONSOLE_SKIPPED_LINES, report_path=None, names=True):
    """Lay out what a prepare run skipped, for the console.

    Args:
        report: the report of `prepare_corpus` or `prepare_utterances`.
        limit: list at most this many utterances, then `... and N more`.
        report_path: the report.json to point to; default
            `<report["out_dir"]>/report.json`.
        names: list the utterances with their reasons; False gives the
            count line alone (`smcn prepare --quiet`).

    Returns:
        `""` when nothing was skipped; else a count line, then (with
        `names`) one line per utterance, `  <id>: <reason>`, and `  ... and N
        more (see <report.json>)` past `limit`.

    Example, with the `report` of `prepare_corpus` on MELD (not run as a
    test: the corpus is not shipped):

    >>> print(format_skipped(report))  # doctest: +SKIP
    Skipped 2 of 42 utterances (report: records/meld/report.json):
      dev_dia1_utt0: missing media file data/MELD.Raw/dev_splits_complete/dia1_utt0.mp4
      train_dia1_utt1: shorter than 0.1 s: 0.0001 s (1 sample)
    """
    items = skipped_utterances(report)
    if not items:
        return ""
    if report_path is None:
        report_path = os.path.join(report.get("out_dir", "."), REPORT_FILENAME)
    total = len(items) + int(report.get("num_examples", 0))
    head = f"Skipped {len(items)} of {total} utterances (report: {report_path})"
    if not names:
        return head + "."
    lines = [head + ":"]
    for utterance_id, reason in items[:limit]:
        lines.append(f"  {utterance_id}: {' '.join(reason.split())}")
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (see {report_path})")
    return "\n".join(lines)



def format_warnings(report, limit=CONSOLE_SKIPPED_LINES, report_path=None):
    """Lay out the transcripts a prepare run warns about, for the console.

    A transcript that maps to no known word piece (emoji alone become `[CLS]
    [UNK] [SEP]`) is prepared, but its text vectors carry no words.

    Args:
        report: the report of `prepare_corpus` or `prepare_utterances`.
        limit: list at most this many utterances, then `... and N more`.
        report_path: the report.json to point to; default
            `<report["out_dir"]>/report.json`.

    Returns:
        `""` without warnings; else a count line, then one line per
        utterance, `  <id>: <what its transcript becomes>` (and `(line N)` for
        a manifest corpus), and `  ... and N more (see <report.json>)` past
        `limit`.

    >>> print(format_warnings({"out_dir": "records", "num_examples": 3, "warnings": [
    ...     {"utterance_id": "smile.wav", "line": 7, "warning":
    ...      "no known word piece: the transcript ':-)' becomes [CLS] [UNK] [SEP]"}]}))
    Warning: no known word piece in 1 of 3 prepared transcripts (report: records/report.json):
      smile.wav: the transcript ':-)' becomes [CLS] [UNK] [SEP] (line 7)
    """
    items = report.get("warnings") or []
    if not items:
        return ""
    if report_path is None:
        report_path = os.path.join(report.get("out_dir", "."), REPORT_FILENAME)
    lines = [
        f"Warning: no known word piece in {len(items)} of {report.get('num_examples', 0)} "
        f"prepared transcripts (report: {report_path}):"
    ]
    for item in items[:limit]:
        text = item["warning"].removeprefix("no known word piece: ")
        lines.append(f"  {item['utterance_id']}: {_with_line_note(text, item)}")
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (see {report_path})")
    return "\n".join(lines)


def _print_warnings(report, out_dir, stream):
    """Prints `format_warnings(report)` on `stream`, when there is any, naming
    `out_dir`'s report as given (as `smcn prepare` names it)."""
    text = format_warnings(report, report_path=os.path.join(os.fspath(out_dir), REPORT_FILENAME))
    if text:
        print(text, file=stream, flush=True)

# --------------------------------------------------------------------------
# Speed perturbation: the augmented directory `<out_dir>/augmented`.
# --------------------------------------------------------------------------

# The speed factors `check_speeds` takes (as `features.speed_perturbation`).
SPEED_RANGE = (0.5, 2.0)


def check_speeds(speeds):
    """The speed-perturbation factors as a tuple of floats, in the order given.

    Raises:
        ValueError: a factor that is not a number in `SPEED_RANGE`, is 1, or
            repeats another.

    >>> check_speeds([0.9, 1.1])
    (0.9, 1.1)
    """
    checked = []
    for factor in speeds:
        if (isinstance(factor, bool) or not isinstance(factor, numbers.Real)
                or not SPEED_RANGE[0] <= factor <= SPEED_RANGE[1] or factor == 1):
            raise ValueError(
                f"speed perturbation factors must be numbers in [{SPEED_RANGE[0]}, "
                f"{SPEED_RANGE[1]}] other than 1, got {factor!r}."
            )
        if f"{float(factor):g}" in {f"{known:g}" for known in checked}:
            raise ValueError(f"speed perturbation factor {factor!r} is given twice.")
        checked.append(float(factor))
    return tuple(checked)


def speed_copies(utterances, speeds):
    """Each utterance once per factor `f`: id `<id>@speed<f>`, `speed=f`, else the same.

    Ordered by factor, then as given; label, speaker and group are the original's.
    """
    return [
        dataclasses.replace(
            utterance, utterance_id=records.speed_copy_id(utterance.utterance_id, factor),
            speed=factor,
        )
        for factor in speeds
        for utterance in utterances
    ]


def prepare_speed_copies(utterances, out_dir, speeds, *, listed_counts=None, **settings):
    """Prepares the speed-perturbed copies of utterances into `<out_dir>/augmented`.

    The augmented directory is a complete records directory of its own
    (shards, sidecars, `report.json`, `manifest.json` with `augmentation:
    {"speed": [...]}`), written by `prepare_utterances` with the same
    `settings` (so resumable the same way) from `speed_copies(utterances,
    speeds)`; each record carries the feature `augmentation`
    (`"speed=0.9"`). The records of `out_dir` itself are not touched.

    Args:
        utterances: the originals (those prepared into `out_dir`).
        out_dir: the main records directory.
        speeds: the factors (see `check_speeds`), at least one.
        listed_counts: the corpus' `{group: n}` (see `plan_shards`); the
            augmented plan lists `n * len(speeds)` per group.
        **settings: the other arguments of `prepare_utterances`
            (`class_names`, `corpus`, `audio_layer`, `text_encoder`, ...).

    Returns:
        `(report, summary)`: the augmented directory's report, and the
        summary `smcn prepare` adds to the main report and manifest:
        `{"dir": "augmented", "speed": [...], "num_examples": n, "by_speed":
        {"0.9": n, ...}, "num_skipped": n}`.
    """
    speeds = check_speeds(speeds)
    if not speeds:
        raise ValueError("prepare_speed_copies needs at least one speed factor.")
    copies = speed_copies(utterances, speeds)
    listed = None
    if listed_counts is not None:
        listed = {group: count * len(speeds) for group, count in listed_counts.items()}
    description = {"speed": list(speeds)}
    report = prepare_utterances(
        copies,
        os.path.join(os.fspath(out_dir), records.AUGMENTED_DIRNAME),
        listed_counts=listed,
        manifest_extra={"augmentation": description},
        report_extra={
            "augmentation": {**description, "source_dir": os.path.abspath(os.fspath(out_dir))}
        },
        **settings,
    )
    return report, _augmentation_summary(copies, report, speeds)


def _augmentation_summary(copies, report, speeds):
    """How many copies per factor the augmented `report` kept."""
    skipped = {item["utterance_id"] for item in report["skipped"]}
    by_speed = {f"{factor:g}": 0 for factor in speeds}
    for copy_ in copies:
        if copy_.utterance_id not in skipped:
            by_speed[f"{copy_.speed:g}"] += 1
    return {
        "dir": records.AUGMENTED_DIRNAME,
        "speed": list(speeds),
        "num_examples": report["num_examples"],
        "by_speed": by_speed,
        "num_skipped": len(skipped),
    }


def _record_augmentation(out_dir, report, summary):
    """Adds the augmented directory's `summary` to the main report and
    manifest (both rewritten atomically, the manifest last)."""
    report["augmentation"] = summary
    write_json_atomic(os.path.join(out_dir, REPORT_FILENAME), report)
    manifest = records.read_manifest(out_dir)
    extra = {**manifest.extra, "augmentation": summary}
    records.write_manifest(out_dir, dataclasses.replace(manifest, extra=extra))


def format_augmentation(report):
    """The console line on a report's speed-perturbed copies; `""` without any.

    >>> format_augmentation({"out_dir": "records/demo", "augmentation": {
    ...     "dir": "augmented", "num_examples": 80, "by_speed": {"0.9": 40, "1.1": 40}}})
    'Wrote 80 speed-perturbed copies to records/demo/augmented: 40 at speed 0.9, 40 at speed 1.1.'
    """
    summary = report.get("augmentation")
    if not summary or "by_speed" not in summary:
        return ""
    parts = ", ".join(f"{count} at speed {speed}" for speed, count in summary["by_speed"].items())
    where = os.path.join(report.get("out_dir", "."), summary["dir"])
    return f"Wrote {summary['num_examples']} speed-perturbed copies to {where}: {parts}."


def prepare_corpus(
    corpus, data_dir, out_dir, *, pooling, max_frames, max_tokens, text_encoder_dir=None,
    shard_size=256, strict=False, progress=True, max_seconds=None, text_encoder=None,
    min_seconds=MIN_SECONDS_DEFAULT, corpus_options=None, sample_rate=16000,
    speed_perturbation=(), mel_bands=26,
):
    """Parses a corpus and prepares its features as sharded TFRecords.

    The corpus is read by its adapter (`smcn_tf.corpora.registry`). For the real releases
    (`"iemocap"`, `"meld"`) a parsed count that is not the published one is warned about
    loudly on stderr before the (slow) feature extraction, and recorded in the report
    (`counts_check`). Transcripts that map to no known word piece are listed on stderr
    after it (`format_warnings`).

    Args:
        corpus: a registered corpus name (`registry.corpus_names()`:
            `"iemocap"`, `"demo"`, `"meld"`, `"demo-meld"`, `"csv"`).
        data_dir: the corpus root; for `"csv"` the manifest file.
        out_dir: the records directory.
        pooling: log-Mel frames averaged into one feature frame.
        max_frames: the most feature frames kept per utterance.
        max_tokens: the most text tokens kept per transcript.
        text_encoder_dir: a Hugging Face BERT checkpoint directory; `None`
            uses the installed all-MiniLM-L6-v2.
        shard_size: utterances planned per shard.
        strict: raise on a missing media file or transcription, and on audio that cannot
            be decoded or is cut off, instead of skipping it.
        progress: show a progress bar.
        max_seconds: keep at most this many seconds of each clip (cut clips
            are reported); None: the corpus' `defaults.max_seconds` (30 s
            for MELD, no limit for IEMOCAP and csv).
        text_encoder: an encoder to use instead of loading
            `TextEncoder(text_encoder_dir)` (see `prepare_utterances`).
        min_seconds: skip shorter clips (reported); default
            `MIN_SECONDS_DEFAULT` (0.1 s); 0 keeps every non-empty clip.
        corpus_options: the options of the corpus adapter's `load`, e.g.
            `{"classes": ["ang", "hap"], "label_map": {"exc": "hap"}}` (csv).
        sample_rate: the rate, in Hz, audio is read (and resampled) at and
            the log-Mel frames are computed for (`features.sample_rate`).
        speed_perturbation: speed factors (`features.speed_perturbation`, e.g. `[0.9,
            1.1]`): after `out_dir` (whose records stay as they are), every prepared
            utterance is prepared once per factor, speed-perturbed, into `<out_dir>/augmented`.
        mel_bands: log-Mel bands per frame (`features.mel_bands`; 26: the
            paper's 78-d frames; the export reads it back from `audio_dim`).

    Returns:
        The report of `prepare_utterances` plus `data_dir`, `parser`,
        `counts_check` and, with `speed_perturbation`, `augmentation` (see
        "The report" in the module docstring).

    Raises:
        ValueError: an unknown corpus (the message lists the known ones), an option the
            corpus does not take, or a corpus with no usable utterance.
        CorpusFormatError: the corpus is malformed (see the parsers).
    """
    adapter = registry.get_corpus(corpus)
    speeds = check_speeds(speed_perturbation or ())
    # Parse first: corpus errors surface before the slow model loads.
    loaded = _load_corpus(adapter, corpus, data_dir, strict, corpus_options)
    audio_layer = LogMelFeatures(
        sample_rate=sample_rate, pooling=pooling, max_frames=max_frames, num_mel_bins=mel_bands
    )
    if text_encoder is None:
        text_encoder = TextEncoder(text_encoder_dir, max_tokens=max_tokens)
    settings = dict(
        class_names=loaded.class_names, corpus=corpus, audio_layer=audio_layer,
        text_encoder=text_encoder, sample_rate=audio_layer.sample_rate, shard_size=shard_size,
        progress=progress, min_seconds=min_seconds, strict=strict,
        max_seconds=adapter.defaults.max_seconds if max_seconds is None else max_seconds,
    )
    report = prepare_utterances(
        loaded.utterances, out_dir, listed_counts=loaded.listed_counts,
        **_parser_arguments(data_dir, loaded), **settings,
    )
    _print_warnings(report, out_dir, sys.stderr)  # On stderr, as the counts warning.
    if speeds:
        _prepare_speed_copies_of(loaded, report, out_dir, speeds, settings)
    return report


def _load_corpus(adapter, corpus, data_dir, strict, corpus_options):
    """Parses the corpus (warning loudly on counts that differ from the
    published ones); raises ValueError when it has no usable utterance."""
    loaded = adapter.load(data_dir, strict=strict, **(corpus_options or {}))
    if loaded.counts_check["warnings"]:
        _warn_loudly(corpus, data_dir, loaded.counts_check, sys.stderr)
    if not loaded.utterances:
        raise ValueError(f"No usable utterances found in {data_dir} (corpus {corpus!r}).")
    return loaded


def _parser_arguments(data_dir, loaded):
    """The arguments of `prepare_utterances` that carry the parse into the
    report: what the parser dropped and skipped, the manifest lines, and the
    corpus as parsed (`report_extra`)."""
    return {
        "dropped_by_parser": loaded.dropped,
        "skipped_by_parser": loaded.parser_report.get("skipped", ()),
        "manifest_lines": loaded.lines,
        "report_extra": {
            "data_dir": os.path.abspath(os.fspath(data_dir)),
            "parser": loaded.parser_report,
            "counts_check": loaded.counts_check,
        },
    }


def _prepare_speed_copies_of(loaded, report, out_dir, speeds, settings):
    """Prepares the speed-perturbed copies of the utterances `report` kept,
    and records them in `out_dir`'s report and manifest."""
    skipped = {item["utterance_id"] for item in report["skipped"]}
    prepared = [u for u in loaded.utterances if u.utterance_id not in skipped]
    _, summary = prepare_speed_copies(
        prepared, out_dir, speeds, listed_counts=loaded.listed_counts, **settings
    )
    _record_augmentation(os.fspath(out_dir), report, summary)
