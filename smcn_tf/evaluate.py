"""Score a trained model on held-out data, and summarise folds.

IEMOCAP reports UA / WA per fold, their mean, and the pooled score over the
concatenated test sets of all folds; MELD reports accuracy and weighted F1.
"""

import numpy as np
import tensorflow as tf

from smcn_tf import metrics


def predict_dataset(model, dataset):
    """Run a model over a dataset that yields `(inputs, labels, metadata)`.

    Args:
        model: a model whose output dict has `probabilities`.
        dataset: a `tf.data.Dataset` from `make_dataset(..., include_metadata=True)`.

    Returns:
        A dict of numpy arrays: `labels`, `probabilities`, `predictions`,
        `utterance_ids`.
    """
    # One traced function for all batches: eager GRU loops are slow on long
    # test sets; reduce_retracing keeps padded shapes from retracing each batch.
    predict = tf.function(
        lambda inputs: model(inputs, training=False)["probabilities"],
        reduce_retracing=True,
    )
    labels, probabilities, utterance_ids = [], [], []
    for inputs, batch_labels, metadata in dataset:
        probabilities.append(np.asarray(predict(inputs)))
        labels.append(np.asarray(batch_labels))
        utterance_ids.extend(
            value.decode("utf-8") for value in np.asarray(metadata["utterance_id"])
        )
    if not labels:
        raise ValueError("The evaluation dataset is empty.")
    probabilities = np.concatenate(probabilities)
    return {
        "labels": np.concatenate(labels).astype(np.int64),
        "probabilities": probabilities,
        "predictions": probabilities.argmax(axis=-1),
        "utterance_ids": utterance_ids,
    }


def score_predictions(labels, predictions, class_names):
    """UA, WA, weighted F1, the confusion matrix and a per-class report."""
    matrix = metrics.confusion_matrix(labels, predictions, len(class_names))
    report = metrics.classification_report(matrix, class_names)
    report["num_examples"] = int(matrix.sum())
    return report


def summarize_folds(fold_results, class_names):
    """Mean and spread of per-fold scores, plus the pooled score.

    Args:
        fold_results: a dict from fold name to its `score_predictions` result.
        class_names: the class names.

    Returns:
        A JSON-ready dict with `folds` (per-fold UA / WA / weighted F1),
        `mean`, `std` and `pooled` (scores of the summed confusion matrix).
    """
    names = ("unweighted_accuracy", "weighted_accuracy", "weighted_f1")
    per_fold = {
        fold: {name: result[name] for name in names}
        for fold, result in fold_results.items()
    }
    values = {name: [scores[name] for scores in per_fold.values()] for name in names}
    pooled = sum(
        np.asarray(result["confusion_matrix"]) for result in fold_results.values()
    )
    return {
        "folds": per_fold,
        "mean": {name: float(np.mean(values[name])) for name in names},
        "std": {name: float(np.std(values[name])) for name in names},
        "pooled": score_predictions_from_matrix(pooled, class_names),
    }


def score_predictions_from_matrix(matrix, class_names):
    """Like `score_predictions`, from an accumulated confusion matrix."""
    report = metrics.classification_report(matrix, class_names)
    report["num_examples"] = int(np.asarray(matrix).sum())
    return report


def format_summary(summary):
    """A plain-text table of per-fold, mean and pooled UA / WA (in %)."""
    lines = [f"{'fold':<12} {'UA':>7} {'WA':>7} {'W-F1':>7}"]
    for fold, scores in summary["folds"].items():
        lines.append(
            f"{fold:<12} {100 * scores['unweighted_accuracy']:7.2f} "
            f"{100 * scores['weighted_accuracy']:7.2f} "
            f"{100 * scores['weighted_f1']:7.2f}"
        )
    mean, std = summary["mean"], summary["std"]
    lines.append(
        f"{'mean':<12} {100 * mean['unweighted_accuracy']:7.2f} "
        f"{100 * mean['weighted_accuracy']:7.2f} {100 * mean['weighted_f1']:7.2f}"
    )
    lines.append(
        f"{'std':<12} {100 * std['unweighted_accuracy']:7.2f} "
        f"{100 * std['weighted_accuracy']:7.2f} {100 * std['weighted_f1']:7.2f}"
    )
    pooled = summary["pooled"]
    lines.append(
        f"{'pooled':<12} {100 * pooled['unweighted_accuracy']:7.2f} "
        f"{100 * pooled['weighted_accuracy']:7.2f} {100 * pooled['weighted_f1']:7.2f}"
    )
    return "\n".join(lines)
