"""The REST front end reads bodies only up to its limit and answers strict JSON (issue 8).

Each case sends the bad request over a raw socket (urllib cannot lie about
Content-Length), checks the status and message, and that the answer comes at
once, then sends a good request and checks that it is answered.
"""

import json
import socket
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.serving.wire import (
    MAX_JSON_DEPTH,
    array_to_json,
    format_predict_response,
    json_depth,
)
from smcn_tf.serving.local.server import serve
from tests.serving_support import raw_inputs, write_contract_model

LIMIT = 1024 * 1024
PATH = "/v1/models/smcn:predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "smcn")
    write_contract_model(base, version=1)
    server = serve(base, grpc_port=None, rest_port=0, poll_seconds=0, max_request_bytes=LIMIT)
    yield server
    server.stop()


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def good_body():
    inputs = raw_inputs(1)
    return json.dumps({"inputs": {n: v.tolist() for n, v in inputs.items()}}).encode()


def assert_good_request_answered(server):
    request = urllib.request.Request(server.rest_url + PATH, data=good_body())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert strict_json(response.read())["outputs"]["modality"] == ["both"]


def read_response(connection, timeout=10.0):
    """(status, JSON body) of one HTTP response on a raw socket."""
    connection.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(next(
        line.split(b":", 1)[1] for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, strict_json(body[:length])


def send_raw(server, headers, body=b"", half_close=False):
    """Sends a hand-made POST; returns (status, JSON, seconds to the answer)."""
    connection = socket.create_connection(("127.0.0.1", server.ports.rest), timeout=10)
    try:
        lines = [f"POST {PATH} HTTP/1.1", "Host: localhost", *headers]
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        status, answer = read_response(connection)
        return status, answer, time.monotonic() - start
    finally:
        connection.close()


@pytest.mark.parametrize(
    "headers, body, half_close, status, message",
    [
        (["Content-Length: -1"], b'{"inputs": {}}', False, 400, "Bad Content-Length header: '-1'"),
        (["Content-Length: -1"], b"[" * 100_000, True, 400, "Bad Content-Length header"),
        (["Content-Length: 12abc"], b"", False, 400, "Bad Content-Length header"),
        (["Content-Length: 10", "Content-Length: 20"], b"", False, 400,
         "Bad Content-Length header"),
        ([], b"", False, 411, "no Content-Length header"),
        (["Transfer-Encoding: chunked"], b"0\r\n\r\n", False, 411,
         "Transfer-Encoding 'chunked' is not supported"),
        ([f"Content-Length: {100 * 1024 * 1024}"], b"{" * 1000, True, 413,
         f"exceeds the server's limit of {LIMIT} bytes"),
        (["Content-Length: 1000"], b'{"inputs": ', True, 400,
         "The request body ended after 11 of its 1000 bytes"),
    ],
)
def test_bad_content_length_is_refused_at_once_and_the_server_keeps_serving(
    server, headers, body, half_close, status, message
):
    got_status, answer, seconds = send_raw(server, headers, body, half_close)
    assert got_status == status
    assert message in answer["error"], answer
    assert seconds < 5.0  # answered at once, not when the client gives up
    assert_good_request_answered(server)


def test_a_lying_client_never_makes_the_server_read_past_the_limit(server):
    """Content-Length -1 with a half-close used to read (and parse) everything sent."""
    connection = socket.create_connection(("127.0.0.1", server.ports.rest), timeout=10)
    try:
        connection.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode()
        )
        # Keep sending well past the limit; the server has already answered and closed.
        sent = 0
        try:
            for _ in range(4 * LIMIT // 65536):
                connection.sendall(b" " * 65536)
                sent += 65536
        except OSError:
            pass  # the server closed the connection: what we want
        try:
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            status, answer = read_response(connection)
        except (OSError, IndexError, ValueError):
            status, answer = None, None  # reset before we read: the answer was lost, fine
        if status is not None:
            assert status == 400 and "Bad Content-Length" in answer["error"]
    finally:
        connection.close()
    assert_good_request_answered(server)


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_json_is_refused_with_400(server, depth):
    raw = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    if len(raw) > LIMIT:
        raw = b"[" * depth
    request = urllib.request.Request(server.rest_url + PATH, data=raw)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400
    answer = strict_json(caught.value.read())
    assert f"nests deeper than {MAX_JSON_DEPTH} levels" in answer["error"]
    assert_good_request_answered(server)


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth(b'{"a": [[1, 2], "[[[[", "\\\\", "\\"[["]}') == 3
    assert json_depth(b"[" * 10 + b"]" * 10) == 10
    assert json_depth(b'["' + b"[" * 500 + b'"]') == 1


def test_non_finite_outputs_are_strict_json():
    answer = format_predict_response("columnar", {
        "probabilities": np.array([[np.nan, np.inf, -np.inf, 0.25]], np.float32),
        "score": np.array([np.nan, 1.5], np.float64),
    })
    text = json.dumps(answer, allow_nan=False)
    assert strict_json(text)["outputs"]["probabilities"] == [["NaN", "Infinity", "-Infinity", 0.25]]
    assert strict_json(text)["outputs"]["score"] == ["NaN", 1.5]
    assert array_to_json("x", np.float32(np.nan)) == "NaN"


def test_a_model_answering_nan_gives_strict_json_over_rest(tmp_path):
    """Any SavedModel may answer NaN: REST writes "NaN", never a bare NaN."""

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.log(x)}  # log(-1) = NaN, log(0) = -inf

    module = Echo()
    tf.saved_model.save(
        module, str(tmp_path / "echo" / "1"),
        signatures={"serving_default": module.serve.get_concrete_function()},
    )
    with serve(str(tmp_path / "echo"), grpc_port=None, rest_port=0, poll_seconds=0) as server:
        request = urllib.request.Request(
            server.rest_url + "/v1/models/echo:predict",
            data=json.dumps({"instances": [-1.0, 0.0, 1.0]}).encode(),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    assert "NaN" in text and strict_json(text) == {"predictions": ["NaN", "-Infinity", 0.0]}


def test_parse_errors_before_the_body_are_json_too(server):
    connection = socket.create_connection(("127.0.0.1", server.ports.rest), timeout=10)
    try:
        connection.sendall(b"BREW /v1/models/smcn HTTP/1.1\r\nHost: x\r\n\r\n")
        status, answer = read_response(connection)
    finally:
        connection.close()
    assert status == 501 and "BREW" in answer["error"]
    assert_good_request_answered(server)


def get_twice_on_one_connection(server, first_request):
    """Sends `first_request` then a plain GET on one keep-alive connection; both answers."""
    connection = socket.create_connection(("127.0.0.1", server.ports.rest), timeout=10)
    try:
        connection.sendall(first_request)
        first = read_response(connection)
        try:
            connection.sendall(b"GET /v1/models/smcn HTTP/1.1\r\nHost: x\r\n\r\n")
            second = read_response(connection)
        except (OSError, IndexError):
            second = None  # the server closed the connection after the first answer
        return first, second
    finally:
        connection.close()


def test_a_get_with_a_body_keeps_the_connection_framed(server):
    """The body of a GET used to stay unread: the next request read 'helloGET' as its method."""
    (status, answer), second = get_twice_on_one_connection(
        server, b"GET /v1/models/smcn HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    assert second is not None, "the connection was closed after a well-framed GET"
    assert second[0] == 200, second
    assert second[1]["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize("header", ["Transfer-Encoding: chunked", "Content-Length: x"])
def test_a_get_whose_body_cannot_be_framed_closes_the_connection(server, header):
    (status, answer), second = get_twice_on_one_connection(
        server, f"GET /v1/models/smcn HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode()
        + b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert status in (400, 411), answer
    assert second is None  # closed: never a request read from the middle of a body
    assert_good_request_answered(server)
