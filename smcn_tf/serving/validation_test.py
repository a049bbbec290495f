"""Bad values are refused at the door, missing modalities are answered (issue 8).

Every case sends the bad request over gRPC and REST, checks the status and
the message (it names the input and the row, and holds no graph internals),
then sends a good request on the same server and checks that it still works.
The contract export (`tests/serving_support.py`) holds the same checks as a real export,
in its graph and in its `smcn.json`.
"""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from smcn_tf.contract.errors import ServingError
from smcn_tf.serving.local.model_store import ServableVersion
from smcn_tf.serving.local.server import serve
from tests.serving_support import (
    CLS_ID,
    MIN_AUDIO_SAMPLES,
    SEP_ID,
    _VOCABULARY,
    feature_inputs,
    raw_inputs,
    write_contract_model,
)

GOOD = raw_inputs(2)
GRAPH_NOISE = ("Graph execution error", "node", "Detected at", "[[", "Op:", "__inference")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "smcn")
    return base, write_contract_model(base, version=1)


@pytest.fixture(scope="module")
def server(export):
    server = serve(export[0], grpc_port=0, rest_port=0, poll_seconds=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def graph_only(export):
    """The export's version with the server's numpy checks switched off: the graph's."""
    servable = ServableVersion("smcn", 1, export[1])
    servable.input_rules = None
    return servable


@pytest.fixture(scope="module")
def in_process(export):
    loaded = tf.saved_model.load(export[1])

    def run(inputs, signature="serving_default"):
        outputs = loaded.signatures[signature](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        return {name: value.numpy() for name, value in outputs.items()}

    return run


def grpc_predict(stub, inputs, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "smcn"
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = stub.Predict(request, timeout=30)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def rest_predict(server, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + "/v1/models/smcn:predict", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def strict_json(text):
    """json.loads that refuses NaN / Infinity, like strict parsers do."""
    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def columnar(inputs, signature="serving_default"):
    return {"signature_name": signature, "inputs": {n: v.tolist() for n, v in inputs.items()}}


def assert_good_still_works(stub, server, in_process):
    expected = in_process(GOOD)
    outputs = grpc_predict(stub, GOOD)
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    assert outputs["modality"].tolist() == [b"both", b"both"]
    status, body = rest_predict(server, columnar(GOOD))
    assert status == 200, body
    answer = strict_json(body)["outputs"]
    assert answer["class_name"] == [name.decode() for name in expected["class_name"]]
    assert answer["modality"] == ["both", "both"]


def with_values(**changes):
    inputs = {name: value.copy() for name, value in GOOD.items()}
    for name, change in changes.items():
        inputs[name] = change(inputs[name]) if callable(change) else change
    return inputs


def _set(row, column, value):
    def change(array):
        array[row, column] = value
        return array

    return change


REFUSED = {
    # 1: NaN or inf in the waveform (one sample or all).
    "one NaN sample": (
        with_values(waveform=_set(1, 7, np.nan)),
        "input waveform: row 1 holds NaN or infinite values",
    ),
    "all NaN": (
        with_values(waveform=lambda w: np.full_like(w, np.nan)),
        "input waveform: row 0 holds NaN or infinite values",
    ),
    "an infinite sample": (
        with_values(waveform=_set(0, 3, -np.inf)),
        "input waveform: row 0 holds NaN or infinite values",
    ),
    # 4: invalid values.
    "negative waveform_length": (
        with_values(waveform_length=np.array([16000, -5], "int32")),
        "input waveform_length: row 1 is -5 but must be between 0 and the padded waveform "
        "size 16000",
    ),
    "waveform_length past the padding": (
        with_values(waveform_length=np.array([16001, 100], "int32")),
        "input waveform_length: row 0 is 16001 but must be between 0 and the padded "
        "waveform size 16000",
    ),
    "token id -1": (
        with_values(input_ids=_set(1, 2, -1)),
        "input input_ids: row 1 holds id -1 at position 2 which is outside the vocabulary "
        f"of {len(_VOCABULARY)} ids (0 to {len(_VOCABULARY) - 1})",
    ),
    "token id past the vocabulary": (
        with_values(input_ids=_set(0, 1, len(_VOCABULARY))),
        f"input input_ids: row 0 holds id {len(_VOCABULARY)} at position 1 which is outside",
    ),
    # 7: mismatched input_ids / attention_mask lengths.
    "mask shorter than ids": (
        with_values(attention_mask=lambda mask: mask[:, :-1].copy()),
        "inputs input_ids and attention_mask have different shapes: [2, 8] and [2, 7]",
    ),
    "mask value 2": (
        with_values(attention_mask=_set(0, 1, 2)),
        "input attention_mask: row 0 holds 2 at position 1 but mask values must be 0 or 1",
    ),
    "mask not a prefix of 1s": (
        with_values(
            input_ids=lambda ids: np.where(ids == SEP_ID, 10, ids).astype("int32"),
            attention_mask=_set(1, 3, 0),
        ),
        "input attention_mask: row 1 has a 1 after a 0 at position 4",
    ),
    "neither audio nor text": (
        with_values(
            waveform_length=np.array([16000, 0], "int32"),
            attention_mask=lambda mask: np.zeros_like(mask),
        ),
        "row 1 has no audio (waveform_length below 1600 samples, 0.1 s) and no text (no "
        "token besides CLS and SEP); send at least one of them",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_values_are_refused_over_grpc_and_rest_then_good_ones_answered(
    stub, server, in_process, case
):
    inputs, message = REFUSED[case]
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(stub, inputs)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details(), caught.value.details()
    status, body = rest_predict(server, columnar(inputs))
    assert status == 400
    error = strict_json(body)["error"]
    assert message in error
    assert not [noise for noise in GRAPH_NOISE if noise in error], error
    assert_good_still_works(stub, server, in_process)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_graph_refuses_the_same_with_the_same_clean_message(graph_only, case):
    """TF Serving has only the graph: its assertions say the same thing."""
    inputs, message = REFUSED[case]
    with pytest.raises(ServingError) as caught:
        graph_only.predict("serving_default", inputs)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert message in caught.value.message, caught.value.message
    assert not [noise for noise in GRAPH_NOISE if noise in caught.value.message]
    _, outputs = graph_only.predict("serving_default", GOOD)
    assert outputs["modality"].tolist() == [b"both", b"both"]


def test_rest_nan_literals_in_the_body_are_refused_by_name(stub, server, in_process):
    for value in (float("nan"), float("inf")):
        request = columnar(GOOD)
        request["inputs"]["waveform"][1][5] = value
        raw = json.dumps(request).encode()  # Python writes the bare NaN / Infinity
        assert b"NaN" in raw or b"Infinity" in raw
        status, answer = rest_predict(server, None, raw=raw)
        assert status == 400
        assert "input waveform: row 1 holds NaN or infinite values" in strict_json(answer)["error"]
    assert_good_still_works(stub, server, in_process)


def _audio_alone(inputs):
    return dict(inputs, attention_mask=np.zeros_like(inputs["attention_mask"]))


MISSING = {
    "waveform_length 0": (
        with_values(waveform_length=np.array([0, 16000], "int32")), ["text", "both"],
    ),
    "shorter than 0.1 s": (
        with_values(waveform_length=np.array([MIN_AUDIO_SAMPLES - 1, 16000], "int32")),
        ["text", "both"],
    ),
    "an empty [1, 0] waveform": (
        {**{n: v[:1] for n, v in GOOD.items()}, "waveform": np.zeros([1, 0], "float32"),
         "waveform_length": np.array([0], "int32")},
        ["text"],
    ),
    "an all-zeros attention_mask": (_audio_alone(GOOD), ["audio", "audio"]),
    "only [CLS] [SEP]": (
        with_values(
            input_ids=lambda ids: np.tile(np.array([[CLS_ID, SEP_ID] + [0] * 6], "int32"), (2, 1)),
            attention_mask=lambda mask: np.tile(np.array([[1, 1] + [0] * 6], "int32"), (2, 1)),
        ),
        ["audio", "audio"],
    ),
    "zero tokens": (
        with_values(input_ids=np.zeros([2, 0], "int32"),
                    attention_mask=np.zeros([2, 0], "int32")),
        ["audio", "audio"],
    ),
}


@pytest.mark.parametrize("case", sorted(MISSING))
def test_a_missing_modality_is_answered_by_the_other_head(stub, server, in_process, case):
    inputs, modalities = MISSING[case]
    expected = in_process(inputs)
    assert expected["modality"].tolist() == [name.encode() for name in modalities]
    outputs = grpc_predict(stub, inputs)
    assert outputs["modality"].tolist() == expected["modality"].tolist()
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    assert outputs["class_id"].tolist() == np.argmax(outputs["probabilities"], -1).tolist()
    for row, modality in enumerate(modalities):
        # The modality that did not answer has no attention.
        if modality == "text":
            assert not outputs["audio_attention"][row].any()
        if modality == "audio":
            assert not outputs["text_attention"][row].any()
    status, body = rest_predict(server, columnar(inputs))
    assert status == 200, body
    assert strict_json(body)["outputs"]["modality"] == modalities
    assert_good_still_works(stub, server, in_process)


def test_the_unimodal_answer_differs_from_the_fused_one(in_process):
    both = in_process(GOOD)
    audio_alone = in_process(_audio_alone(GOOD))
    assert not np.allclose(both["probabilities"], audio_alone["probabilities"])


def test_features_signature_checks_and_missing_modalities(stub, server, in_process):
    good = feature_inputs(3)
    missing = dict(good, audio_length=np.array([0, 9, 8], "int32"),
                   text_length=np.array([6, 0, 4], "int32"))
    outputs = grpc_predict(stub, missing, "features")
    assert outputs["modality"].tolist() == [b"text", b"audio", b"both"]
    np.testing.assert_allclose(
        outputs["probabilities"], in_process(missing, "features")["probabilities"], rtol=1e-6
    )
    bad = {
        "input audio_length: row 1 is -1": dict(good, audio_length=np.array([3, -1, 2], "int32")),
        "input text_length: row 0 is 7 but must be between 0 and the padded number of tokens 6":
            dict(good, text_length=np.array([7, 1, 1], "int32")),
        "input text_features: row 2 holds NaN": dict(
            good, text_features=np.where(
                np.arange(3)[:, None, None] == 2, np.inf, good["text_features"]
            ).astype("float32"),
        ),
        "row 1 has no audio (audio_length 0) and no text (text_length 0)": dict(
            good, audio_length=np.array([3, 0, 2], "int32"),
            text_length=np.array([3, 0, 2], "int32"),
        ),
    }
    for message, inputs in bad.items():
        with pytest.raises(grpc.RpcError) as caught:
            grpc_predict(stub, inputs, "features")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in caught.value.details()
        status, body = rest_predict(server, columnar(inputs, "features"))
        assert status == 400 and message in strict_json(body)["error"]
    assert grpc_predict(stub, good, "features")["modality"].tolist() == [b"both"] * 3
    assert_good_still_works(stub, server, in_process)


def test_an_export_without_input_checks_in_smcn_json_is_still_checked(tmp_path):
    """Older exports: the server checks what needs no model knowledge, the graph the rest."""
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1, with_input_checks=False)
    with serve(base, grpc_port=0, rest_port=None, poll_seconds=0) as server:
        servable = server.servable("smcn")
        assert servable.input_rules is not None and not servable.input_rules.modality_fallback
        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for inputs, message in (REFUSED["one NaN sample"], REFUSED["neither audio nor text"]):
            with pytest.raises(grpc.RpcError) as caught:
                grpc_predict(stub, inputs)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in caught.value.details()
        assert grpc_predict(stub, GOOD)["modality"].tolist() == [b"both", b"both"]
        channel.close()
