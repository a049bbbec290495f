"""TensorBoard views that answer a researcher's questions about an SMCN run.

Beside the loss and metric curves that `keras.callbacks.TensorBoard` writes,
this module logs, per fold, with TensorBoard's own plugins:

- **what the model confuses** (Images, Text): the held-out confusion matrix
  as counts and row-normalised (recall) panels, and the per-class precision /
  recall / F1 / support table. Both come from `smcn_tf.evaluate.
  score_predictions` on the same labels and predictions that `results.json`
  holds, so they agree with it exactly. `TrainingConfusionCallback` does the
  same on training groups every N epochs (opt-in).
- **where the model listens and reads** (Images): for a few held-out
  utterances (`select_attention_examples`: the first ids of each class, in
  sorted order), the log-Mel frames with the audio attention under them and
  the token attention as bars over the tokens, one panel per attention the
  variant has (intra F, calibration Fc, interaction I1').
- **whether calibration calibrates** (Scalars): `CalibrationDiagnostics`
  measures, at every epoch end on a bounded slice of held-out data, the cosine
  similarity and MSE between Fc^a and F^t and between Fc^t and F^a (what
  Loss_at and Loss_ta pull together, paper eq. 11), beside the same between
  F^a and F^t: the baseline the calibration features should beat. It logs the
  learning rate too.
- **which settings win** (HParams): `log_hparams` records the run's settings
  (variant, text encoder, feature and model settings, learning rate, steps,
  seed, ...) with UA, WA and weighted F1, so runs of several variants and
  seeds form one HParams experiment.
- **how the utterances lie** (Projector): `log_embeddings` saves the
  utterance-level F^a, F^t, Fc^a, Fc^t of the held-out group with a
  `metadata.tsv` of utterance id, label and prediction.

Layout (`<run>/tensorboard/` is what `smcn train` already writes into):

    <run>/tensorboard/<fold>/               HParams session of the fold: its
                                            settings and scores/{UA,WA,W-F1}
    <run>/tensorboard/<fold>/train/         Keras: epoch_* losses and metrics
                                            (and validation/, with a validation set)
    <run>/tensorboard/<fold>/test/          train.py: test/* held-out scores
    <run>/tensorboard/<fold>/held_out/      evaluation/confusion_matrix,
                                            evaluation/classification_report,
                                            attention/<utterance id>
    <run>/tensorboard/<fold>/train_confusion/  the same evaluation/* tags on
                                            training groups (opt-in)
    <run>/tensorboard/<fold>/calibration/   calibration/* and
                                            optimizer/learning_rate per epoch
    <run>/tensorboard/<fold>/projector/     embeddings checkpoint, metadata.tsv,
                                            projector_config.pbtxt
    <run>/tensorboard/mean/                 HParams session of the whole run:
                                            the mean scores over its folds

Every HParams session writes the same experiment description (the same
hyper-parameters, domains and metrics, whatever the run), and a session is a
directory, so pointing TensorBoard at any common parent of several runs gives
one experiment with a row per run and fold. For the Table 3 script's runs:

    tensorboard --logdir work/table3/runs
    # sessions: iemocap/<variant>/seed<N>/tensorboard/{Session1..5,mean},
    #           meld/<variant>/seed<N>/tensorboard/{split,mean}

the `fold` column tells each run's per-fold rows from its `mean` row, and
`variant`, `seed`, `corpus` and `text_encoder` tell the runs apart (the table
lists these first).
Same-named tags in different runs line up in every dashboard: the
`evaluation/confusion_matrix` of `<fold>/held_out` and `<fold>/train_confusion`
show side by side, and the `calibration/*` curves of all runs overlay.

Steps: the epoch callbacks log at the epoch index (0-based), like Keras'
`epoch_*` curves, so they line up with the losses; the held-out views are
logged at the step the caller passes (train.py's test scores use the number
of epochs).

Everything here is cheap enough to stay on: a few forward passes over a
bounded number of held-out batches per epoch, and one pass over the held-out
group at the end. No checkpoint is chosen on the held-out data: these are
read-only views.

The figures are plain matplotlib `Figure`s drawn on the Agg canvas (no pyplot,
no GUI backend); `figure_to_png` gives the PNG bytes that `tf.summary.image`
logs, and `scripts/render_tensorboard_figures.py` saves the same figures to
files.
"""

import glob
import io
import os
import textwrap

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import plugin_data_pb2

from smcn_tf import evaluate
from smcn_tf.config import MIXED_PRECISION
from smcn_tf.model.layers import Fusion
from smcn_tf.model.smcn import VARIANTS

MODALITIES = ("audio", "text")
# Attention kinds, in drawing order: layer `<modality>_<kind>_attention`.
ATTENTION_KINDS = ("intra", "calibration", "interaction")
ATTENTION_TITLES = {
    "intra": "intra-modal attention (F)",
    "calibration": "calibration attention (Fc)",
    "interaction": "interaction attention (I1')",
    "final": "attention of the final head",
}

# Run directories under <run>/tensorboard/<fold>/.
HELD_OUT_DIR = "held_out"
TRAIN_CONFUSION_DIR = "train_confusion"
CALIBRATION_DIR = "calibration"
PROJECTOR_DIR = "projector"
MEAN_SESSION = "mean"

# Tags.
CONFUSION_MATRIX_TAG = "evaluation/confusion_matrix"
CLASSIFICATION_REPORT_TAG = "evaluation/classification_report"
ATTENTION_TAG_PREFIX = "attention/"
LEARNING_RATE_TAG = "optimizer/learning_rate"
PROJECTOR_README_TAG = "projector/readme"
SCORE_TAGS = {
    "unweighted_accuracy": "scores/unweighted_accuracy",
    "weighted_accuracy": "scores/weighted_accuracy",
    "weighted_f1": "scores/weighted_f1",
}
SCORE_NAMES = {"unweighted_accuracy": "UA", "weighted_accuracy": "WA", "weighted_f1": "W-F1"}

