"""Tests for the tf.data pipeline over prepared shards."""

import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.data import pipeline, records

CLASS_NAMES = ["angry", "happy", "neutral", "sad"]
AUDIO_DIM = 6
TEXT_DIM = 4
GROUPS = ["Session1", "Session2", "Session3"]


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
    records.write_manifest(
        out_dir,
        {
            "format_version": 1,
            "corpus": "demo",
            "class_names": CLASS_NAMES,
            "audio_dim": AUDIO_DIM,
            "text_dim": TEXT_DIM,
            "text_encoder": "fake",
            "pooling": 5,
            "max_frames": 500,
            "max_tokens": 150,
            "shards": shards,
            "num_examples": 21,
            "groups": GROUPS,
            "counts": counts,
        },
    )
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
