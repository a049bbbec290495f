#!/usr/bin/env python
"""Training and prediction speed of SMCN against a plain fixed-length Keras model.

Measures, in one run and side by side, at the paper's sizes by default (78-d
audio frames, 768-d token vectors, 128 GRU units per direction, 4 classes,
batch 32):

- `baseline`: a plain Keras model written here, with SMCN's layer sizes (per
  modality two `Bidirectional(GRU)` branches, additive attention pooling on
  each and on their sum, the unimodal heads and the final head, cross-entropy
  on the three heads plus the two calibration MSEs as in eq. 17), but no
  masks: every item is padded to 500 audio frames and 150 tokens. Trained
  with `model.fit` on a `tf.data` of fixed synthetic tensors.
- `smcn_fixed`: `smcn_tf.model.smcn.build_smcn("smcn", ...)` compiled as
  `smcn_tf.train.compile_model` does, on the same fixed 500 / 150 shapes
  (every item full length).
- `smcn_variable`: SMCN on `smcn_tf.records.pipeline.make_dataset` over a
  synthetic records directory with IEMOCAP-like lengths (log-normal: audio
  median 80 pooled frames, mean about 90, at most 500; tokens median 18, mean
  about 20, at most 150), each batch padded to its own longest item.
- `smcn_bucketed`: the same with `make_dataset(..., bucket_window=16)`, which
  batches items of similar length together (skipped when the pipeline has no
  `bucket_window` argument).

`--recurrent-core fused|keras|both` (default `fused`) picks the BiGRU
implementation of `build_smcn(recurrent_core=...)` for the SMCN cases (`both`
runs them with each, so the core's speed-up shows side by side; a
`build_smcn` without the argument runs its default once); `--jit-compile` adds
`smcn_fixed` compiled with XLA (`model.compile(jit_compile=True)`). On a GPU
every case also runs under the `mixed_float16` policy (`--precision` chooses
otherwise), and the GRUs use cuDNN (`use_cudnn="auto"`, the default). The
other cases leave `jit_compile` at Keras's default, as `smcn train` does.

For every case it reports:

- train samples/s in steady state: the steps after the first one and
  `--warmup-steps` more, timed from the end of one batch to the end of
  another by a callback (the step's loss is read, so the step has finished);
- predict samples/s: `model.predict` on `--predict-batches` fixed-shape
  batches (baseline, smcn_fixed) or batches of the variable-length pipeline
  (smcn_variable, smcn_bucketed), after a warm-up call, timed from its first
  batch to the end of its last by a callback (`measure_predict`: the call
  itself ends only when TensorFlow's iterator teardown has waited for its
  autotuning thread, which rounds its duration up);
- the time to the first step: from the `model.fit` call to the end of the
  first batch, tracing and graph building included;
- the peak resident memory: every case runs in its own process (so the peaks
  and the traced graphs are per case); `VmHWM` of /proc/self/status, or
  `ru_maxrss` where there is no /proc;
- the ratios of train and predict samples/s to the baseline of the same
  precision, with the targets of the issue marked met or missed.

Usage:

    python scripts/benchmark_training.py                    # paper sizes, fused core
    python scripts/benchmark_training.py --recurrent-core both --jit-compile
    python scripts/benchmark_training.py --quick            # tiny sizes, a smoke run
    python scripts/benchmark_training.py --cases baseline smcn_variable --steps 50

Samples/s of a case depend on the other cases only through the machine they
share; on a busy machine the figures are noisy, the ratios less so.
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

CASES = ("baseline", "smcn_fixed", "smcn_variable", "smcn_bucketed")
SMCN_CASES = CASES[1:]
VARIABLE_CASES = ("smcn_variable", "smcn_bucketed")
CORES = ("fused", "keras")
PAPER = {"audio_dim": 78, "text_dim": 768, "hidden_units": 128, "num_classes": 4,
         "batch_size": 32, "max_frames": 500, "max_tokens": 150}
# (key, description, row kind, ratio field, threshold, comparison)
TARGETS = (
    ("train_variable", "train on IEMOCAP-like lengths (best SMCN variable-length case)",
     VARIABLE_CASES, "train_ratio", 5.0, ">="),
    ("train_fixed", "train at fixed 500/150 (smcn_fixed)", ("smcn_fixed",), "train_ratio",
     3.5, ">="),
    ("predict_fixed", "predict at fixed shapes (smcn_fixed)", ("smcn_fixed",),
     "predict_ratio", 3.0, ">="),
    ("first_step", "time to the first step at paper size (slowest SMCN case, seconds)",
     SMCN_CASES, "first_step_s", 10.0, "<="),
)


# --------------------------------------------------------------------------- arguments


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and predict samples/s, time to the first step and peak memory of "
        "SMCN (fixed, variable-length, bucketed) against a plain fixed-length Keras model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default=os.path.join("work", "benchmark_training.json"),
                        help="Where to write the results as JSON.")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        help="The cases to run.")
    parser.add_argument("--recurrent-core", choices=CORES + ("both",), default="fused",
                        help="build_smcn's recurrent_core for the SMCN cases; both: each.")
    parser.add_argument("--precision",
                        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16", "both"),
                        default="auto", help="auto: float32 and mixed_float16 on a GPU, "
                        "float32 on a CPU.")
    parser.add_argument("--jit-compile", action="store_true",
                        help="Also run smcn_fixed with model.compile(jit_compile=True) (XLA).")
    parser.add_argument("--quick", action="store_true",
                        help="Tiny sizes and few steps (a smoke run; the targets do not apply).")
    sizes = parser.add_argument_group("sizes (the paper's by default)")
    sizes.add_argument("--audio-dim", type=int, help="Audio frame size (78).")
    sizes.add_argument("--text-dim", type=int, help="Token vector size (768).")
    sizes.add_argument("--hidden-units", type=int, help="GRU units per direction (128).")
    sizes.add_argument("--num-classes", type=int, help="Classes (4).")
    sizes.add_argument("--batch-size", type=int, help="Items per batch (32).")
    sizes.add_argument("--max-frames", type=int,
                       help="Fixed audio length, and the cap of the variable lengths (500).")
    sizes.add_argument("--max-tokens", type=int,
                       help="Fixed text length, and the cap of the variable lengths (150).")
    lengths = parser.add_argument_group("variable lengths (log-normal, IEMOCAP-like)")
    lengths.add_argument("--utterances", type=int, help="Synthetic utterances (1024).")
    lengths.add_argument("--audio-median", type=float, help="Median pooled frames (80).")
    lengths.add_argument("--audio-mean", type=float, help="Mean pooled frames before the cap (90).")
    lengths.add_argument("--text-median", type=float, help="Median tokens (18).")
    lengths.add_argument("--text-mean", type=float, help="Mean tokens before the cap (20).")
    lengths.add_argument("--bucket-window", type=int, default=16,
                         help="make_dataset's bucket_window for smcn_bucketed.")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--steps", type=int, help="Timed train steps (20).")
    timing.add_argument("--warmup-steps", type=int,
                        help="Untimed train steps after the first one (3).")
    timing.add_argument("--predict-batches", type=int, help="Timed predict batches (16).")
    timing.add_argument("--case-timeout", type=float, default=3600.0,
                        help="Seconds before a case's process is stopped.")
    timing.add_argument("--jobs", type=int, default=1,
                        help="Cases run at once. Above 1 the cases compete for the machine and "
                        "their timings mean little: for smoke runs only.")
    parser.add_argument("--verbose", action="store_true",
                        help="Let TensorFlow, Keras and the cases' processes print.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args

    if args.quick:
        defaults = {"audio_dim": 8, "text_dim": 16, "hidden_units": 8, "num_classes": 4,
                    "batch_size": 8, "max_frames": 50, "max_tokens": 15, "utterances": 48,
                    "steps": 3, "warmup_steps": 1, "predict_batches": 2}
    else:
        defaults = dict(PAPER, utterances=1024, steps=20, warmup_steps=3, predict_batches=16)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # The lengths scale with the caps: IEMOCAP's medians at 500 frames / 150 tokens.
    frame_scale, token_scale = args.max_frames / 500.0, args.max_tokens / 150.0
    for key, value in (("audio_median", 80.0 * frame_scale), ("audio_mean", 90.0 * frame_scale),
                       ("text_median", 18.0 * token_scale), ("text_mean", 20.0 * token_scale)):
        if getattr(args, key) is None:
            setattr(args, key, value)
    positive = ("audio_dim", "text_dim", "hidden_units", "batch_size", "max_frames",
                "max_tokens", "utterances", "steps", "predict_batches", "bucket_window")
    for key in positive:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1.")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1.")
    if args.num_classes < 2 or args.warmup_steps < 0:
        parser.error("--num-classes must be >= 2 and --warmup-steps >= 0.")
    for kind in ("audio", "text"):
        median, mean = getattr(args, f"{kind}_median"), getattr(args, f"{kind}_mean")
        if not 0 < median <= mean:
            parser.error(f"--{kind}-median must be > 0 and at most --{kind}-mean.")
    return args


def settings_of(args):
    keys = ("audio_dim", "text_dim", "hidden_units", "num_classes", "batch_size",
            "max_frames", "max_tokens", "utterances", "audio_median", "audio_mean",
            "text_median", "text_mean", "bucket_window", "steps", "warmup_steps",
            "predict_batches", "quick", "jobs")
    settings = {key: getattr(args, key) for key in keys}
    settings["paper_size"] = all(settings[key] == value for key, value in PAPER.items())
    return settings


# --------------------------------------------------------------------------- child side


def quiet_tensorflow(verbose):
    """Silences TensorFlow's C++ and Python logs and Keras's progress output."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)


