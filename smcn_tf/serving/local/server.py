"""`smcn serve`: a local model server speaking TensorFlow Serving's wire API.

No TensorFlow Serving binary can be installed on our machines, so this
server stands in for it during development and in tests: it loads any
SavedModel in TF Serving's layout (`<base>/<version>/saved_model.pb`), picks
up new versions without a restart, and answers the same gRPC services
(`PredictionService.Predict`, `GetModelMetadata`, `ModelService.GetModelStatus`)
and REST routes (`/v1/models/...`) with the same request and response formats
and error codes. A client written against it works against TF Serving.

It is not a production server: one Python process, no request batching, no
model config file, no version labels. `GET /monitoring/prometheus/metrics`
on the REST port answers its request counts and latencies in Prometheus'
text format, under TF Serving's metric names (`metrics.py`).

Example:

>>> server = serve("export/smcn", grpc_port=0, rest_port=0)
>>> server.ports
ServerPorts(grpc=..., rest=...)
>>> server.stop()
"""

import collections
import concurrent.futures
import logging
import os
import threading
import time

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from smcn_tf.contract.errors import ServingError, not_found
from smcn_tf.contract.layout import list_versions
from smcn_tf.serving import wire
from smcn_tf.serving.local.grpc_service import ModelService, PredictionService
from smcn_tf.serving.local.metrics import ServingMetrics
from smcn_tf.serving.local.model_store import DEFAULT_SIGNATURE, ModelStore, RequestLimits
from smcn_tf.serving.local.rest import RestServer

