"""Exact resume: a fold killed with SIGKILL after an epoch, then run again, ends
bit-identical (weights, optimizer, results.json) to an uninterrupted run."""

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains one fold in a fresh process; with a kill epoch, SIGKILLs itself at the
# end of that epoch, after every other callback (the backup included) ran.
# With an uninterrupted run directory (not "-"), first trains the fold there
# to the end, uninterrupted (one TensorFlow start-up for both runs).
# "mirrored" splits the CPU in two devices: two replicas of one worker, whose
# input yields two batches per step.
CHILD = r"""
import os, signal, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
features, run_dir, kill_after, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
uninterrupted_dir, overrides = sys.argv[5], sys.argv[6:]
if kind == "mirrored":
    import tensorflow as tf
    from smcn_tf.training import distribute

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    distribute._STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    overrides.append("training.strategy=mirrored")
if kind == "best":  # a validation fraction and the best epoch: chosen alike
    overrides += ["evaluation.validation=fraction", "evaluation.validation_fraction=0.3",
                  "training.select=best"]
if kind == "recipe":  # every lever of configs/small_corpus.yaml on
    overrides += [
        "features.speed_perturbation=[0.9, 1.1]", "model.audio_normalization=global",
        "model.pooling=statistics", "model.recurrent_dropout=0.2", "model.time_masks=2",
        "model.time_mask_frames=3", "model.frequency_masks=2", "model.frequency_mask_bands=3",
        "training.optimizer=adamw", "training.weight_decay=0.01", "training.schedule=cosine",
        "training.learning_rate=1e-2", "training.warmup_steps=2",
        "training.final_learning_rate=1e-4", "training.label_smoothing=0.1",
        "training.ema_momentum=0.9",
    ]
import keras
from smcn_tf.config import load_config
from smcn_tf.train import run_experiment


class KillAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


config = load_config(os.path.join("configs", "demo.yaml"), overrides)
if uninterrupted_dir != "-":
    run_experiment(config, features, uninterrupted_dir, verbose=0, log=lambda _: None)
    print("UNINTERRUPTED RUN DONE", flush=True)
run_experiment(
    config, features, run_dir, verbose=0, log=lambda _: None,
    callbacks=[KillAfterEpoch()] if kill_after else [],
)
"""

OVERRIDES = [
    "training.attention_examples_per_class=0",  # no figures: wiring, not TensorBoard
    "training.calibration_batches=0",
    "training.steps=8",
    "training.steps_per_epoch=2",  # 4 epochs of 2 steps
    "training.batch_size=8",
    "training.length_bucketing=true",
    "training.bucket_window=3",  # windows straddle epochs: the position matters
    "model.hidden_units=4",
    "model.head_units=4",
    "model.dropout=0.25",  # random state that save_weights leaves out
    "evaluation.folds=[Session2]",
    "evaluation.final_model=false",
]


