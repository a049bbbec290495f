"""The multi-worker training manifests in serving/kubernetes/training/ are valid and agree.

No cluster runs here, so the files are checked the way Kubernetes and the
Kubeflow Training Operator read them: parsed as YAML, the TFJob's command
parsed by `smcn`'s own argument parser and its preset loaded with its
`--set` overrides, and every volume, claim, image and path cross-checked
between the TFJob, the PVCs, the TensorBoard deployment and the Dockerfile.
"""

import os
import re
import shlex

import yaml

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING = os.path.join(REPOSITORY, "serving", "kubernetes", "training")
CONFIG_DIR_IN_IMAGE = "/config"


def _read(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as stream:
        return stream.read()


def _documents():
    """Every Kubernetes object of the folder, as (file name, object)."""
    documents = []
    for name in sorted(os.listdir(TRAINING)):
        if name.endswith((".yaml", ".yml")):
            for document in yaml.safe_load_all(_read(TRAINING, name)):
                if document is not None:
                    documents.append((name, document))
    return documents


def _objects(kind):
    return [document for _, document in _documents() if document["kind"] == kind]


def _one(kind):
    (document,) = _objects(kind)
    return document


def _tfjob_container():
    tfjob = _one("TFJob")
    (worker,) = tfjob["spec"]["tfReplicaSpecs"].values()
    (container,) = worker["template"]["spec"]["containers"]
    return worker, container


def _option(command, flag):
    assert command.count(flag) == 1, (flag, command)
    return command[command.index(flag) + 1]


def _overrides(command):
    return [command[i + 1] for i, word in enumerate(command) if word == "--set"]


def test_every_manifest_parses_with_kind_api_version_and_name():
    documents = _documents()
    assert {name for name, _ in documents} >= {"tfjob.yaml", "pvc.yaml"}
    api_versions = {
        "TFJob": "kubeflow.org/v1",
        "PersistentVolumeClaim": "v1",
        "Deployment": "apps/v1",
        "Service": "v1",
        "ConfigMap": "v1",
    }
    for name, document in documents:
        kind = document["kind"]
        assert kind in api_versions, (name, kind)
        assert document["apiVersion"] == api_versions[kind], (name, kind)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", document["metadata"]["name"])


def test_tfjob_runs_identical_workers_with_worker_0_as_chief():
    tfjob = _one("TFJob")
    replica_specs = tfjob["spec"]["tfReplicaSpecs"]
    # Only workers: MultiWorkerMirroredStrategy makes worker 0 the chief.
    assert set(replica_specs) == {"Worker"}
    worker = replica_specs["Worker"]
    assert worker["replicas"] >= 2
    assert worker["restartPolicy"] == "OnFailure"
    # The operator injects TF_CONFIG into the container named "tensorflow".
    (container,) = worker["template"]["spec"]["containers"]
    assert container["name"] == "tensorflow"
    assert "TF_CONFIG" not in {variable["name"] for variable in container.get("env", [])}
    requests = container["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    assert "memory" in container["resources"]["limits"]


def test_tfjob_command_is_a_valid_multi_worker_smcn_train():
    from smcn_tf.cli import build_parser
    from smcn_tf.config import load_config

    worker, container = _tfjob_container()
    command = list(container["command"]) + list(container.get("args", []))
    assert command[:2] == ["smcn", "train"]
    assert "training.strategy=multi_worker" in _overrides(command)
    arguments = build_parser().parse_args(command[1:])
    assert arguments.command == "train"

    # The preset is one of configs/, copied to /config in the image.
    config_path = _option(command, "--config")
    assert os.path.dirname(config_path) == CONFIG_DIR_IN_IMAGE
    repository_config = os.path.join(REPOSITORY, "configs", os.path.basename(config_path))
    assert os.path.isfile(repository_config), repository_config
    config = load_config(repository_config, _overrides(command))
    assert config.training.strategy == "multi_worker"
    # The global batch, split evenly between the workers.
    assert config.training.batch_size % worker["replicas"] == 0


def test_tfjob_mounts_match_volumes_and_the_pvcs():
    worker, container = _tfjob_container()
    command = list(container["command"]) + list(container.get("args", []))
    volumes = {volume["name"]: volume for volume in worker["template"]["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    for mount in mounts.values():
        assert mount["name"] in volumes, f"volumeMount {mount['name']!r} has no volume"
    claims = {claim["metadata"]["name"]: claim for claim in _objects("PersistentVolumeClaim")}

    def volume_of(path):
        parents = [root for root in mounts if path == root or path.startswith(root + "/")]
        assert parents, f"{path} is on no mounted volume"
        mount = mounts[max(parents, key=len)]
        volume = volumes[mount["name"]]
        claim_name = volume["persistentVolumeClaim"]["claimName"]
        assert claim_name in claims, f"no PersistentVolumeClaim {claim_name!r} in the folder"
        return mount, volume, claims[claim_name]

    # The prepared features: read-only for every worker.
    mount, volume, claim = volume_of(_option(command, "--data"))
    assert mount.get("readOnly") is True
    assert volume["persistentVolumeClaim"].get("readOnly") is True
    assert {"ReadWriteMany", "ReadOnlyMany"} & set(claim["spec"]["accessModes"])

    # The run directory: one filesystem shared (and written) by every worker.
    mount, volume, claim = volume_of(_option(command, "--run-dir"))
    assert not mount.get("readOnly", False)
    assert not volume["persistentVolumeClaim"].get("readOnly", False)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for claim in claims.values():
        assert claim["spec"]["resources"]["requests"]["storage"]


def _dockerfile_copies():
    copies = {}
    for line in _read(TRAINING, "Dockerfile").splitlines():
        match = re.match(r"\s*COPY\s+(.+)", line, re.IGNORECASE)
        if match:
            words = shlex.split(match.group(1), comments=True)
            *sources, target = [word for word in words if not word.startswith("--")]
            for source in sources:
                copies[source.rstrip("/")] = target.rstrip("/")
    return copies


def test_the_image_holds_the_package_and_the_presets():
    copies = _dockerfile_copies()
    assert copies.get("configs") == CONFIG_DIR_IN_IMAGE
    for source in copies:
        assert os.path.exists(os.path.join(REPOSITORY, source)), source
    dockerfile = _read(TRAINING, "Dockerfile")
    assert re.search(r"pip install .*\s\.(\s|$)", dockerfile), "the image must pip install ."
    # Whatever is copied must survive the build context filter.
    ignore = _read(TRAINING, "Dockerfile.dockerignore").split()
    for source in copies:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def test_tensorboard_reads_the_run_directory_of_the_job():
    worker, container = _tfjob_container()
    command = list(container["command"]) + list(container.get("args", []))
    run_dir = _option(command, "--run-dir")
    (deployment,) = [
        d for d in _objects("Deployment") if "tensorboard" in d["metadata"]["name"]
    ]
    pod = deployment["spec"]["template"]
    (board,) = pod["spec"]["containers"]
    assert board["image"] == container["image"]
    assert _option(board["command"], "--logdir") == f"{run_dir}/tensorboard"
    job_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in worker["template"]["spec"]["volumes"]}
    run_mount = next(m for m in container["volumeMounts"] if run_dir.startswith(m["mountPath"]))
    board_volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (board_mount,) = [m for m in board["volumeMounts"] if run_dir.startswith(m["mountPath"])]
    assert board_mount["readOnly"] is True
    assert (board_volumes[board_mount["name"]]["persistentVolumeClaim"]["claimName"]
            == job_claims[run_mount["name"]])
    (service,) = [s for s in _objects("Service") if "tensorboard" in s["metadata"]["name"]]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_readme_documents_multi_worker_training():
    readme = _read(REPOSITORY, "README.md")
    for text in (
        "## Training on several machines",
        "kubectl apply -f serving/kubernetes/training/",
        "TF_CONFIG",
        "training.strategy=multi_worker",
        "training.batch_size",
        "ReadWriteMany",
        "kubectl port-forward service/smcn-tensorboard",
    ):
        assert text in readme, text