# Calibration diagnostics: (tag, first output, second output, description).
CALIBRATION_PAIRS = (
    ("Fca_Ft", "audio_calibration", "text_semantic",
     "Fc^a (audio calibration feature) vs F^t (text semantic feature): what Loss_at pulls together."),
    ("Fct_Fa", "text_calibration", "audio_semantic",
     "Fc^t (text calibration feature) vs F^a (audio semantic feature): what Loss_ta pulls together."),
    ("Fa_Ft", "audio_semantic", "text_semantic",
     "F^a vs F^t: the baseline that the calibration features should beat."),
)
CALIBRATION_TAGS = tuple(
    f"calibration/{measure}_{pair}"
    for pair, _, _, _ in CALIBRATION_PAIRS
    for measure in ("cosine", "mse")
)
EMBEDDING_OUTPUTS = ("audio_semantic", "text_semantic", "audio_calibration", "text_calibration")
EMBEDDING_SYMBOLS = {
    "audio_semantic": "F^a",
    "text_semantic": "F^t",
    "audio_calibration": "Fc^a",
    "text_calibration": "Fc^t",
}


def fold_log_dir(run_dir, fold, kind=None):
    """`<run>/tensorboard/<fold>[/<kind>]`, where kind is one of the *_DIR names."""
    path = os.path.join(run_dir, "tensorboard", fold)
    return os.path.join(path, kind) if kind else path


# --------------------------------------------------------------------------
# Figures (matplotlib only; shared with scripts/render_tensorboard_figures.py)


