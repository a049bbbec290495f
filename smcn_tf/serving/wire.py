"""TF Serving's wire formats: the JSON tensor encoding (REST) and the gRPC protos.

Requests (`json_tensor.cc`, `FillPredictRequestFromJson`):

- `{"signature_name"?: str, "instances": [...]}`, the row format: each
  instance is an object with one value per named input, or a bare value when
  the signature has a single input. Instances are stacked into a batch, so
  they must all have the same shape (no padding is done for you).
- `{"signature_name"?: str, "inputs": {...}}`, the columnar format: one
  (batched) value per named input, or a bare value for a single input.
- JSON numbers become the input's dtype: any number for a float input (an
  error if it does not fit), only integers for an integer input (`1.5` is an
  error, as in TF Serving); strings never become numbers. String inputs take
  JSON strings (sent as UTF-8) or `{"b64": "<base64>"}` objects.

Responses: `{"predictions": [...]}` for the row format (one object per item
when there are several outputs, the bare value when there is one), or
`{"outputs": ...}` for the columnar format. Floats are written with the
shortest text that reads back as the same float32, as TF Serving writes them;
a non-finite float is written as the string "NaN", "Infinity" or "-Infinity"
(protobuf's JSON mapping), never as a bare `NaN` that strict JSON parsers
reject. String outputs are JSON strings, or `{"b64": ...}` for outputs whose
name ends in `_bytes` (and, here, for bytes that are not valid UTF-8).

Bodies are parsed only after `check_json_depth` has bounded their nesting
(`MAX_JSON_DEPTH`): a tensor of rank r nests r + 3 deep in the row format,
so 64 is far more than any request needs, and a body of 100,000 `[` is
refused at once instead of exhausting the parser's recursion.
"""

import base64
import binascii
import json
import math

import numpy as np

from smcn_tf.contract.errors import ServingError, describe_key_mismatch, invalid_argument
from smcn_tf.contract.requests import tensor_proto

_B64 = "b64"
MAX_JSON_DEPTH = 64
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_SCAN_CHUNK = 1 << 22


def json_depth(body, limit=None):
    """The nesting depth of a JSON text (arrays and objects).

    Brackets inside strings do not count. Every step is a C-speed bytes or
    numpy operation, so a 64 MiB body takes well under a second: escaped
    backslashes and quotes are dropped, the text between quotes is dropped,
    and the depth is the running sum of the remaining brackets.

    Args:
        body: the JSON text, bytes.
        limit: stop once the depth exceeds it (`None`: scan everything).

    Returns:
        The deepest nesting found (more than `limit`, not always the deepest, when
        it is deeper).

    Example:

    >>> json_depth(b'{"a": [[1, 2], "[[["]}')
    3
    """
    if b'"' in body:
        # Outside strings a backslash is not valid JSON; inside, "\\" is one
        # backslash and what remains of the form \" is an escaped quote.
        if b"\\" in body:
            body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
        body = b"".join(body.split(b'"')[0::2])  # the text outside strings
    brackets = np.frombuffer(body.translate(None, _NOT_BRACKETS), np.uint8)
    deepest, depth = 0, 0
    for start in range(0, len(brackets), _SCAN_CHUNK):
        chunk = brackets[start:start + _SCAN_CHUNK]
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)
        running = depth + np.cumsum(steps, dtype=np.int64)
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
        if limit is not None and deepest > limit:
            break
    return deepest


