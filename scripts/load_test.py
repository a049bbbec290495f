#!/usr/bin/env python
"""A bounded load test of `smcn serve`: concurrent gRPC and REST clients, a version swap.

Starts `smcn serve` (a child process, or `--in-process`) on free ports of
127.0.0.1 only, over a temporary copy of an export (or a tiny stand-in export
it writes itself), runs `--clients` gRPC clients and `--clients` REST clients
at once, each sending `--requests` requests, and during the run
(`--swap-at`, a quarter of the requests by default) renames a new version into
the served base path, which the server loads and switches to without a
restart while the requests go on. The load goes on until version 2 is
AVAILABLE: a client that has sent its requests before then keeps sending
until one of its requests began after it (so the new version answers some
of the load). Then prints, per transport, the requests answered, the errors
(grouped by message), p50 / p99 / max latency, the share of requests each
version answered (from the server's `/monitoring/prometheus/metrics`, since
a REST answer does not name its version), the time from writing version 2
to its AVAILABLE status, and the server's resident memory (RSS) before,
after and at its peak.

Everything is bounded: `--clients` and `--requests` are capped, each request
has a timeout, and the whole run stops at `--max-seconds` (requests not sent
by then are counted as such). The given export is never written to: the
server serves a copy of its newest version, and the swapped-in version is
another copy.

Usage:

    python scripts/load_test.py                                   # tiny stand-in export
    python scripts/load_test.py --model-base-path work/demo/export/smcn --clients 4 --requests 50
    python scripts/load_test.py --clients 2 --requests 5 --json   # machine-readable summary

Exit status: 0 when every request was answered OK (and, with a swap, the
new version answered at least one), 1 otherwise.
"""

import argparse
import collections
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

# Before TensorFlow loads: no C++ start-up lines, no transformers PyTorch
# advice (SMCN_VERBOSE=1 shows them).
from smcn_tf import quiet  # noqa: E402

quiet.configure(quiet.verbose_requested([]))

import numpy as np  # noqa: E402

HOST = "127.0.0.1"  # loopback only
MAX_CLIENTS = 64
MAX_REQUESTS = 10_000


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="Concurrent gRPC + REST load on smcn serve (loopback only), with a "
        "version swap in the middle; prints errors, p50/p99 latency and the server's RSS.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model-base-path",
        help="An export: <export_base>/<model_name> or a version dir; its newest version is "
        "copied and served (default: a tiny stand-in export written to a temporary dir).",
    )
    parser.add_argument("--clients", type=int, default=4,
                        help=f"Clients per transport (gRPC and REST each; at most {MAX_CLIENTS}).")
    parser.add_argument("--requests", type=int, default=25,
                        help=f"Requests per client (at most {MAX_REQUESTS}).")
    parser.add_argument("--batch-size", type=int, default=1, help="Items per request.")
    parser.add_argument("--audio-seconds", type=float, default=1.0, help="Waveform length.")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="Stop sending after this long (the whole run).")
    parser.add_argument("--request-timeout", type=float, default=60.0,
                        help="Seconds one request may take.")
    parser.add_argument("--swap-at", type=float, default=0.25,
                        help="Swap in version 2 once this fraction of the requests is done "
                        "(the server needs a moment to load it while the rest run).")
    parser.add_argument("--no-swap", action="store_true", help="Do not swap in a new version.")
    parser.add_argument("--in-process", action="store_true",
                        help="Run the server in this process (RSS then includes the clients).")
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS}.")
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be in 1..{MAX_REQUESTS}.")
    if not 1 <= args.batch_size <= 64:
        parser.error("--batch-size must be in 1..64.")
    if not 0.0 <= args.swap_at < 1.0:
        parser.error("--swap-at must be in [0, 1).")
    if not 0 < args.audio_seconds <= 60 or args.max_seconds <= 0 or args.request_timeout <= 0:
        parser.error("--audio-seconds in (0, 60], --max-seconds and --request-timeout > 0.")
    return args


