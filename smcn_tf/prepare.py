"""Corpus -> audio and text features -> sharded TFRecords, resumably.

`prepare_corpus` parses a corpus, extracts log-Mel frames and frozen BERT token
vectors for every utterance, and writes them to a records directory:

```
out_dir/
  shard-00000-of-00022.tfrecord        # the examples (see smcn_tf.data.records)
  shard-00000-of-00022.tfrecord.json   # its sidecar: what the shard holds
  ...
  report.json                          # counts, skipped utterances, timings
  manifest.json                        # written last: the directory is complete
```

Utterances are sorted by id and shard `i` is planned to hold utterances
`[i * shard_size, (i + 1) * shard_size)` of that order. The plan does not
depend on which audio files turn out to be unreadable: an unreadable utterance
is left out of its shard (the shard is smaller) and recorded in the sidecar.

Resuming: each shard is written atomically, then its sidecar. The sidecar
holds the example count, the kept utterance ids, the skipped ones with their
reasons, and a digest of the planned utterances plus the feature settings. A
rerun reuses a shard when its sidecar exists, its digest matches the current
plan, and the shard file holds the recorded number of examples; every other
shard is recomputed. So an interrupted run loses at most the shard it was
working on, and a change of corpus or settings never reuses stale features.
`manifest.json` is removed when a run starts and written only when it
completes, so a directory with a manifest is always a complete one.
"""

import dataclasses
import hashlib
import json
import math
import os
import re
import time

import numpy as np
import tqdm

from smcn_tf.data import iemocap, records
from smcn_tf.features.audio import LogMelFeatures, extract_audio_features, read_waveform
from smcn_tf.features.text import TextEncoder
from smcn_tf.io_utils import write_json_atomic

SUPPORTED_CORPORA = ("iemocap", "demo")
REPORT_FILENAME = "report.json"
SIDECAR_SUFFIX = ".json"

_SHARD_FILE = re.compile(r"^shard-\d{5}-of-\d{5}\.tfrecord(\.json)?$")
_TEMPORARY_FILE = re.compile(
    r"^(shard-\d{5}-of-\d{5}\.tfrecord(\.json)?|manifest\.json|report\.json)\.tmp-\w+$"
)
_STAGES = ("read_audio", "audio_features", "text_features", "write")


