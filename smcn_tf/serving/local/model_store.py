"""The versions of one served model, loaded from disk and kept fresh, and Predict.

This is the transport-free core of `smcn serve`, written to behave like
TensorFlow Serving's model manager for one model with the default version
policy:

- A model lives at a base path; each version is a numeric sub-directory with
  a SavedModel (`saved_model.pb`). Anything else (a temporary directory being
  written, a directory without `saved_model.pb` yet) is ignored.
- The newest `num_versions` versions (default 1: TF Serving's `latest`
  policy) are loaded; a new version is loaded in the background while the
  old one keeps serving, then the old one is unloaded. A version that fails
  to load is reported in the status (state END, with the error) and retried
  when its files change.
- Requests name the model and optionally a version; without one they go to
  the newest loaded version.
- `assets.extra/tf_serving_warmup_requests` (TFRecord of `PredictionLog`)
  is replayed before a version becomes available, as TF Serving does.

The core is generic: it knows signatures only through the `SignatureDef`s of
the SavedModel's meta graph, exactly as TF Serving does, so it serves any
SavedModel with signatures. An SMCN export also carries
`assets.extra/smcn.json`; its `input_checks` are applied to every request
before the graph runs (`input_checks.InputRules.check`), for messages that
name the input and the row. The graph holds the same checks (TF Serving has
only those); an error the graph raises anyway is answered with its message,
without graph internals (`input_checks.clean_graph_error`).
"""

import collections
import logging
import os
import threading
import time

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from smcn_tf.contract.description import DESCRIPTION_FILE, ExportDescription
from smcn_tf.contract.errors import (
    ServingError,
    describe_key_mismatch,
    invalid_argument,
    not_found,
)
from smcn_tf.contract.input_checks import clean_graph_error
from smcn_tf.contract.layout import list_versions
from smcn_tf.contract.signatures import RAW_SIGNATURE
from smcn_tf.serving import wire

logger = logging.getLogger("smcn_tf.serving")

DEFAULT_SIGNATURE = RAW_SIGNATURE
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving replays at most this many warmup records.
MAX_WARMUP_RECORDS = 1000

RequestLimits = collections.namedtuple(
    "RequestLimits", ["max_batch_size", "max_tensor_bytes"], defaults=[None, None]
)
RequestLimits.__doc__ = """What one client request may hold (`None`: no limit).

Fields:
    max_batch_size: the most rows (first dimension of the batched inputs).
    max_tensor_bytes: the most bytes of one decoded input tensor (the gRPC
        front end checks it before decoding too: `wire.check_tensor_proto`).
"""


def read_signature_defs(version_dir, tags=("serve",)):
    """The `SignatureDef` protos of a SavedModel, as TF Serving reads them.

    Args:
        version_dir: a SavedModel directory.
        tags: the meta graph's tags; the first meta graph is used when none
            carries them all.

    Returns:
        A dict from signature key to `tensorflow.core.protobuf.meta_graph_pb2.SignatureDef`,
        including `__saved_model_init_op` when the SavedModel has one (TF
        Serving lists it too).
    """
    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(version_dir, "saved_model.pb")
    if os.path.isfile(binary):
        with open(binary, "rb") as stream:
            saved_model.ParseFromString(stream.read())
    else:
        with open(os.path.join(version_dir, "saved_model.pbtxt"), encoding="utf-8") as stream:
            text_format.Parse(stream.read(), saved_model)
    if not saved_model.meta_graphs:
        raise ValueError(f"{version_dir}: the SavedModel holds no meta graph.")
    chosen = saved_model.meta_graphs[0]
    for meta_graph in saved_model.meta_graphs:
        if set(tags) <= set(meta_graph.meta_info_def.tags):
            chosen = meta_graph
            break
    return dict(chosen.signature_def)


