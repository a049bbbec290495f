"""The `tf.data` input pipeline over prepared TFRecord shards.

`make_dataset` reads a records directory written by `smcn_tf.prepare`, keeps
the requested groups (leave-one-session-out: train on
`exclude_groups=["Session1"]`, test on `groups=["Session1"]`), and yields
batches padded to the longest item *of each batch*, with the true lengths
alongside so the model can mask the padding:

```
({"audio_features": float32 [B, Ta, A], "audio_length": int32 [B],
  "text_features": float32 [B, Tt, D], "text_length": int32 [B]},
 label int32 [B])
```
"""

import os

import tensorflow as tf

from smcn_tf.data import records

_READ_BUFFER_BYTES = 1 << 20


def _as_group_list(name, value):
    if value is None:
        return None
    # A bare string is one group, not a sequence of one-letter groups.
    if isinstance(value, str):
        return [value]
    value = list(value)
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{name} must hold group names (strings), got {item!r}.")
    return value


def select_groups(manifest, groups=None, exclude_groups=None, records_dir=None):
    """Returns the manifest's groups kept by a `groups`/`exclude_groups` selection.

    Args:
        manifest: a manifest dict (see `records.read_manifest`).
        groups: keep only these groups (`None`: all).
        exclude_groups: then drop these groups (`None`: none).
        records_dir: named in error messages.

    Returns:
        The kept group names, sorted.

    Raises:
        ValueError: a name is not one of the manifest's groups; the message
            lists the groups it has.
    """
    available = list(manifest["groups"])
    groups = _as_group_list("groups", groups)
    exclude_groups = _as_group_list("exclude_groups", exclude_groups)
    unknown = sorted(
        {name for name in (groups or []) + (exclude_groups or []) if name not in available}
    )
    if unknown:
        where = f" in {records_dir}" if records_dir else ""
        raise ValueError(
            f"Unknown group(s) {unknown}; the records{where} have groups {available}."
        )
    kept = available if groups is None else [name for name in available if name in groups]
    if exclude_groups is not None:
        kept = [name for name in kept if name not in exclude_groups]
    return sorted(kept)


def count_examples(records_dir, groups=None, exclude_groups=None):
    """Counts the examples a selection keeps, from the manifest (no shard reads).

    Args:
        records_dir: a records directory written by `smcn_tf.prepare`.
        groups: keep only these groups (`None`: all).
        exclude_groups: then drop these groups.

    Returns:
        The number of examples (`int`).

    Example:

    >>> count_examples("records/iemocap", exclude_groups=["Session5"])  # doctest: +SKIP
    4290
    """
    manifest = records.read_manifest(records_dir)
    kept = select_groups(manifest, groups, exclude_groups, records_dir=records_dir)
    return sum(sum(manifest["counts"].get(group, {}).values()) for group in kept)


def _shard_may_hold(shard, kept):
    # Shards written by prepare list their groups; skip those with none kept.
    shard_groups = shard.get("groups")
    if not isinstance(shard_groups, dict):
        return True
    return any(shard_groups.get(group, 0) > 0 for group in kept)


def make_dataset(
    records_dir,
    groups=None,
    exclude_groups=None,
    batch_size=32,
    shuffle=False,
    repeat=False,
    seed=None,
    shuffle_buffer=2048,
    drop_remainder=False,
    include_metadata=False,
    cache=False,
):
    """Builds a batched `tf.data.Dataset` over prepared records.

    Each batch is padded with zeros to the longest audio and the longest
    transcript among its own items.

    Args:
        records_dir: a records directory written by `smcn_tf.prepare`.
        groups: keep only these groups (e.g. `["Session5"]` to test a LOSO
            fold); `None` keeps all.
        exclude_groups: then drop these groups (e.g. `["Session5"]` to train
            that fold).
        batch_size: items per batch.
        shuffle: shuffle the shard order and the items (buffer
            `shuffle_buffer`), reshuffled every epoch.
        repeat: repeat indefinitely.
        seed: the shuffle seed; with a seed the order is reproducible.
        shuffle_buffer: the shuffle buffer size, in items.
        drop_remainder: drop the last, smaller batch.
        include_metadata: add a third element `{"utterance_id", "group",
            "speaker"}`, each `tf.string` `[B]`.
        cache: cache the parsed items in memory after the first epoch (for
            small corpora read many times).

    Returns:
        A `tf.data.Dataset` of `(inputs, label)` (or `(inputs, label,
        metadata)`), where `inputs` has `audio_features` float32
        `[B, Ta, audio_dim]`, `audio_length` int32 `[B]`, `text_features`
        float32 `[B, Tt, text_dim]`, `text_length` int32 `[B]`, and `label`
        is int32 `[B]`.

    Raises:
        FileNotFoundError: `records_dir` has no manifest.
        ValueError: an unknown group (the message lists the available ones),
            a selection with no examples, or a bad argument.

    Example:

    >>> train = make_dataset("records/iemocap", exclude_groups=["Session1"],
    ...                      shuffle=True, seed=0)  # doctest: +SKIP
    >>> test = make_dataset("records/iemocap", groups=["Session1"])  # doctest: +SKIP
    """
    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    records_dir = os.fspath(records_dir)
    manifest = records.read_manifest(records_dir)
    kept = select_groups(manifest, groups, exclude_groups, records_dir=records_dir)
    num_kept = sum(sum(manifest["counts"].get(group, {}).values()) for group in kept)
    if num_kept == 0:
        raise ValueError(
            f"The selection groups={groups!r}, exclude_groups={exclude_groups!r} keeps no "
            f"examples of {records_dir} (groups {manifest['groups']})."
        )
    files = [
        os.path.join(records_dir, shard["file"])
        for shard in manifest["shards"]
        if shard["count"] > 0 and _shard_may_hold(shard, kept)
    ]
    audio_dim = manifest["audio_dim"]
    text_dim = manifest["text_dim"]

    if shuffle and not cache and len(files) > 1:
        # Shuffled shard order + interleaving mixes items across shards beyond
        # what the element shuffle buffer alone reaches.
        file_dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=seed, reshuffle_each_iteration=True
        )
        dataset = file_dataset.interleave(
            lambda path: tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES),
            cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        # Sequential reads keep the manifest's (utterance id) order.
        dataset = tf.data.TFRecordDataset(files, buffer_size=_READ_BUFFER_BYTES)

    dataset = dataset.map(records.parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    if len(kept) != len(manifest["groups"]):
        kept_tensor = tf.constant(kept, dtype=tf.string)
        dataset = dataset.filter(
            lambda item: tf.reduce_any(tf.equal(item["group"], kept_tensor))
        )

    def to_model_inputs(item):
        inputs = {
            "audio_features": tf.ensure_shape(item["audio_features"], [None, audio_dim]),
            "audio_length": item["audio_length"],
            "text_features": tf.ensure_shape(item["text_features"], [None, text_dim]),
            "text_length": item["text_length"],
        }
        if include_metadata:
            metadata = {key: item[key] for key in ("utterance_id", "group", "speaker")}
            return inputs, item["label"], metadata
        return inputs, item["label"]

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(
            min(shuffle_buffer, num_kept), seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    # Unknown dimensions pad to each batch's own longest item, with zeros
    # (and empty strings for the metadata).
    dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