# The served copy and the swap.
def prepare_base(source, directory):
    """The served base path under `directory`, holding version 1, and version 2 staged.

    Returns:
        `(base, swap, description)`: `swap()` renames the staged version 2
        into the base path (atomic and instant, so it lands mid-run).
    """
    from smcn_tf.contract.layout import resolve_version_dir

    base = os.path.join(directory, "smcn")
    staging = os.path.join(directory, "staging")
    if source is None:
        from tests.serving_support import write_contract_model

        write_contract_model(base, version=1, warmup=True)
        write_contract_model(staging, version=2, warmup=True)
        description = "a tiny stand-in export (tests/serving_support.py)"
    else:
        version_dir, _ = resolve_version_dir(source)
        os.makedirs(base)
        shutil.copytree(version_dir, os.path.join(base, "1"))
        shutil.copytree(version_dir, os.path.join(staging, "2"))
        description = f"a copy of {version_dir}"

    def swap():
        os.rename(os.path.join(staging, "2"), os.path.join(base, "2"))

    return base, swap, description


def rss_bytes(pid):
    """(current RSS, peak RSS) of a process from /proc, or (None, None)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    values[key] = int(value.split()[0]) * 1024
    except OSError:
        return None, None
    return values.get("VmRSS"), values.get("VmHWM")


class ChildServer:
    """`smcn serve` in a child process on free loopback ports."""

    def __init__(self, base):
        from smcn_tf.serving.local.process import start_serve_process

        self.process, self.grpc_target, _, self.rest_port = start_serve_process(
            base, host=HOST, poll_seconds=0.5
        )
        self.pid = self.process.pid
        # Drain stdout so the child never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class InProcessServer:
    def __init__(self, base):
        from smcn_tf.serving.local.server import serve

        self.server = serve(base, grpc_port=0, rest_port=0, host=HOST, poll_seconds=0.5)
        self.grpc_target = self.server.grpc_target
        self.rest_port = self.server.ports.rest
        self.pid = os.getpid()

    def stop(self):
        self.server.stop()


def model_status(rest_port):
    connection = http.client.HTTPConnection(HOST, rest_port, timeout=10)
    try:
        connection.request("GET", "/v1/models/smcn")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


# Requests.
def make_inputs(version_dir, batch_size, samples):
    """A `serving_default` request of the export: waveforms and its tokenizer's ids."""
    rng = np.random.default_rng(0)
    waveforms = [(0.1 * rng.standard_normal(samples)).astype("float32") for _ in range(batch_size)]
    texts = ["I am so happy to see you today!", "leave me alone", "what is this?"]
    from smcn_tf.serving.client import SMCNClient

    try:
        client = SMCNClient(model_dir=version_dir)
        inputs, _ = client.make_inputs(
            [(waveform, texts[index % len(texts)]) for index, waveform in enumerate(waveforms)]
        )
        return inputs
    except (ValueError, OSError):
        # No tokenizer anywhere (an audio-only export): ids the graph does not read.
        return {
            "waveform": np.stack(waveforms),
            "waveform_length": np.full([batch_size], samples, "int32"),
            "input_ids": np.zeros([batch_size, 3], "int32"),
            "attention_mask": np.ones([batch_size, 3], "int32"),
        }


class Grpc:
    name = "grpc"

    def __init__(self, target, timeout):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self.grpc, self.tf, self.predict_pb2 = grpc, tf, predict_pb2
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", -1),
                             ("grpc.max_send_message_length", -1)],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.timeout = timeout
        self.request = None

    def prepare(self, inputs):
        self.request = self.predict_pb2.PredictRequest()
        self.request.model_spec.name = "smcn"
        for name, value in inputs.items():
            self.request.inputs[name].CopyFrom(self.tf.make_tensor_proto(value))

    def __call__(self):
        """Returns (error or None, version or None)."""
        try:
            response = self.stub.Predict(self.request, timeout=self.timeout)
        except self.grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}", None
        return None, response.model_spec.version.value

    def close(self):
        self.channel.close()


class Rest:
    name = "rest"

    def __init__(self, port, timeout):
        self.port, self.timeout = port, timeout
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.body = None

    def prepare(self, inputs):
        self.body = json.dumps(
            {"inputs": {name: value.tolist() for name, value in inputs.items()}}
        ).encode()

    def __call__(self):
        try:
            self.connection.request(
                "POST", "/v1/models/smcn:predict", body=self.body,
                headers={"Content-Type": "application/json"},
            )
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            return f"connection: {type(error).__name__}: {error}", None
        if response.status != 200:
            try:
                message = json.loads(payload).get("error", "")
            except ValueError:
                message = payload[:200].decode("utf-8", "replace")
            return f"HTTP {response.status}: {message}", None
        try:
            json.loads(payload, parse_constant=lambda constant: 1 / 0)
        except (ValueError, ZeroDivisionError):
            return "the answer is not strict JSON", None
        return None, None

    def close(self):
        self.connection.close()


