"""Multi-worker training: two local CPU workers (MultiWorkerMirroredStrategy over
gRPC on 127.0.0.1) train one fold; the chief alone writes."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from smcn_tf.training.distribute import tf_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240

# One worker: TF_CONFIG comes from the environment; dumps its final weights;
# with a kill epoch, SIGKILLs itself at the end of that epoch (after the
# chief's backup). Op determinism: without it two multi-worker CPU runs differ
# in the last bits (with it they, and a resumed one, are equal bit for bit).
WORKER = r"""
import os, signal, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
import tensorflow as tf
from smcn_tf.config import load_config
from smcn_tf.train import run_experiment

tf.config.experimental.enable_op_determinism()
features, run_dir, dump, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
overrides = sys.argv[5:]


class DumpWeights(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        np.savez(dump, *[keras.ops.convert_to_numpy(v.value) for v in self.model.weights])


class KillAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


config = load_config(os.path.join("configs", "demo.yaml"), overrides)
summary = run_experiment(
    config, features, run_dir, verbose=0, log=lambda _: None,
    callbacks=[DumpWeights(), KillAfterEpoch()],
)
print("SUMMARY", summary is not None)
"""

OVERRIDES = [
    "training.attention_examples_per_class=0",  # no figures: wiring, not TensorBoard
    "training.strategy=multi_worker",
    "training.steps=4",
    "training.steps_per_epoch=2",
    "training.batch_size=8",  # global: 4 per worker
    "training.bucket_window=3",
    "model.hidden_units=4",
    "model.head_units=4",
    "model.dropout=0.25",
    "evaluation.folds=[Session2]",
    "evaluation.final_model=false",
]


def _free_ports(count):
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _run_workers(jobs, features, run_dirs, dumps, kill_after=0):
    """Run two workers to the end; returns their outputs (asserting their exit codes)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=tf_config(cluster, "worker", index))
        env["CUDA_VISIBLE_DEVICES"] = ""
        processes.append(
            jobs.popen(
                [sys.executable, "-c", WORKER, features, run_dirs[index], dumps[index],
                 str(kill_after), *OVERRIDES],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"the workers did not finish in {TIMEOUT_S} s (a hang?)")
    expected = -signal.SIGKILL if kill_after else 0
    for process, output in zip(processes, outputs):
        assert process.returncode == expected, output[-4000:]
    return outputs


def _two_worker_run(jobs, features, directory):
    """One uninterrupted two-worker run: (chief's run dir, other's run dir, dumps, outputs)."""
    # The chief's run directory, and one the other worker is pointed at that
    # must never come into being: it writes nothing at all.
    run_dirs = [str(directory / "run"), str(directory / "worker1-run")]
    dumps = [str(directory / f"worker{index}.npz") for index in range(2)]
    return run_dirs, dumps, _run_workers(jobs, features, run_dirs, dumps)


def _killed_workers(jobs, features, directory):
    """Two workers killed after epoch 1, then run again: (run dirs, dumps, backup state)."""
    # Resuming needs the chief's backup: both workers share the run directory.
    run_dirs = [str(directory / "run")] * 2
    dumps = [str(directory / f"worker{index}.npz") for index in range(2)]
    _run_workers(jobs, features, run_dirs, dumps, kill_after=1)
    state = json.load(open(os.path.join(run_dirs[0], "Session2", "backup", "state.json")))
    _run_workers(jobs, features, run_dirs, dumps)
    return run_dirs, dumps, state


def _replicas(jobs, features, directory):
    """The REPLICAS script's process, run to the end."""
    overrides = [
        "training.attention_examples_per_class=0",  # no figures: wiring, not TensorBoard
        "training.steps=1",  # the logs of one step: the loss at the initial weights
        "training.batch_size=8",
        "training.length_bucketing=false",
        "model.hidden_units=4",
        "model.head_units=4",
        "model.dropout=0.0",
        "evaluation.folds=[Session2]",
        "evaluation.final_model=false",
    ]
    return jobs.run(
        [sys.executable, "-c", REPLICAS, features, str(directory), *overrides],
        cwd=ROOT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


_JOBS = {
    "test_two_workers_train_alike_and_only_the_chief_writes": ["two-workers"],
    "test_killed_workers_resume_from_the_chiefs_backup": ["two-workers", "killed-workers"],
    "test_two_replicas_see_the_global_batch_as_one_device_does": ["replicas"],
}
_FUNCTIONS = {"two-workers": _two_worker_run, "killed-workers": _killed_workers,
              "replicas": _replicas}
_SECONDS = {"two-workers": 35, "killed-workers": 60, "replicas": 45}  # on 2 quiet cores


def early_jobs(jobs, request, items):
    """The child processes of the selected tests, as jobs started with the session."""
    features = request.getfixturevalue("demo_features")
    factory = request.getfixturevalue("tmp_path_factory")
    wanted = {key for item in items for key in _JOBS[item.name]}
    for key in ("two-workers", "killed-workers", "replicas"):
        if key in wanted:
            jobs.submit(
                f"distributed-{key}", _FUNCTIONS[key], jobs, features, factory.mktemp(key),
                seconds=_SECONDS[key],
                width=1 if key == "replicas" else 2,  # two workers side by side
            )


@pytest.fixture(scope="module")
def two_worker_run(early):
    """One uninterrupted two-worker run: (chief's run dir, other's run dir, dumps)."""
    run_dirs, dumps, outputs = early("distributed-two-workers")
    assert "SUMMARY True" in outputs[0] and "SUMMARY False" in outputs[1]
    return run_dirs, dumps


def _assert_same_weights(first, second):
    first, second = np.load(first), np.load(second)
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        assert np.array_equal(first[name], second[name]), name


def test_two_workers_train_alike_and_only_the_chief_writes(two_worker_run):
    run_dirs, dumps = two_worker_run
    _assert_same_weights(*dumps)

    assert not os.path.exists(run_dirs[1])
    fold_dir = os.path.join(run_dirs[0], "Session2")
    results = json.load(open(os.path.join(fold_dir, "results.json")))
    assert results["num_examples"] == 48 and results["steps"] == 4
    assert sorted(os.listdir(os.path.join(fold_dir, "checkpoints"))) == [
        "epoch-001.weights.h5",
        "epoch-002.weights.h5",
    ]
    # One writer: one events file per TensorBoard directory.
    for sub in ("train", "test"):
        events = glob.glob(os.path.join(run_dirs[0], "tensorboard", "Session2", sub, "events.*"))
        assert len(events) == 1, events
    assert os.path.isfile(os.path.join(run_dirs[0], "summary.json"))
    timing = json.load(open(os.path.join(fold_dir, "timing.json")))
    assert "MultiWorkerMirroredStrategy, 2 replica(s) on 2 worker(s)" in timing["strategy"]

    from smcn_tf.model.smcn import load_model

    saved = load_model(os.path.join(fold_dir, "model.keras"))
    chief = np.load(dumps[0])
    assert len(saved.weights) == len(chief.files)
    for variable, name in zip(saved.weights, chief.files):
        assert np.array_equal(np.asarray(variable), chief[name])


def test_killed_workers_resume_from_the_chiefs_backup(early, two_worker_run):
    straight_dirs, straight_dumps = two_worker_run
    run_dirs, dumps, state = early("distributed-killed-workers")
    assert state["epoch"] == 1

    timing = json.load(open(os.path.join(run_dirs[0], "Session2", "timing.json")))
    assert timing["resumed_at_epoch"] == 1
    for dump, straight in zip(dumps, straight_dumps):
        _assert_same_weights(dump, straight)
    with open(os.path.join(straight_dirs[0], "Session2", "results.json"), "rb") as stream:
        expected = stream.read()
    with open(os.path.join(run_dirs[0], "Session2", "results.json"), "rb") as stream:
        assert stream.read() == expected


# The same first step on one device and on two replicas (the CPU split in
# two): with the global batch split among the replicas, the logged loss terms
# and metrics must agree.
REPLICAS = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from smcn_tf.training import distribute

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
distribute._STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
from smcn_tf.config import load_config
from smcn_tf.train import run_experiment

features, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
logs = {}
for strategy in ("default", "mirrored"):
    config = load_config(
        os.path.join("configs", "demo.yaml"), overrides + [f"training.strategy={strategy}"]
    )
    run_dir = os.path.join(out, strategy)
    run_experiment(config, features, run_dir, verbose=0, log=lambda _: None)
    with open(os.path.join(run_dir, "Session2", "results.json")) as stream:
        logs[strategy] = json.load(stream)["final_training_logs"]
print("LOGS", json.dumps(logs))
"""


def test_two_replicas_see_the_global_batch_as_one_device_does(early):
    process = early("distributed-replicas")
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-4000:]
    (line,) = [line for line in process.stdout.splitlines() if line.startswith("LOGS ")]
    logs = json.loads(line[len("LOGS "):])
    assert set(logs["default"]) == set(logs["mirrored"])
    for name, value in logs["default"].items():
        assert logs["mirrored"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
