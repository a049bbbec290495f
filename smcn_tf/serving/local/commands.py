"""The `smcn serve` and `smcn predict` subcommands.

`add_parsers(subparsers)` adds both to the `smcn` command line; each handler
takes the parsed namespace and returns an exit code. The module also runs on
its own: `python -m smcn_tf.serving.local.commands serve ...`.

Importing this module is cheap (no TensorFlow): the handlers import what
they need.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

_SERVE_EPILOG = """\
The base path holds numeric version directories, as `smcn export` writes them:
  export/smcn/1/saved_model.pb, export/smcn/2/saved_model.pb, ...
The newest version is served; a new version written while serving is loaded
without a restart. The wire API is TensorFlow Serving's:
  gRPC  tensorflow.serving.PredictionService/Predict, /GetModelMetadata,
        tensorflow.serving.ModelService/GetModelStatus
  REST  GET  /v1/models/<name>[/versions/<v>][/metadata]
        POST /v1/models/<name>[/versions/<v>]:predict
Example:
  smcn serve --model-base-path export/smcn --port 8500 --rest-port 8501
  curl localhost:8501/v1/models/smcn
"""

_PREDICT_EPILOG = """\
Either input may be left out: the model's unimodal head for the other one
answers (the output says which input answered). Leaving both out is an error.
Examples:
  smcn predict --audio clip.wav --text "leave me alone" --model-dir export/smcn
  smcn predict --audio clip.wav --text "leave me alone" --grpc localhost:8500
  smcn predict --audio clip.wav --text "leave me alone" --rest http://localhost:8501 --json
  smcn predict --text "leave me alone" --model-dir export/smcn      # text only
  smcn predict --manifest calls.csv --out predictions.csv --model-dir export/smcn
  smcn predict --manifest calls.csv --out predictions.jsonl --grpc localhost:8500 --resume
"""


def add_parsers(subparsers):
    """Adds `serve` and `predict` to an argparse subparsers object.

    Args:
        subparsers: the result of `parser.add_subparsers(...)`.

    Example:

    >>> parser = argparse.ArgumentParser(prog="smcn")
    >>> add_parsers(parser.add_subparsers(dest="command", required=True))
    >>> parser.parse_args(["serve", "--model-base-path", "export/smcn"]).port
    8500
    """
    _add_serve_parser(subparsers)
    _add_predict_parser(subparsers)


def _add_serve_parser(subparsers):
    """`serve`: a local server with TF Serving's gRPC and REST API."""
    serve = subparsers.add_parser(
        "serve",
        help="Serve an exported model with TensorFlow Serving's gRPC and REST API.",
        description="Serve the newest version of an exported SMCN (any SavedModel in TF "
        "Serving's layout) over TensorFlow Serving's gRPC and REST API, for development "
        "and tests. Runs until Ctrl-C or SIGTERM.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--model-base-path", required=True,
        help="The model's base path, <export_base>/<model_name>, holding version directories.",
    )
    serve.add_argument(
        "--model-name", help="The name clients use (default: the base path's last component)."
    )
    serve.add_argument(
        "--port", type=int, default=8500, help="gRPC port (default 8500; 0 picks a free port)."
    )
    serve.add_argument(
        "--rest-port", "--rest-api-port", dest="rest_port", type=int, default=8501,
        help="REST port (default 8501; 0 picks a free port).",
    )
    serve.add_argument(
        "--host", default="127.0.0.1",
        help="Interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface).",
    )
    serve.add_argument(
        "--poll-seconds", type=float, default=2.0,
        help="How often to look for new versions (default 2; 0 disables).",
    )
    serve.add_argument(
        "--max-request-bytes", type=int, default=64 * 1024 * 1024,
        help="Largest request accepted, gRPC or REST (default 64 MiB).",
    )
    serve.add_argument(
        "--num-versions", type=int, default=1,
        help="How many of the newest versions stay loaded (default 1, TF Serving's policy).",
    )
    serve.add_argument(
        "--max-batch-size", type=int, default=None,
        help="Most rows one request may hold; more is refused with INVALID_ARGUMENT / "
        "HTTP 400 (default: no limit).",
    )
    serve.add_argument(
        "--max-tensor-bytes", type=int, default=64 * 1024 * 1024,
        help="Most bytes one request tensor may take decoded (elements x dtype size), "
        "checked before decoding; more is refused with INVALID_ARGUMENT (default 64 MiB).",
    )
    serve.add_argument(
        "--verbose", action="store_true", help="Log every request (debug logging)."
    )
    serve.set_defaults(handler=command_serve)


def _add_predict_parser(subparsers):
    """`predict`: one clip and transcript, in-process or through a server."""
    predict = subparsers.add_parser(
        "predict",
        help="Predict the emotion of an audio clip + transcript with a served model.",
        description="Predict with an exported SMCN in this process (--model-dir) or through "
        "a server speaking TensorFlow Serving's API (--grpc or --rest). Prints the class, "
        "the probability of each class and the most attended tokens.",
        epilog=_PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument(
        "--audio",
        help="WAV/FLAC file (any rate, mixed to mono, resampled); leave out for text only.",
    )
    predict.add_argument(
        "--text", help="The transcript of the clip; leave out (or '') for audio only."
    )
    where = predict.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model-dir", help="An export to load here: a version dir or a model base dir."
    )
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC target, e.g. localhost:8500.")
    where.add_argument("--rest", metavar="URL", help="REST URL, e.g. http://localhost:8501.")
    predict.add_argument("--model-name", default="smcn", help="Served model name (default smcn).")
    predict.add_argument("--version", type=int, help="Model version (default: the newest).")
    predict.add_argument(
        "--rest-format", choices=["instances", "inputs"], default="instances",
        help="REST request format: row 'instances' (default) or columnar 'inputs'.",
    )
    predict.add_argument(
        "--tokenizer-dir",
        help="Tokenizer directory (default: the export's, or the installed MiniLM's).",
    )
    predict.add_argument(
        "--max-tokens", type=int,
        help="Most tokens per transcript (default: the export's setting, else 150).",
    )
    predict.add_argument(
        "--class-names", help="Comma-separated class names, for remote models (optional)."
    )
    predict.add_argument(
        "--top-tokens", type=int,
        help="How many attended tokens to show (default 5; with --manifest, none unless given).",
    )
    predict.add_argument("--json", action="store_true", help="Print the prediction as JSON.")
    # Imported here: the manifest options live beside the batch code (no TensorFlow).
    from smcn_tf.serving import batch

    batch.add_arguments(predict)
    predict.set_defaults(handler=command_predict)


