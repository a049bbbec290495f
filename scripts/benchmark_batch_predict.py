#!/usr/bin/env python
"""Batch prediction against one clip at a time, side by side in one run (issue 18).

On an export and the demo corpus's clips (every WAV file, 260 at the
defaults; a manifest of path, transcript and label is written for them), it
measures:

1. in process: `smcn predict --manifest ... --model-dir` (one command, start-up
   and model loading included) against `smcn predict --audio --text
   --model-dir` run once per clip (a child process each, as a user would call
   it). The per-clip command is timed on a sample of `--per-clip-sample`
   clips spread over the corpus and its rate is given per clip (the whole
   corpus would take the per-clip time x the clip count);
2. over gRPC against `smcn serve` (a child process, warmed up): the batch
   path (`smcn_tf.serving.batch.predict_manifest` on one `SMCNClient`) against
   one `Predict` request per clip on the same kind of client, on every clip.

It checks that the gRPC batch rows equal the one-request-per-clip answers
within 1e-5, and prints the figures and the two ratios beside the targets
(>= 10x in process, >= 5x over gRPC).

Usage:

    python scripts/benchmark_batch_predict.py                  # the demo export if made, else a tiny SMCN
    python scripts/benchmark_batch_predict.py --export work/demo/export/smcn --per-clip-sample 20
"""

import argparse
import csv
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)
DEMO_EXPORT = os.path.join(REPOSITORY, "work", "demo", "export", "smcn")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="smcn predict --manifest against one call per clip, in process and over "
        "gRPC, on the demo corpus's clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--export", help="An export (a model base or version dir); default: the demo export "
        f"({DEMO_EXPORT}) when `make demo` made it, else a tiny SMCN exported to a temporary "
        "directory (untrained, MiniLM and log-Mel in the graph: the same work per clip)."
    )
    parser.add_argument("--corpus", help="A demo corpus (default: written to a temporary dir).")
    parser.add_argument("--per-clip-sample", type=int, default=10,
                        help="Clips timed with one `smcn predict` process each.")
    parser.add_argument("--clips", type=int, help="Use the first N clips only (default: all).")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch of the batch path.")
    parser.add_argument("--workers", type=int, default=4, help="Decoding threads.")
    parser.add_argument("--in-flight", type=int, default=2, help="Batches at the model at once.")
    args = parser.parse_args(argv)
    if args.per_clip_sample < 1:
        parser.error("--per-clip-sample must be >= 1.")
    return args


def write_manifest(corpus, path, limit=None):
    """A manifest of every WAV file of a demo corpus (or the first `limit`): path,
    transcript, label; returns the `(path, transcript)` pairs."""
    from smcn_tf.corpora.registry import get_corpus

    transcripts = {}
    for name in glob.glob(os.path.join(corpus, "Session*", "dialog", "transcriptions", "*.txt")):
        with open(name, encoding="utf-8") as stream:
            for line in stream:
                match = re.match(r"(\S+) \[[\d.]+-[\d.]+\]: (.*)", line.strip())
                if match:
                    transcripts[match.group(1)] = match.group(2)
    labels = {u.utterance_id: u.label for u in get_corpus("demo").load(corpus).utterances}
    clips = sorted(glob.glob(os.path.join(corpus, "Session*", "sentences", "wav", "*", "*.wav")))
    clips = clips[:limit]
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "path", "transcript", "label"])
        for clip in clips:
            utterance = os.path.splitext(os.path.basename(clip))[0]
            writer.writerow([utterance, clip, transcripts.get(utterance, ""),
                             labels.get(utterance, "")])
    return [(clip, transcripts.get(os.path.splitext(os.path.basename(clip))[0], ""))
            for clip in clips]


