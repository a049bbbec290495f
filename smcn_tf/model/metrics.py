"""Emotion recognition metrics: UA, WA, weighted F1 and the confusion matrix.

- UA (unweighted accuracy): the mean of the per-class recalls, so each class
  counts the same however rare it is (IEMOCAP).
- WA (weighted accuracy): plain accuracy, each utterance counts the same.
- Weighted F1: per-class F1 weighted by each class' true count (MELD).

Each is an offline function over a confusion matrix, computed with
`sklearn.metrics` (the matrix's cells become weighted (true, predicted)
pairs), and a streaming Keras metric that accumulates a confusion matrix over
batches of `(int labels [batch], probabilities [batch, classes])` inside the
training graph.
"""

import warnings

import keras
import numpy as np
from keras import ops
from sklearn import metrics as sk_metrics


def confusion_matrix(labels, predictions, num_classes):
    """Counts of (true class, predicted class) (`sklearn.metrics.confusion_matrix`).

    Args:
        labels: int class ids `[n]`.
        predictions: int class ids `[n]`.
        num_classes: number of classes.

    Returns:
        int64 array `[num_classes, num_classes]`; rows are true classes.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in length: {labels.size} vs {predictions.size}."
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must be class ids in [0, {num_classes}); "
                f"got values in [{values.min()}, {values.max()}]."
            )
    if not labels.size:  # sklearn refuses an empty input
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return sk_metrics.confusion_matrix(
        labels, predictions, labels=np.arange(num_classes)
    ).astype(np.int64)


def _weighted_pairs(matrix):
    """A confusion matrix as sklearn's input: one (true, predicted) pair per
    non-empty cell, its count as the sample weight.

    Returns:
        `(labels, predictions, weights, class_ids)`.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"A confusion matrix must be square, got shape {matrix.shape}.")
    labels, predictions = np.nonzero(matrix)
    weights = matrix[labels, predictions].astype(np.float64)
    return labels, predictions, weights, np.arange(matrix.shape[0])


def _per_class_scores(matrix):
    """Per-class precision, recall and F1 (0 where undefined), sklearn's
    `precision_recall_fscore_support` over the matrix's cells."""
    labels, predictions, weights, class_ids = _weighted_pairs(matrix)
    if not weights.sum():
        zeros = np.zeros(class_ids.size)
        return zeros, zeros.copy(), zeros.copy()
    precision, recall, f1, _ = sk_metrics.precision_recall_fscore_support(
        labels, predictions, labels=class_ids, sample_weight=weights, average=None,
        zero_division=0.0,
    )
    return precision, recall, f1


def per_class_recall(matrix):
    """Recall of each class; a class with no true item gets 0."""
    return _per_class_scores(matrix)[1]


def unweighted_accuracy(matrix):
    """UA: mean per-class recall over the classes present in the labels
    (`sklearn.metrics.balanced_accuracy_score`); 0 for an empty matrix."""
    labels, predictions, weights, _ = _weighted_pairs(matrix)
    if not weights.sum():
        return 0.0
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": those classes are left
        # out of the mean, which is what UA means here.
        warnings.simplefilter("ignore", UserWarning)
        return float(
            sk_metrics.balanced_accuracy_score(labels, predictions, sample_weight=weights)
        )


def weighted_accuracy(matrix):
    """WA: overall accuracy (`sklearn.metrics.accuracy_score`); 0 for an empty matrix."""
    labels, predictions, weights, _ = _weighted_pairs(matrix)
    if not weights.sum():
        return 0.0
    return float(sk_metrics.accuracy_score(labels, predictions, sample_weight=weights))


def per_class_f1(matrix):
    """F1 of each class; 0 where precision and recall are both 0."""
    return _per_class_scores(matrix)[2]


def weighted_f1(matrix):
    """F1 per class, averaged with the classes' true counts as weights
    (`sklearn.metrics.f1_score(average="weighted")`); 0 for an empty matrix."""
    labels, predictions, weights, class_ids = _weighted_pairs(matrix)
    if not weights.sum():
        return 0.0
    return float(
        sk_metrics.f1_score(
            labels, predictions, labels=class_ids, sample_weight=weights,
            average="weighted", zero_division=0.0,
        )
    )