def check_json_depth(body, limit=MAX_JSON_DEPTH):
    """Refuses a JSON body nested deeper than `limit` (INVALID_ARGUMENT)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot nest deeper than it has openings: the common case, no scan
    if json_depth(body, limit) > limit:
        raise invalid_argument(
            f"JSON Parse error: the document nests deeper than {limit} levels (arrays and "
            f"objects); a predict request needs a handful."
        )


def _is_b64_object(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(_B64), str)


def _json_type(value):
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _short(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaves(value):
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _type_error(value, dtype):
    return invalid_argument(
        f"JSON Value: {_short(value)} Type: {_json_type(value)} is not of expected type: "
        f"{dtype.name}"
    )


def _dense_shape(value, where):
    """The shape of nested lists; an error when they are ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = [_dense_shape(item, where) for item in value]
    for index, shape in enumerate(shapes[1:], start=1):
        if shape != shapes[0]:
            raise invalid_argument(
                f"{where}: nested lists have different shapes ({list(shapes[0])} at index 0, "
                f"{list(shape)} at index {index}); a tensor must be rectangular."
            )
    return (len(value),) + shapes[0]


def _decode_string(value, dtype):
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64_object(value):
        try:
            return base64.b64decode(value[_B64], validate=True)
        except (binascii.Error, ValueError):
            raise invalid_argument(f"Unable to base64 decode {_short(value)}.")
    if isinstance(value, dict):
        raise invalid_argument(
            f"JSON Value: {_short(value)} not formatted correctly for base64 data "
            '(expected {"b64": "<base64 string>"}).'
        )
    raise _type_error(value, dtype)


def json_to_array(value, dtype, where):
    """Converts one JSON value (nested lists) to a numpy array of `dtype`.

    Args:
        value: the decoded JSON value.
        dtype: the `tf.DType` of the signature input.
        where: names the value in error messages, e.g. "input 'waveform'".

    Returns:
        A numpy array; strings as an object array of bytes.

    Raises:
        ServingError: INVALID_ARGUMENT for a value of the wrong type, a
            ragged list or a number that does not fit the dtype.
    """
    try:
        return _json_to_array(value, dtype, where)
    except ServingError as error:
        if error.message.startswith(where):
            raise
        raise invalid_argument(f"{where}: {error.message}") from None


def _json_to_array(value, dtype, where):
    import tensorflow as tf

    if dtype == tf.string:
        shape = _dense_shape(value, where)
        flat = [_decode_string(leaf, dtype) for leaf in _leaves(value)]
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        _dense_shape(value, where)  # names the ragged level when that is the cause
        raise invalid_argument(f"{where}: the value cannot be read as a tensor of {dtype.name}.")
    kind = array.dtype.kind
    if kind in "OUS":
        # Strings, nulls, objects or integers too large for int64 among the numbers.
        if kind == "O":
            _dense_shape(value, where)
        for leaf in _leaves(value):
            if isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
                raise _type_error(leaf, dtype)
            if isinstance(leaf, int) and not -(2**63) <= leaf < 2**64:
                raise _type_error(leaf, dtype)
        raise invalid_argument(f"{where}: the value cannot be read as a tensor of {dtype.name}.")
    if array.size == 0:
        return array.astype(dtype.as_numpy_dtype)
    if dtype == tf.bool:
        if kind != "b":
            raise _type_error(next(_leaves(value)), dtype)
        return array
    if kind == "b":
        raise _type_error(next(leaf for leaf in _leaves(value) if isinstance(leaf, bool)), dtype)
    if dtype.is_floating:
        if dtype == tf.bfloat16:
            return tf.constant(array, dtype=tf.float32).numpy().astype(dtype.as_numpy_dtype)
        limits = np.finfo(dtype.as_numpy_dtype)
        finite = array[np.isfinite(array)] if kind == "f" else array
        if finite.size and (finite.max() > limits.max or finite.min() < limits.min):
            bad = next(
                leaf for leaf in _leaves(value)
                if math.isfinite(leaf) and abs(leaf) > float(limits.max)
            )
            raise invalid_argument(
                f"Cannot convert JSON value: {bad} to {dtype.name} without loss of precision."
            )
        return array.astype(dtype.as_numpy_dtype)
    if dtype.is_integer:
        if kind == "f":
            bad = next(leaf for leaf in _leaves(value) if isinstance(leaf, float))
            raise _type_error(bad, dtype)
        info = np.iinfo(dtype.as_numpy_dtype)
        if array.size and (array.max() > info.max or array.min() < info.min):
            bad = next(leaf for leaf in _leaves(value) if not info.min <= leaf <= info.max)
            raise _type_error(bad, dtype)
        return array.astype(dtype.as_numpy_dtype)
    raise invalid_argument(f"{where}: JSON conversion to {dtype.name} is not supported.")


