"""TF Serving's REST API over the standard library's threading HTTP server.

Routes (paths are case-insensitive, as in TF Serving):

    GET  /v1/models/{name}[/versions/{v}]            model status
    GET  /v1/models/{name}[/versions/{v}]/metadata   signature metadata
    POST /v1/models/{name}[/versions/{v}]:predict    predict (row or columnar JSON)
    GET  /monitoring/prometheus/metrics              the server's metrics (Prometheus text)

Errors answer `{"error": "<message>"}` with TF Serving's HTTP status for the
error's code (400 for INVALID_ARGUMENT / FAILED_PRECONDITION, 404 for
NOT_FOUND, ...).

Bodies are read only up to the server's `max_request_bytes`, whatever the
client says or does: a POST without `Content-Length` (or a chunked one) is
refused with 411, a malformed or negative one with 400, a larger one with 413,
each before any of the body is read; a body that ends before its
`Content-Length` (the client half-closed) is refused with 400. A GET's
declared body is read and dropped under the same rules, so whatever the
method, the next request on a keep-alive connection starts where it should;
an unknown method is answered 501 and its connection closed. JSON deeper
than `MAX_JSON_DEPTH` is refused with 400 before it is parsed. Answers are
strict JSON: no bare `NaN` / `Infinity`.
"""

import collections
import http.server
import json
import logging
import re
import socket
import time
import urllib.parse

from smcn_tf.contract.errors import ServingError, invalid_argument, not_found
from smcn_tf.serving.local.metrics import CONTENT_TYPE, METRICS_PATH
from smcn_tf.serving.wire import (
    MAX_JSON_DEPTH,
    check_json_depth,
    format_predict_response,
    parse_predict_body,
)

logger = logging.getLogger("smcn_tf.serving")

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,19}$")
# How long reading one body may take in all (a client trickling bytes).
BODY_READ_SECONDS = 120.0
_READ_CHUNK = 1 << 20
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?",
    re.IGNORECASE,
)


# An answer that is not JSON (the metrics page).
_Text = collections.namedtuple("_Text", ["payload", "content_type"])