def classification_report(matrix, class_names):
    """Per-class precision, recall, F1 and support, plus the summary scores.

    The scores are sklearn's (`precision_recall_fscore_support`,
    `balanced_accuracy_score`, `accuracy_score`, `f1_score`) over the
    matrix's cells, each weighted by its count.

    Args:
        matrix: a confusion matrix (rows are true classes).
        class_names: the names of the classes, in id order.

    Returns:
        A JSON-ready dict.
    """
    matrix = np.asarray(matrix)
    if len(class_names) != matrix.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {matrix.shape[0]}-class matrix."
        )
    precision, recall, f1 = _per_class_scores(matrix)
    return {
        "classes": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(matrix[index].sum()),
            }
            for index, name in enumerate(class_names)
        },
        "unweighted_accuracy": unweighted_accuracy(matrix),
        "weighted_accuracy": weighted_accuracy(matrix),
        "weighted_f1": weighted_f1(matrix),
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base of the metrics here: accumulates a confusion matrix over batches.

    Args:
        num_classes: number of classes.
        name: metric name.

    Call arguments (`update_state`):
        y_true: int class ids `[batch]` (or `[batch, 1]`).
        y_pred: class scores `[batch, classes]`; the arg-max is the prediction.
        sample_weight: optional `[batch]`; weights the counts.
    """

    def __init__(self, num_classes, name=None, dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype=self.dtype,
            name="confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        predictions = ops.reshape(predictions, (-1,))
        if sample_weight is None:
            weights = ops.ones_like(labels, dtype=self.dtype)
        else:
            weights = ops.cast(ops.reshape(sample_weight, (-1,)), self.dtype)
        cells = labels * self.num_classes + predictions
        counts = ops.segment_sum(
            weights, cells, num_segments=self.num_classes * self.num_classes
        )
        self.matrix.assign_add(
            ops.reshape(counts, (self.num_classes, self.num_classes))
        )

    def reset_state(self):
        self.matrix.assign(ops.zeros_like(self.matrix))

    def _recall_and_precision(self):
        true_positive = ops.diagonal(self.matrix)
        support = ops.sum(self.matrix, axis=1)
        predicted = ops.sum(self.matrix, axis=0)
        recall = ops.divide_no_nan(true_positive, support)
        precision = ops.divide_no_nan(true_positive, predicted)
        return recall, precision, support

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config


@keras.saving.register_keras_serializable(package="smcn_tf")
class UnweightedAccuracy(ConfusionMatrixMetric):
    """UA: mean recall over the classes seen in the labels so far."""

    def __init__(self, num_classes, name="unweighted_accuracy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        recall, _, support = self._recall_and_precision()
        present = ops.cast(support > 0, self.dtype)
        return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))


@keras.saving.register_keras_serializable(package="smcn_tf")
class WeightedAccuracy(ConfusionMatrixMetric):
    """WA: accuracy over all utterances."""

    def __init__(self, num_classes, name="weighted_accuracy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        return ops.divide_no_nan(ops.trace(self.matrix), ops.sum(self.matrix))


@keras.saving.register_keras_serializable(package="smcn_tf")
class WeightedF1(ConfusionMatrixMetric):
    """F1 per class, weighted by each class' true count."""

    def __init__(self, num_classes, name="weighted_f1", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        recall, precision, support = self._recall_and_precision()
        f1 = ops.divide_no_nan(2 * precision * recall, precision + recall)
        return ops.divide_no_nan(ops.sum(f1 * support), ops.sum(support))


def emotion_metrics(num_classes):
    """The three metrics, ready for `model.compile(metrics=...)`."""
    return [
        UnweightedAccuracy(num_classes),
        WeightedAccuracy(num_classes),
        WeightedF1(num_classes),
    ]
