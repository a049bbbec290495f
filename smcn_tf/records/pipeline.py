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

It builds the stream in stages, each a function of its own:

1. `_select_records`: the shards, groups and held-out ids of the selection,
   from the manifests alone (a `_Selection`);
2. `_record_stream`: each pass's serialized records, read (`_read_records`),
   filtered by group and holdout (`_filter_records`), shuffled
   (`_shuffle_records`) and sharded (`_pass_records`), passes chained, and
   the records before the resume point skipped (`_resume_point`);
3. `_bucket_by_length`: windows sorted by length (`_order_window`);
4. `_parse_examples`: the records parsed into model inputs, only now, so
   that skipping costs a read, not a parse;
5. `_batch_examples`: padded batches, and the batches left to skip.

For training it also offers:

- shuffling (`shuffle`, `seed`): the shard order and blocks of
  `shuffle_buffer` consecutive items, differently in every pass of `repeat`.
  With a seed the stream is reproducible: a new dataset built with the same
  arguments, and every new iterator over one dataset, yields the same
  batches. The order depends on `seed` alone, not on TensorFlow's global
  seed. Unshuffled streams need none;
- length-aware batching (`bucket_window`): windows of `W * batch_size` items
  of the shuffled stream are sorted by audio length (then transcript length;
  ties keep the stream order) and cut into `W` batches of consecutive items,
  each padded to its own longest item, and yielded in an order shuffled per
  window (from `seed`); so each batch holds items of similar length and pads
  little. A final, smaller window is sorted and cut the same way, its short
  batch last;
- exact, cheap resumption (`start_batch`): with a seed the stream is
  deterministic, and a resumed run yields what the same call with
  `start_batch=0` yields from its batch `start_batch` on, reading but not
  parsing the skipped records (and not reading whole skipped passes);
- sharding among workers (`num_shards`, `shard_index`): every worker uses the
  same `seed`, so the same order, and keeps every `num_shards`-th item of
  each pass: disjoint shares that together cover every item once per pass;
- a validation share of the selected groups (`holdout_fraction`,
  `holdout`): the items whose seeded id hash falls under the fraction, or
  all the others (see `held_out_ids`);
- speed-perturbed copies (`augmented=True`): the records of
  `<records_dir>/augmented/` (written by `smcn prepare` with
  `features.speed_perturbation`; ids `<id>@speed<f>`) of the same selected
  groups join the stream, as items of their own (shuffled, bucketed, sharded
  and resumed with the rest); a copy whose original is held out is held
  out with it, and the held-out side (`holdout="only"`) has none. Off by
  default: test, validation and evaluation streams never see a copy.

Example, on the records of `smcn prepare iemocap` (not run as a test):

