"""`smcn serve` refuses requests over its limits, naming the limit, over gRPC and REST."""

import json
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from smcn_tf.serving.local.server import serve
from tests.serving_support import raw_inputs, write_contract_model

MAX_BATCH_SIZE = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "smcn")
    write_contract_model(base, version=1, warmup=True)
    with serve(
        base, grpc_port=0, rest_port=0, poll_seconds=0, max_batch_size=MAX_BATCH_SIZE
    ) as server:
        yield server


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def grpc_answer(stub, protos):
    """(status code name, message) of a Predict with these TensorProtos."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "smcn"
    for name, proto in protos.items():
        request.inputs[name].CopyFrom(proto)
    try:
        stub.Predict(request, timeout=60)
        return "OK", ""
    except grpc.RpcError as error:
        return error.code().name, error.details()


def grpc_predict(stub, inputs):
    return grpc_answer(stub, {name: tf.make_tensor_proto(value) for name, value in inputs.items()})


def rest_predict(server, inputs):
    """(HTTP status, error message) of a columnar REST predict."""
    body = json.dumps({"inputs": {name: value.tolist() for name, value in inputs.items()}})
    request = urllib.request.Request(
        server.rest_url + "/v1/models/smcn:predict", data=body.encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["error"]


def test_a_batch_over_max_batch_size_is_refused_naming_the_limit(server, stub):
    too_many = raw_inputs(MAX_BATCH_SIZE + 1)
    code, message = grpc_predict(stub, too_many)
    assert code == "INVALID_ARGUMENT"
    assert "batch of 3 rows exceeds this server's limit of 2 rows (--max-batch-size)" in message
    status, message = rest_predict(server, too_many)
    assert status == 400 and "limit of 2 rows (--max-batch-size)" in message
    assert grpc_predict(stub, raw_inputs(MAX_BATCH_SIZE)) == ("OK", "")
    assert rest_predict(server, raw_inputs(MAX_BATCH_SIZE)) == (200, "")


def test_max_batch_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        serve(str(tmp_path), grpc_port=None, rest_port=0, max_batch_size=0)


def test_an_empty_batch_is_invalid_argument_not_internal(server, stub):
    """It was INTERNAL: ValueError: cannot reshape array of size 0 into shape (0,newaxis)."""
    empty = {name: value[:0] for name, value in raw_inputs(1).items()}
    assert grpc_predict(stub, empty) == (
        "INVALID_ARGUMENT", "empty batch: send at least one row"
    )
    # JSON writes the 0-row batch of every input as [], whatever its rank.
    assert rest_predict(server, empty) == (400, "empty batch: send at least one row")


def amplifying_request(samples=64_000_000):
    """A waveform TensorProto declaring [1, samples] with one float_val (213 bytes on the wire)."""
    protos = {name: tf.make_tensor_proto(value) for name, value in raw_inputs(1).items()}
    waveform = tf.make_tensor_proto([0.5], dtype=tf.float32)
    waveform.tensor_shape.Clear()
    for size in (1, samples):
        waveform.tensor_shape.dim.add(size=size)
    protos["waveform"] = waveform
    return protos


def test_a_tensor_is_refused_for_its_decoded_size_before_it_is_decoded(server, stub):
    """It was expanded to 256 MB (TensorFlow repeats the last value) and answered OK."""
    protos = amplifying_request()
    assert protos["waveform"].ByteSize() < 100
    code, message = grpc_answer(stub, protos)
    assert code == "INVALID_ARGUMENT"
    assert message == (
        "input 'waveform': a float32 tensor of shape [1, 64000000] takes 256000000 bytes, "
        "over this server's limit of 67108864 bytes per tensor (--max-tensor-bytes)."
    )
    assert grpc_predict(stub, raw_inputs(1)) == ("OK", "")


def test_a_decoded_rest_tensor_over_the_limit_is_refused(tmp_path):
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1)
    with serve(base, grpc_port=None, rest_port=0, poll_seconds=0,
               max_tensor_bytes=100_000) as server:
        status, message = rest_predict(server, raw_inputs(1, samples=32_000))
        assert status == 400
        assert message == (
            "input 'waveform': a float32 tensor of shape [1, 32000] takes 128000 bytes, "
            "over this server's limit of 100000 bytes per tensor (--max-tensor-bytes)."
        )
        assert rest_predict(server, raw_inputs(1, samples=16_000)) == (200, "")
