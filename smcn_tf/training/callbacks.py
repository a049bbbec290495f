"""The per-epoch TensorBoard views of `fit`: calibration diagnostics, training confusion.

Read-only: they choose nothing. `CalibrationDiagnostics` logs, at every
epoch end, how close the calibration features come to their targets on a
bounded slice of held-out data, and the learning rate;
`TrainingConfusionCallback` logs the confusion matrix on training groups
every N epochs (opt-in); `FlushingTensorBoard` is Keras' TensorBoard
callback, flushed at every epoch end.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from smcn_tf import evaluate
from smcn_tf.training.model_outputs import output_names, predictor, run_model
from smcn_tf.training.summaries import (
    EMBEDDING_OUTPUTS,
    LEARNING_RATE_TAG,
    file_writer,
    log_confusion,
)

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


class FlushingTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard that flushes its events at every epoch end.

    So the curves of the epochs a backup covers are on disk even if the
    process is killed right after the backup.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()


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
            self._predict = predictor(self.model, ("probabilities",))
        outputs = run_model(self._predict, self.dataset, self.max_batches)
        if outputs["labels"] is None or "probabilities" not in outputs:
            return
        scores = evaluate.score_predictions(
            outputs["labels"], outputs["probabilities"].argmax(axis=-1), self.class_names
        )
        if self._file_writer is None:
            self._file_writer = file_writer(self.log_dir)
        with self._file_writer.as_default():
            log_confusion(scores, self.class_names, epoch, "training groups")
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
            keys = sorted(output_names(self.model) & set(EMBEDDING_OUTPUTS))
            self._predict = predictor(self.model, keys) if keys else False
        statistics = {}
        if self._predict:
            outputs = run_model(self._predict, self.dataset, self.max_batches)
            statistics = calibration_statistics(outputs)
        rate = current_learning_rate(getattr(self.model, "optimizer", None))
        if self._file_writer is None:
            self._file_writer = file_writer(self.log_dir)
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
    keys = sorted(output_names(model) & set(EMBEDDING_OUTPUTS))
    if not keys:
        return []
    predict = predictor(model, keys)
    writer = file_writer(log_dir)
    epochs = []
    with writer.as_default():
        for path in weight_files:
            name = os.path.basename(path)
            epoch = int(name.split("-")[1].split(".")[0]) - 1
            model.load_weights(path)
            statistics = calibration_statistics(run_model(predict, dataset, max_batches))
            write_calibration_scalars(statistics, epoch)
            epochs.append(epoch)
    writer.close()
    return epochs
