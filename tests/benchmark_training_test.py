"""Smoke test of scripts/benchmark_training.py: a --quick run, end to end.

The run is real (every case in its own process, tiny sizes, a few steps); the
test checks the JSON it writes, not the speeds.
"""

import importlib.util
import json
import math
import os
import sys

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPOSITORY, "scripts", "benchmark_training.py")
CASES = ("baseline", "smcn_fixed", "smcn_variable", "smcn_bucketed")
MEASURED = ("train_samples_per_s", "predict_samples_per_s", "first_step_s", "peak_rss_mb",
            "train_ratio", "predict_ratio", "predict_s", "predict_call_s")


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _quick_run(jobs, out):
    completed = jobs.run(
        [sys.executable, SCRIPT, "--quick", "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPOSITORY,
    )
    return completed, out


def early_jobs(jobs, request, items):
    """The quick run, a child started with the session, beside the in-process tests."""
    out = request.getfixturevalue("tmp_path_factory").mktemp("benchmark") / "benchmark.json"
    jobs.submit("benchmark-training-quick", _quick_run, jobs, out, seconds=55, width=2)


def test_quick_run_measures_every_case(early):
    completed, out = early("benchmark-training-quick")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # The table and the targets are printed, without TensorFlow's log noise.
    assert "train/s" in completed.stdout and "Targets of the issue" in completed.stdout
    assert "oneDNN" not in completed.stdout + completed.stderr

    report = json.loads(out.read_text())
    assert report["settings"]["quick"] is True and report["settings"]["paper_size"] is False
    machine = report["machine"]
    assert machine["cpu"] and machine["cpu_cores"] >= 1
    assert isinstance(machine["gpus"], list)
    rows = report["rows"]
    for case in CASES:
        case_rows = [row for row in rows if row["case"] == case]
        assert case_rows, f"no row for {case}"
        for row in case_rows:
            if case == "smcn_bucketed" and not report["api"]["bucket_window"]:
                assert row["status"] == "skipped" and row["reason"]
                continue
            assert row["status"] == "ok", row
            for field in MEASURED:
                assert _positive(row[field]), (row["name"], field, row[field])
            assert row["parameters"] > 0
            # Predict samples/s come from the timed loop, not from the whole call
            # (which waits for tf.data's iterator teardown; see measure_predict).
            assert row["predict_s"] <= row["predict_call_s"], row
            assert math.isclose(
                row["predict_samples_per_s"], row["predict_samples"] / row["predict_s"])
    for row in rows:
        if row["case"] == "baseline":
            assert row["train_ratio"] == 1.0 and row["predict_ratio"] == 1.0
    if report["api"]["recurrent_core"]:
        assert {row.get("recurrent_core_used") for row in rows if row["case"] != "baseline"} == {
            "fused"}

    targets = {target["target"]: target for target in report["targets"]}
    assert set(targets) == {"train_variable", "train_fixed", "predict_fixed", "first_step"}
    for target in targets.values():
        assert _positive(target["value"]), target
        assert target["met"] in (True, False) and target["applies"] is False


class _FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _ModelWithTeardownWait:
    """`predict` runs 2 s of batches, then waits 8 s before it returns."""

    def __init__(self, clock):
        self.clock = clock

    def predict(self, data, verbose=0, callbacks=()):
        for callback in callbacks:
            callback.on_predict_begin()
        self.clock.now += 2.0
        for callback in callbacks:
            callback.on_predict_end()
        self.clock.now += 8.0  # tf.data's iterator teardown
        return {"probabilities": np.zeros((64, 4))}


def test_predict_samples_per_s_leave_out_the_wait_after_the_loop():
    spec = importlib.util.spec_from_file_location("benchmark_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clock = _FakeClock()
    measured = module.measure_predict(_ModelWithTeardownWait(clock), None, clock=clock)
    # Timed around the call, this would be 64 / 10 s: the wait, not the model.
    assert measured == {"predict_samples": 64, "predict_s": 2.0, "predict_call_s": 10.0,
                        "predict_samples_per_s": 32.0}
