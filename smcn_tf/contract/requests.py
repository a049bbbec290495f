"""The `PredictRequest` a served SMCN takes over gRPC, built in one place.

The exporter's warm-up file (`assets.extra/tf_serving_warmup_requests`)
and the gRPC clients send the same request; `smcn_tf.serving.wire` holds
the rest of TF Serving's protos and its JSON format.

The protos need TensorFlow, which is imported on first use here (not at the
top): the REST client and `smcn --help` must not pay its seconds of start-up.
"""


def tensor_proto(array):
    """A numpy array as a `TensorProto`."""
    import tensorflow as tf

    return tf.make_tensor_proto(array)


def predict_request(model_name, signature_name, inputs, version=None):
    """A `PredictRequest` for `inputs` (name -> numpy array).

    Args:
        model_name: the served model's name (`None` or `""`: the only one).
        signature_name: the signature to run.
        inputs: a dict `{input name: numpy array}`.
        version: the model version, or `None` for the newest.

    Returns:
        A `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name or ""
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_proto(value))
    return request