def _jsonable(value):
    """Converts parser outputs (dataclasses, tuples, paths, numpy scalars) to JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


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
    return _jsonable(config)


def _text_encoder_name(text_encoder):
    checkpoint_dir = getattr(text_encoder, "checkpoint_dir", None)
    return str(checkpoint_dir) if checkpoint_dir else type(text_encoder).__name__


def _digest(settings, planned):
    fields = [
        [u.utterance_id, str(u.audio_path), u.transcript, u.label, u.speaker, u.group]
        for u in planned
    ]
    text = json.dumps([settings, fields], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


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


def _compute_shard(
    planned,
    shard_path,
    digest,
    *,
    class_index,
    audio_layer,
    text_encoder,
    sample_rate,
    read_audio,
    extract_audio,
):
    """Extracts and writes one shard, then its sidecar; returns the sidecar."""
    timings = dict.fromkeys(_STAGES, 0.0)
    skipped = []

    def skip(utterance, reason):
        skipped.append(
            {
                "utterance_id": utterance.utterance_id,
                "audio_path": str(utterance.audio_path),
                "reason": reason,
            }
        )

    start = time.perf_counter()
    readable, waveforms = [], []
    for utterance in planned:
        # Exception, not BaseException: Ctrl-C must stop the run, not skip a file.
        try:
            waveform = np.asarray(read_audio(utterance.audio_path, sample_rate))
        except Exception as error:
            skip(utterance, f"cannot read audio: {type(error).__name__}: {error}")
            continue
        if waveform.ndim != 1 or waveform.size == 0:
            skip(utterance, f"expected a non-empty mono waveform, got shape {waveform.shape}")
            continue
        readable.append(utterance)
        waveforms.append(waveform)
    timings["read_audio"] = time.perf_counter() - start

    start = time.perf_counter()
    audio_features = list(extract_audio(waveforms, audio_layer)) if waveforms else []
    if len(audio_features) != len(waveforms):
        raise ValueError(
            f"The audio extractor returned {len(audio_features)} feature arrays for "
            f"{len(waveforms)} waveforms."
        )
    kept, kept_audio = [], []
    for utterance, features in zip(readable, audio_features):
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] == 0:
            skip(utterance, f"audio too short: features of shape {features.shape}")
            continue
        kept.append(utterance)
        kept_audio.append(features)
    timings["audio_features"] = time.perf_counter() - start

    start = time.perf_counter()
    transcripts = [utterance.transcript for utterance in kept]
    text_features = list(text_encoder.encode(transcripts, progress=False)) if kept else []
    if len(text_features) != len(kept):
        raise ValueError(
            f"The text encoder returned {len(text_features)} arrays for {len(kept)} transcripts."
        )
    timings["text_features"] = time.perf_counter() - start

    start = time.perf_counter()
    serialized = [
        records.serialize_example(
            utterance.utterance_id,
            utterance.speaker,
            utterance.group,
            class_index[utterance.label],
            audio,
            text,
        )
        for utterance, audio, text in zip(kept, kept_audio, text_features)
    ]
    count = records.write_shard(shard_path, serialized)
    sidecar = {
        "file": os.path.basename(shard_path),
        "count": count,
        "digest": digest,
        "utterance_ids": [utterance.utterance_id for utterance in kept],
        "skipped": skipped,
        "audio_dim": int(kept_audio[0].shape[1]) if kept else None,
        "text_dim": int(np.asarray(text_features[0]).shape[1]) if kept else None,
    }
    write_json_atomic(_sidecar_path(shard_path), sidecar)
    timings["write"] = time.perf_counter() - start
    return sidecar, timings


def _remove_leftovers(out_dir):
    """Removes temporary files of crashed runs, and the previous run's manifest."""
    for name in os.listdir(out_dir):
        if _TEMPORARY_FILE.match(name):
            _remove_quietly(os.path.join(out_dir, name))
    _remove_quietly(os.path.join(out_dir, records.MANIFEST_FILENAME))