logger = logging.getLogger("smcn_tf.serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
# One decoded tensor: about 17 minutes of 16 kHz float32 audio.
DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024

ServerPorts = collections.namedtuple("ServerPorts", ["grpc", "rest"])

# The gRPC methods counted in the metrics, by TF Serving's API names.
_GRPC_APIS = {
    "/tensorflow.serving.PredictionService/Predict": "Predict",
    "/tensorflow.serving.PredictionService/GetModelMetadata": "GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus": "GetModelStatus",
}


def _format_host(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ModelServer:
    """Serves the versions of one model over gRPC and REST.

    Args:
        model_base_path: `<export_base>/<model_name>`, holding numeric
            version directories.
        model_name: the name clients use; default the base path's basename.
        grpc_port: gRPC port; 0 picks a free one; `None` disables gRPC.
        rest_port: REST port; 0 picks a free one; `None` disables REST.
        host: the interface to listen on (`"0.0.0.0"` for every interface).
        poll_seconds: how often the base path is checked for new versions;
            0 disables polling (call `refresh()` yourself).
        max_request_bytes: the largest request accepted (gRPC message or
            REST body).
        num_versions: how many of the newest versions stay loaded (TF
            Serving's default policy keeps 1).
        max_workers: threads answering gRPC requests.
        warmup: replay `assets.extra/tf_serving_warmup_requests` on load.
        max_batch_size: the most rows one request may hold (`None`: no
            limit); a larger request is refused with INVALID_ARGUMENT.
        max_tensor_bytes: the most bytes one request tensor may take once
            decoded (element count x dtype size; `None`: no limit), checked
            from a gRPC `TensorProto`'s shape and dtype before it is decoded.

    Attributes:
        ports: the bound `ServerPorts(grpc, rest)` once started.
        metrics: the `ServingMetrics` of this server (its own registry).

    Raises:
        ValueError: the base path is not a directory, or a bad argument.

    Example:

    >>> with ModelServer("export/smcn", grpc_port=0, rest_port=0) as server:
    ...     print(server.rest_url, server.versions)
    http://127.0.0.1:... [1]
    """

    def __init__(
        self,
        model_base_path,
        model_name=None,
        grpc_port=8500,
        rest_port=8501,
        host="127.0.0.1",
        poll_seconds=2.0,
        max_request_bytes=DEFAULT_MAX_REQUEST_BYTES,
        num_versions=1,
        max_workers=8,
        warmup=True,
        max_batch_size=None,
        max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES,
    ):
        base = os.path.abspath(os.fspath(model_base_path))
        if not os.path.isdir(base):
            raise ValueError(
                f"model_base_path {base} is not a directory; expected <export_base>/<model_name> "
                "holding numeric version directories (as `smcn export` writes)."
            )
        if os.path.isfile(os.path.join(base, "saved_model.pb")):
            raise ValueError(
                f"{base} is a version directory; pass its parent "
                f"({os.path.dirname(base)}), the model's base path, as TF Serving expects."
            )
        if list_versions(base) == [] and any(
            list_versions(os.path.join(base, name)) for name in os.listdir(base)
        ):
            raise ValueError(
                f"{base} holds models, not versions: pass one model's directory, e.g. "
                f"{os.path.join(base, sorted(os.listdir(base))[0])}."
            )
        for label, port in (("grpc_port", grpc_port), ("rest_port", rest_port)):
            if port is not None and not 0 <= int(port) <= 65535:
                raise ValueError(f"{label} must be in 0..65535 or None, got {port}.")
        if grpc_port is None and rest_port is None:
            raise ValueError("Both grpc_port and rest_port are None: nothing would listen.")
        if max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {max_request_bytes}.")
        if poll_seconds < 0:
            raise ValueError(f"poll_seconds must be >= 0, got {poll_seconds}.")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}.")
        if max_tensor_bytes is not None and max_tensor_bytes < 1:
            raise ValueError(f"max_tensor_bytes must be >= 1 or None, got {max_tensor_bytes}.")
        self.max_tensor_bytes = max_tensor_bytes
        self.model_base_path = base
        self.model_name = model_name or os.path.basename(base.rstrip(os.sep))
        self.host = host
        self.poll_seconds = poll_seconds
        self.max_request_bytes = int(max_request_bytes)
        self.max_workers = max_workers
        self._requested_ports = (grpc_port, rest_port)
        self.store = ModelStore(
            base, self.model_name, num_versions=num_versions, warmup=warmup,
            limits=RequestLimits(
                max_batch_size=max_batch_size, max_tensor_bytes=max_tensor_bytes
            ),
        )
        self.metrics = ServingMetrics()
        self.ports = ServerPorts(None, None)
        self._grpc_server = None
        self._rest_server = None
        self._rest_thread = None
        self._stopped = threading.Event()
        self._started = False

    # Life cycle.
    def start(self):
        """Loads the newest version, binds both ports and starts answering.

        Returns once both ports listen. A base path without any version yet
        is served anyway (requests answer NOT_FOUND until one appears), as
        TF Serving does.

        Returns:
            `self`.

        Raises:
            OSError: a port cannot be bound.
        """
        if self._started:
            return self
        events = self.store.refresh()
        if not self.store.versions:
            logger.warning(
                "No loadable version under %s yet (%s); waiting for one.",
                self.model_base_path,
                ", ".join(f"{event} {version}" for event, version in events) or "none found",
            )
        grpc_port, rest_port = self._requested_ports
        try:
            bound_grpc = self._start_grpc(grpc_port) if grpc_port is not None else None
            bound_rest = self._start_rest(rest_port) if rest_port is not None else None
        except BaseException:
            self._shutdown_transports()
            raise
        self.ports = ServerPorts(bound_grpc, bound_rest)
        self.store.start_polling(self.poll_seconds)
        self._started = True
        self._stopped.clear()
        return self

    def _start_grpc(self, port):
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="smcn-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", self.max_request_bytes),
                # Without this, a second server could silently share a busy port.
                ("grpc.so_reuseport", 0),
            ],
            # Outermost first: a refusal for size is counted too.
            interceptors=[_MeasuredCalls(self), _TensorSizeLimit(self.max_tensor_bytes)],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self), server)
        address = _format_host(self.host, port)
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"Cannot listen for gRPC on {address}: {error}") from error
        if not bound:
            raise OSError(f"Cannot listen for gRPC on {address} (in use?).")
        server.start()
        self._grpc_server = server
        return bound

    def _start_rest(self, port):
        try:
            server = RestServer((self.host, port), self)
        except OSError as error:
            raise OSError(
                f"Cannot listen for REST on {_format_host(self.host, port)}: {error}"
            ) from error
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name="smcn-rest", daemon=True,
        )
        thread.start()
        self._rest_server, self._rest_thread = server, thread
        return server.server_address[1]

    def _shutdown_transports(self, grace=1.0):
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.server_close()
            self._rest_thread.join(timeout=10)
            self._rest_server = self._rest_thread = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait(timeout=grace + 5)
            self._grpc_server = None

    def stop(self, grace=1.0):
        """Stops polling and both servers; in-flight gRPC calls get `grace` seconds."""
        self.store.stop_polling()
        self._shutdown_transports(grace)
        self._started = False
        self._stopped.set()

    def wait(self, timeout=None):
        """Blocks until `stop()` is called; returns whether it was."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # Convenience.
    @property
    def versions(self):
        """The loaded versions, ascending."""
        return self.store.versions

    @property
    def grpc_target(self):
        """`host:port` of the gRPC server (for `grpc.insecure_channel`)."""
        return _format_host(self._client_host(), self.ports.grpc) if self.ports.grpc else None

    @property
    def rest_url(self):
        """`http://host:port` of the REST server."""
        if not self.ports.rest:
            return None
        return "http://" + _format_host(self._client_host(), self.ports.rest)

    def _client_host(self):
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    def refresh(self):
        """Checks the base path for new versions now; returns the load events."""
        return self.store.refresh()

    def wait_for_version(self, version=None, timeout=30.0):
        """Blocks until `version` (or any version) is being served; returns whether it is."""
        return self.store.wait_for_version(version, timeout)

    # What the gRPC and REST front ends ask.
    def _check_name(self, model_name, version=None):
        if model_name != self.model_name:
            request = f"Specific({model_name}, {version})" if version is not None else (
                f"Latest({model_name})"
            )
            raise not_found(
                f"Servable not found for request: {request}. This server serves model "
                f"'{self.model_name}'."
            )

    def servable(self, model_name, version=None):
        """The `ServableVersion` a request names; `ServingError` NOT_FOUND otherwise."""
        self._check_name(model_name, version)
        return self.store.get(version)

    def label_error(self, label):
        """The error for a request naming a version label (not configured here)."""
        return ServingError(
            "INVALID_ARGUMENT",
            f"Unrecognized servable version label: {label} (smcn serve has no version "
            "labels; name a version number or none for the newest).",
        )

    def status_rows(self, model_name, version=None):
        if model_name != self.model_name:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {model_name}")
            raise not_found(f"Could not find any versions of model {model_name}")
        return self.store.status(version)

    def status_proto(self, model_name, version=None):
        """The gRPC `GetModelStatusResponse`."""
        return wire.status_response(self.status_rows(model_name, version))

    def status_json(self, model_name, version=None):
        """The REST status body, as TF Serving prints it (every field present)."""
        return {
            "model_version_status": [
                {
                    "version": str(number),
                    "state": state,
                    "status": {"error_code": code, "error_message": message},
                }
                for number, state, code, message in self.status_rows(model_name, version)
            ]
        }

    def record_request(self, api, entrypoint, status, seconds, model_name, version=None,
                       signature_name=""):
        """Counts one answered request in `metrics`, with bounded label values.

        A model name this server does not serve, a version never found on
        disk and a signature no version has are recorded as `""`: clients
        cannot grow the number of series.
        """
        if model_name != self.model_name:
            model_name, version, signature_name = "", None, ""
        if version not in self.store.known_versions:
            version = None
        if signature_name not in self.store.signature_names:
            signature_name = ""
        self.metrics.record(
            model_name, version, signature_name, api, entrypoint, status, seconds
        )

    def metadata_json(self, model_name, version=None):
        """The REST metadata body: model_spec and the SignatureDefMap as JSON."""
        servable = self.servable(model_name, version)
        return wire.metadata_to_json(
            servable.name, servable.version, wire.signature_def_map(servable.signature_defs)
        )


class _MeasuredCalls(grpc.ServerInterceptor):
    """Counts and times the gRPC calls of the model services (`ModelServer.record_request`)."""

    def __init__(self, core):
        self.core = core

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        api = _GRPC_APIS.get(handler_call_details.method)
        if handler is None or api is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        def measured(request, context):
            began = time.perf_counter()
            answer, status = None, "UNKNOWN"
            try:
                answer = behavior(request, context)
                status = "OK"
                return answer
            except BaseException:
                code = context.code()  # set by context.abort
                status = code.name if code is not None else "UNKNOWN"
                raise
            finally:
                self._record(api, request, answer, status, time.perf_counter() - began)

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _record(self, api, request, answer, status, seconds):
        spec = request.model_spec
        if answer is not None and api == "Predict":
            version = answer.model_spec.version.value  # the version that answered
        else:
            version = spec.version.value if spec.HasField("version") else None
        signature = (spec.signature_name or DEFAULT_SIGNATURE) if api == "Predict" else ""
        self.core.record_request(api, "GRPC", status, seconds, spec.name, version, signature)


class _TensorSizeLimit(grpc.ServerInterceptor):
    """Refuses a Predict whose tensors would decode past `max_tensor_bytes`, before decoding."""

    def __init__(self, limit):
        self.limit = limit

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if (
            handler is None or self.limit is None or handler.unary_unary is None
            or _GRPC_APIS.get(handler_call_details.method) != "Predict"
        ):
            return handler
        behavior = handler.unary_unary

        def limited(request, context):
            try:
                for name in sorted(request.inputs):
                    wire.check_tensor_proto(name, request.inputs[name], self.limit)
            except ServingError as error:
                context.abort(error.grpc_code, error.message)
            return behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def serve(
    model_base_path,
    model_name=None,
    grpc_port=8500,
    rest_port=8501,
    host="127.0.0.1",
    poll_seconds=2.0,
    max_request_bytes=DEFAULT_MAX_REQUEST_BYTES,
    **kwargs,
):
    """Starts a `ModelServer` and returns it, listening.

    Args:
        model_base_path: `<export_base>/<model_name>` with numeric versions.
        model_name: the name clients use; default the base path's basename.
        grpc_port: gRPC port (0: a free port; `None`: no gRPC).
        rest_port: REST port (0: a free port; `None`: no REST).
        host: the interface to listen on.
        poll_seconds: how often new versions are looked for.
        max_request_bytes: the largest request accepted.
        **kwargs: more `ModelServer` arguments (`num_versions`, ...).

    Returns:
        The started `ModelServer`; `server.ports` holds the bound ports.
        Call `server.stop()` when done, or use it as a context manager.

    Example:

    >>> server = serve("export/smcn", grpc_port=0, rest_port=0)
    >>> server.grpc_target
    '127.0.0.1:...'
    >>> server.stop()
    """
    return ModelServer(
        model_base_path,
        model_name=model_name,
        grpc_port=grpc_port,
        rest_port=rest_port,
        host=host,
        poll_seconds=poll_seconds,
        max_request_bytes=max_request_bytes,
        **kwargs,
    ).start()
