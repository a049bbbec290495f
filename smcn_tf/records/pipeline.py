"""The `tf.data` input pipeline over prepared TFRecord shards.

`make_dataset` reads a records directory written by `smcn_tf.records.prepare`, keeps
the requested groups (leave-one-session-out: train on
`exclude_groups=["Session1"]`, test on `groups=["Session1"]`), and yields
batches padded to the longest item *of each batch*, with the true lengths
alongside so the model can mask the padding:

```
({"audio_features": float32 [B, Ta, A], "audio_length": int32 [B],
  "text_features": float32 [B, Tt, D], "text_length": int32 [B]},
 label int32 [B])
```

For training it also offers:

- length-aware batching (`bucket_window`): windows of the shuffled stream are
  sorted by length and cut into batches, so each batch holds items of similar
  length and pads little;
- exact, cheap resumption (`start_batch`): with a seed the stream is
  deterministic, and a resumed run skips to the batch it stopped at, reading
  but not parsing the skipped records (and not reading whole skipped passes);
- sharding among workers (`num_shards`, `shard_index`): disjoint shares of the
  same shuffled order that together cover every item once per pass;
- a validation share of the selected groups (`holdout_fraction`,
  `holdout`): the items whose seeded id hash falls under the fraction, or
  all the others (see `held_out_ids`);
- speed-perturbed copies (`augmented=True`): the records of
  `<records_dir>/augmented/` (written by `smcn prepare` with
  `features.speed_perturbation`) of the same selected groups join the
  stream, as items of their own; a copy whose original is held out is held
  out with it, and the held-out side (`holdout="only"`) has none. Off by
  default: test, validation and evaluation streams never see a copy.
"""

import hashlib
import json
import numbers
import os
import random

import tensorflow as tf

from smcn_tf.records import format as records

_READ_BUFFER_BYTES = 1 << 20
# Shuffle seeds are taken modulo this (as `tf.data` itself does).
_MAX_SEED = (1 << 31) - 1


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


def _manifest_of(records_dir, manifest):
    """The manifest a caller passed down, else `records_dir`'s, read now."""
    return records.read_manifest(records_dir) if manifest is None else manifest


def select_groups(manifest, groups=None, exclude_groups=None, records_dir=None):
    """Returns the manifest's groups kept by a `groups`/`exclude_groups` selection.

    Args:
        manifest: a `records.Manifest` (see `records.read_manifest`).
        groups: keep only these groups (`None`: all).
        exclude_groups: then drop these groups (`None`: none).
        records_dir: named in error messages.

    Returns:
        The kept group names, sorted.

    Raises:
        ValueError: a name is not one of the manifest's groups; the message
            lists the groups it has.
    """
    available = list(manifest.groups)
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


def augmented_dir(records_dir):
    """Where `smcn prepare` writes a records directory's speed-perturbed copies."""
    return os.path.join(os.fspath(records_dir), records.AUGMENTED_DIRNAME)


def read_augmented_manifest(records_dir, manifest=None):
    """The `Manifest` of `<records_dir>/augmented`, checked against `records_dir`'s.

    Args:
        records_dir: a records directory written by `smcn_tf.records.prepare`.
        manifest: `records_dir`'s `Manifest`, if the caller has read it.

    Raises:
        ValueError: `records_dir` was prepared without speed perturbation (its
            manifest has no `augmentation`, or there is no complete
            `augmented/`), or the copies do not match it (classes, feature
            settings, groups, factors: an `augmented/` left by another run).
    """
    manifest = _manifest_of(records_dir, manifest)
    summary = manifest.extra.get("augmentation")
    directory = augmented_dir(records_dir)
    if not isinstance(summary, dict) or not os.path.isfile(
        os.path.join(directory, records.MANIFEST_FILENAME)
    ):
        raise ValueError(
            f"{records_dir} has no augmented copies ({directory} with a manifest, listed "
            "in the records' manifest): run `smcn prepare` with "
            "features.speed_perturbation (e.g. [0.9, 1.1]) to write them."
        )
    augmented = records.read_manifest(directory)
    differs = [
        name for name in ("class_names", "audio_dim", "text_dim", "features")
        if getattr(augmented, name) != getattr(manifest, name)
    ]
    if (augmented.extra.get("augmentation") or {}).get("speed") != summary.get("speed"):
        differs.append("augmentation")
    if not set(augmented.groups) <= set(manifest.groups):
        differs.append("groups")
    if differs:
        raise ValueError(
            f"{directory} does not match {records_dir} (it differs in {differs}): "
            "run `smcn prepare` again with features.speed_perturbation."
        )
    return augmented


