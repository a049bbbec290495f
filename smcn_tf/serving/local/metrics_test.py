"""The serving metrics: TF Serving's names, their labels, one registry per server,
and `smcn serve` answering them for gRPC and REST requests alike."""

import json
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from smcn_tf.serving.local.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS_MICROSECONDS,
    METRICS_PATH,
    REQUEST_COUNT,
    REQUEST_LATENCY,
    ServingMetrics,
)
from smcn_tf.serving.local.server import serve
from tests.serving_support import raw_inputs, write_contract_model


def samples(metrics):
    """name -> [(labels, value)] of every sample of the exposition."""
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_counts_by_model_version_signature_and_status():
    metrics = ServingMetrics()
    metrics.record("smcn", 1, "serving_default", "Predict", "GRPC", "OK", 0.010)
    metrics.record("smcn", 1, "serving_default", "Predict", "GRPC", "OK", 0.020)
    metrics.record("smcn", None, "", "Predict", "REST", "INVALID_ARGUMENT", 0.001)
    counts = {
        (labels["version"], labels["signature_name"], labels["entrypoint"], labels["status"]): value
        for labels, value in samples(metrics)[REQUEST_COUNT + "_total"]
    }
    assert counts == {
        ("1", "serving_default", "GRPC", "OK"): 2.0,
        ("", "", "REST", "INVALID_ARGUMENT"): 1.0,
    }


def test_latency_is_a_histogram_in_microseconds_with_tf_serving_buckets():
    metrics = ServingMetrics()
    metrics.record("smcn", 1, "serving_default", "Predict", "REST", "OK", 0.5)
    found = samples(metrics)
    (labels, total), = found[REQUEST_LATENCY + "_sum"]
    assert labels == {"model_name": "smcn", "API": "Predict", "entrypoint": "REST"}
    assert total == 500000.0
    buckets = {labels["le"]: value for labels, value in found[REQUEST_LATENCY + "_bucket"]}
    assert len(buckets) == len(LATENCY_BUCKETS_MICROSECONDS) + 1  # and +Inf
    assert buckets["+Inf"] == 1.0
    assert LATENCY_BUCKETS_MICROSECONDS[:3] == (10.0, 18.0, 32.4)


def test_each_server_has_its_own_registry():
    first, second = ServingMetrics(), ServingMetrics()
    first.record("smcn", 1, "serving_default", "Predict", "GRPC", "OK", 0.01)
    assert REQUEST_COUNT + "_total" in samples(first)
    assert REQUEST_COUNT + "_total" not in samples(second)


# `smcn serve` answers them.
def _grpc_predict(stub, inputs, name="smcn"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    try:
        stub.Predict(request, timeout=30)
        return "OK"
    except grpc.RpcError as error:
        return error.code().name


def _rest_predict(server, inputs, path="/v1/models/smcn:predict"):
    body = json.dumps({"inputs": {key: value.tolist() for key, value in inputs.items()}})
    request = urllib.request.Request(server.rest_url + path, data=body.encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def scrape(server):
    with urllib.request.urlopen(server.rest_url + METRICS_PATH, timeout=30) as answer:
        assert answer.headers["Content-Type"] == CONTENT_TYPE
        text = answer.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_smcn_serve_counts_grpc_and_rest_requests_by_model_version_signature_and_status(
    tmp_path,
):
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1)
    with serve(base, grpc_port=0, rest_port=0, poll_seconds=0) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        good, bad = raw_inputs(1), raw_inputs(1)
        bad["waveform_length"] = bad["waveform_length"] + 10**6  # past the waveform
        assert _grpc_predict(stub, good) == "OK"
        assert _grpc_predict(stub, good) == "OK"
        assert _grpc_predict(stub, bad) == "INVALID_ARGUMENT"
        assert _grpc_predict(stub, good, name="other") == "NOT_FOUND"
        assert _rest_predict(server, good) == 200
        assert _rest_predict(server, bad) == 400
        assert _rest_predict(server, good, "/v1/models/smcn/versions/7:predict") == 404
        channel.close()
        found = scrape(server)
    counts = {
        tuple(labels[key] for key in (
            "model_name", "version", "signature_name", "API", "entrypoint", "status"
        )): value
        for labels, value in found[REQUEST_COUNT + "_total"]
    }
    assert counts == {
        ("smcn", "1", "serving_default", "Predict", "GRPC", "OK"): 2.0,
        ("smcn", "", "serving_default", "Predict", "GRPC", "INVALID_ARGUMENT"): 1.0,
        ("", "", "", "Predict", "GRPC", "NOT_FOUND"): 1.0,
        ("smcn", "1", "serving_default", "Predict", "REST", "OK"): 1.0,
        ("smcn", "", "serving_default", "Predict", "REST", "INVALID_ARGUMENT"): 1.0,
        ("smcn", "", "", "Predict", "REST", "NOT_FOUND"): 1.0,  # version 7 never existed
    }
    latency = {
        (labels["model_name"], labels["entrypoint"]): value
        for labels, value in found[REQUEST_LATENCY + "_count"]
    }
    assert latency == {("smcn", "GRPC"): 3.0, ("", "GRPC"): 1.0, ("smcn", "REST"): 3.0}


def test_two_servers_in_one_process_count_apart(tmp_path):
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1)
    with serve(base, grpc_port=None, rest_port=0, poll_seconds=0) as first, serve(
        base, grpc_port=None, rest_port=0, poll_seconds=0
    ) as second:
        assert _rest_predict(first, raw_inputs(1)) == 200
        assert REQUEST_COUNT + "_total" in scrape(first)
        assert REQUEST_COUNT + "_total" not in scrape(second)


@pytest.mark.parametrize("path", ["/v1/models/smcn", "/v1/models/smcn/metadata"])
def test_status_and_metadata_are_counted_too(tmp_path, path):
    base = str(tmp_path / "smcn")
    write_contract_model(base, version=1)
    with serve(base, grpc_port=None, rest_port=0, poll_seconds=0) as server:
        urllib.request.urlopen(server.rest_url + path, timeout=30).read()
        (labels, value), = scrape(server)[REQUEST_COUNT + "_total"]
    api = "GetModelMetadata" if path.endswith("metadata") else "GetModelStatus"
    assert (labels["API"], labels["status"], value) == (api, "OK", 1.0)