def read_input_rules(version_dir):
    """The `InputRules` of an export's `assets.extra/smcn.json`, or `None`.

    `None` for a SavedModel without one (any other model): only the
    signature's dtypes and shapes are checked then.

    Raises:
        ValueError: the file exists but is not JSON.
    """
    description = ExportDescription.read(version_dir)
    if description is None:
        return None
    try:
        return description.input_rules()
    except (TypeError, ValueError) as error:
        path = os.path.join(version_dir, DESCRIPTION_FILE)
        raise ValueError(f"{path}: bad `input_checks`: {error}") from error


def run_signature(function, specs, tensors):
    """Calls a signature function; TF errors become `ServingError`s with clean text.

    Args:
        function: the concrete signature function.
        specs: input name -> `InputSpec`.
        tensors: input name -> numpy array.

    Returns:
        The output dict of tensors.
    """
    try:
        return function(
            **{name: tf.constant(value, dtype=specs[name].dtype) for name, value in tensors.items()}
        )
    except tf.errors.OpError as error:
        code = {
            "InvalidArgumentError": "INVALID_ARGUMENT",
            "OutOfRangeError": "OUT_OF_RANGE",
            "ResourceExhaustedError": "RESOURCE_EXHAUSTED",
            "FailedPreconditionError": "FAILED_PRECONDITION",
            "UnimplementedError": "UNIMPLEMENTED",
        }.get(type(error).__name__, "INTERNAL")
        message = clean_graph_error(error.message or "")
        if code == "INVALID_ARGUMENT" and "assertion failed" in (error.message or ""):
            raise ServingError(code, message) from None
        raise ServingError(code, f"The model cannot run on this input: {message}") from None
    except (TypeError, ValueError) as error:
        raise invalid_argument(f"The model rejected this input: {error}") from None


def _directory_fingerprint(path):
    """Changes whenever a file under `path` is added, removed or rewritten."""
    count, newest, total = 0, 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            count += 1
            newest = max(newest, stat.st_mtime_ns)
            total += stat.st_size
    return count, newest, total


def _shape_text(dims):
    return "[" + ",".join("?" if size < 0 else str(size) for size in dims) + "]"


class InputSpec:
    """dtype and shape of one signature input, read from its `TensorInfo`."""

    def __init__(self, name, tensor_info):
        self.name = name
        self.dtype = tf.dtypes.as_dtype(tensor_info.dtype)
        shape = tensor_info.tensor_shape
        self.rank = None if shape.unknown_rank else len(shape.dim)
        self.dims = None if shape.unknown_rank else [int(dim.size) for dim in shape.dim]

    @property
    def batched(self):
        """Whether the first dimension is an unknown (batch) dimension."""
        return bool(self.dims) and self.dims[0] < 0

    def describe(self):
        shape = "unknown shape" if self.dims is None else _shape_text(self.dims)
        return f"{self.dtype.name} {shape}"


