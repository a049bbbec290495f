"""One pass over the held-out group serves every view, with the model's own numbers."""

import os

import numpy as np
import pytest
import tensorflow as tf

from smcn_tf import evaluate
from smcn_tf.training import board_testing as bt
from smcn_tf.training.attention_views import (
    attention_examples,
    gather_examples,
    select_attention_examples,
)
from smcn_tf.training.board_testing import CLASSES
from smcn_tf.training.held_out import log_held_out_views, predict_held_out
from smcn_tf.training.model_outputs import predictor, run_model
from smcn_tf.training.summaries import EMBEDDING_OUTPUTS
from smcn_tf.training.embeddings import log_embeddings


@pytest.mark.parametrize("variant", ["smcn", "cat"])
def test_one_pass_gives_the_model_s_predictions_embeddings_and_attention(variant):
    model = bt.tiny_model(variant, seed=0)
    dataset = bt.dataset(count=14, batch_size=4)
    held_out = predict_held_out(model, dataset)

    # results.json's numbers: those of evaluate.predict_dataset, bit for bit.
    expected = evaluate.predict_dataset(model, dataset)
    got = held_out.as_dict()
    np.testing.assert_array_equal(got["probabilities"], expected["probabilities"])
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    np.testing.assert_array_equal(got["predictions"], expected["predictions"])
    assert got["utterance_ids"] == expected["utterance_ids"]
    assert got["labels"].dtype == np.int64

    # The projector's features: those the model outputs.
    keys = sorted(set(model.output) & set(EMBEDDING_OUTPUTS))
    assert sorted(held_out.embeddings) == keys
    outputs = run_model(predictor(model, keys), dataset)
    for key in keys:
        np.testing.assert_allclose(held_out.embeddings[key], outputs[key], rtol=1e-6, atol=1e-7)

    # The attention figures: the same utterances and weights as drawing them
    # from a second pass would give.
    chosen = select_attention_examples(expected["utterance_ids"], expected["labels"])
    assert held_out.attention_ids == chosen
    inputs, labels, ids = gather_examples(dataset, chosen)
    tokens = [None] * len(ids)
    wanted = attention_examples(model, inputs, ids, tokens, labels, CLASSES)
    for example, reference in zip(held_out.attention_examples(tokens, CLASSES), wanted):
        assert example["utterance_id"] == reference["utterance_id"]
        assert example["subtitle"] == reference["subtitle"]
        assert example["tokens"] == reference["tokens"]
        np.testing.assert_array_equal(example["spectrogram"], reference["spectrogram"])
        for side in ("audio_attention", "text_attention"):
            assert list(example[side]) == list(reference[side])
            for kind in example[side]:
                np.testing.assert_allclose(
                    example[side][kind], reference[side][kind], rtol=1e-5, atol=1e-7
                )


def test_attention_choice_keeps_the_first_ids_of_each_class_whatever_the_order():
    model = bt.tiny_model(seed=0)
    forward = predict_held_out(model, bt.dataset(count=12, batch_size=5), per_class=2)
    inputs, labels, ids = bt.random_items(12)
    order = np.random.default_rng(1).permutation(12)
    shuffled = tf.data.Dataset.from_tensor_slices((
        {key: value[order] for key, value in inputs.items()},
        labels[order],
        {"utterance_id": ids[order]},
    )).batch(5)
    backward = predict_held_out(model, shuffled, per_class=2)
    assert forward.attention_ids == backward.attention_ids == [
        "utt000", "utt004", "utt001", "utt005", "utt002", "utt006", "utt003", "utt007"
    ]
    assert [item["label"] for item in backward.attention] == [0, 0, 1, 1, 2, 2, 3, 3]
    # training.attention_examples_per_class=0: no figures, the same predictions.
    none = predict_held_out(model, bt.dataset(count=12, batch_size=5), per_class=0)
    assert none.attention_ids == [] and none.attention == []
    np.testing.assert_array_equal(none.probabilities, forward.probabilities)
    with pytest.raises(ValueError, match="empty"):
        predict_held_out(model, bt.dataset(count=4).take(0))


def test_held_out_views_from_the_one_pass(tmp_path):
    model = bt.tiny_model(seed=0)
    dataset = bt.dataset(count=10, batch_size=4)
    held_out = predict_held_out(model, dataset)
    scores = evaluate.fold_scores(held_out.as_dict(), CLASSES)
    board_dir = str(tmp_path / "board")
    log_held_out_views(board_dir, held_out, scores, CLASSES, step=4)

    accumulator = bt.accumulator(os.path.join(board_dir, "held_out"))
    tags = set(accumulator.Tags()["tensors"])
    assert {"evaluation/confusion_matrix", "evaluation/classification_report"} <= tags
    assert sorted(tag for tag in tags if tag.startswith("attention/")) == sorted(
        f"attention/{utterance_id}" for utterance_id in held_out.attention_ids
    )
    report = bt.text(accumulator, "evaluation/classification_report")
    assert f"{scores['num_examples']} utterances" in report
    # The projector holds what a pass of its own would write.
    log_embeddings(str(tmp_path / "own"), model, dataset, CLASSES)
    for name in ("metadata.tsv", "projector_config.pbtxt"):
        with open(os.path.join(board_dir, "projector", name)) as one, \
                open(os.path.join(str(tmp_path / "own"), name)) as other:
            assert one.read() == other.read()
