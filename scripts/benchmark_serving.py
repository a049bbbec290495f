#!/usr/bin/env python
"""Latency and throughput of a served SMCN: in-process, gRPC and REST, side by side.

Measures, in one run and on the same inputs:

- batch 1: p50 and p99 latency over `--requests` requests;
- batch `--batch-size` (32): samples per second over `--batch-requests` requests;

for the in-process signature call (`tf.saved_model.load(...).signatures[...]`),
`PredictionService.Predict` over gRPC, and `:predict` over REST in the row
(`instances`) and columnar (`inputs`) formats. Every timing is what a client
sees, from numpy inputs to numpy outputs: request encoding, transport,
server-side decoding and validation, the model, and the response decoding.

The server is `smcn serve` in a separate process (so client and server do not
share one Python interpreter lock), on 127.0.0.1 with free ports. Clients keep
their connection open (a gRPC channel; HTTP/1.1 keep-alive), as a real client
would.

Usage:

    python scripts/benchmark_serving.py                      # a tiny model it exports itself
    python scripts/benchmark_serving.py --export export/smcn # an export (base or version dir)
    python scripts/benchmark_serving.py --requests 500 --audio-seconds 5 --tokens 48
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # tokenizers only: no PyTorch advice

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

import numpy as np  # noqa: E402


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="p50/p99 latency at batch 1 and samples/s at batch 32 of a served SMCN, "
        "in-process vs gRPC vs REST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--export", help="An export: a version dir or a model base dir (default: a tiny model "
        "exported to a temporary directory)."
    )
    parser.add_argument("--requests", type=int, default=200, help="Batch-1 requests per transport.")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed requests per transport.")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch for the throughput run.")
    parser.add_argument(
        "--batch-requests", type=int, help="Timed batched requests (default: requests / 10, >= 3)."
    )
    parser.add_argument("--audio-seconds", type=float, default=3.0, help="Waveform length.")
    parser.add_argument("--tokens", type=int, default=32, help="Token ids per transcript.")
    parser.add_argument("--signature", default="serving_default", help="Signature to call.")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.warmup < 0 or args.batch_size < 1 or args.tokens < 2:
        parser.error("--requests >= 2, --warmup >= 0, --batch-size >= 1 and --tokens >= 2.")
    if args.audio_seconds <= 0:
        parser.error("--audio-seconds must be > 0.")
    args.batch_requests = args.batch_requests or max(3, args.requests // 10)
    return args


def export_tiny_model(directory):
    """Exports a tiny real SMCN; falls back to the contract stand-in. Returns (dir, note)."""
    base = os.path.join(directory, "smcn")
    try:
        from smcn_tf.export.exporter import export_model
        from smcn_tf.features.text import default_checkpoint_dir
        from smcn_tf.model.smcn import build_smcn

        model = build_smcn(
            audio_dim=78, text_dim=384, num_classes=4, hidden_units=16, head_units=16,
            class_names=["ang", "hap", "neu", "sad"],
        )
        settings = {"pooling": 5, "max_frames": 500, "max_tokens": 150,
                    "text_encoder": default_checkpoint_dir()}
        version_dir = export_model(model, directory, "smcn", feature_settings=settings)
        return version_dir, (
            "a tiny SMCN (hidden 16) exported with smcn_tf.export.exporter.export_model: log-Mel and "
            "the all-MiniLM-L6-v2 encoder run inside the graph"
        )
    except Exception as error:  # any failure: the stand-in still measures the transports
        shutil.rmtree(base, ignore_errors=True)
        from tests.serving_support import write_contract_model

        version_dir = write_contract_model(base, version=1)
        return version_dir, (
            "the contract stand-in (tests/serving_support.py; cheap math, no BERT) because "
            f"export_model failed: {type(error).__name__}: {str(error)[:200]}"
        )


def make_inputs(signature_def, batch_size, samples, tokens, seed=0):
    """Random inputs for SMCN's raw or features signature."""
    rng = np.random.default_rng(seed)
    names = set(signature_def.inputs)
    if {"waveform", "waveform_length", "input_ids", "attention_mask"} == names:
        # Small ids: inside every vocabulary, the stand-in model's (72) too.
        input_ids = rng.integers(3, 64, size=(batch_size, tokens)).astype("int32")
        input_ids[:, 0], input_ids[:, -1] = 101, 102  # [CLS] ... [SEP] in BERT vocabularies
        return {
            "waveform": (0.1 * rng.standard_normal((batch_size, samples))).astype("float32"),
            "waveform_length": np.full((batch_size,), samples, "int32"),
            "input_ids": input_ids,
            "attention_mask": np.ones((batch_size, tokens), "int32"),
        }
    if {"audio_features", "audio_length", "text_features", "text_length"} == names:
        audio_dim = signature_def.inputs["audio_features"].tensor_shape.dim[2].size
        text_dim = signature_def.inputs["text_features"].tensor_shape.dim[2].size
        frames = max(1, samples // 800)  # 10 ms frames pooled by 5
        return {
            "audio_features": rng.standard_normal((batch_size, frames, audio_dim)).astype("float32"),
            "audio_length": np.full((batch_size,), frames, "int32"),
            "text_features": rng.standard_normal((batch_size, tokens, text_dim)).astype("float32"),
            "text_length": np.full((batch_size,), tokens, "int32"),
        }
    raise SystemExit(f"Unknown signature inputs {sorted(names)}: expected SMCN's contract.")


def start_server(base_path):
    """`smcn serve` in a child process; returns (process, grpc_target, rest_host, rest_port)."""
    from smcn_tf.serving.local.process import start_serve_process

    return start_serve_process(base_path)


class InProcess:
    name = "in-process"

    def __init__(self, version_dir, signature):
        import tensorflow as tf

        self.tf = tf
        self.function = tf.saved_model.load(version_dir).signatures[signature]

    def __call__(self, inputs):
        outputs = self.function(**{k: self.tf.constant(v) for k, v in inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}


class Grpc:
    name = "gRPC"

    def __init__(self, target, model_name, signature):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self.tf, self.predict_pb2 = tf, predict_pb2
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", -1)]
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name, self.signature = model_name, signature

    def __call__(self, inputs):
        request = self.predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(self.tf.make_tensor_proto(value))
        response = self.stub.Predict(request, timeout=120)
        return {name: self.tf.make_ndarray(proto) for name, proto in response.outputs.items()}


class Rest:
    def __init__(self, host, port, model_name, signature, request_format):
        self.name = f"REST ({request_format})"
        self.connection = http.client.HTTPConnection(host, port, timeout=120)
        self.path = f"/v1/models/{model_name}:predict"
        self.signature, self.request_format = signature, request_format

    def __call__(self, inputs):
        names = sorted(inputs)
        if self.request_format == "inputs":
            body = {"signature_name": self.signature,
                    "inputs": {name: inputs[name].tolist() for name in names}}
        else:
            columns = {name: inputs[name].tolist() for name in names}
            rows = len(columns[names[0]])
            body = {"signature_name": self.signature,
                    "instances": [{n: columns[n][row] for n in names} for row in range(rows)]}
        self.connection.request(
            "POST", self.path, body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {answer}")
        if "outputs" in answer:
            return {name: np.asarray(value) for name, value in answer["outputs"].items()}
        rows = answer["predictions"]
        return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}


def measure(transport, single, batch, args):
    for _ in range(args.warmup):
        transport(single)
    transport(batch)  # the batch shape's first call traces / allocates
    latencies = []
    for _ in range(args.requests):
        start = time.perf_counter()
        transport(single)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(args.batch_requests):
        transport(batch)
    elapsed = time.perf_counter() - start
    latencies = np.array(latencies) * 1000.0
    return (
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 99)),
        args.batch_size * args.batch_requests / elapsed,
    )


