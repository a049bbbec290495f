"""The input rules alone: `clean_graph_error` and `InputRules` through smcn.json.

The rules at work, in a served graph and behind the local server, are tested
in `smcn_tf/serving/validation_test.py` and `smcn_tf/export/input_checks_test.py`.
"""

import numpy as np
import pytest

from smcn_tf.contract.errors import ServingError
from smcn_tf.contract.input_checks import InputRules, clean_graph_error


def test_clean_graph_error_keeps_the_message_and_drops_graph_text():
    raw = (
        "Graph execution error:\n\nDetected at node Assert_3/Assert defined at (most recent "
        "call last):\n<stack traces unavailable>\nassertion failed: [inputs input_ids and "
        "attention_mask have different shapes:] [2 8] [and] [2 7]\n\t [[{{node "
        "Assert_3/Assert}}]] [Op:__inference_signature_wrapper_116]"
    )
    assert clean_graph_error(raw) == (
        "inputs input_ids and attention_mask have different shapes: [2, 8] and [2, 7]"
    )
    gather = (
        "Graph execution error:\n\nDetected at node GatherV2 defined at (most recent call "
        "last):\n<stack traces unavailable>\nindices[1,3] = 30522 is not in [0, 30522)\n\t "
        "[[{{node GatherV2}}]] [Op:__inference_signature_wrapper_9]"
    )
    assert clean_graph_error(gather) == "indices[1,3] = 30522 is not in [0, 30522)"


def test_rules_round_trip_through_smcn_json():
    rules = InputRules(variant="cat", unimodal_heads=(), vocab_size=30522, cls_token_id=101,
                       separator_token_id=102, min_audio_samples=1600)
    again = InputRules.from_description({"input_checks": rules.to_json()})
    assert again.to_json() == rules.to_json()
    assert again.to_json()["min_audio_seconds"] == 0.1
    with pytest.raises(ServingError, match="row 0 has no text .text_length 0. but variant cat needs both audio and text"):
        again.check("features", {
            "audio_features": np.zeros([1, 2, 3], "float32"),
            "audio_length": np.array([2], "int32"),
            "text_features": np.zeros([1, 2, 3], "float32"),
            "text_length": np.array([0], "int32"),
        })
    assert InputRules.from_description({}) is None


@pytest.mark.parametrize("signature, inputs", [
    ("serving_default", {
        "waveform": np.zeros([0, 16000], "float32"),
        "waveform_length": np.zeros([0], "int32"),
        "input_ids": np.zeros([0, 8], "int32"),
        "attention_mask": np.zeros([0, 8], "int32"),
    }),
    ("features", {
        "audio_features": np.zeros([0, 2, 3], "float32"),
        "audio_length": np.zeros([0], "int32"),
        "text_features": np.zeros([0, 2, 3], "float32"),
        "text_length": np.zeros([0], "int32"),
    }),
])
def test_an_empty_batch_is_refused_by_name(signature, inputs):
    """A 0-row batch used to fail inside the finite check (cannot reshape array of size 0)."""
    rules = InputRules(vocab_size=100, cls_token_id=2, separator_token_id=3)
    with pytest.raises(ServingError, match="^INVALID_ARGUMENT: empty batch: send at least one row$"):
        rules.check(signature, inputs)


def test_a_waveform_longer_than_the_model_can_use_is_refused_naming_the_limit():
    rules = InputRules(vocab_size=100, cls_token_id=2, separator_token_id=3,
                       max_waveform_samples=16000)
    inputs = {
        "waveform": np.zeros([1, 16001], "float32"),
        "waveform_length": np.array([16001], "int32"),
        "input_ids": np.array([[2, 10, 3]], "int32"),
        "attention_mask": np.ones([1, 3], "int32"),
    }
    with pytest.raises(ServingError, match=(
        r"input waveform: rows of 16001 samples are longer than this model can use: "
        r"at most 16000 samples \(1 s\) per row"
    )):
        rules.check("serving_default", inputs)
    inputs["waveform"] = inputs["waveform"][:, :16000]
    inputs["waveform_length"] = np.array([16000], "int32")
    rules.check("serving_default", inputs)  # at the limit: accepted
    again = InputRules.from_description({"input_checks": rules.to_json()})
    assert again.max_waveform_samples == 16000
    assert InputRules.from_description({"input_checks": {}}).max_waveform_samples is None
