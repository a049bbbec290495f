"""The last step of `make demo`: serve the exported model and ask it one question over gRPC.

Starts `smcn serve` on the export, waits until the model is AVAILABLE, picks an
utterance of the demo corpus (its wav and its transcript), runs
`smcn predict --grpc`, prints the answer and the true label, and stops the server.

    python scripts/serve_demo.py --export-base work/demo/export/smcn --corpus work/demo/corpus
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request


def wait_until_available(rest_url, model_name, process, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"smcn serve exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{rest_url}/v1/models/{model_name}", timeout=2) as reply:
                if b"AVAILABLE" in reply.read():
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit(f"the model was not AVAILABLE at {rest_url} within {timeout:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-base", required=True, help="<base>/<model_name> of the export.")
    parser.add_argument("--corpus", required=True, help="The demo corpus (IEMOCAP layout).")
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", 8500)))
    parser.add_argument("--rest-port", type=int, default=int(os.environ.get("REST_PORT", 8501)))
    parser.add_argument("--utterance", default="Ses05F_script01_1_F000",
                        help="Utterance id to ask about (default: one of Session 5).")
    parser.add_argument("--verbose", action="store_true",
                        help="Let smcn serve / predict show TensorFlow's start-up logs "
                        "(hidden by default).")
    args = parser.parse_args()

    from smcn_tf.corpora.iemocap import CLASS_NAMES, parse_iemocap

    utterances = {u.utterance_id: u for u in parse_iemocap(args.corpus).utterances}
    utterance = utterances.get(args.utterance) or sorted(utterances.values(), key=lambda u: u.utterance_id)[-1]
    # `smcn serve` / `smcn predict` start TensorFlow quietly unless --verbose.
    smcn = [sys.executable, "-m", "smcn_tf.cli"] + (["--verbose"] if args.verbose else [])
    model_name = os.path.basename(os.path.normpath(args.export_base))
    server = subprocess.Popen(
        smcn + ["serve", "--model-base-path", args.export_base,
                "--port", str(args.grpc_port), "--rest-port", str(args.rest_port)],
    )
    try:
        wait_until_available(f"http://127.0.0.1:{args.rest_port}", model_name, server)
        print(f"\nAsking the served model over gRPC (localhost:{args.grpc_port}) about "
              f"{utterance.utterance_id}: \"{utterance.transcript}\" (true label: {utterance.label})",
              flush=True)
        completed = subprocess.run(
            smcn + ["predict", "--grpc", f"127.0.0.1:{args.grpc_port}",
                    "--model-name", model_name, "--audio", utterance.audio_path,
                    "--text", utterance.transcript, "--class-names", ",".join(CLASS_NAMES)],
            check=False,
        )
        return completed.returncode
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