def command_serve(args):
    """Runs `smcn serve` until Ctrl-C or SIGTERM; returns the exit code."""
    # Imported when the command runs: `smcn --help` and argument errors must not
    # wait for TensorFlow (which the server and the client load).
    from smcn_tf.serving.local.server import ModelServer

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    server = ModelServer(
        args.model_base_path,
        model_name=args.model_name,
        grpc_port=args.port,
        rest_port=args.rest_port,
        host=args.host,
        poll_seconds=args.poll_seconds,
        max_request_bytes=args.max_request_bytes,
        num_versions=args.num_versions,
        max_batch_size=args.max_batch_size,
        max_tensor_bytes=args.max_tensor_bytes,
    )
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        try:
            server.start()
        except OSError as error:  # a busy port: say so, no traceback
            print(f"smcn serve: error: {error}", file=sys.stderr)
            return 2
        versions = ", ".join(map(str, server.versions)) or "none yet (waiting for one)"
        print(f"Serving model '{server.model_name}' from {server.model_base_path}")
        print(f"Version(s): {versions}")
        print(f"gRPC listening on {server.grpc_target}")
        print(f"REST listening on {server.rest_url}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
        print("Stopping.", flush=True)
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


_MODALITY_LINES = {
    "both": "Answered from: audio and text",
    "audio": "Answered from: audio only (no text: the model's audio head answered)",
    "text": "Answered from: text only (no usable audio: the model's text head answered)",
}


def _format_prediction(prediction, transport, top_tokens):
    lines = []
    version = f" version {prediction.model_version}" if prediction.model_version else ""
    lines.append(f"Model{version} via {transport}")
    best = prediction.probabilities[prediction.class_id]
    lines.append(f"Class: {prediction.class_name} (p = {best:.3f})")
    if prediction.modality:
        lines.append(_MODALITY_LINES.get(prediction.modality, f"Answered from: {prediction.modality}"))
    lines.append("Probabilities:")
    pairs = sorted(prediction.probability_by_class.items(), key=lambda pair: -pair[1])
    width = max(len(name) for name, _ in pairs)
    for name, probability in pairs:
        bar = "#" * int(round(probability * 40))
        lines.append(f"  {name:<{width}}  {probability:.3f}  {bar}")
    top = prediction.top_tokens(top_tokens)
    if top:
        lines.append("Most attended tokens: " + ", ".join(f"{t} ({w:.2f})" for t, w in top))
    if prediction.audio_attention:
        frame = max(range(len(prediction.audio_attention)),
                    key=prediction.audio_attention.__getitem__)
        lines.append(
            f"Most attended audio frame: {frame} of {len(prediction.audio_attention)} "
            f"(weight {prediction.audio_attention[frame]:.2f})"
        )
    return "\n".join(lines)


def command_predict(args):
    """Runs `smcn predict`; returns the exit code (1 when the server refuses)."""
    # When the command runs, not at the top: see `command_serve`.
    from smcn_tf.contract.errors import ServingError
    from smcn_tf.serving import batch
    from smcn_tf.serving.client import SMCNClient

    batch.check_arguments(args)
    if args.manifest is None and not args.audio and not (args.text or "").strip():
        raise ValueError("give --audio, --text or both (the model needs at least one).")
    if args.audio and not os.path.exists(args.audio):
        raise ValueError(f"no such file: {args.audio}")
    class_names = None
    if args.class_names:
        class_names = [name.strip() for name in args.class_names.split(",") if name.strip()]
    client = SMCNClient(
        model_dir=args.model_dir,
        grpc_target=args.grpc,
        rest_url=args.rest,
        model_name=args.model_name,
        version=args.version,
        tokenizer_dir=args.tokenizer_dir,
        max_tokens=args.max_tokens,
        rest_format=args.rest_format,
        class_names=class_names,
    )
    transport = {
        "in-process": f"in-process {args.model_dir}",
        "grpc": f"gRPC {args.grpc}",
        "rest": f"REST {args.rest} ({args.rest_format})",
    }[client.transport]
    try:
        with client:
            if args.manifest is not None:
                return batch.command_predict_manifest(args, client)
            prediction = client.predict(args.audio or None, args.text or "")
    except ServingError as error:
        print(f"smcn predict: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(prediction.to_dict(), indent=2))
    else:
        top_tokens = 5 if args.top_tokens is None else args.top_tokens
        print(_format_prediction(prediction, transport, top_tokens))
    return 0


def build_parser():
    """A parser with just `serve` and `predict` (for `python -m`)."""
    parser = argparse.ArgumentParser(
        prog="python -m smcn_tf.serving.local.commands",
        description="Serve an exported SMCN, or predict with one.",
    )
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv=None):
    """Runs one subcommand; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"smcn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