def _new_figure(width, height):

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def figure_to_png(figure):
    """The figure as PNG bytes (what `tf.summary.image` logs and the script saves)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def confusion_matrix_figure(matrix, class_names, title=None):
    """Two annotated panels: counts, and rows normalised to 1 (per-class recall).

    Args:
        matrix: `[classes, classes]` counts; rows are true classes.
        class_names: the class names, in id order.
        title: optional figure title.

    Returns:
        A matplotlib `Figure`.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(
        matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0
    )
    size = len(class_names)
    cell = max(0.45, min(0.9, 6.0 / max(size, 1)))
    side = 1.6 + cell * size
    figure = _new_figure(2 * side + 1.2, side + (0.5 if title else 0.2))
    axes = figure.subplots(1, 2)
    panels = (
        (axes[0], matrix, "counts", lambda v: f"{int(v)}", max(int(matrix.max()), 1)),
        (axes[1], normalised, "row-normalised (recall)", lambda v: f"{v:.2f}", 1.0),
    )
    font = max(5, min(10, int(40 / max(size, 1))))
    for ax, values, name, text, top in panels:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=font + 1)
        ax.set_yticklabels(class_names, fontsize=font + 1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                ax.text(
                    column, row, text(value), ha="center", va="center", fontsize=font,
                    color="white" if value > 0.5 * top else "black",
                )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def attention_figure(
    utterance_id,
    spectrogram=None,
    audio_attention=None,
    tokens=None,
    text_attention=None,
    subtitle=None,
    tokens_note=None,
):
    """Log-Mel frames with the audio attention, and the token attention over the tokens.

    Args:
        utterance_id: shown in the title.
        spectrogram: `[frames, mels]` (valid frames only), or None (no audio).
        audio_attention: `{kind: [frames]}` in drawing order, or None.
        tokens: the token labels (one per text attention weight), or None.
        text_attention: `{kind: [tokens]}`, or None.
        subtitle: a second title line (true and predicted class).
        tokens_note: a note under the token axis (e.g. that the labels are
            token positions, not strings).

    Returns:
        A matplotlib `Figure`: a column per modality; the audio column has
        the spectrogram on top, then one panel per attention kind on the
        same frame axis; the text column has one bar chart per kind.
    """
    audio_attention = audio_attention or {}
    text_attention = text_attention or {}
    has_audio = spectrogram is not None and bool(audio_attention)
    has_text = bool(text_attention)
    kinds = max(len(audio_attention), len(text_attention), 1)
    columns = int(has_audio) + int(has_text) or 1
    rows = kinds + (1 if has_audio else 0)
    # Room under each bar chart for its (rotated) token labels.
    longest = max((len(str(token)) for token in tokens or ()), default=2) if has_text else 0
    row_height = 2.0 + min(1.2, 0.06 * longest)
    figure = _new_figure(7.0 * columns, 1.0 + row_height * rows)
    grid = figure.add_gridspec(rows, columns)
    column = 0
    if has_audio:
        frames = np.asarray(spectrogram).shape[0]
        top = figure.add_subplot(grid[0, column])
        top.imshow(
            np.asarray(spectrogram).T, origin="lower", aspect="auto", cmap="magma",
            interpolation="nearest", extent=(-0.5, frames - 0.5, -0.5, np.asarray(spectrogram).shape[1] - 0.5),
        )
        top.set_title(f"log-Mel frames ({frames} frames)", fontsize=9)
        top.set_ylabel("Mel band")
        for index, (kind, weights) in enumerate(audio_attention.items()):
            ax = figure.add_subplot(grid[1 + index, column], sharex=top)
            weights = np.asarray(weights, dtype=np.float64)
            edges = np.arange(len(weights) + 1) - 0.5  # one step a frame
            ax.stairs(weights, edges, fill=True, alpha=0.5, color="tab:blue")
            ax.stairs(weights, edges, linewidth=1, color="tab:blue")
            ax.set_xlim(-0.5, frames - 0.5)
            ax.set_ylim(0, max(float(weights.max()) * 1.1, 1e-6))
            ax.set_title(f"audio: {ATTENTION_TITLES.get(kind, kind)}", fontsize=9)
            ax.set_ylabel("weight")
        ax.set_xlabel("frame")
        column += 1
    if has_text:
        count = len(next(iter(text_attention.values())))
        labels = list(tokens) if tokens is not None else [str(i) for i in range(count)]
        font = max(4, min(9, int(360 / max(count, 1))))
        offset = 1 if has_audio else 0
        if has_audio:  # the cell beside the spectrogram: the tokens, in full
            ax = figure.add_subplot(grid[0, column])
            ax.axis("off")
            words = tokens_note or " ".join(labels)
            ax.text(
                0.0, 1.0, textwrap.fill(f"tokens ({count}): {words}", 110), va="top",
                ha="left", fontsize=8, transform=ax.transAxes,
            )
        for index, (kind, weights) in enumerate(text_attention.items()):
            ax = figure.add_subplot(grid[offset + index, column])
            weights = np.asarray(weights, dtype=np.float64)
            ax.bar(np.arange(len(weights)), weights, color="tab:orange")
            ax.set_xlim(-0.6, len(weights) - 0.4)
            ax.set_xticks(np.arange(len(weights)))
            ax.set_xticklabels(labels, rotation=90, fontsize=font)
            ax.set_title(f"text: {ATTENTION_TITLES.get(kind, kind)}", fontsize=9)
            ax.set_ylabel("weight")
        if tokens_note:
            ax.set_xlabel(tokens_note, fontsize=8)
    title = f"{utterance_id}" + (f"\n{subtitle}" if subtitle else "")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def calibration_figure(series, title=None):
    """Calibration diagnostics over epochs: a cosine panel and an MSE panel.

    Args:
        series: `{tag: (steps, values)}` as `read_scalars` returns; tags
            `calibration/cosine_*` and `calibration/mse_*` are drawn.
        title: optional figure title.

    Returns:
        A matplotlib `Figure`.
    """
    labels = {
        "Fca_Ft": "$F_c^a$ vs $F^t$",
        "Fct_Fa": "$F_c^t$ vs $F^a$",
        "Fa_Ft": "$F^a$ vs $F^t$ (baseline)",
    }
    figure = _new_figure(11, 3.8 if title else 3.5)
    axes = figure.subplots(1, 2)
    for ax, measure, name in ((axes[0], "cosine", "cosine similarity"), (axes[1], "mse", "MSE")):
        for pair, label in labels.items():
            tag = f"calibration/{measure}_{pair}"
            if tag not in series:
                continue
            steps, values = series[tag]
            style = "--" if pair == "Fa_Ft" else "-"
            ax.plot(np.asarray(steps) + 1, values, style, marker="o", markersize=3, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------
# Summaries


def _image_summary(tag, figure, step, description=None):
    image = tf.image.decode_png(figure_to_png(figure), channels=4)
    tf.summary.image(tag, image[None], step=step, description=description)


def _writer(log_dir):
    os.makedirs(log_dir, exist_ok=True)
    return tf.summary.create_file_writer(log_dir)


def classification_report_markdown(scores):
    """The per-class report of `score_predictions` as a markdown table."""
    lines = [
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in scores["class_names"]:
        row = scores["classes"][name]
        lines.append(
            f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | "
            f"{row['f1']:.4f} | {row['support']} |"
        )
    lines.append(
        f"\n**UA** {scores['unweighted_accuracy']:.4f} · **WA** "
        f"{scores['weighted_accuracy']:.4f} · **W-F1** {scores['weighted_f1']:.4f} · "
        f"{scores['num_examples']} utterances"
    )
    return "\n".join(lines)


def confusion_title(scores, what):
    """The confusion figure's title: what was scored, UA / WA / W-F1 in %, and how many."""
    return (
        f"{what}: UA {100 * scores['unweighted_accuracy']:.2f}  "
        f"WA {100 * scores['weighted_accuracy']:.2f}  "
        f"W-F1 {100 * scores['weighted_f1']:.2f}  ({scores['num_examples']} utterances)"
    )


def _log_confusion(scores, class_names, step, what):
    figure = confusion_matrix_figure(
        scores["confusion_matrix"], class_names, confusion_title(scores, what)
    )
    _image_summary(
        CONFUSION_MATRIX_TAG, figure, step,
        description=f"Confusion matrix on the {what} (rows: true class): counts, and "
        "rows normalised to 1 (the diagonal is each class' recall).",
    )
    tf.summary.text(CLASSIFICATION_REPORT_TAG, classification_report_markdown(scores), step=step)


def log_held_out_evaluation(log_dir, labels, predictions, class_names, step):
    """The held-out confusion matrix (image) and per-class report (text).

    Scored by `smcn_tf.evaluate.score_predictions`, as `results.json` is: pass
    train.py's `predictions["labels"]` and `predictions["predictions"]`.

    Args:
        log_dir: `<run>/tensorboard/<fold>/held_out`.
        labels: int class ids `[n]`.
        predictions: int class ids `[n]`.
        class_names: the class names.
        step: the summary step (train.py logs its test scores at the epoch count).

    Returns:
        The `score_predictions` dict that was drawn.
    """
    scores = evaluate.score_predictions(labels, predictions, list(class_names))
    writer = _writer(log_dir)
    with writer.as_default():
        _log_confusion(scores, list(class_names), step, "held-out group")
    writer.close()
    return scores


def _batch_inputs(element):
    return element[0] if isinstance(element, (tuple, list)) else element


def _predictor(model, keys):
    """A traced function: inputs -> the model's outputs named in `keys`."""
    def outputs_of(inputs):
        outputs = model(inputs, training=False)
        return {key: outputs[key] for key in keys if key in outputs}

    return tf.function(outputs_of, reduce_retracing=True)


def _output_names(model):
    outputs = getattr(model, "output", None)
    return set(outputs) if isinstance(outputs, dict) else set()


def _run_model(predict, dataset, max_batches=None):
    """Concatenated outputs, labels and utterance ids (if the dataset has them)."""
    collected, labels, ids = {}, [], []
    for index, element in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        outputs = predict(_batch_inputs(element))
        for key, value in outputs.items():
            collected.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
        if isinstance(element, (tuple, list)) and len(element) > 1:
            labels.append(np.asarray(element[1]).reshape(-1))
        if (
            isinstance(element, (tuple, list))
            and len(element) > 2
            and isinstance(element[2], dict)
            and "utterance_id" in element[2]
        ):
            ids.extend(
                value.decode("utf-8") for value in np.asarray(element[2]["utterance_id"])
            )
    result = {key: np.concatenate(values) for key, values in collected.items()}
    result["labels"] = np.concatenate(labels).astype(np.int64) if labels else None
    result["utterance_ids"] = ids
    return result


class TrainingConfusionCallback(keras.callbacks.Callback):
    """Confusion matrix and per-class report on training groups every N epochs.

    Opt-in: it runs the model over `dataset` (at most `max_batches`
    batches), which costs a pass over those batches each time.

    Args:
        log_dir: `<run>/tensorboard/<fold>/train_confusion`.
        dataset: a finite, unshuffled dataset of `(inputs, labels[, ...])`
            over the training groups, e.g. `make_dataset(records_dir,
            groups=train_groups, batch_size=...)`.
        class_names: the class names.
        every_epochs: log after every this many epochs; 0 turns it off.
        max_batches: read at most this many batches (None: all).
    """

    def __init__(self, log_dir, dataset, class_names, every_epochs=5, max_batches=None):
        super().__init__()
        self.log_dir = log_dir
        self.dataset = dataset
        self.class_names = list(class_names)
        self.every_epochs = int(every_epochs or 0)
        self.max_batches = max_batches
        self._predict = None
        self._file_writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.every_epochs <= 0 or (epoch + 1) % self.every_epochs:
            return
        if self._predict is None:
            self._predict = _predictor(self.model, ("probabilities",))
        outputs = _run_model(self._predict, self.dataset, self.max_batches)
        if outputs["labels"] is None or "probabilities" not in outputs:
            return
        scores = evaluate.score_predictions(
            outputs["labels"], outputs["probabilities"].argmax(axis=-1), self.class_names
        )
        if self._file_writer is None:
            self._file_writer = _writer(self.log_dir)
        with self._file_writer.as_default():
            _log_confusion(scores, self.class_names, epoch, "training groups")
        self._file_writer.flush()

    def on_train_end(self, logs=None):
        if self._file_writer is not None:
            self._file_writer.close()
            self._file_writer = None


class CalibrationDiagnostics(keras.callbacks.Callback):
    """Per-epoch calibration diagnostics on held-out data, and the learning rate.

    At every epoch end it runs the model over at most `max_batches`
    batches of `dataset` and logs, each the mean over utterances:

    - `calibration/cosine_Fca_Ft`, `calibration/mse_Fca_Ft`: Fc^a vs F^t;
    - `calibration/cosine_Fct_Fa`, `calibration/mse_Fct_Fa`: Fc^t vs F^a;
    - `calibration/cosine_Fa_Ft`, `calibration/mse_Fa_Ft`: F^a vs F^t,
      the baseline;

    where the MSE is the one of Loss_ij (mean over feature dimensions),
    and `optimizer/learning_rate` (schedules evaluated at the current
    step). A variant without calibration outputs logs only the pairs it
    has (`cat`: the baseline; `audio` / `text`: the learning rate only).

    Args:
        log_dir: `<run>/tensorboard/<fold>/calibration`.
        dataset: a finite, unshuffled dataset of `(inputs, labels[, ...])`,
            e.g. the held-out group's `make_dataset(records_dir,
            groups=test_groups, batch_size=...)`.
        max_batches: read at most this many batches per epoch.
    """

    def __init__(self, log_dir, dataset, max_batches=8):
        super().__init__()
        self.log_dir = log_dir
        self.dataset = dataset
        self.max_batches = max_batches
        self._predict = None
        self._file_writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._predict is None:
            keys = sorted(_output_names(self.model) & set(EMBEDDING_OUTPUTS))
            self._predict = _predictor(self.model, keys) if keys else False
        statistics = {}
        if self._predict:
            outputs = _run_model(self._predict, self.dataset, self.max_batches)
            statistics = calibration_statistics(outputs)
        rate = current_learning_rate(getattr(self.model, "optimizer", None))
        if self._file_writer is None:
            self._file_writer = _writer(self.log_dir)
        with self._file_writer.as_default():
            write_calibration_scalars(statistics, epoch)
            if rate is not None:
                tf.summary.scalar(LEARNING_RATE_TAG, rate, step=epoch)
        self._file_writer.flush()

    def on_train_end(self, logs=None):
        if self._file_writer is not None:
            self._file_writer.close()
            self._file_writer = None


def current_learning_rate(optimizer):
    """The optimizer's learning rate now, as a float (None without an optimizer).

    Keras evaluates a `LearningRateSchedule` at the optimizer's current
    iteration; a `LossScaleOptimizer` answers with its inner optimizer's rate.
    """
    if optimizer is None:
        return None
    rate = optimizer.learning_rate
    if callable(rate):  # a bare schedule, should a wrapper hand one back
        rate = rate(optimizer.iterations)
    return float(ops.convert_to_numpy(rate))


def calibration_statistics(outputs):
    """Mean per-utterance cosine similarity and MSE of each calibration pair.

    Args:
        outputs: model outputs as arrays `[n, features]` by name
            (`audio_semantic`, `text_semantic`, `audio_calibration`,
            `text_calibration`); missing ones are skipped.

    Returns:
        `{tag: value}` for the tags of `CALIBRATION_TAGS` that the outputs allow.
    """
    statistics = {}
    for pair, first, second, _ in CALIBRATION_PAIRS:
        if first not in outputs or second not in outputs:
            continue
        a = np.asarray(outputs[first], dtype=np.float64)
        b = np.asarray(outputs[second], dtype=np.float64)
        if a.shape != b.shape or a.size == 0:
            continue
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        cosine = np.sum(a * b, axis=-1) / np.maximum(norms, 1e-12)
        statistics[f"calibration/cosine_{pair}"] = float(np.clip(cosine, -1.0, 1.0).mean())
        statistics[f"calibration/mse_{pair}"] = float(np.mean(np.square(a - b), axis=-1).mean())
    return statistics


def write_calibration_scalars(statistics, step):
    """Write `calibration_statistics` output to the default summary writer."""
    descriptions = {pair: text for pair, _, _, text in CALIBRATION_PAIRS}
    for tag, value in statistics.items():
        pair = tag.split("_", 1)[1]
        measure = "cosine similarity" if "/cosine_" in tag else "mean squared error"
        tf.summary.scalar(
            tag, value, step=step,
            description=f"Mean over held-out utterances of the {measure} of "
            f"{descriptions.get(pair, pair)}",
        )


def backfill_calibration_diagnostics(log_dir, model, dataset, weight_files, max_batches=8):
    """Calibration diagnostics of a finished fold, from its per-epoch weights.

    For a run trained without `CalibrationDiagnostics`: loads each of
    `<fold>/checkpoints/epoch-NNN.weights.h5` in turn into `model` and logs
    what the callback would have logged at that epoch (step NNN - 1), the
    learning rate excepted. `model`'s weights are left at the last file's.

    Args:
        log_dir: `<run>/tensorboard/<fold>/calibration`.
        model: an `SMCNModel` of the fold's architecture.
        dataset: as for `CalibrationDiagnostics`.
        weight_files: the weight files, in epoch order; the epoch is read from
            the name (`epoch-003.weights.h5` is epoch index 2).
        max_batches: as for `CalibrationDiagnostics`.

    Returns:
        The epoch indices logged.
    """
    keys = sorted(_output_names(model) & set(EMBEDDING_OUTPUTS))
    if not keys:
        return []
    predict = _predictor(model, keys)
    writer = _writer(log_dir)
    epochs = []
    with writer.as_default():
        for path in weight_files:
            name = os.path.basename(path)
            epoch = int(name.split("-")[1].split(".")[0]) - 1
            model.load_weights(path)
            statistics = calibration_statistics(_run_model(predict, dataset, max_batches))
            write_calibration_scalars(statistics, epoch)
            epochs.append(epoch)
    writer.close()
    return epochs


# --------------------------------------------------------------------------
# Attention


def select_attention_examples(utterance_ids, labels, per_class=2):
    """The utterances to draw: the first `per_class` ids (sorted) of each class.

    Deterministic whatever the order of the inputs.

    Args:
        utterance_ids: the held-out utterance ids.
        labels: their class ids.
        per_class: how many per class.

    Returns:
        A list of utterance ids, by class id, then id.
    """
    by_class = {}
    for utterance_id, label in zip(utterance_ids, np.asarray(labels).reshape(-1)):
        by_class.setdefault(int(label), []).append(str(utterance_id))
    chosen = []
    for label in sorted(by_class):
        chosen.extend(sorted(by_class[label])[:per_class])
    return chosen


def gather_examples(dataset, utterance_ids):
    """Pick utterances out of a `(inputs, labels, metadata)` dataset.

    Args:
        dataset: e.g. `make_dataset(records_dir, groups=test_groups,
            include_metadata=True)`.
        utterance_ids: the ids wanted.

    Returns:
        `(inputs, labels, ids)`: `inputs` a dict of numpy arrays padded to the
        longest chosen utterance, `labels` int64 `[k]`, `ids` in the order of
        `utterance_ids`.

    Raises:
        ValueError: an id is not in the dataset.
    """
    wanted = {str(utterance_id): None for utterance_id in utterance_ids}
    for inputs, labels, metadata in dataset:
        ids = [value.decode("utf-8") for value in np.asarray(metadata["utterance_id"])]
        for row, utterance_id in enumerate(ids):
            if utterance_id in wanted and wanted[utterance_id] is None:
                item = {}
                for modality in MODALITIES:
                    length = int(np.asarray(inputs[f"{modality}_length"])[row])
                    item[f"{modality}_features"] = np.asarray(
                        inputs[f"{modality}_features"][row]
                    )[:length]
                    item[f"{modality}_length"] = length
                wanted[utterance_id] = (item, int(np.asarray(labels)[row]))
        if all(value is not None for value in wanted.values()):
            break
    missing = [key for key, value in wanted.items() if value is None]
    if missing:
        raise ValueError(f"Utterance(s) {missing} are not in the dataset.")
    ids = list(wanted)
    items = [wanted[key][0] for key in ids]
    inputs = {}
    for modality in MODALITIES:
        lengths = np.array([item[f"{modality}_length"] for item in items], np.int32)
        features = [item[f"{modality}_features"] for item in items]
        padded = np.zeros(
            (len(items), max(1, int(lengths.max())), features[0].shape[-1]), np.float32
        )
        for row, values in enumerate(features):
            padded[row, : len(values)] = values
        inputs[f"{modality}_features"] = padded
        inputs[f"{modality}_length"] = lengths
    labels = np.array([wanted[key][1] for key in ids], np.int64)
    return inputs, labels, ids


def attention_probe(model):
    """A `keras.Model` from the model's inputs to every attention's weights.

    Reads the second output (the weights) of each `<modality>_<kind>_attention`
    `AttentionPooling` layer the variant has. A model without those layers
    falls back to its `<modality>_attention` outputs (kind `"final"`).

    Returns:
        A model whose output dict maps `"<modality>/<kind>"` to `[batch, time]`
        weights, plus `"probabilities"`.
    """
    outputs = {}
    for modality in MODALITIES:
        for kind in ATTENTION_KINDS:
            try:
                layer = model.get_layer(f"{modality}_{kind}_attention")
            except ValueError:
                continue
            outputs[f"{modality}/{kind}"] = layer.output[1]
    model_outputs = model.output if isinstance(model.output, dict) else {}
    if not outputs:
        for modality in MODALITIES:
            if f"{modality}_attention" in model_outputs:
                outputs[f"{modality}/final"] = model_outputs[f"{modality}_attention"]
    if "probabilities" in model_outputs:
        outputs["probabilities"] = model_outputs["probabilities"]
    return keras.Model(model.input, outputs, name="attention_probe")


def default_mel_bands(audio_dim):
    """The log-Mel bands of a frame: the first third of log-Mel + delta + delta-delta."""
    return audio_dim // 3 if audio_dim % 3 == 0 else audio_dim


def attention_examples(model, batch_inputs, utterance_ids, token_strings_or_none=None,
                       labels=None, class_names=None, n_mels=None):
    """Per-utterance attention data, sliced to the valid frames and tokens.

    Args:
        model: an `SMCNModel`.
        batch_inputs: the model's input dict for these utterances.
        utterance_ids: their ids.
        token_strings_or_none: None, or one list of token strings per utterance
            (`[CLS]`/`[SEP]` included, as the records' token vectors are).
        labels: optional true class ids.
        class_names: optional class names.
        n_mels: log-Mel bands drawn (default: `default_mel_bands`).

    Returns:
        A list of dicts with `utterance_id`, `spectrogram`, `audio_attention`,
        `tokens`, `tokens_note`, `text_attention`, `subtitle`: the keyword
        arguments of `attention_figure`.
    """
    probe = attention_probe(model)
    outputs = {key: np.asarray(value) for key, value in probe(batch_inputs, training=False).items()}
    features = np.asarray(batch_inputs["audio_features"])
    bands = n_mels or default_mel_bands(features.shape[-1])
    audio_lengths = np.asarray(batch_inputs["audio_length"]).reshape(-1)
    text_lengths = np.asarray(batch_inputs["text_length"]).reshape(-1)
    names = list(class_names) if class_names is not None else None
    examples = []
    for row, utterance_id in enumerate(utterance_ids):
        frames, count = int(audio_lengths[row]), int(text_lengths[row])
        audio = {
            key.split("/")[1]: outputs[key][row, :frames]
            for key in outputs if key.startswith("audio/")
        }
        text = {
            key.split("/")[1]: outputs[key][row, :count]
            for key in outputs if key.startswith("text/")
        }
        tokens, note = None, None
        if text:
            given = None if token_strings_or_none is None else token_strings_or_none[row]
            if given is not None and len(given) == count:
                tokens = [str(token) for token in given]
            else:
                tokens = [str(index) for index in range(count)]
                note = (
                    "token positions: the records store token vectors, not token strings"
                    if given is None
                    else f"token positions: {len(given)} token strings for {count} token vectors"
                )
        parts = []
        if labels is not None:
            label = int(np.asarray(labels).reshape(-1)[row])
            parts.append(f"true: {names[label] if names else label}")
        if "probabilities" in outputs:
            probabilities = outputs["probabilities"][row]
            predicted = int(probabilities.argmax())
            parts.append(
                f"predicted: {names[predicted] if names else predicted} "
                f"(p = {float(probabilities[predicted]):.2f})"
            )
        examples.append(
            {
                "utterance_id": utterance_id,
                "spectrogram": features[row, :frames, :bands] if audio else None,
                "audio_attention": audio,
                "tokens": tokens,
                "tokens_note": note,
                "text_attention": text,
                "subtitle": "   ".join(parts) or None,
            }
        )
    return examples


def log_attention(log_dir, model, batch_inputs, utterance_ids, token_strings_or_none,
                  step, labels=None, class_names=None, n_mels=None):
    """One image per utterance: its log-Mel frames and every attention over them.

    Tags `attention/<utterance id>`. Without token strings the token axis is
    labelled with positions, and the figure says so.

    Args:
        log_dir: `<run>/tensorboard/<fold>/held_out`.
        model: an `SMCNModel`.
        batch_inputs: the input dict of these utterances (`gather_examples`).
        utterance_ids: their ids.
        token_strings_or_none: None, or one list of token strings per
            utterance (e.g. from `token_strings`).
        step: the summary step.
        labels, class_names: optional, to title each image with the true and
            predicted class.
        n_mels: log-Mel bands drawn (default: `default_mel_bands`).

    Returns:
        The tags written.
    """
    examples = attention_examples(
        model, batch_inputs, utterance_ids, token_strings_or_none, labels, class_names, n_mels
    )
    tags = []
    writer = _writer(log_dir)
    with writer.as_default():
        for example in examples:
            tag = ATTENTION_TAG_PREFIX + _safe_tag(example["utterance_id"])
            _image_summary(
                tag, attention_figure(**example), step,
                description="Log-Mel frames (valid frames only) with the audio attention "
                "weights under them, and the token attention weights, one panel per "
                "attention (intra F, calibration Fc, interaction I1').",
            )
            tags.append(tag)
    writer.close()
    return tags


def _safe_tag(text):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(text))


def token_strings(transcripts, tokenizer_dir, max_tokens):
    """Word pieces of transcripts as `smcn prepare` tokenized them.

    Uses the checkpoint's `transformers` tokenizer with the settings of
    `smcn_tf.features.text.TextEncoder` (special tokens, truncation to
    `max_tokens`), so each list lines up with an utterance's token vectors.

    Args:
        transcripts: a list of strings.
        tokenizer_dir: the text encoder checkpoint directory (the run's
            `features.json` `text_encoder`).
        max_tokens: the features' `max_tokens`.

    Returns:
        One list of token strings per transcript.
    """
    # Tokenizers only: no "PyTorch was not found" advice.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers  # slow to import; only the render script needs word pieces

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    encoded = tokenizer(
        list(transcripts), add_special_tokens=True, truncation=True, max_length=max_tokens,
        padding=False, return_attention_mask=False, return_token_type_ids=False,
    )
    return [tokenizer.convert_ids_to_tokens(ids) for ids in encoded["input_ids"]]


# --------------------------------------------------------------------------
# HParams


def _text_encoder_name(path):
    if not path:
        return "all-MiniLM-L6-v2 (default)"
    parts = [part for part in os.path.normpath(str(path)).split(os.sep) if part]
    if len(parts) >= 2 and parts[-1] in ("model", "checkpoint"):
        return f"{parts[-2]}/{parts[-1]}"
    return parts[-1] if parts else str(path)


# Hyper-parameters that tell the runs of an experiment apart: marked as
# differing, so that the HParams table shows them first (it lists those,
# then the rest by name).
DISTINGUISHING_HPARAMS = ("variant", "fold", "seed", "corpus", "text_encoder")
_INT_DOMAIN = (0, 2**31 - 1)


def _hparams_and_metrics():
    """The experiment's hyper-parameters and metrics: the same for every run."""


    integer = hp.IntInterval(*_INT_DOMAIN)
    unit = hp.RealInterval(0.0, 1.0)
    fusions = hp.Discrete(list(Fusion.METHODS))
    hparams = [
        hp.HParam("variant", hp.Discrete(sorted(VARIANTS)), description="model.variant (Table 3)"),
        hp.HParam("fold", description="the held-out group, or 'mean' over the run's folds"),
        hp.HParam("seed", integer, description="training.seed"),
        hp.HParam("corpus", description="features.corpus"),
        hp.HParam("text_encoder", description="features.text_encoder"),
        hp.HParam("pooling", integer, description="features.pooling"),
        hp.HParam("max_frames", integer, description="features.max_frames"),
        hp.HParam("max_tokens", integer, description="features.max_tokens"),
        hp.HParam("learning_rate", unit, description="training.learning_rate"),
        hp.HParam("batch_size", integer, description="training.batch_size (global)"),
        hp.HParam("steps", integer, description="training.steps"),
        hp.HParam("class_weights", hp.Discrete(["balanced", "none"]),
                  description="training.class_weights"),
        hp.HParam("mixed_precision", hp.Discrete(list(MIXED_PRECISION)),
                  description="training.mixed_precision"),
        hp.HParam("select", description="training.select (which epoch's weights are kept)"),
        hp.HParam("validation", description="evaluation.validation"),
        hp.HParam("hidden_units", integer, description="model.hidden_units (GRU units a direction)"),
        hp.HParam("attention_units", integer, description="model.attention_units (resolved)"),
        hp.HParam("head_units", integer, description="model.head_units"),
        hp.HParam("dropout", unit, description="model.dropout"),
        hp.HParam("first_fusion", fusions, description="model.first_fusion (Φ1)"),
        hp.HParam("second_fusion", fusions, description="model.second_fusion (Φ2)"),
        hp.HParam("stop_gradient_target", hp.Discrete([False, True]),
                  description="model.stop_gradient_target"),
        hp.HParam("audio_normalization", description="model.audio_normalization"),
    ]
    metrics = [
        hp.Metric(SCORE_TAGS[name], display_name=SCORE_NAMES[name],
                  description=f"{SCORE_NAMES[name]} on the held-out group(s)")
        for name in ("unweighted_accuracy", "weighted_accuracy", "weighted_f1")
    ]
    metrics.append(
        hp.Metric("epoch_loss", group="train", display_name="train loss",
                  description="total training loss (eq. 17) of the last epoch")
    )
    return hparams, metrics


def _experiment_summary(hparams, metrics):
    """`hp.hparams_config_pb`, with the distinguishing hyper-parameters marked."""

    # A fixed creation time: every run writes the very same description.
    summary = hp.hparams_config_pb(hparams, metrics, time_created_secs=0.0)
    value = summary.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in DISTINGUISHING_HPARAMS
    value.metadata.plugin_data.content = data.SerializeToString()
    return summary


def _setting(section, name, default):
    return getattr(section, name, default) if section is not None else default


def hparam_values(config, fold):
    """The run's hyper-parameters, by name, as `log_hparams` records them."""
    features, model, training = config.features, config.model, config.training
    evaluation = getattr(config, "evaluation", None)
    return {
        "variant": str(model.variant),
        "fold": str(fold),
        "seed": int(training.seed),
        "corpus": str(features.corpus),
        "text_encoder": _text_encoder_name(features.text_encoder),
        "pooling": int(features.pooling),
        "max_frames": int(features.max_frames),
        "max_tokens": int(features.max_tokens),
        "learning_rate": float(training.learning_rate),
        "batch_size": int(training.batch_size),
        "steps": int(training.steps),
        "class_weights": str(training.class_weights),
        "mixed_precision": str(training.mixed_precision),
        "select": str(_setting(training, "select", "last")),
        "validation": str(_setting(evaluation, "validation", "none")),
        "hidden_units": int(model.hidden_units),
        "attention_units": int(model.attention_units or 2 * model.hidden_units),
        "head_units": int(model.head_units),
        "dropout": float(model.dropout),
        "first_fusion": str(model.first_fusion),
        "second_fusion": str(model.second_fusion),
        "stop_gradient_target": bool(model.stop_gradient_target),
        "audio_normalization": str(_setting(model, "audio_normalization", "none")),
    }


def log_hparams(log_dir, config, final_scores, fold=None, step=0):
    """Record a session of the HParams experiment: settings and scores.

    Writes the experiment description (`hp.hparams_config`: identical for
    every run, so any parent directory of several runs is one experiment),
    the session's hyper-parameters (`hp.hparams`), and its scores as
    `scores/unweighted_accuracy`, `scores/weighted_accuracy`,
    `scores/weighted_f1`.

    Args:
        log_dir: the session directory: `<run>/tensorboard/<fold>` for a
            fold, `<run>/tensorboard/mean` for the run's mean over folds.
        config: the run's `smcn_tf.config.Config`.
        final_scores: a dict with `unweighted_accuracy`, `weighted_accuracy`,
            `weighted_f1` (a fold's results, or the summary's `mean`), or None
            (no held-out group: hyper-parameters only).
        fold: the `fold` hyper-parameter; defaults to the directory's name.
        step: the step of the score scalars.

    Returns:
        The hyper-parameter values written.
    """

    fold = os.path.basename(os.path.normpath(log_dir)) if fold is None else fold
    values = hparam_values(config, fold)
    hparams, metrics = _hparams_and_metrics()
    writer = _writer(log_dir)
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(
            _experiment_summary(hparams, metrics).SerializeToString(), step=0
        )
        hp.hparams({param: values[param.name] for param in hparams})
        for name, tag in SCORE_TAGS.items():
            if final_scores and name in final_scores:
                tf.summary.scalar(tag, float(final_scores[name]), step=step)
    writer.close()
    return values


# --------------------------------------------------------------------------
# Projector


def log_embeddings(log_dir, model, dataset_with_metadata, class_names, max_examples=None):
    """Utterance-level F^a, F^t, Fc^a, Fc^t of the held-out group for the Projector.

    Writes into `log_dir` a checkpoint of one variable per feature the
    variant has (`audio_semantic`, `text_semantic`, `audio_calibration`,
    `text_calibration`; rows are utterances), `metadata.tsv` (a header, then
    utterance id, label, prediction and whether it is correct, one row per
    utterance), `projector_config.pbtxt` pointing at them by relative paths,
    and a one-line text summary, which also makes the directory a
    TensorBoard run (the Projector looks for its config in runs).

    Args:
        log_dir: `<run>/tensorboard/<fold>/projector`.
        model: an `SMCNModel`.
        dataset_with_metadata: `make_dataset(..., include_metadata=True)` of
            the held-out group.
        class_names: the class names.
        max_examples: keep at most this many utterances (None: all).

    Returns:
        `{output name: checkpoint tensor name}` of the embeddings written.
    """

    keys = sorted(_output_names(model) & (set(EMBEDDING_OUTPUTS) | {"probabilities"}))
    outputs = _run_model(_predictor(model, keys), dataset_with_metadata)
    count = len(outputs["utterance_ids"])
    if not count:
        raise ValueError(
            "log_embeddings needs a dataset of (inputs, labels, metadata) with utterance "
            "ids: make_dataset(..., include_metadata=True)."
        )
    if max_examples is not None:
        count = min(count, int(max_examples))
    names = list(class_names)
    predictions = outputs["probabilities"][:count].argmax(axis=-1)
    labels = outputs["labels"][:count]
    os.makedirs(log_dir, exist_ok=True)
    rows = ["utterance_id\tlabel\tprediction\tcorrect"]
    for utterance_id, label, predicted in zip(outputs["utterance_ids"][:count], labels, predictions):
        clean = str(utterance_id).replace("\t", " ").replace("\n", " ")
        rows.append(
            f"{clean}\t{names[int(label)]}\t{names[int(predicted)]}\t"
            f"{'yes' if int(label) == int(predicted) else 'no'}"
        )
    with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(rows) + "\n")
    variables = {
        key: tf.Variable(outputs[key][:count], trainable=False, name=key)
        for key in EMBEDDING_OUTPUTS
        if key in outputs
    }
    checkpoint = tf.train.Checkpoint(**variables)
    manager = tf.train.CheckpointManager(
        checkpoint, log_dir, max_to_keep=1, checkpoint_name="embeddings"
    )
    manager.save()
    config = projector.ProjectorConfig()
    tensor_names = {}
    for key in variables:
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        tensor_names[key] = embedding.tensor_name
    projector.visualize_embeddings(log_dir, config)
    writer = _writer(log_dir)
    with writer.as_default():
        listed = ", ".join(f"{key} ({EMBEDDING_SYMBOLS[key]})" for key in variables)
        tf.summary.text(
            PROJECTOR_README_TAG,
            f"{count} held-out utterances; embeddings: {listed}. Open the Projector tab "
            "and colour by label or prediction.",
            step=0,
        )
    writer.close()
    return tensor_names


# --------------------------------------------------------------------------
# Reading event files back


def _event_files(log_dir):
    return sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))


def iter_events(log_dir):
    """The `tf.compat.v1.Event`s of the event files in `log_dir` (not below), in file order."""
    for path in _event_files(log_dir):
        for record in tf.data.TFRecordDataset(path):
            yield tf.compat.v1.Event.FromString(record.numpy())


def read_scalars(log_dir):
    """`{tag: (steps, values)}` of the scalar summaries in a run directory.

    Reads the event files of `log_dir` itself (not its subdirectories); a
    step logged twice (e.g. a resumed epoch) keeps its last value.
    """
    found = {}
    for event in iter_events(log_dir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                number = float(value.simple_value)
            elif value.metadata.plugin_data.plugin_name == "scalars":
                number = float(tf.make_ndarray(value.tensor).reshape(()))
            else:
                continue
            found.setdefault(value.tag, {})[int(event.step)] = number
    return {
        tag: (np.array(sorted(by_step)), np.array([by_step[s] for s in sorted(by_step)]))
        for tag, by_step in found.items()
    }