class Swap:
    """Writes version 2 mid-run and watches for it to be AVAILABLE, while the load goes on.

    `over` is set once version 2 is AVAILABLE (or the run's deadline passed):
    from then on every request goes to it, and a client that has sent its
    requests stops after one more that began after it (see `run_clients`).
    """

    def __init__(self, write_version, rest_port, enabled):
        self.write_version, self.rest_port, self.enabled = write_version, rest_port, enabled
        self.due = threading.Event()
        self.over = threading.Event()
        if not enabled:
            self.over.set()
        self.report = None

    def run(self, deadline, done):
        """Waits for `due`, writes version 2, polls its status until AVAILABLE."""
        if not self.enabled:
            return
        try:
            self.due.wait(timeout=max(0.0, deadline - time.monotonic()))
            written = time.monotonic()
            self.write_version()
            at_request = done[0]
            available = False
            while time.monotonic() < deadline and not available:
                rows = model_status(self.rest_port).get("model_version_status", [])
                available = any(
                    row["version"] == "2" and row["state"] == "AVAILABLE" for row in rows
                )
                if not available:
                    time.sleep(0.05)
            self.report = {
                "at_request": at_request,
                "available_at_request": done[0] if available else None,
                "seconds_to_available": (
                    round(time.monotonic() - written, 3) if available else None
                ),
            }
        finally:
            self.over.set()


def run_clients(transports, requests, swap, swap_at, deadline):
    """Runs every transport in its own thread; returns `{transport: [(seconds, error, version)]}`.

    Each client sends `requests` requests, and, while version 2 is not yet
    AVAILABLE, goes on until it has sent one that began after it was (so
    the new version answers some of the load). `swap.due` is set once
    `swap_at` of the requests are done.
    """
    lock = threading.Lock()
    done = [0]
    total = len(transports) * requests
    records = collections.defaultdict(list)
    start_line = threading.Barrier(len(transports) + 1)

    def client(transport):
        start_line.wait()
        sent, after_swap = 0, 0
        while time.monotonic() <= deadline and (sent < requests or not after_swap):
            over = swap.over.is_set()
            began = time.perf_counter()
            error, version = transport()
            elapsed = time.perf_counter() - began
            sent, after_swap = sent + 1, after_swap + over
            with lock:
                records[transport.name].append((elapsed, error, version))
                done[0] += 1
                if done[0] >= swap_at * total:
                    swap.due.set()

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in transports]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    start_line.wait()
    swap.run(deadline, done)
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic() + 120))
    return records, time.monotonic() - began


