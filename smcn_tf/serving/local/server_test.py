"""`smcn serve` over real sockets on localhost: TF Serving's gRPC and REST API."""

import json
import os
import shutil
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from smcn_tf.serving.local.model_store import read_signature_defs
from smcn_tf.serving.local.server import ModelServer, serve
from tests.serving_support import feature_inputs, raw_inputs, write_contract_model

MAX_REQUEST_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "smcn")
    version_dir = write_contract_model(base, version=1, warmup=True)
    return base, version_dir


@pytest.fixture(scope="module")
def server(export):
    server = serve(
        export[0], grpc_port=0, rest_port=0, poll_seconds=0,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


@pytest.fixture(scope="module")
def in_process(export):
    loaded = tf.saved_model.load(export[1])

    def run(signature, inputs):
        outputs = loaded.signatures[signature](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        return {name: value.numpy() for name, value in outputs.items()}

    return run


def predict_request(inputs, name="smcn", signature="", version=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


def rest(server, path, body=None, raw=None):
    """(status, decoded JSON) of a REST call; errors are answers too."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(server.rest_url + path, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def assert_same(expected, outputs):
    assert sorted(expected) == sorted(outputs)
    for name, value in expected.items():
        got = np.asarray(outputs[name])
        if value.dtype == object:
            assert [v.decode() for v in value.ravel()] == [
                v.decode() if isinstance(v, bytes) else v for v in got.ravel()
            ], name
        else:
            np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_start_reports_bound_ports_and_serves_the_newest_version(server):
    assert server.ports.grpc > 0 and server.ports.rest > 0
    assert server.versions == [1]
    assert server.grpc_target == f"127.0.0.1:{server.ports.grpc}"


@pytest.mark.parametrize("signature", ["", "serving_default", "features"])
def test_grpc_predict_answers_like_the_in_process_signature(stubs, in_process, signature):
    inputs = feature_inputs(3) if signature == "features" else raw_inputs(3)
    response = stubs[0].Predict(predict_request(inputs, signature=signature), timeout=30)
    assert response.model_spec.name == "smcn"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == (signature or "serving_default")
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    assert_same(in_process(signature or "serving_default", inputs), outputs)


def test_grpc_output_filter_returns_only_the_named_outputs(stubs, in_process):
    inputs = raw_inputs(2)
    response = stubs[0].Predict(
        predict_request(inputs, output_filter=["class_name", "probabilities"]), timeout=30
    )
    assert sorted(response.outputs) == ["class_name", "probabilities"]
    expected = in_process("serving_default", inputs)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"], rtol=1e-6
    )


@pytest.mark.parametrize("request_format", ["instances", "inputs"])
@pytest.mark.parametrize("signature", ["serving_default", "features"])
def test_rest_predict_answers_like_the_in_process_signature(
    server, in_process, request_format, signature
):
    inputs = feature_inputs(3) if signature == "features" else raw_inputs(3)
    names = sorted(inputs)
    if request_format == "instances":
        body = {"signature_name": signature,
                "instances": [{n: inputs[n][row].tolist() for n in names} for row in range(3)]}
    else:
        body = {"signature_name": signature, "inputs": {n: inputs[n].tolist() for n in names}}
    status, answer = rest(server, "/v1/models/smcn:predict", body)
    assert status == 200, answer
    if request_format == "instances":
        rows = answer["predictions"]
        outputs = {name: [row[name] for row in rows] for name in rows[0]}
    else:
        outputs = answer["outputs"]
    assert_same(in_process(signature, inputs), outputs)
    assert isinstance(outputs["class_name"][0], str)


def test_rest_versioned_path_and_float32_text(server):
    inputs = raw_inputs(1)
    body = {"instances": [{n: v[0].tolist() for n, v in inputs.items()}]}
    status, answer = rest(server, "/v1/models/smcn/versions/1:predict", body)
    assert status == 200
    # Floats come back as the shortest text of the float32 (TF Serving's WriteDecimal).
    probability = answer["predictions"][0]["probabilities"][0]
    assert str(probability) == str(np.float32(probability))


def test_grpc_metadata_is_the_saved_model_signature_def_map(stubs, export):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "smcn"
    request.metadata_field.append("signature_def")
    response = stubs[0].GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "smcn" and response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    expected = read_signature_defs(export[1])
    assert dict(signature_map.signature_def) == expected
    serving = signature_map.signature_def["serving_default"]
    assert sorted(serving.inputs) == ["attention_mask", "input_ids", "waveform", "waveform_length"]
    assert sorted(serving.outputs) == [
        "audio_attention", "class_id", "class_name", "modality", "probabilities",
        "text_attention",
    ]
    assert serving.inputs["waveform"].dtype == tf.float32.as_datatype_enum
    assert sorted(signature_map.signature_def["features"].inputs) == [
        "audio_features", "audio_length", "text_features", "text_length"
    ]


def test_rest_metadata_is_tf_serving_json_of_the_same_map(server, export):
    status, answer = rest(server, "/v1/models/smcn/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "smcn", "signature_name": "", "version": "1"}
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(answer["metadata"]["signature_def"], signature_map)
    assert dict(signature_map.signature_def) == read_signature_defs(export[1])
    waveform = answer["metadata"]["signature_def"]["signature_def"]["serving_default"][
        "inputs"]["waveform"]
    assert waveform["dtype"] == "DT_FLOAT"
    assert waveform["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}] * 2
    assert rest(server, "/v1/models/smcn/versions/1/metadata")[0] == 200


def test_status_over_grpc_and_rest(server, stubs):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "smcn"
    response = stubs[1].GetModelStatus(request, timeout=30)
    [entry] = response.model_version_status
    assert entry.version == 1
    assert entry.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert entry.status.error_code == 0 and entry.status.error_message == ""
    expected = {"model_version_status": [{
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
    }]}
    assert rest(server, "/v1/models/smcn") == (200, expected)
    assert rest(server, "/v1/models/smcn/versions/1") == (200, expected)


def _without(inputs, name):
    return {key: value for key, value in inputs.items() if key != name}


GOOD = raw_inputs(2)
GRPC_ERRORS = {
    "missing input": (
        dict(inputs=_without(GOOD, "attention_mask")), "INVALID_ARGUMENT",
        "missing input(s) {attention_mask}",
    ),
    "unknown input": (
        dict(inputs={**GOOD, "speaker": np.zeros(2, "int32")}), "INVALID_ARGUMENT",
        "unknown input(s) {speaker}",
    ),
    "float for int": (
        dict(inputs={**GOOD, "input_ids": GOOD["input_ids"].astype("float32")}),
        "INVALID_ARGUMENT", "input 'input_ids' has dtype float32 but signature",
    ),
    "string for float": (
        dict(inputs={**GOOD, "waveform": np.array([[b"a"], [b"b"]], dtype=object)}),
        "INVALID_ARGUMENT", "input 'waveform' has dtype string",
    ),
    "wrong rank": (
        dict(inputs={**GOOD, "waveform": GOOD["waveform"][0]}), "INVALID_ARGUMENT",
        "input 'waveform' has shape [16000] (rank 1) but signature \"serving_default\" "
        "expects rank 2",
    ),
    "mismatched batch": (
        dict(inputs={**GOOD, "waveform_length": np.array([1, 2, 3], "int32")}),
        "INVALID_ARGUMENT", "inputs have different batch sizes",
    ),
    "wrong feature dim": (
        dict(inputs={**feature_inputs(2), "audio_features": np.zeros((2, 3, 4), "float32")},
             signature="features"),
        "INVALID_ARGUMENT", "(dimension 2 must be 6)",
    ),
    "unknown output": (
        dict(inputs=GOOD, output_filter=["logits"]), "INVALID_ARGUMENT",
        "output tensor alias not found in signature: logits",
    ),
    "unknown model": (
        dict(inputs=GOOD, name="bert"), "NOT_FOUND",
        "Servable not found for request: Latest(bert)",
    ),
    "unknown version": (
        dict(inputs=GOOD, version=7), "NOT_FOUND",
        "Servable not found for request: Specific(smcn, 7)",
    ),
    "unknown signature": (
        dict(inputs=GOOD, signature="classify"), "FAILED_PRECONDITION",
        'Serving signature key "classify" not found',
    ),
}


@pytest.mark.parametrize("case", sorted(GRPC_ERRORS))
def test_grpc_rejects_bad_requests_clearly_and_keeps_serving(stubs, in_process, case):
    arguments, code, message = GRPC_ERRORS[case]
    with pytest.raises(grpc.RpcError) as caught:
        stubs[0].Predict(predict_request(**arguments), timeout=30)
    assert caught.value.code() == getattr(grpc.StatusCode, code)
    assert message in caught.value.details()
    response = stubs[0].Predict(predict_request(GOOD), timeout=30)
    assert_same(
        in_process("serving_default", GOOD),
        {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()},
    )


def test_grpc_metadata_and_status_errors(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "smcn"
    with pytest.raises(grpc.RpcError) as caught:
        stubs[0].GetModelMetadata(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one metadata_field" in caught.value.details()
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "smcn"
    status_request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as caught:
        stubs[1].GetModelStatus(status_request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "Could not find version 9 of model smcn"


def test_grpc_oversized_request_is_refused_and_the_server_keeps_serving(stubs):
    big = raw_inputs(1, samples=MAX_REQUEST_BYTES // 4 + 1000)
    with pytest.raises(grpc.RpcError) as caught:
        stubs[0].Predict(predict_request(big), timeout=30)
    # gRPC's own limit check: RESOURCE_EXHAUSTED, as TF Serving answers too.
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.details()
    assert stubs[0].Predict(predict_request(GOOD), timeout=30).model_spec.version.value == 1


def _rows(inputs):
    return [{n: v[row].tolist() for n, v in inputs.items()} for row in range(len(inputs["waveform"]))]


REST_ERRORS = {
    "missing input": (
        {"instances": [_without(row, "attention_mask") for row in _rows(GOOD)]}, 400,
        "missing input(s) {attention_mask}",
    ),
    "unknown input": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "speaker": [1, 2]}}, 400,
        "Unknown input(s) {speaker}",
    ),
    "float for int": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "input_ids": [[1.5, 2], [3, 4]]}},
        400, "JSON Value: 1.5 Type: Number is not of expected type: int32",
    ),
    "string for float": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "waveform": [["x"], ["y"]]}},
        400, 'JSON Value: "x" Type: String is not of expected type: float',
    ),
    "wrong rank": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "waveform": [0.1, 0.2]}},
        400, "input 'waveform' has shape [2] (rank 1)",
    ),
    "ragged instances": (
        {"instances": [
            {**_rows(GOOD)[0], "waveform": [0.1] * 10},
            {**_rows(GOOD)[1], "waveform": [0.1] * 8},
        ]},
        400, "Failed to process element: 1 key: waveform of 'instances' list. Error: "
        "Expecting shape [10] but got: [8]",
    ),
    "ragged columnar": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "waveform": [[0.1], [0.1, 0.2]]}},
        400, "nested lists have different shapes",
    ),
    "mismatched batch": (
        {"inputs": {**{n: v.tolist() for n, v in GOOD.items()}, "waveform_length": [1, 2, 3]}},
        400, "inputs have different batch sizes",
    ),
    "both formats": (
        {"instances": _rows(GOOD), "inputs": {}}, 400, "only one of 'inputs' or 'instances'",
    ),
    "no tensors": ({"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances'"),
    "unknown signature": (
        {"signature_name": "classify", "instances": _rows(GOOD)}, 400,
        'Serving signature name: "classify" not found in signature def',
    ),
    "plain list for many inputs": (
        {"instances": [[0.1, 0.2]]}, 400, "instances is a plain list",
    ),
}


@pytest.mark.parametrize("case", sorted(REST_ERRORS))
def test_rest_rejects_bad_requests_clearly_and_keeps_serving(server, in_process, case):
    body, status, message = REST_ERRORS[case]
    answer_status, answer = rest(server, "/v1/models/smcn:predict", body)
    assert answer_status == status
    assert list(answer) == ["error"] and message in answer["error"], answer
    answer_status, answer = rest(server, "/v1/models/smcn:predict", {"instances": _rows(GOOD)})
    assert answer_status == 200
    assert [row["class_name"] for row in answer["predictions"]] == [
        name.decode() for name in in_process("serving_default", GOOD)["class_name"]
    ]


@pytest.mark.parametrize(
    "method, path, raw, status, message",
    [
        ("POST", "/v1/models/bert:predict", b'{"instances": [1]}', 404,
         "Servable not found for request: Latest(bert)"),
        ("POST", "/v1/models/smcn/versions/7:predict", b'{"instances": [1]}', 404,
         "Servable not found for request: Specific(smcn, 7)"),
        ("GET", "/v1/models/bert", None, 404, "Could not find any versions of model bert"),
        ("GET", "/v1/models/smcn/versions/3", None, 404, "Could not find version 3 of model smcn"),
        ("GET", "/v1/models/smcn/versions/3/metadata", None, 404, "Specific(smcn, 3)"),
        ("POST", "/v1/models/smcn:predict", b'{"instances": [', 400, "JSON Parse error"),
        ("POST", "/v1/models/smcn:predict", b"[1, 2]", 400, "Is not object"),
        ("POST", "/v1/models/smcn:classify", b"{}", 501, ":classify is not implemented"),
        ("POST", "/v1/models/smcn:explain", b"{}", 400, "Malformed request: POST"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v2/health", None, 404, "Not found"),
    ],
)
def test_rest_rejects_bad_paths_and_bodies(server, method, path, raw, status, message):
    request = urllib.request.Request(server.rest_url + path, data=raw, method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == status
    answer = json.loads(caught.value.read())
    assert message in answer["error"], answer
    assert rest(server, "/v1/models/smcn")[0] == 200


def test_rest_oversized_body_is_refused_unread(server):
    raw = b" " * (MAX_REQUEST_BYTES + 1)
    status, answer = rest(server, "/v1/models/smcn:predict", raw=raw)
    assert status == 413
    assert "exceeds the server's limit of 1048576 bytes" in answer["error"]
    assert rest(server, "/v1/models/smcn:predict", {"instances": _rows(GOOD)})[0] == 200


def test_rest_string_inputs_accept_b64_and_bytes_outputs_use_b64():
    from smcn_tf.serving.wire import array_to_json, json_to_array

    array = json_to_array([["hé", {"b64": "/wE="}]], tf.string, "input 'x'")
    assert array.tolist() == [["hé".encode(), b"\xff\x01"]]
    assert array_to_json("text", array) == [["hé", {"b64": "/wE="}]]  # not UTF-8: b64
    assert array_to_json("image_bytes", array) == [[{"b64": "aMOp"}, {"b64": "/wE="}]]
    assert json_to_array([1, 2], tf.float32, "x").dtype == np.float32
    with pytest.raises(Exception, match="without loss of precision"):
        json_to_array([1e300], tf.float32, "x")
    with pytest.raises(Exception, match="is not of expected type: int32"):
        json_to_array([2**40], tf.int32, "x")


def test_a_new_version_is_served_without_a_restart(tmp_path):
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1)
    inputs = raw_inputs(2)
    with ModelServer(base, grpc_port=0, rest_port=0, poll_seconds=0.1) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = stub.Predict(predict_request(inputs), timeout=30)
        assert first.model_spec.version.value == 1
        # Ignored while being written: a temporary dir and a version without saved_model.pb.
        os.makedirs(os.path.join(base, ".tmp-9-123"))
        os.makedirs(os.path.join(base, "9", "variables"))
        second_dir = write_contract_model(base, version=2)
        assert server.wait_for_version(2, timeout=30)
        second = stub.Predict(predict_request(inputs), timeout=30)
        assert second.model_spec.version.value == 2
        expected = tf.saved_model.load(second_dir).signatures["serving_default"](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        np.testing.assert_allclose(
            tf.make_ndarray(second.outputs["probabilities"]),
            expected["probabilities"].numpy(), rtol=1e-6,
        )
        assert not np.allclose(
            tf.make_ndarray(first.outputs["probabilities"]),
            tf.make_ndarray(second.outputs["probabilities"]),
        )
        # TF Serving's default policy serves the latest version only.
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(predict_request(inputs, version=1), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        status = rest(server, "/v1/models/smcn")[1]["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("1", "END"), ("2", "AVAILABLE")]
        # A version copied in place (not renamed) is loaded once its files are complete;
        # a broken one is reported and the newest good version keeps serving.
        shutil.copytree(second_dir, os.path.join(base, "3"))
        assert server.wait_for_version(3, timeout=30)
        os.makedirs(os.path.join(base, "4"))
        with open(os.path.join(base, "4", "saved_model.pb"), "wb") as stream:
            stream.write(b"not a SavedModel")
        server.refresh()
        status = rest(server, "/v1/models/smcn/versions/4")[1]["model_version_status"][0]
        assert status["state"] == "END" and "Loading" in status["status"]["error_message"]
        assert stub.Predict(predict_request(inputs), timeout=30).model_spec.version.value == 3
        channel.close()


def test_server_refuses_paths_that_are_not_a_model_base(tmp_path, export):
    with pytest.raises(ValueError, match="is a version directory"):
        ModelServer(export[1])
    with pytest.raises(ValueError, match="holds models, not versions"):
        ModelServer(os.path.dirname(export[0]))
    with pytest.raises(ValueError, match="is not a directory"):
        ModelServer(str(tmp_path / "missing"))


def test_a_busy_port_is_an_error(server, export):
    with pytest.raises(OSError, match="Cannot listen for gRPC"):
        serve(export[0], grpc_port=server.ports.grpc, rest_port=0, poll_seconds=0)
    with pytest.raises(OSError, match="Cannot listen for REST"):
        serve(export[0], grpc_port=0, rest_port=server.ports.rest, poll_seconds=0)