def count_examples(records_dir, groups=None, exclude_groups=None, manifest=None,
                   augmented=False):
    """Counts the examples a selection keeps, from the manifest (no shard reads).

    Args:
        records_dir: a records directory written by `smcn_tf.records.prepare`.
        groups: keep only these groups (`None`: all).
        exclude_groups: then drop these groups.
        manifest: `records_dir`'s `Manifest`, if the caller has read it.
        augmented: also count the speed-perturbed copies of those groups
            (see `make_dataset`).

    Returns:
        The number of examples (`int`).

    Raises:
        ValueError: an unknown group; with `augmented`, records prepared
            without speed perturbation (see `read_augmented_manifest`).

    Example, on the records of `smcn prepare iemocap` (not run as a test):

    >>> count_examples("records/iemocap", exclude_groups=["Session5"])  # doctest: +SKIP
    4290
    """
    manifest = _manifest_of(records_dir, manifest)
    kept = select_groups(manifest, groups, exclude_groups, records_dir=records_dir)
    count = manifest.examples_in(kept)
    if augmented:
        count += read_augmented_manifest(records_dir, manifest).examples_in(kept)
    return count


def _shard_may_hold(shard, kept):
    # Shards written by prepare list their groups; skip those with none kept.
    shard_groups = shard.get("groups")
    if not isinstance(shard_groups, dict):
        return True
    return any(shard_groups.get(group, 0) > 0 for group in kept)


def _shard_files(records_dir, manifest, kept):
    """The paths of the shards that may hold items of the `kept` groups."""
    return [
        os.path.join(records_dir, shard["file"])
        for shard in manifest.shards
        if shard["count"] > 0 and _shard_may_hold(shard, kept)
    ]