def parse_predict_body(body, input_specs, where_signature):
    """Reads a REST predict body into arrays.

    Args:
        body: the decoded JSON object.
        input_specs: input name -> `InputSpec` of the chosen signature.
        where_signature: the signature's name, for messages.

    Returns:
        A tuple `(format, inputs)`: `format` is "row" or "columnar", inputs a
        dict from input name to numpy array.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's (or a clearer) message.
    """
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances and has_inputs:
        raise invalid_argument(
            "Not formatted correctly: expecting only one of 'inputs' or 'instances' keys."
        )
    if not (has_instances or has_inputs):
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    names = sorted(input_specs)
    if has_instances:
        return "row", _parse_instances(body["instances"], input_specs, names, where_signature)
    return "columnar", _parse_inputs(body["inputs"], input_specs, names, where_signature)


def _parse_instances(instances, input_specs, names, signature):
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be a list/array.")
    if not instances:
        raise invalid_argument("No values in 'instances' array")

    def is_named(item):
        return isinstance(item, dict) and not _is_b64_object(item)

    named = is_named(instances[0])
    if not named and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            f"tensors are required by signature \"{signature}\": {{{', '.join(names)}}}."
        )
    columns = {name: [] for name in names}
    for index, item in enumerate(instances):
        if named:
            if not is_named(item):
                raise invalid_argument(
                    f"Expecting object but got {_json_type(item)} at item {index} of 'instances'."
                )
            if set(item) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list: "
                    + describe_key_mismatch(names, item)
                    + f". Keys must be equal to: {{{', '.join(names)}}}."
                )
            for name in names:
                columns[name].append(item[name])
        else:
            if is_named(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of 'instances'."
                )
            columns[names[0]].append(item)
    inputs = {}
    for name in names:
        rows = columns[name]
        try:
            inputs[name] = json_to_array(rows, input_specs[name].dtype, f"input '{name}'")
        except ServingError:
            _explain_ragged_instances(name, rows)
            raise
    return inputs


def _explain_ragged_instances(name, rows):
    """Raises TF Serving's message when instances of one input differ in shape."""
    first = None
    for index, row in enumerate(rows):
        try:
            shape = _dense_shape(row, f"input '{name}' of instance {index}")
        except ServingError as error:
            raise invalid_argument(
                f"Failed to process element: {index} key: {name} of 'instances' list. "
                f"Error: {error.message}"
            )
        if first is None:
            first = shape
        elif shape != first:
            raise invalid_argument(
                f"Failed to process element: {index} key: {name} of 'instances' list. "
                f"Error: Expecting shape {list(first)} but got: {list(shape)}. "
                "All instances must have the same shape: pad them to one length "
                "(and send the lengths), or use the columnar 'inputs' format."
            )


def _parse_inputs(value, input_specs, names, signature):
    if not isinstance(value, dict) or _is_b64_object(value):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors are required by signature \"{signature}\": {{{', '.join(names)}}}."
            )
        return {names[0]: json_to_array(value, input_specs[names[0]].dtype, f"input '{names[0]}'")}
    extra = sorted(set(value) - set(names))
    for name in names:
        if name not in value:
            raise invalid_argument(
                f"Missing named input: {name} in 'inputs' object. Signature \"{signature}\" "
                f"takes {{{', '.join(names)}}}."
            )
    if extra:
        # TF Serving ignores extra keys here; an unknown name is almost always a typo.
        raise invalid_argument(
            f"Unknown input(s) {{{', '.join(extra)}}} in 'inputs' object. Signature "
            f"\"{signature}\" takes {{{', '.join(names)}}}."
        )
    return {
        name: _batch_of_rank(
            json_to_array(value[name], input_specs[name].dtype, f"input '{name}'"),
            input_specs[name],
        )
        for name in names
    }


