"""Tests for the tf.data pipeline over prepared shards."""

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