class RestHandler(http.server.BaseHTTPRequestHandler):
    """One HTTP request against the model server `self.server.model_server`."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True
    server_version = "smcn-serve"
    timeout = 120  # seconds an idle keep-alive connection may hold a thread

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        logger.debug("REST %s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route):
        began = time.perf_counter()
        # [API, model name, version, signature] once the route knows them: the metrics.
        self._measured = None
        code = "OK"
        try:
            status, body = 200, route()
        except ServingError as error:
            code, status, body = error.code, error.http_status, {"error": error.message}
        except Exception as error:  # a bug must answer 500, not drop the connection
            logger.exception("REST request %s %s failed", self.command, self.path)
            code, status = "INTERNAL", 500
            body = {"error": f"Internal error: {type(error).__name__}: {error}"}
        if isinstance(body, _Text):
            self._send_json(status, body.payload, body.content_type)
            return
        try:
            # Strict JSON: a bare NaN or Infinity would break the client's parser.
            payload = json.dumps(body, separators=(",", ":"), allow_nan=False)
        except ValueError:
            logger.error("REST answer to %s %s holds a non-finite number", self.command, self.path)
            code, status, payload = "INTERNAL", 500, json.dumps(
                {"error": "Internal error: the answer holds a non-finite number."}
            )
        if self._measured is not None:  # before the answer: a client may scrape right after
            api, name, version, signature = self._measured
            self.server.model_server.record_request(
                api, "REST", code, time.perf_counter() - began, name, version, signature
            )
        self._send_json(status, payload.encode("utf-8"))

    def _send_json(self, status, payload, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        if self._unread_bytes:
            self._discard_unread_body()

    def send_error(self, code, message=None, explain=None):
        """Errors found while parsing the request line or headers, as JSON."""
        try:
            short, _ = self.responses.get(code, ("Error", ""))
        except (TypeError, ValueError):
            short = "Error"
        self.close_connection = True
        text = message or short
        if explain:
            text = f"{text}: {explain}"
        self.log_error("code %d, message %s", code, text)
        payload = json.dumps({"error": text}).encode("utf-8")
        if self.command == "HEAD" or code < 200 or code in (204, 304):
            payload = b""
        try:
            self._send_json(code, payload)
        except OSError:
            pass  # the client is gone

    _unread_bytes = 0
    # How long a refused body may keep a thread busy being discarded.
    _DISCARD_SECONDS = 5.0

    def _discard_unread_body(self):
        """Reads and drops a refused body, so the client sees the error, not a reset.

        Closing with unread data makes the kernel reset the connection, and a
        client still sending gets "connection reset" instead of our 413. The
        body is dropped in small chunks (never held) for a few seconds at most.
        """
        self.wfile.flush()
        deadline = time.monotonic() + self._DISCARD_SECONDS
        remaining = self._unread_bytes
        self._unread_bytes = 0
        try:
            self.connection.settimeout(1.0)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass  # the client gave up: nothing left to do

    def _path(self):
        return urllib.parse.urlsplit(self.path).path

    def _malformed(self):
        if not self._path().lower().startswith("/v1/"):
            return not_found(f"Not found: {self.command} {self._path()} (the API lives under /v1/).")
        return invalid_argument(f"Malformed request: {self.command} {self._path()}")

    def _refuse_unknown_length(self, limit):
        """Closes after the answer; whatever body follows is dropped, never read past `limit`."""
        self.close_connection = True
        self._unread_bytes = limit

    def _read_body(self):
        """The request body, read up to the server's limit and never past it.

        Every refusal closes the connection: what follows on it cannot be
        trusted to start a new request.
        """
        limit = self.server.model_server.max_request_bytes
        if self.headers.get("Transfer-Encoding"):
            self._refuse_unknown_length(limit)
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Transfer-Encoding {self.headers.get('Transfer-Encoding')!r} is not supported; "
                "send the body with a Content-Length header.",
                http_status=411,
            )
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._refuse_unknown_length(limit)
            raise ServingError(
                "INVALID_ARGUMENT",
                "The request has no Content-Length header (chunked bodies are not supported).",
                http_status=411,
            )
        text = values[0].strip()
        if len(set(value.strip() for value in values)) > 1 or not _CONTENT_LENGTH.match(text):
            self._refuse_unknown_length(limit)
            shown = ", ".join(repr(value) for value in values)
            raise invalid_argument(
                f"Bad Content-Length header: {shown[:80]} (expected one non-negative "
                "number of bytes)."
            )
        length = int(text)
        if length > limit:
            # Not kept: dropped after the answer is sent, then the connection closes.
            self.close_connection = True
            self._unread_bytes = length
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"Request body of {length} bytes exceeds the server's limit of {limit} bytes "
                "(max_request_bytes / --max-request-bytes).",
                http_status=413,
            )
        chunks, received = [], 0
        deadline = time.monotonic() + BODY_READ_SECONDS
        try:
            while received < length:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = self.rfile.read1(min(length - received, _READ_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        except (TimeoutError, socket.timeout):
            self.close_connection = True
            raise ServingError(
                "DEADLINE_EXCEEDED",
                f"The request body did not arrive in time: {received} of {length} bytes "
                f"(Content-Length) after {BODY_READ_SECONDS:.0f} s.",
                http_status=408,
            )
        if received < length:
            self.close_connection = True
            raise invalid_argument(
                f"The request body ended after {received} of its {length} bytes "
                "(Content-Length); the client closed the connection early."
            )
        return b"".join(chunks)

    def _read_declared_body(self):
        """Reads and drops the body a request declares though its route takes none.

        A body left unread would be parsed as the start of the next request
        on a keep-alive connection (`GET` + `hello` made a method `helloGET`).
        One that cannot be framed (chunked, a bad or too large
        `Content-Length`) is refused and the connection closed, as for a POST.
        """
        if self.headers.get("Transfer-Encoding") or self.headers.get_all("Content-Length"):
            self._read_body()  # dropped

    def _get(self):
        self._read_declared_body()
        if self._path() == METRICS_PATH:
            return _Text(self.server.model_server.metrics.exposition(), CONTENT_TYPE)
        match = _STATUS_PATH.fullmatch(self._path())
        if not match:
            raise self._malformed()
        name, version, label, metadata = match.groups()
        if not name:
            raise invalid_argument("Missing model name in request.")
        core = self.server.model_server
        name = urllib.parse.unquote(name)
        version = int(version) if version else None
        api = "GetModelMetadata" if metadata else "GetModelStatus"
        self._measured = [api, name, version, ""]
        if label:
            raise core.label_error(urllib.parse.unquote(label))
        if metadata:
            return core.metadata_json(name, version)
        return core.status_json(name, version)

    def _post(self):
        match = _PREDICT_PATH.fullmatch(self._path())
        if not match:
            body = self._read_body()  # keep the connection usable
            del body
            raise self._malformed()
        name, version, label, method = match.groups()
        body = self._read_body()
        core = self.server.model_server
        name = urllib.parse.unquote(name)
        version = int(version) if version else None
        self._measured = [method.lower().capitalize(), name, version, ""]
        if label:
            raise core.label_error(urllib.parse.unquote(label))
        if method.lower() != "predict":
            raise ServingError(
                "UNIMPLEMENTED",
                f":{method} is not implemented by smcn serve (it serves :predict; "
                "TF Serving's :classify and :regress need classify/regress signatures).",
            )
        if not body:
            raise invalid_argument("JSON Parse error: The document is empty")
        check_json_depth(body, MAX_JSON_DEPTH)
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid_argument(f"JSON Parse error: {error}")
        except RecursionError:
            raise invalid_argument(
                f"JSON Parse error: the document nests deeper than {MAX_JSON_DEPTH} levels."
            )
        if not isinstance(request, dict):
            raise invalid_argument(
                f"JSON Value: {json.dumps(request)[:80]} Is not object: the body must be a "
                'JSON object with "instances" or "inputs".'
            )
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument("'signature_name' key must be a string value.")
        servable = core.servable(name, version)
        signature = servable.signature(signature_name, rest=True)
        self._measured[3] = signature
        request_format, inputs = parse_predict_body(
            request, servable.input_specs(signature), signature
        )
        _, outputs = servable.predict(signature, inputs)
        self._measured[2] = servable.version  # the version that answered, as over gRPC
        return format_predict_response(request_format, outputs)


class RestServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server bound to a model server.

    Args:
        address: `(host, port)`; port 0 picks a free port.
        model_server: the object that answers (`ModelServer`).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, model_server):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.model_server = model_server
        super().__init__(address, RestHandler)
