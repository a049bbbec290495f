"""Smoke test of scripts/load_test.py: tiny N x M, a version swap, the summary."""

import json
import os
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPOSITORY, "scripts", "load_test.py")


def _tiny_load_test(jobs):
    return jobs.run(
        [sys.executable, SCRIPT, "--clients", "2", "--requests", "6", "--audio-seconds", "0.5",
         "--max-seconds", "120", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPOSITORY,
    )


def early_jobs(jobs, request, items):
    """The tiny load test, a child started with the session, beside the in-process tests."""
    jobs.submit("load-test-tiny", _tiny_load_test, jobs, seconds=15)


def test_a_tiny_load_test_swaps_versions_without_errors(early):
    completed = early("load-test-tiny")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(completed.stdout)
    for name in ("grpc", "rest"):
        row = summary["transports"][name]
        assert (row["sent"], row["ok"], row["errors"], row["not_sent"]) == (12, 12, 0, 0), row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    # The swap happened mid-run and version 2 went live; gRPC saw who answered.
    assert summary["swap"]["seconds_to_available"] is not None
    assert set(summary["transports"]["grpc"]["versions"]) <= {"1", "2"}
    rss = summary["server_rss_bytes"]
    assert rss["start"] > 0 and rss["peak"] >= rss["end"] > 0
    assert summary["in_process"] is False


def test_the_arguments_are_bounded():
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--clients", "1000"],
        capture_output=True, text=True, timeout=120, cwd=REPOSITORY,
    )
    assert completed.returncode == 2 and "--clients must be in 1..64" in completed.stderr
