"""Attention figures: which utterances, which attentions, read back from the event files."""

import numpy as np
import pytest

from smcn_tf.training import board_testing as bt
from smcn_tf.training.attention_views import (
    attention_examples,
    attention_probe,
    gather_examples,
    log_attention,
    select_attention_examples,
)
from smcn_tf.training.board_testing import AUDIO_DIM, CLASSES, TEXT_DIM
from smcn_tf.model.smcn import build_smcn


@pytest.fixture(scope="module")
def model():
    return bt.tiny_model(seed=0)


def test_attention_examples_are_deterministic_and_every_attention_is_drawn(model, tmp_path):
    inputs, labels, ids = bt.random_items(12)
    order = np.random.default_rng(1).permutation(12)
    chosen = select_attention_examples([i.decode() for i in ids], labels, per_class=2)
    shuffled = select_attention_examples([ids[i].decode() for i in order], labels[order], 2)
    assert chosen == shuffled == [
        "utt000", "utt004", "utt001", "utt005", "utt002", "utt006", "utt003", "utt007"
    ]

    batch, batch_labels, batch_ids = gather_examples(bt.dataset(), ["utt006", "utt001"])
    assert batch_ids == ["utt006", "utt001"] and batch_labels.tolist() == [2, 1]
    for row, index in enumerate((6, 1)):
        frames = inputs["audio_length"][index]
        assert batch["audio_length"][row] == frames
        np.testing.assert_array_equal(
            batch["audio_features"][row, :frames], inputs["audio_features"][index, :frames]
        )

    probe = attention_probe(model)
    weights = probe(batch)
    assert sorted(key for key in weights if "/" in key) == sorted(
        f"{m}/{k}" for m in ("audio", "text") for k in ("intra", "calibration", "interaction")
    )
    np.testing.assert_allclose(
        np.asarray(weights["audio/interaction"]), np.asarray(model(batch)["audio_attention"])
    )
    for key in ("audio/intra", "text/calibration"):
        lengths = batch[f"{key.split('/')[0]}_length"]
        values = np.asarray(weights[key])
        np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-5)
        assert all(not values[row, length:].any() for row, length in enumerate(lengths))

    tokens = ["[CLS]"] + [f"w{i}" for i in range(int(batch["text_length"][0]) - 2)] + ["[SEP]"]
    log_dir = str(tmp_path / "held_out")
    tags = log_attention(
        log_dir, model, batch, batch_ids, [tokens, None], step=3,
        labels=batch_labels, class_names=CLASSES,
    )
    assert tags == ["attention/utt006", "attention/utt001"]
    accumulator = bt.accumulator(log_dir)
    assert sorted(accumulator.Tags()["tensors"]) == sorted(tags)
    for tag in tags:
        (height, width), recorded = bt.image(accumulator, tag)
        assert (height, width) == recorded
        # Two columns (audio, text), four rows (spectrogram + three attentions).
        assert width == 1400 and height >= 100 + 4 * 200

    examples = attention_examples(model, batch, batch_ids, [tokens, None], batch_labels, CLASSES)
    assert examples[0]["tokens"] == tokens and examples[0]["tokens_note"] is None
    assert examples[1]["tokens"] == [str(i) for i in range(int(batch["text_length"][1]))]
    assert "token positions" in examples[1]["tokens_note"]
    assert examples[0]["spectrogram"].shape == (int(batch["audio_length"][0]), 4)
    assert examples[0]["subtitle"].startswith("true: neutral   predicted: ")


def test_attention_of_a_variant_without_calibration(tmp_path):
    cat = build_smcn("cat", num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                     hidden_units=4, head_units=4)
    batch, _, ids = gather_examples(bt.dataset(), ["utt000"])
    assert sorted(k for k in attention_probe(cat).output if "/" in k) == [
        "audio/intra", "text/intra"
    ]
    tags = log_attention(str(tmp_path), cat, batch, ids, None, step=0)
    (height, width), _ = bt.image(bt.accumulator(str(tmp_path)), tags[0])
    assert width == 1400 and 100 + 2 * 200 <= height < 100 + 3 * 200
