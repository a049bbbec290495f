"""The deployment files in serving/ are valid and agree with each other.

No TensorFlow Serving binary can run here, so the files are checked the way
the server reads them: the config files are parsed as the server's text
protos, the compose and Kubernetes files as YAML, and the model name, base
path, image, flags and probes must agree across all of them.

`models.config` is parsed with `ModelServerConfig` from tensorflow-serving-api.
That package does not ship `session_bundle_config_pb2` (BatchingParameters)
or `monitoring_config_pb2` (MonitoringConfig); when they are missing, the two
messages are rebuilt from TF Serving's .proto definitions
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
tensorflow_serving/config/monitoring_config.proto), so the files are still
parsed strictly: an unknown field, a typo or a wrong type fails the test.
"""

import os
import re

import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format

SERVING = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "serving"
)
KUBERNETES = os.path.join(SERVING, "kubernetes")
MODEL_NAME = "smcn"
BASE_PATH = "/models/smcn"
CONFIG_FILES = ("models.config", "batching.config", "monitoring.config")
REQUIRED_FLAGS = (
    "--port=8500",
    "--rest_api_port=8501",
    "--model_config_file=/config/models.config",
    "--enable_batching=true",
    "--batching_parameters_file=/config/batching.config",
    "--monitoring_config_file=/config/monitoring.config",
    "--model_config_file_poll_wait_seconds=60",
    "--file_system_poll_wait_seconds=30",
)