def prepare_utterances(
    utterances,
    out_dir,
    *,
    class_names,
    corpus,
    audio_layer,
    text_encoder,
    sample_rate=16000,
    shard_size=256,
    progress=True,
    read_audio=read_waveform,
    extract_audio=extract_audio_features,
    report_extra=None,
):
    """Extracts features of utterances into sharded TFRecords, resumably.

    Shards that a previous (interrupted) run completed with the same
    utterances and settings are kept as they are; see the module docstring.
    An utterance whose audio cannot be read is skipped, with the reason, in
    the report. The records directory gets `manifest.json` (read by
    `smcn_tf.data.pipeline.make_dataset`) and `report.json`.

    Args:
        utterances: `smcn_tf.data.utterance.Utterance` objects.
        out_dir: the records directory (created if missing).
        class_names: the class names; a label is stored as its index here.
        corpus: the corpus name, recorded in the manifest.
        audio_layer: the audio feature layer, e.g.
            `smcn_tf.features.audio.LogMelFeatures`.
        text_encoder: a `smcn_tf.features.text.TextEncoder` (or any object
            with `dim`, `max_tokens` and `encode(texts, progress=False)`).
        sample_rate: the rate audio is read at.
        shard_size: utterances planned per shard.
        progress: show a tqdm progress bar over the utterances.
        read_audio: `read_audio(path, sample_rate) -> np.ndarray [samples]`;
            an exception skips the utterance with its message as the reason.
        extract_audio: `extract_audio(waveforms, layer) -> list of
            [frames, dim] arrays`.
        report_extra: more JSON-able entries for the report (e.g. the
            parser's dropped labels).

    Returns:
        The report (also written to `out_dir/report.json`): `corpus`,
        `num_utterances`, `num_examples`, `counts` (`{group: {class: n}}`),
        `skipped` (`[{"utterance_id", "audio_path", "reason"}]`), `shards`
        (total / computed / reused), `timings_seconds` per stage and
        `features` (the feature settings).

    Raises:
        ValueError: no utterances, a duplicate id, a label not in
            `class_names`, a bad `shard_size`, or no readable utterance.

    Example:

    >>> report = prepare_utterances(
    ...     parsed.utterances, "records/iemocap", class_names=CLASS_NAMES,
    ...     corpus="iemocap", audio_layer=LogMelFeatures(),
    ...     text_encoder=TextEncoder())  # doctest: +SKIP
    >>> report["num_examples"]  # doctest: +SKIP
    5531
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}.")
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names) or not class_names:
        raise ValueError(f"class_names must be distinct and non-empty, got {class_names}.")
    ordered = _validate_utterances(utterances, class_names)
    class_index = {name: index for index, name in enumerate(class_names)}
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _remove_leftovers(out_dir)

    audio_settings = _audio_layer_settings(audio_layer)
    settings = {
        "format_version": records.FORMAT_VERSION,
        "class_names": class_names,
        "sample_rate": sample_rate,
        "audio_layer": audio_settings,
        "text_encoder": _text_encoder_name(text_encoder),
        "text_encoder_type": type(text_encoder).__name__,
        "max_tokens": getattr(text_encoder, "max_tokens", None),
        "text_dim": getattr(text_encoder, "dim", None),
    }

    num_shards = math.ceil(len(ordered) / shard_size)
    timings = dict.fromkeys(_STAGES, 0.0)
    started = time.perf_counter()
    sidecars = []
    computed = reused = 0
    with tqdm.tqdm(
        total=len(ordered), desc=f"prepare {corpus}", unit="utt", disable=not progress
    ) as bar:
        for index in range(num_shards):
            planned = ordered[index * shard_size : (index + 1) * shard_size]
            shard_path = os.path.join(out_dir, records.shard_name(index, num_shards))
            digest = _digest(settings, planned)
            sidecar = _load_completed_shard(shard_path, digest)
            if sidecar is not None:
                reused += 1
            else:
                # A sidecar only ever sits beside the shard it describes.
                _remove_quietly(_sidecar_path(shard_path))
                sidecar, shard_timings = _compute_shard(
                    planned,
                    shard_path,
                    digest,
                    class_index=class_index,
                    audio_layer=audio_layer,
                    text_encoder=text_encoder,
                    sample_rate=sample_rate,
                    read_audio=read_audio,
                    extract_audio=extract_audio,
                )
                computed += 1
                for stage, seconds in shard_timings.items():
                    timings[stage] += seconds
            sidecars.append(sidecar)
            bar.update(len(planned))
    timings["total"] = time.perf_counter() - started

    # Shards of an earlier plan (another shard count) are no longer listed.
    current = {sidecar["file"] for sidecar in sidecars}
    current |= {name + SIDECAR_SUFFIX for name in current}
    for name in os.listdir(out_dir):
        if _SHARD_FILE.match(name) and name not in current:
            _remove_quietly(os.path.join(out_dir, name))

    by_id = {utterance.utterance_id: utterance for utterance in ordered}
    counts = {}
    shards = []
    skipped = []
    for sidecar in sidecars:
        shard_groups = {}
        for utterance_id in sidecar["utterance_ids"]:
            utterance = by_id[utterance_id]
            group_counts = counts.setdefault(utterance.group, dict.fromkeys(class_names, 0))
            group_counts[utterance.label] += 1
            shard_groups[utterance.group] = shard_groups.get(utterance.group, 0) + 1
        shards.append(
            {"file": sidecar["file"], "count": sidecar["count"], "groups": shard_groups}
        )
        skipped.extend(sidecar["skipped"])
    counts = {group: counts[group] for group in sorted(counts)}
    num_examples = sum(shard["count"] for shard in shards)
    dims = [(s["audio_dim"], s["text_dim"]) for s in sidecars if s["audio_dim"] is not None]
    audio_dim, text_dim = dims[0] if dims else (None, None)

    features = {
        "sample_rate": sample_rate,
        "pooling": audio_settings.get("pooling"),
        "max_frames": audio_settings.get("max_frames"),
        "max_tokens": settings["max_tokens"],
        "audio_dim": audio_dim,
        "text_dim": text_dim,
        "text_encoder": settings["text_encoder"],
        "audio_layer": audio_settings,
        "shard_size": shard_size,
    }
    report = {
        "corpus": corpus,
        "out_dir": os.path.abspath(out_dir),
        "num_utterances": len(ordered),
        "num_examples": num_examples,
        "num_skipped": len(skipped),
        "groups": sorted(counts),
        "counts": counts,
        "skipped": skipped,
        "shards": {"total": num_shards, "computed": computed, "reused": reused},
        "timings_seconds": {stage: round(seconds, 3) for stage, seconds in timings.items()},
        "features": features,
    }
    for key, value in (report_extra or {}).items():
        if key in report:
            raise ValueError(f"report_extra key {key!r} clashes with a report field.")
        report[key] = _jsonable(value)
    write_json_atomic(os.path.join(out_dir, REPORT_FILENAME), report)

    if num_examples == 0:
        raise ValueError(
            f"None of the {len(ordered)} utterances could be prepared (see "
            f"{os.path.join(out_dir, REPORT_FILENAME)}); first reason: "
            f"{skipped[0]['utterance_id']}: {skipped[0]['reason']}."
        )
    manifest = {
        "format_version": records.FORMAT_VERSION,
        "corpus": corpus,
        "class_names": class_names,
        "audio_dim": audio_dim,
        "text_dim": text_dim,
        "text_encoder": settings["text_encoder"],
        "pooling": features["pooling"],
        "max_frames": features["max_frames"],
        "max_tokens": features["max_tokens"],
        "shards": shards,
        "num_examples": num_examples,
        "groups": sorted(counts),
        "counts": counts,
    }
    # Last: the manifest marks the directory as complete.
    records.write_manifest(out_dir, manifest)
    return report


def prepare_corpus(
    corpus,
    data_dir,
    out_dir,
    *,
    pooling,
    max_frames,
    max_tokens,
    text_encoder_dir=None,
    shard_size=256,
    strict=False,
    progress=True,
):
    """Parses a corpus and prepares its features as sharded TFRecords.

    Args:
        corpus: `"iemocap"`, or `"demo"` (the bundled IEMOCAP-format demo).
        data_dir: the corpus root.
        out_dir: the records directory.
        pooling: log-Mel frames averaged into one feature frame.
        max_frames: the most feature frames kept per utterance.
        max_tokens: the most text tokens kept per transcript.
        text_encoder_dir: a Hugging Face BERT checkpoint directory; `None`
            uses the installed all-MiniLM-L6-v2.
        shard_size: utterances planned per shard.
        strict: make the parser raise on malformed corpus entries instead of
            skipping them.
        progress: show a progress bar.

    Returns:
        The report of `prepare_utterances`, plus `data_dir` and `parser`
        (`dropped_labels` and `skipped` from the corpus parser).

    Raises:
        ValueError: an unsupported corpus (the message lists the supported
            ones), or a corpus with no usable utterance.

    Example:

    >>> prepare_corpus("iemocap", "data/IEMOCAP_full_release", "records/iemocap",
    ...                pooling=5, max_frames=500, max_tokens=150)  # doctest: +SKIP
    """
    if corpus not in SUPPORTED_CORPORA:
        raise ValueError(
            f"Unsupported corpus {corpus!r}; supported corpora: {list(SUPPORTED_CORPORA)}."
        )
    # Parse first: corpus errors surface before the slow model loads.
    parsed = iemocap.parse_iemocap(data_dir, strict=strict)
    if not parsed.utterances:
        raise ValueError(f"No usable utterances found in {data_dir} (corpus {corpus!r}).")
    audio_layer = LogMelFeatures(pooling=pooling, max_frames=max_frames)
    text_encoder = TextEncoder(text_encoder_dir, max_tokens=max_tokens)
    return prepare_utterances(
        parsed.utterances,
        out_dir,
        class_names=iemocap.CLASS_NAMES,
        corpus=corpus,
        audio_layer=audio_layer,
        text_encoder=text_encoder,
        sample_rate=audio_layer.sample_rate,
        shard_size=shard_size,
        progress=progress,
        report_extra={
            "data_dir": os.path.abspath(os.fspath(data_dir)),
            "parser": {"dropped_labels": parsed.dropped_labels, "skipped": parsed.skipped},
        },
    )