def _check_integer(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


HOLDOUT_SIDES = ("exclude", "only")


def is_held_out(utterance_id, fraction, seed):
    """Whether `utterance_id` falls in the held-out share `fraction` under `seed`.

    A stable hash of `(seed, id)`: the same id is held out in every run and
    on every machine, whatever the other ids are.

    >>> is_held_out("Ses01F_impro01_F000", 1.0, seed=1)
    True
    >>> is_held_out("Ses01F_impro01_F000", 0.0, seed=1)
    False
    """
    digest = hashlib.sha256(f"{seed}:{utterance_id}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) < fraction * 16**15


def held_out_ids(records_dir, groups, fraction, seed, manifest=None):
    """The ids of `groups` that `is_held_out` holds out, from the shard sidecars.

    Args:
        records_dir: a records directory written by `smcn_tf.records.prepare`.
        groups: the groups to draw from.
        fraction: the share held out, in (0, 1).
        seed: the hash seed.
        manifest: `records_dir`'s `Manifest`, if the caller has read it.

    Returns:
        `(held_out, total)`: the held-out ids (a sorted list) and how many
        items the groups hold.

    Raises:
        ValueError: a shard has no sidecar, or mixes selected and other
            groups (its items' groups are then unknown).
    """
    manifest = _manifest_of(records_dir, manifest)
    held_out, total = [], 0
    for ids in _sidecar_ids(records_dir, manifest, groups):
        total += len(ids)
        held_out += [name for name in ids if is_held_out(name, fraction, seed)]
    return sorted(held_out), total


def _sidecar_ids(records_dir, manifest, groups):
    """Yields the utterance ids of each shard of `groups`, from its sidecar.

    Raises:
        ValueError: a shard has no sidecar, or mixes selected and other groups.
    """
    wanted = set(groups)
    for shard in manifest.shards:
        if shard["count"] == 0:
            continue
        if not isinstance(shard.get("groups"), dict):
            raise ValueError(
                f"{records_dir}: shard {shard['file']} does not list its groups; a "
                "validation fraction needs group-pure shards (re-run smcn prepare)."
            )
        shard_groups = {name for name, count in shard["groups"].items() if count}
        if not shard_groups & wanted:
            continue
        if not shard_groups <= wanted:
            raise ValueError(
                f"{records_dir}: shard {shard['file']} holds groups "
                f"{sorted(shard_groups)}, some of them not selected; a validation "
                "fraction needs group-pure shards (re-run smcn prepare)."
            )
        sidecar = os.path.join(records_dir, shard["file"] + ".json")
        if not os.path.isfile(sidecar):
            raise ValueError(
                f"{sidecar} is missing: a validation fraction reads the utterance ids "
                "from the shard sidecars that smcn prepare writes."
            )
        with open(sidecar, encoding="utf-8") as stream:
            yield json.load(stream)["utterance_ids"]


def _augmented_selection(records_dir, manifest, kept, holdout_fraction, holdout_seed,
                         holdout):
    """The speed-perturbed copies a selection adds: `(files, count, held_out)`.

    The copies of the `kept` groups; with a holdout fraction, those whose
    original (`records.base_utterance_id`) is held out are `held_out` (ids
    to exclude, not in `count`), and the `"only"` side gets no copies at all.
    """
    augmented = read_augmented_manifest(records_dir, manifest)
    if holdout_fraction is not None and holdout == "only":
        return [], 0, []
    directory = augmented_dir(records_dir)
    held_out = []
    if holdout_fraction is not None:
        for ids in _sidecar_ids(directory, augmented, kept):
            held_out += [
                name for name in ids
                if is_held_out(records.base_utterance_id(name), holdout_fraction, holdout_seed)
            ]
    count = augmented.examples_in(kept) - len(held_out)
    return _shard_files(directory, augmented, kept), count, held_out


def _pass_seed(seed, pass_index):
    # A stateless seed pair per pass: any pass's order is a function of
    # (seed, pass) alone, which lets a resumed stream start at any pass
    # without replaying the earlier ones. Stateless ops also leave TF's
    # global seed (which `keras.utils.set_random_seed` sets) out of it.
    return tf.stack(
        [tf.constant(seed, tf.int64), tf.cast(pass_index, tf.int64)]
    )


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
    bucket_window=None,
    start_batch=0,
    num_shards=1,
    shard_index=0,
    holdout_fraction=None,
    holdout_seed=0,
    holdout="exclude",
    manifest=None,
    augmented=False,
):
    """Builds a batched `tf.data.Dataset` over prepared records.

    Each batch is padded with zeros to the longest audio and the longest
    transcript among its own items.

    Items are read, filtered by group, shuffled and sharded as serialized
    records, and parsed only then; so skipping (`start_batch`) costs a read,
    not a parse, and whole passes of a repeated stream are skipped for free.

    Args:
        records_dir: a records directory written by `smcn_tf.records.prepare`.
        groups: keep only these groups (e.g. `["Session5"]` to test a LOSO
            fold); `None` keeps all.
        exclude_groups: then drop these groups (e.g. `["Session5"]` to train
            that fold).
        batch_size: items per batch (per worker, with `num_shards` > 1).
        shuffle: shuffle the shard order and the items (in blocks of
            `shuffle_buffer`), differently in every pass of `repeat`.
        repeat: repeat indefinitely. Batches run across pass boundaries.
        seed: the shuffle seed; with a seed the stream is reproducible: a
            new dataset built with the same arguments, and every new
            iterator over one dataset, yields the same batches. The order
            depends on `seed` alone, not on TensorFlow's global seed.
            Unshuffled streams need none.
        shuffle_buffer: how many consecutive records are shuffled together.
        drop_remainder: drop the last, smaller batch.
        include_metadata: add a third element `{"utterance_id", "group",
            "speaker"}`, each `tf.string` `[B]`.
        cache: cache the kept (serialized) records in memory after the first
            pass (for small corpora read many times).
        bucket_window: length-aware batching (for training). An integer
            `W >= 2` takes consecutive windows of `W * batch_size` items from
            the (shuffled) item stream, sorts each window by audio length
            (then transcript length; ties keep stream order), cuts it into
            `W` batches of consecutive items, each padded to its own longest
            item, and yields them in an order shuffled per window (from
            `seed`). A final, smaller window is sorted and cut the same way,
            its short batch last. `None`, 0 or 1: off.
        start_batch: skip the stream's first `start_batch` batches, exactly:
            the dataset yields what the same call with `start_batch=0` yields
            from its batch `start_batch` on (to resume a run at a step
            boundary). With `shuffle`, needs a `seed`.
        num_shards: split the items among this many workers. Every worker
            uses the same `seed`, so the same order, and keeps every
            `num_shards`-th item of each pass: the shards are disjoint and
            together hold each item once per pass.
        shard_index: this worker's shard, `0 <= shard_index < num_shards`.
        holdout_fraction: carve a validation share out of the selected
            groups: the items `is_held_out(id, holdout_fraction,
            holdout_seed)` picks. `None`: off.
        holdout_seed: the hash seed of that share.
        holdout: `"exclude"` drops the share (the training side), `"only"`
            keeps the share alone (the validation side).
        manifest: `records_dir`'s `Manifest`, if the caller has read it
            (read here otherwise).
        augmented: also stream the speed-perturbed copies of the selected
            groups, from `<records_dir>/augmented` (`smcn prepare` with
            `features.speed_perturbation`; ids `<id>@speed<f>`), as items
            of their own: shuffled, bucketed, sharded and resumed with the
            rest. With `holdout_fraction`, a copy whose original is held out
            is dropped (`"exclude"`), and `"only"` yields no copies. For
            training streams only.

    Returns:
        A `tf.data.Dataset` of `(inputs, label)` (or `(inputs, label,
        metadata)`), where `inputs` has `audio_features` float32
        `[B, Ta, audio_dim]`, `audio_length` int32 `[B]`, `text_features`
        float32 `[B, Tt, text_dim]`, `text_length` int32 `[B]`, and `label`
        is int32 `[B]`.

    Raises:
        FileNotFoundError: `records_dir` has no manifest.
        ValueError: an unknown group (the message lists the available ones),
            a selection with no examples (or a shard with none), a bad
            argument (the message names it), or `augmented` on records
            prepared without speed perturbation.

    Example, on the records of `smcn prepare iemocap` (not run as a test):

    >>> train = make_dataset("records/iemocap", exclude_groups=["Session1"],
    ...                      shuffle=True, repeat=True, seed=0,
    ...                      bucket_window=16)  # doctest: +SKIP
    >>> resumed = make_dataset("records/iemocap", exclude_groups=["Session1"],
    ...                        shuffle=True, repeat=True, seed=0,
    ...                        bucket_window=16, start_batch=1200)  # doctest: +SKIP
    >>> test = make_dataset("records/iemocap", groups=["Session1"])  # doctest: +SKIP
    """
    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}.")
    bucket_window = _check_integer(
        "bucket_window", 0 if bucket_window is None else bucket_window, 0
    )
    start_batch = _check_integer("start_batch", start_batch, 0)
    num_shards = _check_integer("num_shards", num_shards, 1)
    shard_index = _check_integer("shard_index", shard_index, 0)
    if shard_index >= num_shards:
        raise ValueError(
            f"shard_index must satisfy 0 <= shard_index < num_shards, got "
            f"shard_index={shard_index}, num_shards={num_shards}."
        )
    if start_batch > 0 and shuffle and seed is None:
        raise ValueError(
            "start_batch > 0 with shuffle=True needs a seed: without one the "
            "stream it skips into is not reproducible."
        )
    records_dir = os.fspath(records_dir)
    manifest = _manifest_of(records_dir, manifest)
    kept = select_groups(manifest, groups, exclude_groups, records_dir=records_dir)
    num_kept = manifest.examples_in(kept)
    held_out = None
    if holdout_fraction is not None:
        if holdout not in HOLDOUT_SIDES:
            raise ValueError(f"holdout must be one of {list(HOLDOUT_SIDES)}, got {holdout!r}.")
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(
                f"holdout_fraction must lie strictly between 0 and 1, got {holdout_fraction!r}."
            )
        held_out, _ = held_out_ids(
            records_dir, kept, holdout_fraction, holdout_seed, manifest=manifest
        )
        num_kept = len(held_out) if holdout == "only" else num_kept - len(held_out)
    files = _shard_files(records_dir, manifest, kept)
    if augmented:
        more_files, more_kept, more_held_out = _augmented_selection(
            records_dir, manifest, kept, holdout_fraction, holdout_seed, holdout
        )
        files += more_files
        num_kept += more_kept
        if held_out is not None:
            held_out += more_held_out
    if num_kept == 0:
        raise ValueError(
            f"The selection groups={groups!r}, exclude_groups={exclude_groups!r}"
            + ("" if held_out is None else f", holdout={holdout!r} of {holdout_fraction}")
            + f" keeps no examples of {records_dir} (groups {list(manifest.groups)})."
        )
    # Items of one pass that this shard keeps (`shard` keeps i, i + n, ...).
    items_per_pass = len(range(shard_index, num_kept, num_shards))
    if items_per_pass == 0:
        raise ValueError(
            f"num_shards={num_shards} leaves shard {shard_index} no examples: the "
            f"selection keeps {num_kept}."
        )
    audio_dim = manifest.audio_dim
    text_dim = manifest.text_dim
    if seed is None:
        # Shuffling still needs a seed for every pass: draw one (from Python's
        # `random`, which `keras.utils.set_random_seed` seeds). Unshuffled
        # streams stay fixed (the bucket windows' batch order included).
        seed = random.randrange(_MAX_SEED) if shuffle else 0
    seed %= _MAX_SEED
    bucketing = bucket_window >= 2

    if held_out is not None:
        # Made once, out here: the passes' dataset functions capture it.
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(held_out or [""], tf.string),
                tf.constant([1] * len(held_out) or [0], tf.int64),
            ),
            default_value=0,
        )

    def read_records(pass_seed):
        if shuffle and not cache and len(files) > 1:
            # Shuffled shard order + interleaving mixes items across shards
            # beyond what the element shuffle buffer alone reaches.
            file_dataset = tf.data.Dataset.from_tensor_slices(
                tf.random.experimental.stateless_shuffle(
                    tf.constant(files), seed=tf.random.experimental.stateless_fold_in(pass_seed, 0)
                )
            )
            dataset = file_dataset.interleave(
                lambda path: tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES),
                cycle_length=min(len(files), 4),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        else:
            # Sequential reads keep the manifest's shard order.
            dataset = tf.data.TFRecordDataset(files, buffer_size=_READ_BUFFER_BYTES)
        if len(kept) != len(manifest.groups):
            # Parses only the `group` feature.
            kept_tensor = tf.constant(kept, dtype=tf.string)
            group_feature = {"group": tf.io.FixedLenFeature([], tf.string)}
            dataset = dataset.filter(
                lambda serialized: tf.reduce_any(
                    tf.equal(
                        tf.io.parse_single_example(serialized, group_feature)["group"],
                        kept_tensor,
                    )
                )
            )
        if held_out is not None:
            # Parses only the `utterance_id` feature.
            id_feature = {"utterance_id": tf.io.FixedLenFeature([], tf.string)}
            wanted = 1 if holdout == "only" else 0
            dataset = dataset.filter(
                lambda serialized: tf.equal(
                    table.lookup(
                        tf.io.parse_single_example(serialized, id_feature)["utterance_id"]
                    ),
                    wanted,
                )
            )
        return dataset

    cached = read_records(_pass_seed(seed, 0)).cache() if cache else None

    def one_pass(pass_seed):
        dataset = cached if cache else read_records(pass_seed)
        if shuffle:
            # Shuffle blocks of `shuffle_buffer` consecutive records, each
            # with its own stateless seed (deterministic, whatever TF's
            # global seed).
            block_seed = tf.random.experimental.stateless_fold_in(pass_seed, 1)
            dataset = (
                dataset.batch(min(shuffle_buffer, num_kept))
                .enumerate()
                .map(
                    lambda index, block: tf.random.experimental.stateless_shuffle(
                        block, seed=tf.random.experimental.stateless_fold_in(block_seed, index)
                    )
                )
                .unbatch()
            )
        if num_shards > 1:
            # Every worker has the same order (same seed), so the shards are
            # disjoint and cover the pass.
            dataset = dataset.shard(num_shards, shard_index)
        return dataset

    # Where batch `start_batch` starts in the item stream: skip whole windows
    # (fixed-size batches: whole batches) of serialized items here, and the
    # rest of the batches after windowing.
    items_per_window = bucket_window * batch_size if bucketing else batch_size
    first_window, batches_to_skip = divmod(start_batch, bucket_window if bucketing else 1)
    items_to_skip = first_window * items_per_window
    if repeat:
        first_pass, items_to_skip = divmod(items_to_skip, items_per_pass)
        dataset = tf.data.Dataset.counter(first_pass).flat_map(
            lambda pass_index: one_pass(_pass_seed(seed, pass_index))
        )
    else:
        dataset = one_pass(_pass_seed(seed, 0))
    if items_to_skip:
        dataset = dataset.skip(items_to_skip)

    if bucketing:
        length_features = {
            "audio_frames": tf.io.FixedLenFeature([], tf.int64),
            "text_tokens": tf.io.FixedLenFeature([], tf.int64),
        }

        def with_lengths(serialized):
            lengths = tf.io.parse_single_example(serialized, length_features)
            return serialized, lengths["audio_frames"], lengths["text_tokens"]

        def order_window(window_index, window):
            serialized, audio_frames, text_tokens = window
            size = tf.shape(serialized, out_type=tf.int64)[0]
            # By audio length, then transcript length; stable, so ties keep
            # the stream order.
            by_length = tf.argsort(audio_frames * (1 << 32) + text_tokens, stable=True)
            # Shuffle the order of the full batches; a final window's short
            # batch stays last, so that re-batching lines up with the cut.
            num_full = size // batch_size
            batch_order = tf.argsort(
                tf.random.stateless_uniform(
                    tf.reshape(num_full, [1]),
                    seed=tf.stack([tf.constant(seed + _MAX_SEED, tf.int64), window_index]),
                ),
                stable=True,
            )
            rows = tf.cast(batch_order, tf.int64)[:, None] * batch_size + tf.range(
                batch_size, dtype=tf.int64
            )
            positions = tf.concat(
                [tf.reshape(rows, [-1]), tf.range(num_full * batch_size, size)], axis=0
            )
            return tf.gather(serialized, tf.gather(by_length, positions))

        dataset = dataset.map(with_lengths, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(items_per_window).enumerate(start=first_window)
        dataset = dataset.map(order_window, num_parallel_calls=tf.data.AUTOTUNE).unbatch()

    def to_model_inputs(serialized):
        item = records.parse_example(serialized)
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
    # Unknown dimensions pad to each batch's own longest item, with zeros
    # (and empty strings for the metadata).
    dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
    if batches_to_skip:
        dataset = dataset.skip(batches_to_skip)
    if not repeat and start_batch == 0:
        # A known length lets Keras size its progress and end an evaluation
        # without a "ran out of data" warning.
        divide = (lambda a, b: a // b) if drop_remainder else (lambda a, b: -(-a // b))
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(divide(items_per_pass, batch_size))
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