def main(argv=None):
    args = parse_arguments(argv)
    from smcn_tf.contract.layout import resolve_version_dir
    from smcn_tf.serving.local.model_store import read_signature_defs

    temporary = None
    if args.export:
        version_dir, _ = resolve_version_dir(args.export)
        note = f"the export at {version_dir}"
    else:
        temporary = tempfile.mkdtemp(prefix="smcn-benchmark-")
        print("Exporting a tiny model ...", flush=True)
        version_dir, note = export_tiny_model(temporary)
    base_path = os.path.dirname(version_dir)
    model_name = os.path.basename(base_path)
    signature_defs = read_signature_defs(version_dir)
    if args.signature not in signature_defs:
        raise SystemExit(f"No signature {args.signature!r} in {version_dir}.")
    samples = int(round(args.audio_seconds * 16000))
    single = make_inputs(signature_defs[args.signature], 1, samples, args.tokens)
    batch = make_inputs(signature_defs[args.signature], args.batch_size, samples, args.tokens, 1)

    process, grpc_target, rest_host, rest_port = start_server(base_path)
    results = []
    try:
        transports = [
            InProcess(version_dir, args.signature),
            Grpc(grpc_target, model_name, args.signature),
            Rest(rest_host, rest_port, model_name, args.signature, "instances"),
            Rest(rest_host, rest_port, model_name, args.signature, "inputs"),
        ]
        reference = transports[0](single)["probabilities"]
        for transport in transports:
            print(f"Measuring {transport.name} ...", flush=True)
            answer = transport(single)["probabilities"]
            if not np.allclose(answer, reference, rtol=1e-4, atol=1e-6):
                raise SystemExit(f"{transport.name} answers differently: {answer} vs {reference}")
            results.append((transport.name, *measure(transport, single, batch, args)))
    finally:
        process.terminate()
        process.wait(timeout=30)
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)

    import tensorflow as tf

    print()
    print(f"Model:     {note}")
    print(f"Signature: {args.signature}; {args.audio_seconds:g} s of 16 kHz audio, "
          f"{args.tokens} tokens per item")
    print(f"Machine:   {platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow "
          f"{tf.__version__}, devices: "
          f"{', '.join(d.device_type for d in tf.config.list_physical_devices()) or 'CPU'}")
    print(f"Requests:  {args.requests} at batch 1, {args.batch_requests} at batch "
          f"{args.batch_size}, after {args.warmup} warmup; server: smcn serve (child process)")
    print()
    header = ("transport", "batch 1 p50 (ms)", "batch 1 p99 (ms)",
              f"batch {args.batch_size} samples/s")
    print(f"{header[0]:<18}{header[1]:>18}{header[2]:>18}{header[3]:>22}")
    print("-" * 76)
    for name, p50, p99, throughput in results:
        print(f"{name:<18}{p50:>18.2f}{p99:>18.2f}{throughput:>22.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