class ServableVersion:
    """One loaded version: the SavedModel, its signature functions and protos.

    Args:
        name: the model name.
        version: the integer version.
        path: the version directory.
        limits: the `RequestLimits` of client requests (default: none).

    Attributes:
        name: the model name.
        version: the integer version.
        path: the version directory.
        signature_defs: signature key -> `SignatureDef` proto.
        functions: signature key -> callable concrete function.
    """

    def __init__(self, name, version, path, limits=None):
        self.name = name
        self.version = version
        self.path = path
        self.limits = limits or RequestLimits()
        self.signature_defs = read_signature_defs(path)
        self.input_rules = read_input_rules(path)
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.functions = dict(self._loaded.signatures)
        self._input_specs = {
            key: {
                input_name: InputSpec(input_name, info)
                for input_name, info in self.signature_defs[key].inputs.items()
            }
            for key in self.functions
            if key in self.signature_defs
        }

    def signature(self, signature_name, rest=False):
        """The resolved signature key, or a `ServingError` naming the known ones."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.functions or key not in self.signature_defs:
            known = ", ".join(sorted(self.functions)) or "none"
            if rest:
                # TF Serving's REST handler says it this way, with INVALID_ARGUMENT.
                raise invalid_argument(
                    f'Serving signature name: "{key}" not found in signature def '
                    f"(this model has: {known})."
                )
            raise ServingError(
                "FAILED_PRECONDITION",
                f'Serving signature key "{key}" not found (this model has: {known}).',
            )
        return key

    def input_specs(self, signature_name):
        """Input name -> `InputSpec` of a signature."""
        return self._input_specs[self.signature(signature_name)]

    def output_names(self, signature_name):
        return sorted(self.signature_defs[self.signature(signature_name)].outputs)

    def predict(self, signature_name, inputs, output_filter=(), enforce_limits=True):
        """Runs one signature on validated inputs.

        Args:
            signature_name: a signature key; empty means `serving_default`.
            inputs: input name -> numpy array (strings as object arrays of
                bytes).
            output_filter: output names to return; empty returns them all.
            enforce_limits: apply `limits` (the export's own warmup
                requests are not a client's).

        Returns:
            A tuple `(signature_key, outputs)` with outputs as a dict from
            output name to numpy array, in sorted name order.

        Raises:
            ServingError: the request does not fit the signature, or breaks
                the export's `input_checks`.
        """
        key = self.signature(signature_name)
        specs = self._input_specs[key]
        tensors = validate_inputs(key, specs, inputs)
        if enforce_limits:
            check_limits(self.limits, specs, tensors)
        if self.input_rules is not None:
            self.input_rules.check(key, tensors)
        outputs = self.signature_defs[key].outputs
        wanted = []
        for alias in output_filter:
            if alias not in outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs "
                    f"expected to be in the set {{{','.join(sorted(outputs))}}}."
                )
            if alias in wanted:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            wanted.append(alias)
        result = run_signature(self.functions[key], specs, tensors)
        names = wanted or sorted(result)
        return key, {name: result[name].numpy() for name in names}


def _numpy_dtype_name(array):
    if array.dtype.kind in "OSU":
        return "string"
    return array.dtype.name


def _dtype_matches(array, dtype):
    if dtype == tf.string:
        return array.dtype.kind in "OS"
    if array.dtype.kind in "OSU":
        return False
    return tf.dtypes.as_dtype(array.dtype) == dtype


def validate_inputs(signature_key, specs, inputs):
    """Checks request inputs against a signature's inputs, as arrays.

    Checks the names (none missing, none unknown), each input's dtype (no
    silent casts), rank and known dimensions, and that every input whose
    first dimension is the batch dimension has the same batch size.

    Args:
        signature_key: the signature's name, for messages.
        specs: input name -> `InputSpec`.
        inputs: input name -> numpy array.

    Returns:
        The inputs, as a dict.

    Raises:
        ServingError: INVALID_ARGUMENT with a message naming the input.
    """
    if set(inputs) != set(specs):
        raise invalid_argument(
            f"input size does not match signature \"{signature_key}\": "
            + describe_key_mismatch(specs, inputs)
            + f". The signature takes {{{', '.join(sorted(specs))}}}."
        )
    batch_sizes = {}
    for name in sorted(specs):
        spec, value = specs[name], inputs[name]
        if not isinstance(value, np.ndarray):
            raise invalid_argument(f"input '{name}' is not a tensor.")
        if not _dtype_matches(value, spec.dtype):
            raise invalid_argument(
                f"input '{name}' has dtype {_numpy_dtype_name(value)} but signature "
                f"\"{signature_key}\" expects {spec.dtype.name} (values are not cast)."
            )
        if spec.dims is not None:
            if value.ndim != spec.rank:
                raise invalid_argument(
                    f"input '{name}' has shape {list(value.shape)} (rank {value.ndim}) but "
                    f"signature \"{signature_key}\" expects rank {spec.rank}: "
                    f"{spec.describe()}."
                )
            for axis, (size, wanted) in enumerate(zip(value.shape, spec.dims)):
                if wanted >= 0 and size != wanted:
                    raise invalid_argument(
                        f"input '{name}' has shape {list(value.shape)} but signature "
                        f"\"{signature_key}\" expects {spec.describe()} (dimension {axis} "
                        f"must be {wanted})."
                    )
            if spec.batched:
                batch_sizes[name] = value.shape[0]
    if len(set(batch_sizes.values())) > 1:
        sizes = ", ".join(f"{name}: {size}" for name, size in sorted(batch_sizes.items()))
        raise invalid_argument(
            f"inputs have different batch sizes ({sizes}); the first dimension of every "
            "batched input is the batch and must be the same."
        )
    return dict(inputs)


def check_limits(limits, specs, tensors):
    """Refuses a request over the server's `RequestLimits` (tensor bytes, rows), naming the limit.

    Args:
        limits: the `RequestLimits`.
        specs: input name -> `InputSpec`.
        tensors: input name -> numpy array, already checked by `validate_inputs`.

    Raises:
        ServingError: INVALID_ARGUMENT.
    """
    for name in sorted(tensors):
        array = tensors[name]
        wire.check_tensor_bytes(
            name, array.shape, _numpy_dtype_name(array), array.nbytes, limits.max_tensor_bytes
        )
    batched = [tensors[name].shape[0] for name in sorted(specs) if specs[name].batched]
    if limits.max_batch_size is not None and batched and batched[0] > limits.max_batch_size:
        raise invalid_argument(
            f"batch of {batched[0]} rows exceeds this server's limit of "
            f"{limits.max_batch_size} rows (--max-batch-size); send at most "
            f"{limits.max_batch_size} rows per request."
        )


class ModelStore:
    """The loaded versions of one model under a base path, refreshed from disk.

    Args:
        base_path: `<export_base>/<model_name>`, holding numeric version dirs.
        model_name: the name requests use.
        num_versions: how many of the newest versions stay loaded (TF
            Serving's `latest { num_versions }`; default 1).
        warmup: replay `assets.extra/tf_serving_warmup_requests` before a
            version becomes available.
        limits: the `RequestLimits` every version applies to client requests.

    Example:

    >>> store = ModelStore("export/smcn", "smcn")
    >>> store.refresh()
    [('loaded', 1)]
    >>> store.get().version
    1
    """

    def __init__(self, base_path, model_name, num_versions=1, warmup=True, limits=None):
        if num_versions < 1:
            raise ValueError(f"num_versions must be >= 1, got {num_versions}.")
        self.base_path = os.path.abspath(os.fspath(base_path))
        self.model_name = model_name
        self.num_versions = num_versions
        self.warmup = warmup
        self.limits = limits or RequestLimits()
        self._servables = {}  # version -> ServableVersion; replaced, never mutated
        self._states = {}  # version -> (state, error_code, error_message)
        self._failed = {}  # version -> directory fingerprint of the failed attempt
        self._signature_names = frozenset()  # of every version loaded so far
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._changed = threading.Condition()

    # Reading side: lock-free, the dict is swapped whole.
    @property
    def versions(self):
        """The loaded versions, ascending."""
        return sorted(self._servables)

    @property
    def known_versions(self):
        """The versions found on disk so far (loaded, loading, failed or unloaded)."""
        return frozenset(self._states)

    @property
    def signature_names(self):
        """The signature keys of every version loaded so far."""
        return self._signature_names

    def get(self, version=None):
        """The servable for a request: a given version, or the newest.

        Raises:
            ServingError: NOT_FOUND with TF Serving's message.
        """
        servables = self._servables
        if version is None:
            if not servables:
                raise not_found(
                    f"Servable not found for request: Latest({self.model_name}). No version "
                    f"is loaded yet: is there a <version>/saved_model.pb under {self.base_path}?"
                )
            return servables[max(servables)]
        if version not in servables:
            loaded = ", ".join(map(str, sorted(servables))) or "none"
            raise not_found(
                f"Servable not found for request: Specific({self.model_name}, {version}). "
                f"Loaded versions: {loaded}."
            )
        return servables[version]

    def status(self, version=None):
        """`(version, state, error_code, error_message)` rows, like GetModelStatus.

        Raises:
            ServingError: NOT_FOUND for a version this store never saw.
        """
        states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {self.model_name}")
            return [(version, *states[version])]
        if not states:
            raise not_found(f"Could not find any versions of model {self.model_name}")
        return [(number, *states[number]) for number in sorted(states)]

    def wait_for_version(self, version=None, timeout=30.0):
        """Blocks until `version` (or any version) is loaded; returns whether it is."""
        def ready():
            return bool(self._servables) if version is None else version in self._servables

        with self._changed:
            return self._changed.wait_for(ready, timeout=timeout)

    # Writing side.
    def refresh(self):
        """Loads the newest versions on disk and unloads the ones no longer wanted.

        Returns:
            A list of `(event, version)` pairs, `event` one of "loaded",
            "unloaded", "failed".
        """
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self):
        events = []
        on_disk = list_versions(self.base_path)
        wanted = on_disk[-self.num_versions:]
        servables = dict(self._servables)
        # States that change with the served set: written once it is published, so
        # a status of AVAILABLE always means requests already go to that version.
        published = {}
        for version in reversed(wanted):
            if version in servables:
                continue
            servable = self._load(version, events)
            if servable is not None:
                servables[version] = servable
                published[version] = ("AVAILABLE", "OK", "")
        # Keep the newest `num_versions` loaded versions still on disk; an older one
        # stays until a newer one is available, so the model never goes dark.
        keep = sorted(v for v in servables if v in on_disk)[-self.num_versions:]
        for version in sorted(servables):
            if version not in keep:
                del servables[version]
                published[version] = ("END", "OK", "")
                logger.info("Unloaded %s version %d", self.model_name, version)
                events.append(("unloaded", version))
        with self._changed:
            self._servables = servables
            self._states.update(published)
            self._changed.notify_all()
        return events

    def _load(self, version, events):
        """Loads (and warms up) one version; `None` when it fails or failed unchanged before."""
        path = os.path.join(self.base_path, str(version))
        fingerprint = _directory_fingerprint(path)
        if self._failed.get(version) == fingerprint:
            return None  # failed before and unchanged since: do not retry every poll
        self._states[version] = ("LOADING", "OK", "")
        began = time.monotonic()
        try:
            servable = ServableVersion(self.model_name, version, path, self.limits)
            loaded = time.monotonic()
            if self.warmup:
                replay_warmup_requests(servable)
        except Exception as error:  # any load failure must not stop the server
            self._failed[version] = fingerprint
            message = f"Loading {path} failed: {type(error).__name__}: {error}"
            self._states[version] = ("END", "UNKNOWN", message)
            logger.error("%s", message)
            events.append(("failed", version))
            return None
        self._failed.pop(version, None)
        self._signature_names = self._signature_names | frozenset(servable.functions)
        logger.info(
            "Loaded %s version %d from %s in %.2f s (warmup %.2f s)", self.model_name,
            version, path, time.monotonic() - began, time.monotonic() - loaded,
        )
        events.append(("loaded", version))
        return servable

    def start_polling(self, poll_seconds):
        """Refreshes from disk every `poll_seconds` in a daemon thread."""
        if poll_seconds <= 0:
            return
        self._stop.clear()

        def poll():
            while not self._stop.wait(poll_seconds):
                try:
                    self.refresh()
                except Exception:  # a bad poll is logged; the next one tries again
                    logger.exception("Polling %s failed", self.base_path)

        self._thread = threading.Thread(target=poll, name="smcn-serve-poll", daemon=True)
        self._thread.start()

    def stop_polling(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def replay_warmup_requests(servable):
    """Runs the PredictRequests of `assets.extra/tf_serving_warmup_requests`.

    TF Serving replays these before a version becomes available, so the first
    real request does not pay for tracing and kernel set-up; a failing
    warmup request fails the load, as in TF Serving.

    Returns:
        The number of requests replayed.
    """
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.isfile(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            continue  # classify/regress/multi-inference logs: nothing to run here
        request = log.predict_log.request
        inputs = {name: wire.proto_to_array(proto) for name, proto in request.inputs.items()}
        servable.predict(
            request.model_spec.signature_name, inputs, request.output_filter,
            enforce_limits=False,
        )
        count += 1
    if count:
        logger.info("Replayed %d warmup request(s) for version %d", count, servable.version)
    return count