def smcn(*arguments):
    """Runs `smcn ARGUMENTS` in a child process; returns its wall time in seconds."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "smcn_tf.cli", *arguments], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=REPOSITORY),
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"smcn {' '.join(arguments)} failed:\n{completed.stderr[-3000:]}")
    return elapsed


def in_process(version_dir, manifest, clips, directory, args):
    """(batch seconds for every clip, per-clip seconds for the sample, sample size)."""
    out = os.path.join(directory, "in-process.csv")
    print(f"In process: smcn predict --manifest over {len(clips)} clips ...", flush=True)
    batch_seconds = smcn(
        "predict", "--manifest", manifest, "--out", out, "--model-dir", version_dir,
        "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--in-flight", str(args.in_flight),
    )
    step = max(1, len(clips) // args.per_clip_sample)
    sample = clips[::step][: args.per_clip_sample]
    print(f"In process: smcn predict once per clip, {len(sample)} clips ...", flush=True)
    per_clip = sum(
        smcn("predict", "--audio", clip, "--text", text, "--model-dir", version_dir)
        for clip, text in sample
    )
    return batch_seconds, per_clip, len(sample)


def over_grpc(version_dir, manifest, clips, directory, args):
    """(batch seconds, one-request-per-clip seconds, largest probability difference)."""
    import numpy as np

    from smcn_tf.serving import batch
    from smcn_tf.serving.client import SMCNClient
    from smcn_tf.serving.local.process import start_serve_process

    # The server serves the version's base directory (versions beside it).
    process, grpc_target, _, _ = start_serve_process(os.path.dirname(version_dir))
    tokenizer = os.path.join(version_dir, "assets.extra", "tokenizer")
    try:
        with SMCNClient(model_dir=version_dir) as local:
            class_names = list(local.class_names)
        with SMCNClient(grpc_target=grpc_target, tokenizer_dir=tokenizer,
                        class_names=class_names,
                        model_name=os.path.basename(os.path.dirname(version_dir))) as client:
            # Warm both paths alike: one request of each kind before the clock starts.
            client.predict(*clips[0])
            client.predict_batch(clips[: args.batch_size])
            print(f"gRPC: batch over {len(clips)} clips ...", flush=True)
            started = time.perf_counter()
            out = os.path.join(directory, "grpc.csv")
            batch.predict_manifest(client, manifest, out, batch_size=args.batch_size,
                                   workers=args.workers, in_flight=args.in_flight)
            batch_seconds = time.perf_counter() - started
            print(f"gRPC: one request per clip, {len(clips)} clips ...", flush=True)
            started = time.perf_counter()
            singles = [client.predict(clip, text).probabilities for clip, text in clips]
            single_seconds = time.perf_counter() - started
        with open(out, encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream))
        batched = [[float(row[f"p_{name}"]) for name in class_names] for row in rows]
        difference = float(np.max(np.abs(np.asarray(batched) - np.asarray(singles))))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return batch_seconds, single_seconds, difference


def prepare(args, temporary):
    """(version dir, what the model is, manifest, clips)."""
    from smcn_tf.contract.layout import resolve_version_dir
    from smcn_tf.corpora.demo import write_demo_corpus

    export = args.export or (DEMO_EXPORT if os.path.isdir(DEMO_EXPORT) else None)
    if export:
        version_dir, _ = resolve_version_dir(export)
        note = f"the export at {version_dir}"
    else:
        from scripts.benchmark_serving import export_tiny_model

        print("Exporting a tiny SMCN (no demo export found) ...", flush=True)
        version_dir, note = export_tiny_model(temporary)
    corpus = args.corpus or write_demo_corpus(os.path.join(temporary, "corpus"), seed=0)
    manifest = os.path.join(temporary, "manifest.csv")
    clips = write_manifest(corpus, manifest, args.clips)
    return version_dir, note, manifest, clips


def main(argv=None):
    args = parse_arguments(argv)
    temporary = tempfile.mkdtemp(prefix="smcn-batch-benchmark-")
    try:
        version_dir, note, manifest, clips = prepare(args, temporary)
        batch_local, per_clip_local, sample = in_process(
            version_dir, manifest, clips, temporary, args)
        batch_grpc, per_clip_grpc, difference = over_grpc(
            version_dir, manifest, clips, temporary, args)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    count = len(clips)
    local_ratio = (per_clip_local / sample) / (batch_local / count)
    grpc_ratio = per_clip_grpc / batch_grpc
    print()
    print(f"Model:   {note}")
    print(f"Clips:   {count} ({'the first ' if args.clips else 'every '}WAV file"
          f"{'s' if args.clips else ''} of the demo corpus)")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; batch size "
          f"{args.batch_size}, {args.workers} decoding threads, {args.in_flight} in flight")
    print()
    print(f"{'':<44}{'seconds':>10}{'clips/s':>10}{'s/clip':>10}")
    rows = [
        (f"in process: smcn predict --manifest ({count})", batch_local, count),
        (f"in process: smcn predict per clip ({sample} timed)", per_clip_local, sample),
        (f"gRPC: batch, predict_manifest ({count})", batch_grpc, count),
        (f"gRPC: one request per clip ({count})", per_clip_grpc, count),
    ]
    for name, seconds, clips_timed in rows:
        print(f"{name:<44}{seconds:>10.2f}{clips_timed / seconds:>10.2f}"
              f"{seconds / clips_timed:>10.4f}")
    print()
    print(f"in process: batch is {local_ratio:.1f}x faster per clip than one smcn predict per "
          f"clip (target >= 10x: {'met' if local_ratio >= 10 else 'NOT met'}); "
          f"{count} clips one by one would take about {per_clip_local / sample * count:.0f} s")
    print(f"gRPC:       batch is {grpc_ratio:.1f}x faster than one request per clip "
          f"(target >= 5x: {'met' if grpc_ratio >= 5 else 'NOT met'})")
    print(f"gRPC batch rows vs one request per clip: largest probability difference "
          f"{difference:.2e} (must be <= 1e-5)")
    return 0 if difference <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