def _start(jobs, features, run_dir, kill_after, kind, uninterrupted_dir="-"):
    return jobs.popen(
        [sys.executable, "-c", CHILD, features, run_dir, str(kill_after), kind,
         uninterrupted_dir, *OVERRIDES],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(process, timeout=300):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"training did not finish in {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def _runs(jobs, features, straight_dir, run_dir, kind):
    """The uninterrupted run, then one killed after epoch 2 and run again.

    The first process runs the fold uninterrupted in `straight_dir`, then
    in `run_dir` until it kills itself; a fresh process resumes that one.
    Returns what the test checks: the first process's (exit code, output),
    the backup state it left and whether results.json existed after the
    kill (None and False without a backup), then the resumed run's (exit
    code, output).
    """
    first = _wait(_start(jobs, features, run_dir, 2, kind, straight_dir), timeout=600)
    fold_dir = os.path.join(run_dir, "Session2")
    state_path = os.path.join(fold_dir, "backup", "state.json")
    state = json.load(open(state_path)) if os.path.isfile(state_path) else None
    results_after_kill = os.path.exists(os.path.join(fold_dir, "results.json"))
    return first, state, results_after_kill, _wait(_start(jobs, features, run_dir, 0, kind))


# No plain "default" kind: its path (one device, Adam, the demo settings) is
# run by "best" (the same, plus a validation fraction and the best epoch) and
# by "mirrored" (the same settings on two replicas); a third run of it cost a
# minute of the suite.
KINDS = ["mirrored", "best", "recipe"]
# About how long each kind's runs take on 2 quiet cores (the longest start first).
SECONDS = {"mirrored": 80, "best": 110, "recipe": 130}
_RUN_DIRS = {}  # kind -> (uninterrupted run dir, resumed run dir)


def early_jobs(jobs, request, items):
    """Every selected kind's runs (uninterrupted; killed and resumed), as child jobs."""
    kinds = sorted({item.callspec.params["kind"] for item in items}, key=KINDS.index)
    for kind in kinds:
        # The recipe also reads the speed-perturbed copies of the training groups.
        features = request.getfixturevalue(
            "demo_features_augmented" if kind == "recipe" else "demo_features"
        )
        directory = request.getfixturevalue("tmp_path_factory").mktemp(f"resume-{kind}")
        jobs.submit(f"resume-{kind}", _runs, jobs, features, str(directory / "straight"),
                    str(directory / "resumed"), kind, seconds=SECONDS[kind])
        _RUN_DIRS[kind] = str(directory / "straight"), str(directory / "resumed")


def _epoch_loss_steps(run_dir):
    import tensorflow as tf

    steps = []
    pattern = os.path.join(run_dir, "tensorboard", "Session2", "train", "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern)):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for value in event.summary.value if value.tag == "epoch_loss"]
    return sorted(steps)


def _model_state(path):
    from smcn_tf.model.smcn import load_model

    model = load_model(path)
    return (
        [np.asarray(variable) for variable in model.weights],
        [np.asarray(variable) for variable in model.optimizer.variables],
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_and_resumed_fold_equals_an_uninterrupted_one(early, kind):
    # The uninterrupted run, and the run to kill, then resume: child processes
    # started with the session (early_jobs), side by side with other work.
    straight_dir, resumed_dir = _RUN_DIRS[kind]
    (code, output), state, results_after_kill, resumed = early(f"resume-{kind}")
    assert "UNINTERRUPTED RUN DONE" in output, output[-3000:]
    assert code == -signal.SIGKILL, output[-3000:]
    fold_dir = os.path.join(resumed_dir, "Session2")
    assert state is not None, "no backup/state.json after the kill"
    assert (state["epoch"], state["global_step"]) == (2, 4)
    assert not results_after_kill

    code, output = resumed
    assert code == 0, output[-3000:]

    straight_fold = os.path.join(straight_dir, "Session2")
    # results.json, final training logs included, byte for byte.
    with open(os.path.join(straight_fold, "results.json"), "rb") as stream:
        expected = stream.read()
    with open(os.path.join(fold_dir, "results.json"), "rb") as stream:
        assert stream.read() == expected
    assert "training_seconds" not in json.loads(expected)
    timing = json.load(open(os.path.join(fold_dir, "timing.json")))
    assert timing["resumed_at_epoch"] == 2 and "training_seconds" in timing
    assert ("2 replica(s)" in timing["strategy"]) == (kind == "mirrored")
    assert not os.path.exists(os.path.join(fold_dir, "backup"))  # done: removed
    assert len(os.listdir(os.path.join(fold_dir, "checkpoints"))) == 4
    # TensorBoard goes on across the resume: every epoch's curve, once.
    assert _epoch_loss_steps(resumed_dir) == [0, 1, 2, 3]

    weights, optimizer = _model_state(os.path.join(fold_dir, "model.keras"))
    expected_weights, expected_optimizer = _model_state(
        os.path.join(straight_fold, "model.keras")
    )
    assert len(weights) == len(expected_weights) > 0
    for actual, wanted in zip(weights, expected_weights):
        assert actual.dtype == wanted.dtype and np.array_equal(actual, wanted)
    assert len(optimizer) == len(expected_optimizer) > 0
    for actual, wanted in zip(optimizer, expected_optimizer):
        assert np.array_equal(actual, wanted)
