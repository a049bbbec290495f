"""Tests for the tf.data pipeline over prepared shards."""

import dataclasses
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.records import pipeline, format as records

CLASS_NAMES = ["angry", "happy", "neutral", "sad"]
AUDIO_DIM = 6
TEXT_DIM = 4
GROUPS = ["Session1", "Session2", "Session3"]


def _write_manifest(out_dir, corpus, shards, counts):
    """A manifest as `smcn prepare` writes it, for the shards of a fixture."""
    records.write_manifest(
        out_dir,
        {
            "format_version": 1,
            "corpus": corpus,
            "class_names": CLASS_NAMES,
            "audio_dim": AUDIO_DIM,
            "text_dim": TEXT_DIM,
            "text_encoder": "fake",
            "pooling": 5,
            "max_frames": 500,
            "max_tokens": 150,
            "shards": shards,
            "num_examples": sum(shard["count"] for shard in shards),
            "groups": GROUPS,
            "counts": counts,
        },
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three shards of 7 random examples each, lengths varied, groups mixed."""
    out_dir = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    examples = {}
    shards = []
    counts = {group: dict.fromkeys(CLASS_NAMES, 0) for group in GROUPS}
    num_shards = 3
    for shard in range(num_shards):
        serialized = []
        shard_groups = {}
        for row in range(7):
            index = shard * 7 + row
            utterance_id = f"utt{index:03d}"
            group = GROUPS[index % 3]
            label = int(rng.integers(4))
            audio = rng.normal(size=(int(rng.integers(1, 30)), AUDIO_DIM))
            text = rng.normal(size=(int(rng.integers(2, 12)), TEXT_DIM))
            examples[utterance_id] = dict(group=group, label=label, audio=audio, text=text)
            counts[group][CLASS_NAMES[label]] += 1
            shard_groups[group] = shard_groups.get(group, 0) + 1
            serialized.append(
                records.serialize_example(
                    utterance_id, f"spk{index % 2}", group, label, audio, text
                )
            )
        name = records.shard_name(shard, num_shards)
        records.write_shard(out_dir / name, serialized)
        # The middle shard has no per-shard group counts (optional field).
        entry = {"file": name, "count": 7}
        if shard != 1:
            entry["groups"] = shard_groups
        shards.append(entry)
    _write_manifest(out_dir, "demo", shards, counts)
    return out_dir, examples


def _collect(dataset):
    items = {}
    for inputs, labels, metadata in dataset:
        ids = [value.decode() for value in metadata["utterance_id"].numpy()]
        for row, utterance_id in enumerate(ids):
            items[utterance_id] = dict(
                audio=inputs["audio_features"][row].numpy(),
                audio_length=int(inputs["audio_length"][row]),
                text=inputs["text_features"][row].numpy(),
                text_length=int(inputs["text_length"][row]),
                label=int(labels[row]),
                group=metadata["group"][row].numpy().decode(),
                speaker=metadata["speaker"][row].numpy().decode(),
            )
    return items


def test_reads_back_exactly(corpus):
    records_dir, examples = corpus
    items = _collect(pipeline.make_dataset(records_dir, batch_size=4, include_metadata=True))
    assert sorted(items) == sorted(examples)
    for utterance_id, expected in examples.items():
        item = items[utterance_id]
        frames, tokens = expected["audio"].shape[0], expected["text"].shape[0]
        assert item["audio_length"] == frames
        assert item["text_length"] == tokens
        np.testing.assert_allclose(item["audio"][:frames], expected["audio"], atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(item["text"][:tokens], expected["text"], atol=2e-3, rtol=1e-3)
        # The padded region is zero.
        assert not item["audio"][frames:].any()
        assert not item["text"][tokens:].any()
        assert item["label"] == expected["label"]
        assert item["group"] == expected["group"]


def test_batch_structure_and_padding_to_batch_max(corpus):
    records_dir, _ = corpus
    dataset = pipeline.make_dataset(records_dir, batch_size=5)
    spec_inputs, spec_label = dataset.element_spec
    assert spec_inputs["audio_features"].shape.as_list() == [None, None, AUDIO_DIM]
    assert spec_inputs["text_features"].shape.as_list() == [None, None, TEXT_DIM]
    assert spec_label.dtype == tf.int32
    sizes = []
    for inputs, labels in dataset:
        assert inputs["audio_features"].dtype == tf.float32
        assert inputs["audio_length"].dtype == tf.int32
        assert inputs["text_length"].dtype == tf.int32
        assert inputs["audio_features"].shape[1] == int(tf.reduce_max(inputs["audio_length"]))
        assert inputs["text_features"].shape[1] == int(tf.reduce_max(inputs["text_length"]))
        sizes.append(int(labels.shape[0]))
    assert sizes == [5, 5, 5, 5, 1]
    dropped = pipeline.make_dataset(records_dir, batch_size=5, drop_remainder=True)
    assert [int(labels.shape[0]) for _, labels in dropped] == [5, 5, 5, 5]


def test_group_filtering(corpus):
    records_dir, examples = corpus
    held_out = "Session2"
    test = _collect(
        pipeline.make_dataset(records_dir, groups=[held_out], include_metadata=True)
    )
    train = _collect(
        pipeline.make_dataset(records_dir, exclude_groups=[held_out], include_metadata=True)
    )
    expected_test = {k for k, v in examples.items() if v["group"] == held_out}
    assert set(test) == expected_test
    assert set(train) == set(examples) - expected_test
    assert pipeline.count_examples(records_dir, groups=[held_out]) == len(expected_test)
    assert pipeline.count_examples(records_dir, exclude_groups=held_out) == len(train)
    assert pipeline.count_examples(records_dir) == 21
    both = _collect(
        pipeline.make_dataset(
            records_dir,
            groups=["Session1", "Session2"],
            exclude_groups=["Session1"],
            include_metadata=True,
        )
    )
    assert set(both) == expected_test


def test_shuffle_is_deterministic_with_seed(corpus):
    records_dir, _ = corpus

    def order(seed):
        dataset = pipeline.make_dataset(
            records_dir, batch_size=4, shuffle=True, seed=seed, include_metadata=True
        )
        return [
            value.decode()
            for _, _, metadata in dataset
            for value in metadata["utterance_id"].numpy()
        ]

    first = order(7)
    assert first == order(7)
    assert sorted(first) == [f"utt{i:03d}" for i in range(21)]
    assert first != sorted(first)
    assert first != order(8)


def test_repeat_and_cache(corpus):
    records_dir, _ = corpus
    dataset = pipeline.make_dataset(
        records_dir, batch_size=8, repeat=True, shuffle=True, seed=1, cache=True
    )
    seen = sum(int(labels.shape[0]) for _, labels in dataset.take(6))
    assert seen == 48  # Past one epoch of 21 without running dry.


def test_unknown_group_lists_available(corpus):
    records_dir, _ = corpus
    available = r"\['Session1', 'Session2', 'Session3'\]"
    with pytest.raises(ValueError, match=r"\['Session9'\].*" + available):
        pipeline.make_dataset(records_dir, groups=["Session9"])
    with pytest.raises(ValueError, match="Session9"):
        pipeline.count_examples(records_dir, exclude_groups=["Session9"])


def test_empty_selection_is_an_error(corpus):
    records_dir, _ = corpus
    with pytest.raises(ValueError, match="keeps no examples"):
        pipeline.make_dataset(records_dir, groups=["Session1"], exclude_groups=["Session1"])


def test_bad_arguments(corpus, tmp_path):
    records_dir, _ = corpus
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_dataset(records_dir, batch_size=0)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        pipeline.make_dataset(tmp_path)


LONG_CORPUS_SIZE = 80


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """Four shards of 20 examples with log-normal lengths (audio 1..400 frames)."""
    out_dir = tmp_path_factory.mktemp("long_records")
    rng = np.random.default_rng(1)
    shards = []
    counts = {group: dict.fromkeys(CLASS_NAMES, 0) for group in GROUPS}
    num_shards, per_shard = 4, LONG_CORPUS_SIZE // 4
    for shard in range(num_shards):
        serialized = []
        shard_groups = {}
        for row in range(per_shard):
            index = shard * per_shard + row
            group = GROUPS[index % 3]
            label = int(rng.integers(4))
            frames = int(np.clip(rng.lognormal(3.5, 1.0), 1, 400))
            tokens = int(np.clip(rng.lognormal(2.0, 0.6), 1, 60))
            counts[group][CLASS_NAMES[label]] += 1
            shard_groups[group] = shard_groups.get(group, 0) + 1
            serialized.append(
                records.serialize_example(
                    f"utt{index:03d}",
                    f"spk{index % 2}",
                    group,
                    label,
                    rng.normal(size=(frames, AUDIO_DIM)),
                    rng.normal(size=(tokens, TEXT_DIM)),
                )
            )
        name = records.shard_name(shard, num_shards)
        records.write_shard(out_dir / name, serialized)
        shards.append({"file": name, "count": per_shard, "groups": shard_groups})
    _write_manifest(out_dir, "demo-long", shards, counts)
    return out_dir


def _batches(dataset, count=None):
    """The batches of a `include_metadata=True` dataset, as numpy dicts."""
    if count is not None:
        dataset = dataset.take(count)
    batches = []
    for inputs, labels, metadata in dataset:
        batch = {key: value.numpy() for key, value in inputs.items()}
        batch["label"] = labels.numpy()
        batch["ids"] = [value.decode() for value in metadata["utterance_id"].numpy()]
        batches.append(batch)
    return batches


def _assert_same_batches(actual, expected):
    assert len(actual) == len(expected)
    for position, (got, want) in enumerate(zip(actual, expected)):
        assert got["ids"] == want["ids"], f"batch {position}"
        for key in want:
            if key != "ids":
                # Bit-equal, shapes included.
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} {position}")
                assert got[key].shape == want[key].shape


def _all_ids():
    return [f"utt{i:03d}" for i in range(LONG_CORPUS_SIZE)]


def _padded_frames(batches):
    return sum(b["audio_features"].shape[0] * b["audio_features"].shape[1] for b in batches)


def test_bucketing_yields_each_item_once_per_pass(long_corpus):
    batches = _batches(
        pipeline.make_dataset(
            long_corpus, batch_size=6, shuffle=True, seed=3, bucket_window=4,
            include_metadata=True,
        )
    )
    ids = [utterance_id for batch in batches for utterance_id in batch["ids"]]
    assert sorted(ids) == _all_ids()
    # 80 items: three windows of 24 (4 batches each), then 8 items cut 6 + 2,
    # the short batch last.
    assert [len(batch["ids"]) for batch in batches] == [6] * 13 + [2]
    dropped = pipeline.make_dataset(
        long_corpus, batch_size=6, shuffle=True, seed=3, bucket_window=4,
        drop_remainder=True,
    )
    assert [int(labels.shape[0]) for _, labels in dropped] == [6] * 13


def test_bucketing_pads_each_batch_to_its_own_longest_and_little(long_corpus):
    window = 4

    def make(bucket_window):
        return _batches(
            pipeline.make_dataset(
                long_corpus, batch_size=6, shuffle=True, seed=3,
                bucket_window=bucket_window, include_metadata=True,
            )
        )

    bucketed = make(window)
    narrower_than_window = 0
    for start in range(0, len(bucketed), window):
        in_window = bucketed[start:start + window]
        widest = max(batch["audio_length"].max() for batch in in_window)
        for batch in in_window:
            # Padded to the batch's own longest audio and transcript.
            assert batch["audio_features"].shape[1] == batch["audio_length"].max()
            assert batch["text_features"].shape[1] == batch["text_length"].max()
            narrower_than_window += int(batch["audio_features"].shape[1] < widest)
        # Sorted within the window: the batches' length ranges do not overlap.
        ranges = sorted((b["audio_length"].min(), b["audio_length"].max()) for b in in_window)
        for (_, high), (low, _) in zip(ranges, ranges[1:]):
            assert high <= low
    assert narrower_than_window >= len(bucketed) // 2

    plain = make(None)
    real_frames = sum(int(batch["audio_length"].sum()) for batch in plain)
    assert real_frames == sum(int(batch["audio_length"].sum()) for batch in bucketed)
    bucketed_padding = _padded_frames(bucketed) - real_frames
    plain_padding = _padded_frames(plain) - real_frames
    assert bucketed_padding < 0.5 * plain_padding


def test_bucketing_order_follows_the_seed(long_corpus):
    def order(seed):
        dataset = pipeline.make_dataset(
            long_corpus, batch_size=5, shuffle=True, repeat=True, seed=seed,
            bucket_window=4, include_metadata=True,
        )
        return [batch["ids"] for batch in _batches(dataset, 20)]

    first = order(11)
    assert first == order(11)
    assert first != order(12)


def test_bucket_window_off_values_match_default(long_corpus):
    def order(**kwargs):
        dataset = pipeline.make_dataset(
            long_corpus, batch_size=7, shuffle=True, seed=2, include_metadata=True, **kwargs
        )
        return [batch["ids"] for batch in _batches(dataset)]

    default = order()
    assert order(bucket_window=0) == default
    assert order(bucket_window=1) == default
    assert order(start_batch=0, num_shards=1, shard_index=0) == default


@pytest.mark.parametrize("bucket_window", [None, 4])
def test_repeat_reshuffles_each_pass(long_corpus, bucket_window):
    # 80 items in batches of 5: 16 batches a pass (and 4 windows of 20).
    dataset = pipeline.make_dataset(
        long_corpus, batch_size=5, shuffle=True, repeat=True, seed=4,
        bucket_window=bucket_window, include_metadata=True,
    )
    ids = [i for batch in _batches(dataset, 48) for i in batch["ids"]]
    passes = [ids[i:i + LONG_CORPUS_SIZE] for i in range(0, len(ids), LONG_CORPUS_SIZE)]
    for one_pass in passes:
        assert sorted(one_pass) == _all_ids()
    assert passes[0] != passes[1] != passes[2]


RESUME_CASES = {
    "fixed": dict(),
    "bucketed-filtered": dict(bucket_window=4, exclude_groups=["Session2"]),
    "bucketed-cached": dict(bucket_window=3, cache=True, groups=["Session1", "Session3"]),
    "bucketed-shard": dict(bucket_window=4, num_shards=2, shard_index=1),
    "fixed-shard": dict(num_shards=3, shard_index=2, drop_remainder=True),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_start_batch_resumes_exactly_when_repeating(long_corpus, case):
    kwargs = dict(
        batch_size=6, shuffle=True, repeat=True, seed=9, include_metadata=True,
        shuffle_buffer=32, **RESUME_CASES[case],
    )
    reference = _batches(pipeline.make_dataset(long_corpus, **kwargs), 30)
    # 0, 1, inside a window, and past a full pass (<= 80 items a pass, 6 a batch).
    for start in (0, 1, 6, 17, 24):
        resumed = _batches(pipeline.make_dataset(long_corpus, start_batch=start, **kwargs), 5)
        _assert_same_batches(resumed, reference[start:start + 5])


@pytest.mark.parametrize("bucket_window", [None, 4])
def test_start_batch_resumes_exactly_in_one_pass(long_corpus, bucket_window):
    kwargs = dict(
        batch_size=6, shuffle=True, seed=5, include_metadata=True,
        bucket_window=bucket_window, exclude_groups=["Session1"],
    )
    reference = _batches(pipeline.make_dataset(long_corpus, **kwargs))
    assert len(reference) == 9  # 53 items.
    for start in (1, 5, 8, 9, 12):
        resumed = _batches(pipeline.make_dataset(long_corpus, start_batch=start, **kwargs))
        _assert_same_batches(resumed, reference[start:])


def test_unshuffled_stream_is_fixed_without_a_seed(long_corpus):
    kwargs = dict(batch_size=6, bucket_window=4, include_metadata=True)
    reference = _batches(pipeline.make_dataset(long_corpus, **kwargs))
    _assert_same_batches(_batches(pipeline.make_dataset(long_corpus, **kwargs)), reference)
    resumed = _batches(pipeline.make_dataset(long_corpus, start_batch=5, **kwargs))
    _assert_same_batches(resumed, reference[5:])


def test_shards_are_disjoint_and_cover_a_pass(long_corpus):
    for num_shards in (2, 3):
        shards = [
            [
                utterance_id
                for batch in _batches(
                    pipeline.make_dataset(
                        long_corpus, batch_size=4, shuffle=True, seed=8,
                        bucket_window=2, num_shards=num_shards, shard_index=index,
                        include_metadata=True,
                    )
                )
                for utterance_id in batch["ids"]
            ]
            for index in range(num_shards)
        ]
        everything = [utterance_id for shard in shards for utterance_id in shard]
        assert sorted(everything) == _all_ids()  # Disjoint, and all covered.
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_bad_new_arguments(long_corpus):
    bad = [
        (dict(bucket_window=-1), "bucket_window"),
        (dict(bucket_window=2.0), "bucket_window"),
        (dict(bucket_window=True), "bucket_window"),
        (dict(start_batch=-1), "start_batch"),
        (dict(start_batch="3"), "start_batch"),
        (dict(num_shards=0), "num_shards"),
        (dict(num_shards=2, shard_index=2), "shard_index"),
        (dict(shard_index=-1), "shard_index"),
        (dict(num_shards=LONG_CORPUS_SIZE + 1, shard_index=LONG_CORPUS_SIZE), "num_shards"),
        (dict(seed="7"), "seed"),
        (dict(shuffle=True, start_batch=3), "seed"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            pipeline.make_dataset(long_corpus, **kwargs)


def test_the_stream_ignores_the_global_seed(corpus):
    """`smcn train` seeds TensorFlow globally before building its dataset."""
    records_dir, _ = corpus

    def ids():
        dataset = pipeline.make_dataset(
            records_dir, batch_size=4, shuffle=True, repeat=True, seed=3,
            bucket_window=2, include_metadata=True,
        )
        return [batch[2]["utterance_id"].numpy().tolist() for batch in dataset.take(8)]

    unseeded = ids()
    tf.random.set_seed(11)
    try:
        assert ids() == unseeded
    finally:
        tf.random.set_seed(None)


@pytest.fixture(scope="module")
def pure_corpus(tmp_path_factory):
    """Group-pure shards with sidecars, as `smcn prepare` writes them."""
    import json

    out_dir = tmp_path_factory.mktemp("pure_records")
    rng = np.random.default_rng(1)
    shards = []
    counts = {group: dict.fromkeys(CLASS_NAMES, 0) for group in GROUPS}
    for position, group in enumerate(GROUPS):
        serialized, ids = [], []
        for row in range(20):
            utterance_id = f"{group}_utt{row:03d}"
            label = int(rng.integers(4))
            counts[group][CLASS_NAMES[label]] += 1
            ids.append(utterance_id)
            serialized.append(
                records.serialize_example(
                    utterance_id, "spk", group, label,
                    rng.normal(size=(int(rng.integers(1, 9)), AUDIO_DIM)),
                    rng.normal(size=(3, TEXT_DIM)),
                )
            )
        name = records.shard_name(position, len(GROUPS))
        records.write_shard(out_dir / name, serialized)
        (out_dir / (name + ".json")).write_text(json.dumps({"utterance_ids": ids}))
        shards.append({"file": name, "count": 20, "groups": {group: 20}})
    _write_manifest(out_dir, "demo", shards, counts)
    return out_dir


def _ids(dataset):
    return [
        value.decode()
        for _, _, metadata in dataset
        for value in metadata["utterance_id"].numpy()
    ]


def test_holdout_fraction_splits_the_selected_groups_disjointly(pure_corpus):
    train_groups = ["Session1", "Session2"]
    expected, total = pipeline.held_out_ids(pure_corpus, train_groups, 0.25, seed=3)
    assert total == 40
    assert 0 < len(expected) < 40
    assert all(name.split("_")[0] in train_groups for name in expected)
    common = dict(groups=train_groups, include_metadata=True, batch_size=7)
    held = _ids(
        pipeline.make_dataset(
            pure_corpus, holdout_fraction=0.25, holdout_seed=3, holdout="only", **common
        )
    )
    rest = _ids(
        pipeline.make_dataset(pure_corpus, holdout_fraction=0.25, holdout_seed=3, **common)
    )
    assert sorted(held) == expected
    assert not set(held) & set(rest)
    assert sorted(held + rest) == sorted(_ids(pipeline.make_dataset(pure_corpus, **common)))
    # Another seed holds out other items.
    other, _ = pipeline.held_out_ids(pure_corpus, train_groups, 0.25, seed=4)
    assert other != expected


def test_holdout_training_stream_resumes_exactly(pure_corpus):
    common = dict(
        groups=["Session1", "Session2"], batch_size=4, shuffle=True, repeat=True, seed=5,
        bucket_window=3, include_metadata=True, holdout_fraction=0.3, holdout_seed=5,
    )
    stream = [batch[2]["utterance_id"].numpy().tolist()
              for batch in pipeline.make_dataset(**common, records_dir=pure_corpus).take(12)]
    resumed = [batch[2]["utterance_id"].numpy().tolist()
               for batch in pipeline.make_dataset(
                   **common, records_dir=pure_corpus, start_batch=7).take(5)]
    assert resumed == stream[7:12]
    held, _ = pipeline.held_out_ids(pure_corpus, ["Session1", "Session2"], 0.3, 5)
    assert not {name.decode() for batch in stream for name in batch} & set(held)


def test_holdout_rejects_mixed_shards_and_bad_fractions(corpus, pure_corpus):
    out_dir, _ = corpus
    with pytest.raises(ValueError, match="group-pure"):
        pipeline.make_dataset(out_dir, groups=["Session1"], holdout_fraction=0.2)
    with pytest.raises(ValueError, match="holdout_fraction"):
        pipeline.make_dataset(pure_corpus, holdout_fraction=1.5)
    with pytest.raises(ValueError, match="holdout must be"):
        pipeline.make_dataset(pure_corpus, holdout_fraction=0.5, holdout="keep")


def test_a_manifest_passed_down_is_not_read_again(pure_corpus, monkeypatch):
    manifest = records.read_manifest(pure_corpus)
    expected, _ = pipeline.held_out_ids(pure_corpus, ["Session1"], 0.25, seed=3)

    def no_read(records_dir):
        raise AssertionError(f"read {records_dir} again")

    monkeypatch.setattr(records, "read_manifest", no_read)
    assert pipeline.count_examples(pure_corpus, groups=["Session1"], manifest=manifest) == 20
    held = _ids(
        pipeline.make_dataset(
            pure_corpus, groups=["Session1"], include_metadata=True, holdout="only",
            holdout_fraction=0.25, holdout_seed=3, manifest=manifest,
        )
    )
    assert sorted(held) == expected


# --------------------------------------------------------------------------
# Speed-perturbed copies (`augmented=True`).
# --------------------------------------------------------------------------

SPEEDS = [0.9, 1.1]


def _write_group_pure(out_dir, items, extra):
    """One shard per group of `items` (`(id, group, label, frames, augmentation)`),
    with sidecars and a manifest with `extra`, as `smcn prepare` writes them."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    counts = {}
    for position, group in enumerate(GROUPS):
        members = sorted((item for item in items if item[1] == group), key=lambda i: i[0])
        serialized = [
            records.serialize_example(
                name, "spk", group, label, np.full((frames, AUDIO_DIM), frames / 10.0),
                np.ones((3, TEXT_DIM)), augmentation=augmentation,
            )
            for name, group, label, frames, augmentation in members
        ]
        name = records.shard_name(position, len(GROUPS))
        records.write_shard(out_dir / name, serialized)
        (out_dir / (name + ".json")).write_text(
            json.dumps({"utterance_ids": [member[0] for member in members]})
        )
        shards.append({"file": name, "count": len(members), "groups": {group: len(members)}})
        counts[group] = dict.fromkeys(CLASS_NAMES, 0)
        for member in members:
            counts[group][CLASS_NAMES[member[2]]] += 1
    values = {
        "format_version": 1, "corpus": "demo", "class_names": CLASS_NAMES,
        "audio_dim": AUDIO_DIM, "text_dim": TEXT_DIM, "text_encoder": "fake", "pooling": 5,
        "max_frames": 500, "max_tokens": 150, "shards": shards,
        "num_examples": len(items), "groups": GROUPS, "counts": counts, **extra,
    }
    records.write_manifest(out_dir, values)


@pytest.fixture(scope="module")
def augmented_corpus(tmp_path_factory):
    """12 originals per group, and their 0.9 and 1.1 copies in `augmented/`."""
    out_dir = tmp_path_factory.mktemp("augmented_records")
    rng = np.random.default_rng(2)
    originals = [
        (f"{group}_utt{row:03d}", group, int(rng.integers(4)), int(rng.integers(2, 20)), None)
        for group in GROUPS
        for row in range(12)
    ]
    copies = [
        (records.speed_copy_id(name, factor), group, label, frames + 1, f"speed={factor}")
        for factor in SPEEDS
        for name, group, label, frames, _ in originals
    ]
    summary = {"dir": "augmented", "speed": SPEEDS, "num_examples": len(copies)}
    _write_group_pure(out_dir, originals, {"augmentation": summary})
    _write_group_pure(out_dir / "augmented", copies, {"augmentation": {"speed": SPEEDS}})
    return out_dir


def _originals_and_copies(groups):
    names = [f"{group}_utt{row:03d}" for group in groups for row in range(12)]
    return sorted(names + [f"{name}@speed{factor}" for name in names for factor in SPEEDS])


def test_augmented_stream_adds_the_copies_of_the_selected_groups(augmented_corpus):
    common = dict(include_metadata=True, batch_size=5)
    for selection, groups in (
        (dict(groups=["Session1", "Session3"]), ["Session1", "Session3"]),
        (dict(exclude_groups=["Session1"]), ["Session2", "Session3"]),
        (dict(), GROUPS),
    ):
        dataset = pipeline.make_dataset(augmented_corpus, augmented=True, **selection, **common)
        ids = _ids(dataset)
        assert sorted(ids) == _originals_and_copies(groups)
        count = pipeline.count_examples(augmented_corpus, augmented=True, **selection)
        assert count == len(ids) == 36 * len(groups)
        assert int(dataset.cardinality()) == -(-count // 5)
        # By default: the originals alone, never a copy.
        plain = _ids(pipeline.make_dataset(augmented_corpus, **selection, **common))
        assert sorted(plain) == [name for name in _originals_and_copies(groups) if "@" not in name]
        assert pipeline.count_examples(augmented_corpus, **selection) == len(plain)


def test_augmented_holdout_follows_the_originals(augmented_corpus):
    groups = ["Session1", "Session2"]
    held, _ = pipeline.held_out_ids(augmented_corpus, groups, 0.3, seed=4)
    assert 0 < len(held) < 24
    common = dict(groups=groups, include_metadata=True, batch_size=7, augmented=True,
                  holdout_fraction=0.3, holdout_seed=4)
    training = _ids(pipeline.make_dataset(augmented_corpus, **common))
    assert sorted(training) == [
        name for name in _originals_and_copies(groups) if name.split("@")[0] not in held
    ]
    validation = _ids(pipeline.make_dataset(augmented_corpus, holdout="only", **common))
    assert sorted(validation) == held  # no copies on the held-out side


@pytest.mark.parametrize("case", ["bucketed", "holdout-shard"])
def test_augmented_stream_resumes_exactly(augmented_corpus, case):
    extra = {
        "bucketed": dict(bucket_window=3, exclude_groups=["Session2"]),
        "holdout-shard": dict(holdout_fraction=0.25, holdout_seed=1, num_shards=2,
                              shard_index=1, groups=["Session1", "Session3"]),
    }[case]
    kwargs = dict(batch_size=6, shuffle=True, repeat=True, seed=3, include_metadata=True,
                  shuffle_buffer=20, augmented=True, **extra)
    reference = _batches(pipeline.make_dataset(augmented_corpus, **kwargs), 30)
    assert any("@" in name for batch in reference for name in batch["ids"])
    for start in (1, 7, 19):
        resumed = _batches(
            pipeline.make_dataset(augmented_corpus, start_batch=start, **kwargs), 4
        )
        _assert_same_batches(resumed, reference[start:start + 4])


def test_augmented_needs_copies_prepared_with_these_records(augmented_corpus, pure_corpus,
                                                             tmp_path):
    with pytest.raises(ValueError, match="features.speed_perturbation"):
        pipeline.make_dataset(pure_corpus, augmented=True)
    with pytest.raises(ValueError, match="features.speed_perturbation"):
        pipeline.count_examples(pure_corpus, augmented=True)
    # An `augmented/` the records' manifest does not list (left by an earlier run).
    import shutil

    stale = tmp_path / "stale"
    shutil.copytree(augmented_corpus, stale)
    values = records.read_manifest(stale).to_json()
    del values["augmentation"]
    records.write_manifest(stale, values)
    with pytest.raises(ValueError, match="no augmented copies"):
        pipeline.make_dataset(stale, augmented=True)
    # Copies of other factors than the records list.
    values["augmentation"] = {"dir": "augmented", "speed": [0.8]}
    records.write_manifest(stale, values)
    with pytest.raises(ValueError, match="differs in \\['augmentation'\\]"):
        pipeline.make_dataset(stale, augmented=True)


# --------------------------------------------------------------------------
# The stages of `make_dataset`, each on its own.
# --------------------------------------------------------------------------


def test_stream_options_check_and_normalize_the_arguments():
    options = pipeline._StreamOptions(bucket_window=None, start_batch=np.int64(3), seed=1)
    assert options.bucket_window == 0 and not options.bucketing
    assert type(options.start_batch) is int and options.start_batch == 3
    assert not pipeline._StreamOptions(bucket_window=1).bucketing
    assert pipeline._StreamOptions(bucket_window=2).bucketing
    with pytest.raises(ValueError, match="shard_index"):
        pipeline._StreamOptions(num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match="needs a seed"):
        pipeline._StreamOptions(shuffle=True, start_batch=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 2


def test_stream_seed_is_drawn_only_for_unseeded_shuffles():
    assert pipeline._stream_seed(None, shuffle=False) == 0
    assert pipeline._stream_seed(7, shuffle=True) == 7
    assert pipeline._stream_seed(pipeline._MAX_SEED + 7, shuffle=True) == 7
    # Unseeded shuffles draw from Python's `random` (seeded by Keras).
    random.seed(5)
    first = pipeline._stream_seed(None, shuffle=True)
    random.seed(5)
    assert pipeline._stream_seed(None, shuffle=True) == first
    assert 0 <= first < pipeline._MAX_SEED


def test_select_records_reads_only_the_shards_of_the_kept_groups(pure_corpus):
    manifest = records.read_manifest(pure_corpus)
    directory = str(pure_corpus)
    selection = pipeline._select_records(directory, manifest, groups=["Session2"])
    assert selection.files == (os.path.join(directory, records.shard_name(1, 3)),)
    assert selection.kept == ("Session2",)
    assert selection.filter_groups and selection.held_out is None
    assert selection.num_examples == 20
    everything = pipeline._select_records(directory, manifest)
    assert len(everything.files) == 3 and not everything.filter_groups
    assert everything.num_examples == 60


def test_select_records_keeps_shards_that_may_hold_a_kept_group(corpus):
    # The middle shard does not list its groups: it is read, and filtered.
    records_dir, _ = corpus
    manifest = records.read_manifest(records_dir)
    selection = pipeline._select_records(str(records_dir), manifest, exclude_groups="Session1")
    assert [os.path.basename(path) for path in selection.files] == [
        records.shard_name(index, 3) for index in range(3)
    ]
    assert selection.filter_groups and selection.kept == ("Session2", "Session3")


def test_select_records_adds_the_copies_and_holds_them_out_with_their_originals(
        augmented_corpus):
    manifest = records.read_manifest(augmented_corpus)
    directory = str(augmented_corpus)
    groups = ["Session1", "Session3"]
    copies_dir = pipeline.augmented_dir(directory)
    selection = pipeline._select_records(directory, manifest, groups=groups, augmented=True)
    assert selection.files == tuple(
        os.path.join(root, records.shard_name(index, 3))
        for root in (directory, copies_dir)
        for index in (0, 2)
    )
    assert selection.num_examples == 12 * 2 * (1 + len(SPEEDS))

    held, _ = pipeline.held_out_ids(augmented_corpus, groups, 0.3, seed=4)
    holdout = dict(groups=groups, holdout_fraction=0.3, holdout_seed=4, augmented=True)
    training = pipeline._select_records(directory, manifest, **holdout)
    assert sorted(training.held_out) == sorted(
        held + [records.speed_copy_id(name, factor) for name in held for factor in SPEEDS]
    )
    assert not training.keep_held_out
    assert training.num_examples == (24 - len(held)) * (1 + len(SPEEDS))
    # The validation side streams the held-out originals alone, no copies.
    validation = pipeline._select_records(directory, manifest, holdout="only", **holdout)
    assert validation.keep_held_out
    assert all(not path.startswith(copies_dir) for path in validation.files)
    assert validation.num_examples == len(held)


def test_items_per_pass_splits_the_items_among_workers():
    assert [pipeline._items_per_pass(80, 3, index) for index in range(3)] == [27, 27, 26]
    assert pipeline._items_per_pass(80, 1, 0) == 80
    with pytest.raises(ValueError, match="leaves shard 5 no examples"):
        pipeline._items_per_pass(5, 6, 5)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # Fixed-size batches: whole batches are skipped as records.
        (dict(start_batch=17), (0, 17 * 6, 17, 0)),
        (dict(start_batch=17, repeat=True), (1, 17 * 6 - 80, 17, 0)),
        # Buckets: whole windows as records, the rest as batches after it.
        (dict(start_batch=17, bucket_window=4), (0, 4 * 24, 4, 1)),
        (dict(start_batch=17, bucket_window=4, repeat=True), (1, 4 * 24 - 80, 4, 1)),
        (dict(start_batch=3, bucket_window=4, repeat=True), (0, 0, 0, 3)),
        (dict(start_batch=0, bucket_window=4, repeat=True), (0, 0, 0, 0)),
    ],
)
def test_resume_point(kwargs, expected):
    options = pipeline._StreamOptions(batch_size=6, seed=1, **kwargs)
    resume = pipeline._resume_point(options, items_per_pass=80)
    assert (resume.first_pass, resume.items_to_skip, resume.first_window,
            resume.batches_to_skip) == expected


def _stream_ids(dataset, count):
    feature = {"utterance_id": tf.io.FixedLenFeature([], tf.string)}
    return [
        tf.io.parse_single_example(serialized, feature)["utterance_id"].numpy().decode()
        for serialized in dataset.take(count)
    ]


@pytest.mark.parametrize("start_batch", [3, 14, 30])
def test_record_stream_skips_to_the_resume_point(long_corpus, start_batch):
    manifest = records.read_manifest(long_corpus)
    selection = pipeline._select_records(str(long_corpus), manifest, exclude_groups="Session2")
    common = dict(batch_size=5, shuffle=True, repeat=True, seed=2, shuffle_buffer=16)
    options = pipeline._StreamOptions(**common)
    resumed_options = pipeline._StreamOptions(start_batch=start_batch, **common)
    items_per_pass = selection.num_examples
    resume = pipeline._resume_point(resumed_options, items_per_pass)
    full = _stream_ids(
        pipeline._record_stream(
            selection, options, pipeline._resume_point(options, items_per_pass)
        ),
        200,
    )
    skipped = _stream_ids(pipeline._record_stream(selection, resumed_options, resume), 20)
    # Passes skipped whole, then records inside the pass: batch `start_batch` on.
    assert skipped == full[start_batch * 5:start_batch * 5 + 20]
    # Each pass holds each kept item once, in its own order.
    assert sorted(full[:items_per_pass]) == sorted(full[items_per_pass:2 * items_per_pass])
    assert full[:items_per_pass] != full[items_per_pass:2 * items_per_pass]


def test_shuffle_records_mixes_within_blocks_by_seed():
    dataset = tf.data.Dataset.range(20)

    def order(seed, pass_index):
        shuffled = pipeline._shuffle_records(
            dataset, pipeline._pass_seed(seed, pass_index), block_size=8
        )
        return [int(value) for value in shuffled]

    first = order(3, 0)
    assert first == order(3, 0)
    # Blocks of 8 consecutive records (the last one short) stay apart.
    assert [sorted(first[start:start + 8]) for start in (0, 8, 16)] == [
        list(range(0, 8)), list(range(8, 16)), list(range(16, 20))
    ]
    assert first != list(range(20))
    assert order(3, 1) != first and order(4, 0) != first


def _serialized_with_lengths(frames, tokens):
    return [
        records.serialize_example(
            f"utt{index:03d}", "spk", "Session1", 0,
            np.zeros((audio, AUDIO_DIM)), np.zeros((text, TEXT_DIM)),
        )
        for index, (audio, text) in enumerate(zip(frames, tokens))
    ]


def test_order_window_cuts_batches_of_similar_length_the_short_one_last():
    frames = [9, 3, 7, 3, 1, 12, 5, 8, 2, 10, 3]
    tokens = [1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    serialized = tf.constant(_serialized_with_lengths(frames, tokens))
    window = (serialized, tf.constant(frames, tf.int64), tf.constant(tokens, tf.int64))
    orders = []
    for window_index in range(4):
        ordered = pipeline._order_window(
            tf.constant(window_index, tf.int64), window, batch_size=3, seed=5
        )
        ids = [
            _stream_ids(tf.data.Dataset.from_tensors(item), 1)[0] for item in ordered
        ]
        batches = [ids[start:start + 3] for start in (0, 3, 6)]
        # Each full batch is a run of the window sorted by audio length, then
        # transcript length, then stream order (utt003 before utt010).
        assert sorted(batches) == [
            ["utt002", "utt007", "utt000"],
            ["utt004", "utt008", "utt003"],
            ["utt010", "utt001", "utt006"],
        ]
        # The short batch holds the longest items, and stays last.
        assert ids[9:] == ["utt009", "utt005"]
        orders.append(batches)
    # The full batches' order is shuffled per window.
    assert len({str(batches) for batches in orders}) > 1


def test_bucket_by_length_never_mixes_windows():
    frames = list(range(30, 0, -1)) + [50, 40]
    serialized = _serialized_with_lengths(frames, [1] * len(frames))
    dataset = pipeline._bucket_by_length(
        tf.data.Dataset.from_tensor_slices(serialized), batch_size=4, bucket_window=2, seed=1
    )
    ids = _stream_ids(dataset, 100)
    assert len(ids) == len(frames)
    # Windows of 2 * 4 records: each window's records are reordered within it.
    for start in range(0, len(frames), 8):
        window = {f"utt{index:03d}" for index in range(start, min(start + 8, len(frames)))}
        assert set(ids[start:start + 8]) == window
    lengths = [frames[int(name[3:])] for name in ids]
    for start in range(0, len(frames), 4):
        assert lengths[start:start + 4] == sorted(lengths[start:start + 4])


def test_parse_and_batch_examples():
    serialized = _serialized_with_lengths([4, 2, 6], [3, 1, 2])
    parsed = pipeline._parse_examples(
        tf.data.Dataset.from_tensor_slices(serialized), AUDIO_DIM, TEXT_DIM,
        include_metadata=True,
    )
    inputs, label, metadata = next(iter(parsed))
    assert inputs["audio_features"].shape == (4, AUDIO_DIM) and int(inputs["text_length"]) == 3
    assert int(label) == 0 and metadata["utterance_id"].numpy() == b"utt000"
    options = pipeline._StreamOptions(batch_size=2)
    batches = list(pipeline._batch_examples(parsed, options, items_per_pass=3))
    assert [batch[0]["audio_features"].shape[:2] for batch in batches] == [(2, 4), (1, 6)]
    dropped = pipeline._batch_examples(
        parsed, pipeline._StreamOptions(batch_size=2, drop_remainder=True), 3
    )
    assert int(dropped.cardinality()) == 1
    skipped = pipeline._batch_examples(
        parsed, pipeline._StreamOptions(batch_size=2, start_batch=1), 3, batches_to_skip=1
    )
    assert [batch[2]["utterance_id"].numpy().tolist() for batch in skipped] == [[b"utt002"]]


def test_num_batches():
    assert pipeline._num_batches(53, 6, drop_remainder=False) == 9
    assert pipeline._num_batches(53, 6, drop_remainder=True) == 8
    assert pipeline._num_batches(54, 6, drop_remainder=False) == 9


def test_a_manifest_passed_down_is_used_with_the_file_broken(augmented_corpus, tmp_path):
    """`train.py` reads manifest.json once: a `manifest=` call never reads it."""
    import shutil

    copy = tmp_path / "records"
    shutil.copytree(augmented_corpus, copy)
    manifest = records.read_manifest(copy)
    groups = ["Session1", "Session2"]
    kwargs = dict(groups=groups, include_metadata=True, batch_size=7, augmented=True,
                  holdout_fraction=0.3, holdout_seed=4, shuffle=True, seed=2,
                  bucket_window=2)
    expected_ids = _ids(pipeline.make_dataset(copy, **kwargs))
    expected_held = pipeline.held_out_ids(copy, groups, 0.3, seed=4)
    expected_count = pipeline.count_examples(copy, groups=groups, augmented=True)
    (copy / records.MANIFEST_FILENAME).write_text("{ not json")
    with pytest.raises(ValueError):
        pipeline.count_examples(copy)  # the file is broken indeed
    assert _ids(pipeline.make_dataset(copy, manifest=manifest, **kwargs)) == expected_ids
    assert pipeline.held_out_ids(copy, groups, 0.3, seed=4, manifest=manifest) == expected_held
    assert pipeline.count_examples(
        copy, groups=groups, augmented=True, manifest=manifest
    ) == expected_count
    (copy / records.MANIFEST_FILENAME).unlink()
    validation = pipeline.make_dataset(
        copy, groups=groups, holdout="only", holdout_fraction=0.3, holdout_seed=4,
        include_metadata=True, manifest=manifest,
    )
    assert sorted(_ids(validation)) == expected_held[0]