def peak_rss_mb():
    """The process's peak resident memory in MiB (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def lognormal_lengths(rng, count, median, mean, cap):
    """Integer lengths in [1, cap], log-normal with this median and (uncapped) mean."""
    import numpy as np

    sigma = math.sqrt(2.0 * math.log(mean / median)) if mean > median else 0.0
    lengths = np.rint(rng.lognormal(math.log(median), sigma, size=count))
    return np.clip(lengths, 1, cap).astype("int64")


def write_records(directory, settings, seed=0):
    """A records directory of synthetic utterances with IEMOCAP-like lengths."""
    import numpy as np

    from smcn_tf.records import format as records

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    count = settings["utterances"]
    frames = lognormal_lengths(rng, count, settings["audio_median"], settings["audio_mean"],
                               settings["max_frames"])
    tokens = lognormal_lengths(rng, count, settings["text_median"], settings["text_mean"],
                               settings["max_tokens"])
    class_names = [f"class{index}" for index in range(settings["num_classes"])]
    groups = [f"Session{index}" for index in range(1, 5)]
    counts = {group: dict.fromkeys(class_names, 0) for group in groups}
    shard_size = 256
    num_shards = max(1, math.ceil(count / shard_size))
    shards = []
    for shard in range(num_shards):
        serialized, shard_groups = [], {}
        for index in range(shard * shard_size, min(count, (shard + 1) * shard_size)):
            group = groups[index % len(groups)]
            label = int(rng.integers(settings["num_classes"]))
            counts[group][class_names[label]] += 1
            shard_groups[group] = shard_groups.get(group, 0) + 1
            audio = rng.standard_normal((int(frames[index]), settings["audio_dim"]))
            text = rng.standard_normal((int(tokens[index]), settings["text_dim"]))
            serialized.append(records.serialize_example(
                f"utt{index:05d}", f"spk{index % 10}", group, label,
                audio.astype("float16"), text.astype("float16")))
        name = records.shard_name(shard, num_shards)
        records.write_shard(os.path.join(directory, name), serialized)
        shards.append({"file": name, "count": len(serialized), "groups": shard_groups})
    records.write_manifest(directory, {
        "format_version": records.FORMAT_VERSION, "corpus": "synthetic",
        "class_names": class_names, "audio_dim": settings["audio_dim"],
        "text_dim": settings["text_dim"], "text_encoder": None, "pooling": 5,
        "max_frames": settings["max_frames"], "max_tokens": settings["max_tokens"],
        "shards": shards, "num_examples": count, "groups": groups, "counts": counts,
    })
    return {
        "audio_frames": {"median": float(np.median(frames)), "mean": float(frames.mean()),
                         "max": int(frames.max())},
        "text_tokens": {"median": float(np.median(tokens)), "mean": float(tokens.mean()),
                        "max": int(tokens.max())},
    }


def probe(spec):
    """The machine, what the project's API supports, and the synthetic records."""
    import inspect

    import keras
    import tensorflow as tf

    from smcn_tf.records import pipeline
    from smcn_tf.model.smcn import SMCNModel

    result = {"tensorflow": tf.__version__, "keras": keras.__version__, "gpus": []}
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        except Exception:  # details are optional
            name = gpu.name
        result["gpus"].append(name)
    result["recurrent_core"] = "recurrent_core" in inspect.signature(SMCNModel.__init__).parameters
    result["bucket_window"] = "bucket_window" in inspect.signature(pipeline.make_dataset).parameters
    if spec.get("records_dir"):
        result["lengths"] = write_records(spec["records_dir"], spec["settings"])
    return result


