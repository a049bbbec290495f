"""Smoke test of scripts/load_test.py: tiny N x M, a version swap that really lands, the summary."""

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
        # At least 2 x 6 each: the load goes on until version 2 answers.
        assert row["sent"] >= 12 and row["ok"] == row["sent"], row
        assert (row["errors"], row["not_sent"]) == (0, 0), row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        # Every request answered, by version 1 or 2 (the server's metrics say which).
        assert set(row["versions"]) <= {"1", "2"} and sum(row["versions"].values()) == row["ok"]
        assert abs(sum(row["version_shares"].values()) - 1.0) < 1e-3
    # The swap happened mid-run, version 2 went live while the load went on,
    # and it answered some of the requests (the run fails otherwise).
    swap = summary["swap"]
    assert swap["seconds_to_available"] is not None and swap["available_at_request"] is not None
    assert swap["answered_by_new_version"] > 0
    assert swap["answered_by_new_version"] == sum(
        row["versions"].get("2", 0) for row in summary["transports"].values()
    )
    rss = summary["server_rss_bytes"]
    assert rss["start"] > 0 and rss["peak"] >= rss["end"] > 0
    assert summary["in_process"] is False


def test_the_arguments_are_bounded():
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--clients", "1000"],
        capture_output=True, text=True, timeout=120, cwd=REPOSITORY,
    )
    assert completed.returncode == 2 and "--clients must be in 1..64" in completed.stderr


# main() of the script with run_load_test answering a given summary (in a child: the
# script sets up quiet imports for its process).
_FAKE_RUN = r"""
import importlib.util, json, sys

script, summary = sys.argv[1], json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("load_test", script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.run_load_test = lambda *args, **kwargs: summary
sys.exit(module.main(sys.argv[3:]))
"""


def test_the_run_fails_when_the_new_version_answered_nothing():
    row = {"sent": 4, "ok": 4, "errors": 0, "not_sent": 0, "error_messages": {},
           "p50_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0, "versions": {"1": 4},
           "version_shares": {"1": 1.0}}
    summary = {
        "served": "x", "clients_per_transport": 1, "requests_per_client": 4, "batch_size": 1,
        "wall_seconds": 1.0, "in_process": False, "transports": {"grpc": row, "rest": row},
        "server_rss_bytes": {"start": None, "end": None, "peak": None},
        "swap": {"at_request": 1, "available_at_request": None, "seconds_to_available": None,
                 "answered_by_new_version": 0},
    }

    def run(summary, *arguments):
        return subprocess.run(
            [sys.executable, "-c", _FAKE_RUN, SCRIPT, json.dumps(summary), *arguments],
            capture_output=True, text=True, timeout=120, cwd=REPOSITORY,
        )

    completed = run(summary)
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "no request was answered by the new version" in completed.stderr
    completed = run(dict(summary, swap=None), "--no-swap")  # nothing to answer
    assert completed.returncode == 0, completed.stderr[-2000:]
