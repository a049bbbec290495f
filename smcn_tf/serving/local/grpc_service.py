"""TF Serving's gRPC services (`tensorflow.serving.PredictionService` and
`ModelService`) answering from a `ModelServer`.

Implemented: `PredictionService.Predict`, `PredictionService.GetModelMetadata`
and `ModelService.GetModelStatus`. `Classify`, `Regress`, `MultiInference`
and `HandleReloadConfigRequest` answer UNIMPLEMENTED (the generated base
classes do that).
"""

import logging

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from smcn_tf.contract.errors import ServingError, invalid_argument
from smcn_tf.serving import wire

logger = logging.getLogger("smcn_tf.serving")


def _abort_on_error(method):
    """Turns a `ServingError` (or a bug) into a gRPC status on `context`."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.grpc_code, error.message)
        except Exception as error:  # a bug answers INTERNAL, the server keeps running
            logger.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _requested_version(model_spec, core):
    if model_spec.version_label:
        raise core.label_error(model_spec.version_label)
    return model_spec.version.value if model_spec.HasField("version") else None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `ModelServer`."""

    def __init__(self, core):
        self.core = core

    @_abort_on_error
    def Predict(self, request, context):
        """Runs a signature on the request's tensors."""
        spec = request.model_spec
        servable = self.core.servable(spec.name, _requested_version(spec, self.core))
        signature = servable.signature(spec.signature_name)
        inputs = {}
        for name, proto in request.inputs.items():
            try:
                inputs[name] = wire.proto_to_array(proto)
            except Exception as error:
                raise invalid_argument(
                    f"input '{name}': the TensorProto cannot be read as a tensor "
                    f"(dtype, shape and values must agree): {error}"
                )
        signature, outputs = servable.predict(signature, inputs, list(request.output_filter))
        return wire.predict_response(servable.name, servable.version, signature, outputs)

    @_abort_on_error
    def GetModelMetadata(self, request, context):
        """The SignatureDefMap of the model, packed in `metadata["signature_def"]`."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field "
                '(TF Serving supports "signature_def").'
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(
                    f'Metadata field {field} is not supported (only "signature_def" is).'
                )
        spec = request.model_spec
        servable = self.core.servable(spec.name, _requested_version(spec, self.core))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(wire.signature_def_map(servable.signature_defs))
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` (status only) over a `ModelServer`."""

    def __init__(self, core):
        self.core = core

    @_abort_on_error
    def GetModelStatus(self, request, context):
        """The state of each version of the model (or of the requested one)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        rows = self.core.status_rows(spec.name, _requested_version(spec, self.core))
        return wire.status_response(rows)