def answered_versions(rest_port):
    """`{transport: {version: requests answered OK}}` from the server's metrics, or `None`.

    REST answers do not name the version; the server's
    `:tensorflow:serving:request_count` does, for both transports.
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        connection = http.client.HTTPConnection(HOST, rest_port, timeout=30)
        connection.request("GET", "/monitoring/prometheus/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
    except (OSError, http.client.HTTPException):
        return None
    versions = {"grpc": collections.Counter(), "rest": collections.Counter()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name.endswith("request_count_total") and labels.get("API") == "Predict"
                    and labels.get("status") == "OK" and labels.get("version")):
                versions[labels["entrypoint"].lower()][labels["version"]] += int(sample.value)
    return versions


def transport_summary(rows, clients, requests, server_versions):
    """The summary row of one transport."""
    latencies = np.array([seconds for seconds, error, _ in rows if error is None]) * 1e3
    errors = collections.Counter(error for _, error, _ in rows if error is not None)
    if server_versions is None:  # no metrics: what gRPC answers say (REST says nothing)
        server_versions = collections.Counter(
            version for _, error, version in rows if error is None and version
        )
    answered = sum(server_versions.values())
    return {
        "sent": len(rows),
        "not_sent": max(0, clients * requests - len(rows)),
        "ok": int(latencies.size),
        "errors": sum(errors.values()),
        "error_messages": dict(errors.most_common(5)),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
        "max_ms": round(float(latencies.max()), 2) if latencies.size else None,
        "versions": {str(k): v for k, v in sorted(server_versions.items())},
        "version_shares": {
            str(k): round(v / answered, 4) for k, v in sorted(server_versions.items())
        } if answered else {},
    }


def run_load_test(
    model_base_path=None, clients=4, requests=25, batch_size=1, audio_seconds=1.0,
    max_seconds=300.0, request_timeout=60.0, swap=True, in_process=False, swap_at=0.25,
):
    """Runs the load test; returns the summary dict (see `main` for the printout)."""
    clients = max(1, min(int(clients), MAX_CLIENTS))
    requests = max(1, min(int(requests), MAX_REQUESTS))
    directory = tempfile.mkdtemp(prefix="smcn-load-test-")
    server = None
    try:
        base, write_version, served = prepare_base(model_base_path, directory)
        server = (InProcessServer if in_process else ChildServer)(base)
        rss_start, _ = rss_bytes(server.pid)
        inputs = make_inputs(
            os.path.join(base, "1"), batch_size, int(round(audio_seconds * 16000))
        )
        transports = [Grpc(server.grpc_target, request_timeout) for _ in range(clients)]
        transports += [Rest(server.rest_port, request_timeout) for _ in range(clients)]
        for transport in transports:
            transport.prepare(inputs)
        watch = Swap(write_version, server.rest_port, swap)
        deadline = time.monotonic() + max_seconds
        records, wall = run_clients(transports, requests, watch, swap_at, deadline)
        rss_end, rss_peak = rss_bytes(server.pid)
        for transport in transports:
            transport.close()
        versions = answered_versions(server.rest_port) or {}
        summary = {
            "served": served, "clients_per_transport": clients,
            "requests_per_client": requests, "batch_size": batch_size,
            "wall_seconds": round(wall, 3), "swap": watch.report,
            "server_rss_bytes": {"start": rss_start, "end": rss_end, "peak": rss_peak},
            "in_process": bool(in_process), "transports": {},
        }
        for name in ("grpc", "rest"):
            summary["transports"][name] = transport_summary(
                records.get(name, []), clients, requests, versions.get(name)
            )
        if watch.report is not None:
            watch.report["answered_by_new_version"] = sum(
                row["versions"].get("2", 0) for row in summary["transports"].values()
            )
        return summary
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _megabytes(value):
    return "?" if value is None else f"{value / 2**20:.0f} MiB"


def print_summary(summary):
    print(f"Served: {summary['served']} ({'in this process' if summary['in_process'] else 'smcn serve, child process'})")
    print(f"{summary['clients_per_transport']} gRPC + {summary['clients_per_transport']} REST "
          f"clients x {summary['requests_per_client']} requests of batch "
          f"{summary['batch_size']} in {summary['wall_seconds']:.1f} s")
    print(f"{'transport':<10}{'sent':>7}{'ok':>7}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'max ms':>10}  versions")
    for name, row in summary["transports"].items():
        def cell(value):
            return "-" if value is None else f"{value:.1f}"

        versions = ", ".join(
            f"v{k}: {v} ({100 * row['version_shares'][k]:.0f} %)"
            for k, v in row["versions"].items()
        ) or "-"
        print(f"{name:<10}{row['sent']:>7}{row['ok']:>7}{row['errors']:>8}{cell(row['p50_ms']):>10}"
              f"{cell(row['p99_ms']):>10}{cell(row['max_ms']):>10}  {versions}")
        for message, count in row["error_messages"].items():
            print(f"    {count} x {message[:160]}")
        if row["not_sent"]:
            print(f"    {row['not_sent']} request(s) not sent before --max-seconds")
    swap = summary["swap"]
    if swap:
        seconds = swap["seconds_to_available"]
        print(f"Version 2 written after {swap['at_request']} requests; "
              + (f"AVAILABLE {seconds:.2f} s later (after {swap['available_at_request']} "
                 "requests)" if seconds is not None else "not AVAILABLE before the deadline")
              + f"; it answered {swap['answered_by_new_version']} request(s)")
    rss = summary["server_rss_bytes"]
    print(f"Server RSS: {_megabytes(rss['start'])} at start, {_megabytes(rss['end'])} at end, "
          f"{_megabytes(rss['peak'])} peak")


def main(argv=None):
    args = parse_arguments(argv)
    summary = run_load_test(
        args.model_base_path, args.clients, args.requests, args.batch_size, args.audio_seconds,
        args.max_seconds, args.request_timeout, swap=not args.no_swap,
        in_process=args.in_process, swap_at=args.swap_at,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    failed = any(row["errors"] or row["not_sent"] for row in summary["transports"].values())
    if summary["swap"] is not None and not summary["swap"]["answered_by_new_version"]:
        print("load test: error: no request was answered by the new version", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