def _batch_of_rank(array, spec):
    """`[]` for an input of rank > 1 as an empty batch of that rank (shape `[0, ...]`).

    JSON writes a 0-row batch of any rank as `[]`; read as shape `[0]` it
    would be refused for its rank, not for being empty.
    """
    if array.shape != (0,) or not spec.rank or spec.rank < 2:
        return array
    return array.reshape((0,) + tuple(max(size, 0) for size in spec.dims[1:]))


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float_values(array):
    # str() of a numpy float32 is its shortest round-trip text; float() of that text
    # is a Python float that json writes the same way (TF Serving's WriteDecimal).
    # Non-finite values become protobuf JSON's strings: bare NaN is not JSON.
    values = []
    for item in array.ravel():
        text = str(item)
        values.append(_NON_FINITE.get(text, None) or float(text))
    return values


def _finite_json(value):
    """A float as JSON allows it: non-finite ones as "NaN" / "Infinity" / "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def array_to_json(name, array):
    """A numpy output as JSON-ready nested lists, with TF Serving's conventions."""
    if array.dtype.kind in "OS":
        as_bytes = name.endswith("_bytes")
        flat = []
        for item in array.ravel():
            item = item if isinstance(item, bytes) else str(item).encode("utf-8")
            if not as_bytes:
                try:
                    flat.append(item.decode("utf-8"))
                    continue
                except UnicodeDecodeError:
                    pass  # not text: send it losslessly
            flat.append({_B64: base64.b64encode(item).decode("ascii")})
    elif array.dtype in (np.float32, np.float16):
        flat = _float_values(array)
    elif array.dtype.kind == "f":
        flat = [_finite_json(float(item)) for item in array.ravel()]
    else:
        return array.tolist()
    if array.ndim == 0:
        return flat[0]
    nested = np.empty(len(flat), dtype=object)
    nested[:] = flat
    return nested.reshape(array.shape).tolist()