def build_baseline(settings):
    """The plain fixed-length model: SMCN's layers, no masks, padded inputs."""
    import keras
    from keras import ops

    class AdditiveAttention(keras.layers.Layer):
        """softmax_t(u . tanh(W h_t + b)), then the weighted sum of h_t (eq. 4-6)."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
            self.context = self.add_weight(shape=(self.units,), name="context")

        def call(self, inputs):
            scores = ops.tensordot(ops.tanh(ops.matmul(inputs, self.kernel) + self.bias),
                                   self.context, axes=1)
            weights = ops.softmax(scores, axis=-1)
            return ops.sum(ops.expand_dims(weights, -1) * inputs, axis=1)

    class Baseline(keras.Model):
        def __init__(self):
            hidden, classes = settings["hidden_units"], settings["num_classes"]
            shapes = {"audio": (settings["max_frames"], settings["audio_dim"]),
                      "text": (settings["max_tokens"], settings["text_dim"])}
            inputs = {f"{m}_features": keras.Input(shapes[m], name=f"{m}_features")
                      for m in shapes}
            outputs, fused = {}, []
            for modality in shapes:
                features = inputs[f"{modality}_features"]
                hidden_intra, hidden_calibration = (
                    keras.layers.Bidirectional(keras.layers.GRU(hidden, return_sequences=True),
                                               name=f"{modality}_{branch}_gru")(features)
                    for branch in ("intra", "calibration")
                )
                semantic = AdditiveAttention(2 * hidden, name=f"{modality}_intra_attention")(
                    hidden_intra)
                calibration = AdditiveAttention(
                    2 * hidden, name=f"{modality}_calibration_attention")(hidden_calibration)
                interaction = AdditiveAttention(
                    2 * hidden, name=f"{modality}_interaction_attention")(
                    keras.layers.Add()([hidden_intra, hidden_calibration]))
                head = keras.layers.Dense(128, activation="relu")(semantic)
                outputs[f"{modality}_probabilities"] = keras.layers.Dense(
                    classes, activation="softmax", dtype="float32")(head)
                outputs[f"{modality}_semantic"] = semantic
                outputs[f"{modality}_calibration"] = calibration
                fused.append(keras.layers.Add()([interaction, semantic, calibration]))
            outputs["probabilities"] = keras.layers.Dense(
                classes, activation="softmax", dtype="float32", name="emotion_head")(
                keras.layers.Concatenate()(fused))
            super().__init__(inputs=inputs, outputs=outputs, name="baseline")
            self.cross_entropy = keras.losses.SparseCategoricalCrossentropy()

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            # Eq. 17: three cross-entropies and MSE(stop_gradient(F^j), Fc^i).
            total = self.cross_entropy(y, y_pred["probabilities"])
            for modality, other in (("audio", "text"), ("text", "audio")):
                total = total + self.cross_entropy(y, y_pred[f"{modality}_probabilities"])
                target = ops.cast(ops.stop_gradient(y_pred[f"{other}_semantic"]), "float32")
                total = total + ops.mean(
                    ops.square(target - ops.cast(y_pred[f"{modality}_calibration"], "float32")))
            return total

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, y, y_pred["probabilities"], sample_weight)

    return Baseline()


def build_smcn_model(settings, core):
    """build_smcn("smcn", ...); returns (model, the core it really runs)."""
    from smcn_tf.model.smcn import build_smcn

    kwargs = dict(audio_dim=settings["audio_dim"], text_dim=settings["text_dim"],
                  hidden_units=settings["hidden_units"], num_classes=settings["num_classes"])
    if core is None:
        return build_smcn("smcn", **kwargs), "default"
    try:
        return build_smcn("smcn", recurrent_core=core, **kwargs), core
    except TypeError as error:  # a build_smcn without the argument
        if "recurrent_core" not in str(error):
            raise
        return build_smcn("smcn", **kwargs), "default (no recurrent_core argument)"


def fixed_batch(settings, with_lengths, seed=0):
    """One synthetic batch at the fixed 500 / 150 shapes, every item full length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    batch, frames, tokens = settings["batch_size"], settings["max_frames"], settings["max_tokens"]
    inputs = {
        "audio_features": rng.standard_normal((batch, frames, settings["audio_dim"]),
                                              dtype="float32"),
        "text_features": rng.standard_normal((batch, tokens, settings["text_dim"]),
                                             dtype="float32"),
    }
    if with_lengths:
        inputs["audio_length"] = np.full((batch,), frames, "int32")
        inputs["text_length"] = np.full((batch,), tokens, "int32")
    labels = rng.integers(settings["num_classes"], size=(batch,)).astype("int32")
    return inputs, labels