def _read(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as stream:
        return stream.read()


def _yaml(*parts):
    return yaml.safe_load(_read(*parts))


def _fallback_messages():
    """BatchingParameters and MonitoringConfig built from TF Serving's .proto text."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="smcn_tf/tf_serving_config_fallback.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def add(message, name, number, kind, type_name=None, repeated=False):
        message.field.add(
            name=name,
            number=number,
            type=kind,
            type_name=type_name,
            label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
        )

    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(
        ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"),
        start=1,
    ):
        add(batching, name, number, field.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, field.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add(batching, "allowed_batch_sizes", 6, field.TYPE_INT64, repeated=True)
    add(batching, "pad_variable_length_inputs", 7, field.TYPE_BOOL)
    prometheus = proto.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, field.TYPE_BOOL)
    add(prometheus, "path", 2, field.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    add(
        monitoring, "prometheus_config", 1, field.TYPE_MESSAGE,
        ".tensorflow.serving.PrometheusConfig",
    )
    pool.Add(proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    )


def _batching_and_monitoring_messages():
    try:
        from tensorflow_serving.config.monitoring_config_pb2 import MonitoringConfig
        from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (
            BatchingParameters,
        )
    except ImportError:
        BatchingParameters, MonitoringConfig = _fallback_messages()
    return BatchingParameters, MonitoringConfig


def test_models_config_serves_smcn_from_its_base_path():
    from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

    config = text_format.Parse(_read(SERVING, "models.config"), ModelServerConfig())
    models = config.model_config_list.config
    assert [model.name for model in models] == [MODEL_NAME]
    model = models[0]
    assert model.base_path == BASE_PATH
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions >= 1


def test_batching_config_pads_variable_length_inputs():
    BatchingParameters, _ = _batching_and_monitoring_messages()
    parameters = text_format.Parse(_read(SERVING, "batching.config"), BatchingParameters())
    assert parameters.pad_variable_length_inputs is True
    assert parameters.max_batch_size.value == 32
    assert parameters.batch_timeout_micros.value > 0
    assert parameters.num_batch_threads.value >= 1
    assert parameters.max_enqueued_batches.value >= 1
    sizes = list(parameters.allowed_batch_sizes)
    if sizes:  # TF Serving's rule: increasing, and the last is max_batch_size.
        assert sizes == sorted(set(sizes))
        assert sizes[-1] == parameters.max_batch_size.value


def test_the_strict_parse_catches_a_typo():
    BatchingParameters, MonitoringConfig = _batching_and_monitoring_messages()
    with pytest.raises(text_format.ParseError):
        text_format.Parse("pad_variable_length_input: true", BatchingParameters())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 32", BatchingParameters())  # needs { value: }
    with pytest.raises(text_format.ParseError):
        text_format.Parse("prometheus_config { enabled: true }", MonitoringConfig())


def test_monitoring_config_exposes_prometheus_metrics():
    _, MonitoringConfig = _batching_and_monitoring_messages()
    config = text_format.Parse(_read(SERVING, "monitoring.config"), MonitoringConfig())
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def _image_version(image):
    match = re.fullmatch(r"tensorflow/serving:(\d+)\.(\d+)\.(\d+)(-gpu)?", image)
    assert match, f"pin the image to a release tag, got {image!r}"
    return int(match.group(1)), int(match.group(2))


def _tensorflow_version():
    major, minor = tf.__version__.split(".")[:2]
    return int(major), int(minor)


def _compose_service():
    compose = _yaml(SERVING, "docker-compose.yml")
    services = compose["services"]
    assert len(services) == 1, sorted(services)
    return next(iter(services.values()))


def _volume(spec):
    # The source may hold ':' itself (`${SMCN_EXPORT_DIR:-...}`): split from the right.
    match = re.fullmatch(r"(.+):(/[^:]*)(?::(ro|rw))?", spec)
    assert match, f"not a SOURCE:TARGET[:MODE] volume: {spec!r}"
    source, target, mode = match.groups()
    return source, target, [mode] if mode else []


def test_docker_compose_runs_the_pinned_server_with_the_config_files():
    service = _compose_service()
    assert _image_version(service["image"]) >= _tensorflow_version()
    assert service["entrypoint"] == ["tensorflow_model_server"]
    for flag in REQUIRED_FLAGS:
        assert flag in service["command"], flag
    assert {"8500:8500", "8501:8501"} <= set(service["ports"])
    volumes = {target: (source, mode) for source, target, mode in map(_volume, service["volumes"])}
    assert volumes[BASE_PATH][1] == ["ro"]
    config_source, config_mode = volumes["/config"]
    assert config_mode == ["ro"]
    # The config directory mounted is serving/ itself, with every file the flags name.
    config_dir = os.path.normpath(os.path.join(SERVING, config_source))
    for name in CONFIG_FILES:
        assert os.path.isfile(os.path.join(config_dir, name)), name


def _kubernetes(name):
    return _yaml(KUBERNETES, name)


def test_kubernetes_deployment_matches_compose_and_probes_the_model():
    deployment = _kubernetes("deployment.yaml")
    assert deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    service = _compose_service()
    assert container["image"] == service["image"]
    assert container["command"] == service["entrypoint"]
    # The same server flags as compose (it may add thread-pool sizes).
    assert set(service["command"]) <= set(container["args"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == f"/v1/models/{MODEL_NAME}"
        assert ports.get(get["port"], get["port"]) == 8501
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"memory"} <= set(resources["limits"])
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts[BASE_PATH]["readOnly"] is True
    assert mounts["/config"]["readOnly"] is True
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    models = volumes[mounts[BASE_PATH]["name"]]
    claim = models["persistentVolumeClaim"]["claimName"]
    assert _kubernetes("pvc.yaml")["metadata"]["name"] == claim
    config_map = volumes[mounts["/config"]["name"]]["configMap"]["name"]
    assert _kubernetes("configmap.yaml")["metadata"]["name"] == config_map


def test_kubernetes_configmap_holds_the_serving_config_files():
    data = _kubernetes("configmap.yaml")["data"]
    assert set(data) == set(CONFIG_FILES)
    for name in CONFIG_FILES:
        assert data[name] == _read(SERVING, name), f"configmap.yaml differs from serving/{name}"


def test_kubernetes_service_and_autoscaler_target_the_deployment():
    deployment = _kubernetes("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _kubernetes("service.yaml")
    assert service["kind"] == "Service"
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {"grpc": (8500, "grpc"), "http": (8501, "http")}

    autoscaler = _kubernetes("hpa.yaml")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["kind"] == "HorizontalPodAutoscaler"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def test_readme_documents_export_run_and_query():
    readme = _read(SERVING, "README.md")
    for text in (
        "smcn export --model",
        "docker compose",
        "kubectl apply -f serving/kubernetes/",
        f"/v1/models/{MODEL_NAME}:predict",
        "serving_default",
        "features",
        "pad_variable_length_inputs",
    ):
        assert text in readme, text