def format_predict_response(request_format, outputs):
    """The response body of a predict request.

    Args:
        request_format: "row" or "columnar".
        outputs: output name -> numpy array.

    Returns:
        The JSON-ready response dict.

    Raises:
        ServingError: INVALID_ARGUMENT when the row format cannot hold the
            outputs (a scalar output, or outputs with different batch sizes).
    """
    names = sorted(outputs)
    if request_format == "columnar":
        if len(names) == 1:
            return {"outputs": array_to_json(names[0], outputs[names[0]])}
        return {"outputs": {name: array_to_json(name, outputs[name]) for name in names}}
    batch_size = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise invalid_argument(
                f"Tensor name: {name} has no shape information; use the columnar 'inputs' "
                "format for signatures with scalar outputs."
            )
        if batch_size is not None and array.shape[0] != batch_size:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = array.shape[0]
    columns = {name: array_to_json(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {
        "predictions": [
            {name: columns[name][row] for name in names} for row in range(batch_size)
        ]
    }


# TF Serving's protos (gRPC), in both directions, for the clients and the
# local server (`smcn_tf.contract.requests` builds a `PredictRequest`). The
# protos need TensorFlow, which is imported on first use here (not at the
# top): the REST client, `smcn --help` and the JSON side of this module must
# not pay its seconds of start-up.


def tensor_proto_bytes(proto):
    """The bytes a `TensorProto` takes once decoded, from its shape and dtype alone.

    Read before any decoding: a proto may declare a large shape and hold one
    value, which `tf.make_ndarray` repeats to fill it (213 bytes on the wire,
    256 MB decoded). Strings count 8 bytes (a pointer) per element.
    """
    import tensorflow as tf

    elements = 1
    for dim in proto.tensor_shape.dim:
        elements *= max(int(dim.size), 0)
    try:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size or 8
    except TypeError:
        itemsize = 8  # an unknown dtype: refused later, when it is decoded
    return elements * itemsize


def check_tensor_bytes(name, shape, dtype_name, size, limit):
    """Refuses a tensor of `size` bytes over `limit` (`--max-tensor-bytes`), naming both.

    Raises:
        ServingError: INVALID_ARGUMENT.
    """
    if limit is not None and size > limit:
        raise invalid_argument(
            f"input '{name}': a {dtype_name} tensor of shape {list(shape)} takes {size} "
            f"bytes, over this server's limit of {limit} bytes per tensor "
            "(--max-tensor-bytes)."
        )


def check_tensor_proto(name, proto, limit):
    """`check_tensor_bytes` for a `TensorProto`, before it is decoded."""
    import tensorflow as tf

    try:
        dtype_name = tf.dtypes.as_dtype(proto.dtype).name
    except TypeError:
        dtype_name = f"dtype {proto.dtype}"
    shape = [int(dim.size) for dim in proto.tensor_shape.dim]
    check_tensor_bytes(name, shape, dtype_name, tensor_proto_bytes(proto), limit)


def proto_to_array(proto):
    """A `TensorProto` as a numpy array (strings as an object array of bytes)."""
    import tensorflow as tf

    return tf.make_ndarray(proto)


def predict_response(model_name, version, signature_name, outputs):
    """A `PredictResponse` holding `outputs` (name -> numpy array)."""
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = model_name
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature_name
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tensor_proto(value))
    return response


def response_outputs(response):
    """The outputs of a `PredictResponse` as numpy arrays."""
    return {name: proto_to_array(proto) for name, proto in response.outputs.items()}


def metadata_request(model_name, version=None):
    """A `GetModelMetadataRequest` for the `signature_def` metadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.metadata_field.append("signature_def")
    return request


def signature_def_map(signature_defs):
    """A `tensorflow.serving.SignatureDefMap` from signature key -> `SignatureDef`."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    result = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in signature_defs.items():
        result.signature_def[key].CopyFrom(signature)
    return result


def unpack_signature_def_map(response):
    """The `SignatureDefMap` packed in a `GetModelMetadataResponse`."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return signature_map


def metadata_to_json(model_name, version, signature_map):
    """TF Serving's REST metadata body for a `SignatureDefMap` proto."""
    from google.protobuf import json_format

    return {
        "model_spec": {"name": model_name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": json_format.MessageToDict(
                signature_map,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
        },
    }


def status_response(rows):
    """A `GetModelStatusResponse` from `(version, state, code, message)` rows."""
    from tensorflow.core.protobuf import error_codes_pb2
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, code, message in rows:
        entry = response.model_version_status.add()
        entry.version = version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        entry.status.error_code = error_codes_pb2.Code.Value(code)
        entry.status.error_message = message
    return response


def predict_body(inputs, signature_name, rest_format="instances"):
    """A REST predict body for numpy `inputs`, in the row or columnar format.

    Args:
        inputs: input name -> numpy array (same batch size).
        signature_name: the signature to run.
        rest_format: `"instances"` (row format) or `"inputs"` (columnar).
    """
    names = sorted(inputs)
    columns = {name: np.asarray(inputs[name]).tolist() for name in names}
    if rest_format == "inputs":
        return {"signature_name": signature_name, "inputs": columns}
    return {
        "signature_name": signature_name,
        "instances": [
            {name: columns[name][row] for name in names}
            for row in range(len(columns[names[0]]))
        ],
    }


def read_predict_body(answer):
    """The outputs of a REST predict response (either format) as numpy arrays."""
    if "outputs" in answer:
        columns = answer["outputs"]
    else:
        rows = answer["predictions"]
        columns = {name: [row[name] for row in rows] for name in rows[0]}
    return {name: np.asarray(value) for name, value in columns.items()}