def run_case(spec):
    """Builds, trains and predicts one case; returns its measurements."""
    quiet_tensorflow(spec["verbose"])
    import keras
    import tensorflow as tf

    from smcn_tf.model import metrics

    settings, case = spec["settings"], spec["case"]
    if spec["precision"] != "float32":
        keras.mixed_precision.set_dtype_policy(spec["precision"])
    # The data first: make_dataset seeds its own shuffles (seed=1), and its
    # per-pass seeds are tensors, which tf.random's global seed (set below)
    # cannot combine with at construction time.
    batch = settings["batch_size"]
    if case in VARIABLE_CASES:
        from smcn_tf.records.pipeline import make_dataset

        extra = {"bucket_window": settings["bucket_window"]} if case == "smcn_bucketed" else {}
        train = make_dataset(spec["records_dir"], batch_size=batch, shuffle=True, repeat=True,
                             seed=1, **extra)
        predict_data = make_dataset(spec["records_dir"], batch_size=batch, **extra)
        # Keras calls predict's tf.function on each batch (not on an iterator, as
        # fit does): a second shape retraces it with relaxed shapes, then no more.
        predict_warmup = predict_data.take(3)
        predict_data = predict_data.take(settings["predict_batches"])
    else:
        inputs, labels = fixed_batch(settings, with_lengths=case != "baseline")
        train = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
        predict_warmup = tf.data.Dataset.from_tensors(inputs)
        predict_data = predict_warmup.repeat(settings["predict_batches"])

    keras.utils.set_random_seed(0)
    result = {}

    if case == "baseline":
        model = build_baseline(settings)
    else:
        model, result["recurrent_core"] = build_smcn_model(settings, spec["recurrent_core"])

    class SamplesSeen(keras.metrics.Sum):
        """The items trained on so far in the epoch (exact counts, whatever the batch)."""

        def update_state(self, y_true, y_pred, sample_weight=None):
            ones = keras.ops.ones_like(keras.ops.reshape(y_true, (-1,)))
            super().update_state(keras.ops.cast(ones, "float32"))

    # As smcn_tf.train.compile_model (Adam, UA / WA / F1, jit_compile left at
    # Keras's "auto"), plus the sample counter the timing reads.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-4),
        metrics=metrics.emotion_metrics(settings["num_classes"])
        + [SamplesSeen(name="samples_seen")],
        **({"jit_compile": True} if spec["jit_compile"] else {}),
    )
    result["parameters"] = int(model.count_params())
    result["jit_compile_resolved"] = bool(model.jit_compile)

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.seen = [], []

        def on_train_batch_end(self, batch, logs=None):
            # Reading a value waits for the step to finish (a GPU runs ahead).
            self.seen.append(float(logs["samples_seen"]))
            self.ends.append(time.perf_counter())

    warmup, steps = settings["warmup_steps"], settings["steps"]
    timer = BatchTimer()
    start = time.perf_counter()
    history = model.fit(train, epochs=1, steps_per_epoch=1 + warmup + steps, verbose=0,
                        callbacks=[timer])
    result["first_step_s"] = timer.ends[0] - start
    elapsed = timer.ends[warmup + steps] - timer.ends[warmup]
    samples = timer.seen[warmup + steps] - timer.seen[warmup]
    result["train_samples_per_s"] = samples / elapsed
    result["train_step_s"] = elapsed / steps
    result["final_loss"] = float(history.history["loss"][-1])

    model.predict(predict_warmup, verbose=0)  # traces (and for variable shapes retraces) predict
    result.update(measure_predict(model, predict_data))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def measure_predict(model, data, clock=time.perf_counter):
    """Predict samples/s of `model.predict(data)`, timed from its first to its last batch.

    The time runs from `on_predict_begin` to `on_predict_end`: the batches,
    the input pipeline and the model. It leaves out what `model.predict` does
    after its loop: there, the `tf.data` iterators are deleted, and deleting
    one waits for its autotuning thread to wake up. That thread sleeps 10 ms,
    then 20 ms, 40 ms and so on, so the whole call ends only at the next
    10 * (2**k - 1) ms after the iterator was made (5.11 s, 10.23 s, ...):
    timed around the call, 16 batches of 32 items that take 5.2 s or 8.2 s
    both read 512 / 10.23 = 50.0 samples/s.

    Args:
        model: a Keras model whose outputs include `"probabilities"`.
        data: the batches to predict.
        clock: the time in seconds (for tests).

    Returns:
        A dict: `predict_samples`, `predict_s` (the loop),
        `predict_call_s` (the whole `predict` call, the wait included) and
        `predict_samples_per_s` (`predict_samples / predict_s`).
    """
    import keras

    class PredictTimer(keras.callbacks.Callback):
        def on_predict_begin(self, logs=None):
            self.begin = clock()

        def on_predict_end(self, logs=None):
            self.end = clock()

    timer = PredictTimer()
    start = clock()
    outputs = model.predict(data, verbose=0, callbacks=[timer])
    call_seconds = clock() - start
    samples = int(outputs["probabilities"].shape[0])
    seconds = timer.end - timer.begin
    return {"predict_samples": samples, "predict_s": seconds, "predict_call_s": call_seconds,
            "predict_samples_per_s": samples / seconds}