>>> train = make_dataset("records/iemocap", exclude_groups=["Session1"],
...                      shuffle=True, repeat=True, seed=0,
...                      bucket_window=16)  # doctest: +SKIP
>>> resumed = make_dataset("records/iemocap", exclude_groups=["Session1"],
...                        shuffle=True, repeat=True, seed=0,
...                        bucket_window=16, start_batch=1200)  # doctest: +SKIP
>>> test = make_dataset("records/iemocap", groups=["Session1"])  # doctest: +SKIP
"""

import dataclasses
import functools
import hashlib
import json
import numbers
import os
import random

import tensorflow as tf

from smcn_tf.checks import integer_at_least
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


@dataclasses.dataclass(frozen=True)
class _StreamOptions:
    """How `make_dataset` orders, cuts and resumes the records it selected.

    The `make_dataset` arguments of the same names; constructing one checks
    them (a `ValueError` names the bad one) and turns `bucket_window=None`
    into 0. `seed` may stay `None` until `_stream_seed` resolves it.
    """

    batch_size: int = 32
    shuffle: bool = False
    repeat: bool = False
    seed: int | None = None
    shuffle_buffer: int = 2048
    drop_remainder: bool = False
    include_metadata: bool = False
    cache: bool = False
    bucket_window: int | None = None
    start_batch: int = 0
    num_shards: int = 1
    shard_index: int = 0

    def __post_init__(self):
        for name in ("batch_size", "shuffle_buffer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}.")
        # Frozen: the normalized values go in as `Manifest.__post_init__` does.
        window = 0 if self.bucket_window is None else self.bucket_window
        object.__setattr__(self, "bucket_window", integer_at_least(window, "bucket_window", 0))
        for name, minimum in (("start_batch", 0), ("num_shards", 1), ("shard_index", 0)):
            object.__setattr__(self, name, integer_at_least(getattr(self, name), name, minimum))
        if self.shard_index >= self.num_shards:
            raise ValueError(
                f"shard_index must satisfy 0 <= shard_index < num_shards, got "
                f"shard_index={self.shard_index}, num_shards={self.num_shards}."
            )
        if self.start_batch > 0 and self.shuffle and seed is None:
            raise ValueError(
                "start_batch > 0 with shuffle=True needs a seed: without one the "
                "stream it skips into is not reproducible."
            )

    @property
    def bucketing(self):
        """Whether windows of the stream are sorted by length (`bucket_window >= 2`)."""
        return self.bucket_window >= 2


def _stream_seed(seed, shuffle):
    """The seed a stream's order is drawn from, in `[0, _MAX_SEED)`.

    Shuffling needs a seed for every pass: without one, draw one (from
    Python's `random`, which `keras.utils.set_random_seed` seeds).
    Unshuffled streams stay fixed (the bucket windows' batch order included).
    """
    if seed is None:
        seed = random.randrange(_MAX_SEED) if shuffle else 0
    return seed % _MAX_SEED


@dataclasses.dataclass(frozen=True)
class _Selection:
    """The records a selection streams, found from the manifests alone.

    Attributes:
        files: the shard paths to read, in manifest order (copies last).
        kept: the kept group names.
        filter_groups: whether records of other groups must be filtered out
            (some groups are not kept, and a shard may mix groups).
        held_out: the ids of the validation share (originals and copies),
            or `None` without a holdout fraction.
        keep_held_out: stream the share alone (`holdout="only"`) instead of
            dropping it.
        num_examples: the records one pass yields, all workers together.
    """

    files: tuple
    kept: tuple
    filter_groups: bool
    held_out: tuple | None
    keep_held_out: bool
    num_examples: int


def _check_holdout(holdout_fraction, holdout):
    if holdout not in HOLDOUT_SIDES:
        raise ValueError(f"holdout must be one of {list(HOLDOUT_SIDES)}, got {holdout!r}.")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout_fraction must lie strictly between 0 and 1, got {holdout_fraction!r}."
        )


def _select_records(records_dir, manifest, groups=None, exclude_groups=None,
                    holdout_fraction=None, holdout_seed=0, holdout="exclude", augmented=False):
    """Selects the shards, groups and held-out ids a stream reads (no record reads).

    Args:
        records_dir: the records directory (a string).
        manifest: its `Manifest`.
        groups, exclude_groups, holdout_fraction, holdout_seed, holdout,
            augmented: as in `make_dataset`.

    Returns:
        A `_Selection`.

    Raises:
        ValueError: an unknown group, a bad holdout, a selection that keeps
            no examples, or `augmented` without copies.
    """
    kept = select_groups(manifest, groups, exclude_groups, records_dir=records_dir)
    num_kept = manifest.examples_in(kept)
    held_out = None
    if holdout_fraction is not None:
        _check_holdout(holdout_fraction, holdout)
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
    return _Selection(
        files=tuple(files),
        kept=tuple(kept),
        filter_groups=len(kept) != len(manifest.groups),
        held_out=None if held_out is None else tuple(held_out),
        keep_held_out=holdout == "only",
        num_examples=num_kept,
    )


def _items_per_pass(num_examples, num_shards, shard_index):
    """The items of one pass that worker `shard_index` keeps (it keeps i, i + n, ...).

    Raises:
        ValueError: the worker keeps none.
    """
    count = len(range(shard_index, num_examples, num_shards))
    if count == 0:
        raise ValueError(
            f"num_shards={num_shards} leaves shard {shard_index} no examples: the "
            f"selection keeps {num_examples}."
        )
    return count


@dataclasses.dataclass(frozen=True)
class _ResumePoint:
    """Where batch `start_batch` starts, in the stages that skip to it.

    Attributes:
        first_pass: the pass the (repeated) record stream starts at.
        items_to_skip: the serialized records to skip from there: whole
            windows (whole batches without bucketing), read but not parsed.
        first_window: the index of the first bucket window (which seeds its
            batch order).
        batches_to_skip: the batches to skip after batching (inside the
            first window).
    """

    first_pass: int
    items_to_skip: int
    first_window: int
    batches_to_skip: int


def _resume_point(options, items_per_pass):
    """The `_ResumePoint` of `options.start_batch` in a stream of `_StreamOptions`."""
    window = options.bucket_window if options.bucketing else 1
    first_window, batches_to_skip = divmod(options.start_batch, window)
    items_to_skip = first_window * window * options.batch_size
    first_pass = 0
    if options.repeat:
        first_pass, items_to_skip = divmod(items_to_skip, items_per_pass)
    return _ResumePoint(first_pass, items_to_skip, first_window, batches_to_skip)


def _read_records(files, pass_seed, shuffle_files):
    """The serialized records of `files`.

    With `shuffle_files` (and several files), in a shard order shuffled by
    `pass_seed`, interleaved: that mixes items across shards beyond what the
    element shuffle buffer alone reaches. Otherwise sequential reads keep
    the manifest's shard order.
    """
    if not (shuffle_files and len(files) > 1):
        return tf.data.TFRecordDataset(list(files), buffer_size=_READ_BUFFER_BYTES)
    file_dataset = tf.data.Dataset.from_tensor_slices(
        tf.random.experimental.stateless_shuffle(
            tf.constant(files), seed=tf.random.experimental.stateless_fold_in(pass_seed, 0)
        )
    )
    return file_dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES),
        cycle_length=min(len(files), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _held_out_table(held_out):
    """A table of the held-out ids (1) for `_filter_records`; `None` without any."""
    if held_out is None:
        return None
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(held_out or [""], tf.string),
            tf.constant([1] * len(held_out) or [0], tf.int64),
        ),
        default_value=0,
    )


def _filter_records(dataset, selection, held_out_table):
    """Keeps the serialized records of the kept groups and holdout side.

    Each filter parses one feature of a record only (`group`,
    `utterance_id`).
    """
    if selection.filter_groups:
        kept_tensor = tf.constant(selection.kept, dtype=tf.string)
        group_feature = {"group": tf.io.FixedLenFeature([], tf.string)}
        dataset = dataset.filter(
            lambda serialized: tf.reduce_any(
                tf.equal(
                    tf.io.parse_single_example(serialized, group_feature)["group"],
                    kept_tensor,
                )
            )
        )
    if selection.held_out is not None:
        id_feature = {"utterance_id": tf.io.FixedLenFeature([], tf.string)}
        wanted = 1 if selection.keep_held_out else 0
        dataset = dataset.filter(
            lambda serialized: tf.equal(
                held_out_table.lookup(
                    tf.io.parse_single_example(serialized, id_feature)["utterance_id"]
                ),
                wanted,
            )
        )
    return dataset


def _shuffle_records(dataset, pass_seed, block_size):
    """Shuffles blocks of `block_size` consecutive records.

    Each block has its own stateless seed, from `pass_seed` and the block's
    index: deterministic, whatever TF's global seed.
    """
    block_seed = tf.random.experimental.stateless_fold_in(pass_seed, 1)
    return (
        dataset.batch(block_size)
        .enumerate()
        .map(
            lambda index, block: tf.random.experimental.stateless_shuffle(
                block, seed=tf.random.experimental.stateless_fold_in(block_seed, index)
            )
        )
        .unbatch()
    )


def _pass_records(selection, options, held_out_table, cached, pass_seed):
    """One pass's serialized records in stream order.

    Read and filtered (or the `cached` ones), shuffled with `pass_seed`,
    then this worker's shard: every worker has the same order (same seed),
    so the shards are disjoint and cover the pass.
    """
    if cached is not None:
        dataset = cached
    else:
        dataset = _filter_records(
            _read_records(selection.files, pass_seed, options.shuffle and not options.cache),
            selection,
            held_out_table,
        )
    if options.shuffle:
        block_size = min(options.shuffle_buffer, selection.num_examples)
        dataset = _shuffle_records(dataset, pass_seed, block_size)
    if options.num_shards > 1:
        dataset = dataset.shard(options.num_shards, options.shard_index)
    return dataset


def _record_stream(selection, options, resume):
    """The serialized records of the stream, from `resume` on.

    One pass, or (`options.repeat`) passes from `resume.first_pass` on, each
    ordered by its own seed; then `resume.items_to_skip` records skipped.
    """
    # Made once, out here: the passes' dataset functions capture them.
    table = _held_out_table(selection.held_out)
    cached = None
    if options.cache:
        first_pass = _pass_seed(options.seed, 0)
        cached = _filter_records(
            _read_records(selection.files, first_pass, False), selection, table
        ).cache()
    one_pass = functools.partial(_pass_records, selection, options, table, cached)
    if options.repeat:
        dataset = tf.data.Dataset.counter(resume.first_pass).flat_map(
            lambda pass_index: one_pass(_pass_seed(options.seed, pass_index))
        )
    else:
        dataset = one_pass(_pass_seed(options.seed, 0))
    if resume.items_to_skip:
        dataset = dataset.skip(resume.items_to_skip)
    return dataset


_LENGTH_FEATURES = {
    "audio_frames": tf.io.FixedLenFeature([], tf.int64),
    "text_tokens": tf.io.FixedLenFeature([], tf.int64),
}


def _with_lengths(serialized):
    """`(serialized, audio_frames, text_tokens)`: a record and its lengths."""
    lengths = tf.io.parse_single_example(serialized, _LENGTH_FEATURES)
    return serialized, lengths["audio_frames"], lengths["text_tokens"]


def _order_window(window_index, window, batch_size, seed):
    """Orders one bucket window's records for cutting into batches.

    Sorted by audio length, then transcript length (stable: ties keep the
    stream order), then the full batches of `batch_size` shuffled by
    `(seed, window_index)`; a final window's short batch stays last, so
    that re-batching lines up with the cut.

    Args:
        window_index: the window's index in the stream (int64 scalar).
        window: `(serialized, audio_frames, text_tokens)`, 1-D tensors.
        batch_size: the items per batch.
        seed: the stream's seed (a Python int).

    Returns:
        The window's serialized records, in their new order.
    """
    serialized, audio_frames, text_tokens = window
    size = tf.shape(serialized, out_type=tf.int64)[0]
    by_length = tf.argsort(audio_frames * (1 << 32) + text_tokens, stable=True)
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


def _bucket_by_length(dataset, batch_size, bucket_window, seed, first_window=0):
    """Orders windows of `bucket_window * batch_size` records by length.

    Each window (numbered from `first_window`, for a resumed stream) is
    sorted and shuffled by `_order_window`, so that cutting the stream into
    batches of `batch_size` gives batches of similar lengths.
    """
    dataset = dataset.map(_with_lengths, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(bucket_window * batch_size).enumerate(start=first_window)
    dataset = dataset.map(
        lambda window_index, window: _order_window(window_index, window, batch_size, seed),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.unbatch()


def _to_model_inputs(serialized, audio_dim, text_dim, include_metadata=False):
    """Parses one record into `(inputs, label)` or `(inputs, label, metadata)`."""
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


def _parse_examples(dataset, audio_dim, text_dim, include_metadata=False):
    """Parses the serialized records into model inputs (see `_to_model_inputs`)."""
    return dataset.map(
        lambda serialized: _to_model_inputs(serialized, audio_dim, text_dim, include_metadata),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _num_batches(num_items, batch_size, drop_remainder):
    """The batches `num_items` items make (the short last one dropped or not)."""
    return num_items // batch_size if drop_remainder else -(-num_items // batch_size)


def _batch_examples(dataset, options, items_per_pass, batches_to_skip=0):
    """Pads and batches parsed examples, then skips the first `batches_to_skip`.

    Unknown dimensions pad to each batch's own longest item, with zeros (and
    empty strings for the metadata).
    """
    dataset = dataset.padded_batch(options.batch_size, drop_remainder=options.drop_remainder)
    if batches_to_skip:
        dataset = dataset.skip(batches_to_skip)
    if not options.repeat and options.start_batch == 0:
        # A known length lets Keras size its progress and end an evaluation
        # without a "ran out of data" warning.
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(
                _num_batches(items_per_pass, options.batch_size, options.drop_remainder)
            )
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_dataset(records_dir, groups=None, exclude_groups=None, batch_size=32, shuffle=False,
                 repeat=False, seed=None, shuffle_buffer=2048, drop_remainder=False,
                 include_metadata=False, cache=False, bucket_window=None, start_batch=0,
                 num_shards=1, shard_index=0, holdout_fraction=None, holdout_seed=0,
                 holdout="exclude", manifest=None, augmented=False):
    """Builds a batched `tf.data.Dataset` over prepared records.

    Each batch is padded with zeros to its own longest audio and transcript.
    The stages, and each option in detail, are in the module docstring.

    Args:
        records_dir: a records directory written by `smcn_tf.records.prepare`.
        groups: keep only these groups (e.g. `["Session5"]` to test a LOSO
            fold); `None` keeps all.
        exclude_groups: then drop these groups (e.g. `["Session5"]` to train it).
        batch_size: items per batch (per worker, with `num_shards` > 1).
        shuffle: shuffle the shard order and the items (in blocks of
            `shuffle_buffer`), differently in every pass of `repeat`.
        repeat: repeat indefinitely. Batches run across pass boundaries.
        seed: the shuffle seed; with one, the stream is reproducible.
        shuffle_buffer: how many consecutive records are shuffled together.
        drop_remainder: drop the last, smaller batch.
        include_metadata: add a third element `{"utterance_id", "group",
            "speaker"}`, each `tf.string` `[B]`.
        cache: cache the kept (serialized) records in memory after the first
            pass (for small corpora read many times).
        bucket_window: length-aware batching in windows of `bucket_window *
            batch_size` items (for training). `None`, 0 or 1: off.
        start_batch: skip the stream's first `start_batch` batches, exactly
            (to resume a run). With `shuffle`, needs a `seed`.
        num_shards: split the items among this many workers (same `seed`).
        shard_index: this worker's shard, `0 <= shard_index < num_shards`.
        holdout_fraction: carve the validation share `is_held_out(id,
            holdout_fraction, holdout_seed)` out of the selected groups.
            `None`: off.
        holdout_seed: the hash seed of that share.
        holdout: `"exclude"` drops the share (the training side), `"only"`
            keeps the share alone (the validation side).
        manifest: `records_dir`'s `Manifest`, if the caller has read it (then
            `manifest.json` is not read again).
        augmented: also stream the speed-perturbed copies of the selected
            groups (training streams only).

    Returns:
        A `tf.data.Dataset` of `(inputs, label)` (or `(inputs, label,
        metadata)`): `inputs` has `audio_features` float32 `[B, Ta, audio_dim]`,
        `audio_length` int32 `[B]`, `text_features` float32 `[B, Tt, text_dim]`
        and `text_length` int32 `[B]`; `label` is int32 `[B]`.

    Raises:
        FileNotFoundError: `records_dir` has no manifest.
        ValueError: an unknown group (the message lists the available ones),
            a selection with no examples (or a shard with none), a bad
            argument (the message names it), or `augmented` on records
            prepared without speed perturbation.
    """
    options = _StreamOptions(
        batch_size=batch_size, shuffle=shuffle, repeat=repeat, seed=seed,
        shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder,
        include_metadata=include_metadata, cache=cache, bucket_window=bucket_window,
        start_batch=start_batch, num_shards=num_shards, shard_index=shard_index,
    )
    records_dir = os.fspath(records_dir)
    manifest = _manifest_of(records_dir, manifest)
    selection = _select_records(records_dir, manifest, groups, exclude_groups,
                                holdout_fraction, holdout_seed, holdout, augmented)
    items_per_pass = _items_per_pass(
        selection.num_examples, options.num_shards, options.shard_index
    )
    options = dataclasses.replace(options, seed=_stream_seed(options.seed, options.shuffle))
    resume = _resume_point(options, items_per_pass)
    dataset = _record_stream(selection, options, resume)
    if options.bucketing:
        dataset = _bucket_by_length(dataset, options.batch_size, options.bucket_window,
                                    options.seed, resume.first_window)
    dataset = _parse_examples(dataset, manifest.audio_dim, manifest.text_dim,
                              options.include_metadata)
    return _batch_examples(dataset, options, items_per_pass, resume.batches_to_skip)