def child_main(path):
    with open(path, encoding="utf-8") as stream:
        spec = json.load(stream)
    if spec["task"] == "probe":
        quiet_tensorflow(spec["verbose"])
        result = probe(spec)
    else:
        result = run_case(spec)
    with open(spec["result_path"], "w", encoding="utf-8") as stream:
        json.dump(result, stream)
    return 0


# --------------------------------------------------------------------------- parent side


def run_child(spec, directory, timeout, verbose):
    """Runs `spec` in a fresh Python process; returns (result dict or None, error text)."""
    handle, spec_path = tempfile.mkstemp(suffix=".json", dir=directory)
    os.close(handle)
    spec = dict(spec, result_path=spec_path + ".result", verbose=verbose)
    with open(spec_path, "w", encoding="utf-8") as stream:
        json.dump(spec, stream)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPOSITORY] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    if not verbose:
        environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
    output = None if verbose else subprocess.PIPE
    try:
        completed = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", spec_path],
            stdout=output, stderr=subprocess.STDOUT if output else None, text=True,
            env=environment, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"stopped after {timeout:g} s (--case-timeout)"
    if completed.returncode != 0 or not os.path.isfile(spec["result_path"]):
        lines = [line.strip() for line in (completed.stdout or "").splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
        tail = errors[-1] if errors else (lines[-1] if lines else "(see --verbose)")
        if len(tail) > 300:
            tail = tail[:297] + "..."
        return None, f"exit status {completed.returncode}: {tail}"
    with open(spec["result_path"], encoding="utf-8") as stream:
        return json.load(stream), None


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plan_rows(args, probed):
    """The rows to run: dicts with case, recurrent_core, precision, jit_compile."""
    if args.precision == "auto":
        precisions = ["float32", "mixed_float16"] if probed["gpus"] else ["float32"]
    elif args.precision == "both":
        precisions = ["float32", "mixed_float16"]
    else:
        precisions = [args.precision]
    if probed["recurrent_core"]:
        cores = list(CORES) if args.recurrent_core == "both" else [args.recurrent_core]
    else:
        cores = [None]
    rows = []
    for precision in precisions:
        for case in args.cases:
            for core in ([None] if case == "baseline" else cores):
                rows.append({"case": case, "recurrent_core": core, "precision": precision,
                             "jit_compile": False})
                if case == "smcn_fixed" and args.jit_compile:
                    rows.append({"case": case, "recurrent_core": core, "precision": precision,
                                 "jit_compile": True})
    return rows


def row_label(row):
    parts = [row["case"]]
    details = []
    if row["case"] != "baseline":
        details.append(row.get("recurrent_core_used") or row["recurrent_core"] or "default")
    if row["jit_compile"]:
        details.append("xla")
    if row["precision"] != "float32":
        details.append("mixed")
    if details:
        parts.append(f"[{', '.join(details)}]")
    return " ".join(parts)


def add_ratios(rows):
    baselines = {row["precision"]: row for row in rows
                 if row["case"] == "baseline" and row["status"] == "ok"}
    for row in rows:
        base = baselines.get(row["precision"])
        for kind in ("train", "predict"):
            key = f"{kind}_samples_per_s"
            ok = base is not None and row["status"] == "ok"
            row[f"{kind}_ratio"] = row[key] / base[key] if ok else None


def evaluate_targets(rows, settings, primary_core):
    """Each target of the issue: the measured value, the row it comes from, met or not.

    The speed targets take the best row (ratios are to the baseline of the same
    precision); the first-step target takes the slowest float32 row without XLA
    of the primary core (the first one run: `fused` unless asked otherwise).
    """
    results = []
    for key, description, cases, field, threshold, comparison in TARGETS:
        candidates = [row for row in rows if row["case"] in cases and row["status"] == "ok"
                      and row.get(field) is not None]
        if key == "first_step":
            candidates = [row for row in candidates if not row["jit_compile"]
                          and row["precision"] == "float32"
                          and row["recurrent_core"] == primary_core]
        pick = max(candidates, key=lambda row: row[field], default=None)
        value = pick[field] if pick else None
        if value is None:
            met = None
        else:
            met = value >= threshold if comparison == ">=" else value <= threshold
        results.append({
            "target": key, "description": description, "threshold": threshold,
            "comparison": comparison, "value": value, "row": row_label(pick) if pick else None,
            "met": met, "applies": settings["paper_size"],
        })
    return results


def format_number(value, digits=1, suffix=""):
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def print_report(report):
    machine, settings = report["machine"], report["settings"]
    print()
    if machine["gpus"]:
        print(f"Device:   GPU: {', '.join(machine['gpus'])} (cuDNN GRUs, use_cudnn='auto'; "
              "float32 and mixed_float16)")
    else:
        print(f"Device:   no GPU found; CPU: {machine['cpu']}, {machine['cpu_cores']} cores")
    print(f"Software: TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
          f"Python {machine['python']}")
    size = "paper size" if settings["paper_size"] else "NOT the paper size (--quick or flags)"
    print(f"Sizes:    audio {settings['audio_dim']}, text {settings['text_dim']}, "
          f"hidden {settings['hidden_units']}, {settings['num_classes']} classes, batch "
          f"{settings['batch_size']}, fixed {settings['max_frames']}/{settings['max_tokens']} "
          f"({size})")
    if report.get("lengths"):
        lengths = report["lengths"]
        print(f"Lengths:  {settings['utterances']} synthetic utterances; audio frames median "
              f"{lengths['audio_frames']['median']:g}, mean {lengths['audio_frames']['mean']:.1f};"
              f" tokens median {lengths['text_tokens']['median']:g}, mean "
              f"{lengths['text_tokens']['mean']:.1f}")
    print(f"Timing:   {settings['steps']} train steps after the first and "
          f"{settings['warmup_steps']} warm-up; predict over {settings['predict_batches']} "
          "batches; one process per case")
    for note in report["notes"]:
        print(f"Note:     {note}")
    print()
    header = (f"{'case':<34}{'train/s':>10}{'x base':>8}{'predict/s':>11}{'x base':>8}"
              f"{'1st step s':>12}{'peak MiB':>10}")
    print(header)
    print("-" * len(header))
    for row in report["rows"]:
        label = row_label(row)
        if row["status"] != "ok":
            print(f"{label:<34}{row['status']}: {row['reason']}")
            continue
        print(f"{label:<34}{format_number(row['train_samples_per_s']):>10}"
              f"{format_number(row['train_ratio'], 2, 'x'):>8}"
              f"{format_number(row['predict_samples_per_s']):>11}"
              f"{format_number(row['predict_ratio'], 2, 'x'):>8}"
              f"{format_number(row['first_step_s'], 2):>12}"
              f"{format_number(row['peak_rss_mb'], 0):>10}")
    print()
    caveat = "" if settings["paper_size"] else " (not the paper size: indicative only)"
    print(f"Targets of the issue{caveat}:")
    for target in report["targets"]:
        if target["value"] is None:
            verdict, value = "not measured", "-"
        else:
            verdict = "met" if target["met"] else "MISSED"
            unit = " s" if target["target"] == "first_step" else "x"
            value = f"{target['value']:.2f}{unit}"
        wanted = f"{target['comparison']} {target['threshold']:g}"
        wanted += " s" if target["target"] == "first_step" else "x"
        source = f"  ({target['row']})" if target["row"] else ""
        print(f"  {target['description']:<68} {wanted:>8}  {value:>8}  {verdict}{source}")


def main(argv=None):
    args = parse_arguments(argv)
    if args.child:
        return child_main(args.child)
    settings = settings_of(args)
    work = tempfile.mkdtemp(prefix="smcn-benchmark-training-")
    try:
        needs_records = any(case in VARIABLE_CASES for case in args.cases)
        records_dir = os.path.join(work, "records") if needs_records else None
        print("Probing the machine" + (" and writing the synthetic records" if needs_records
                                       else "") + " ...", flush=True)
        probed, error = run_child({"task": "probe", "settings": settings,
                                   "records_dir": records_dir}, work, args.case_timeout,
                                  args.verbose)
        if probed is None:
            raise SystemExit(f"The probe failed: {error}")
        notes = []
        if not probed["recurrent_core"]:
            notes.append("build_smcn has no recurrent_core argument: the SMCN cases ran its "
                         "default core once")
        if args.jobs > 1:
            notes.append(f"--jobs {args.jobs}: cases ran {args.jobs} at a time and competed "
                         "for the machine; the timings are not comparable")
        rows = plan_rows(args, probed)
        lock = threading.Lock()

        def run_row(row):
            label = row_label(row)
            if row["case"] == "smcn_bucketed" and not probed["bucket_window"]:
                row.update(status="skipped",
                           reason="make_dataset has no bucket_window argument yet")
                with lock:
                    print(f"Skipping {label}: {row['reason']}", flush=True)
                return
            with lock:
                print(f"Running {label} ...", flush=True)
            result, error = run_child(
                dict(row, task="case", settings=settings, records_dir=records_dir), work,
                args.case_timeout, args.verbose)
            if result is None:
                row.update(status="failed", reason=error)
                with lock:
                    print(f"  {label} failed: {error}", flush=True)
                return
            used = result.pop("recurrent_core", None)
            if used is not None:
                row["recurrent_core_used"] = used
            row.update(result, status="ok", reason=None)

        with ThreadPoolExecutor(max_workers=args.jobs) as executor:
            list(executor.map(run_row, rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    add_ratios(rows)
    for row in rows:
        row["name"] = row_label(row)
    report = {
        "benchmark": "training",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
        "machine": {
            "gpus": probed["gpus"], "cpu": cpu_name(), "cpu_cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": probed["tensorflow"], "keras": probed["keras"],
        },
        "api": {"recurrent_core": probed["recurrent_core"],
                "bucket_window": probed["bucket_window"]},
        "lengths": probed.get("lengths"),
        "notes": notes,
        "rows": rows,
    }
    smcn_rows = [row for row in rows if row["case"] != "baseline"]
    primary_core = smcn_rows[0]["recurrent_core"] if smcn_rows else None
    report["targets"] = evaluate_targets(rows, settings, primary_core)
    print_report(report)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2)
        stream.write("\n")
    print(f"\nWrote {args.out}")
    failed = [row["name"] for row in rows if row["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
