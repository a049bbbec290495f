"""Score a trained model on held-out data, and summarise folds.

IEMOCAP reports UA / WA per fold, their mean, and the pooled score over the
concatenated test sets of all folds; MELD reports accuracy and weighted F1.

`predict_dataset(..., missing="text" | "audio", route=...)` scores a model
with one modality removed from every item, the two ways a server can answer
then: `route="head"` reads the other modality's own unimodal head
(`audio_probabilities` / `text_probabilities`, eq. 7), as `smcn serve` and
the exported graph do; `route="zeros"` reads the fused head fed an empty
modality (zero features, length 0), as exports before the fallback did.
`evaluate_missing` scores both beside the full model.

`fold_scores` is the one scoring of a fold's held-out predictions: `smcn
train` (the fold's results.json, from its one prediction pass) and `smcn
evaluate` (`score_fold`) both use it.
"""

import numpy as np
import tensorflow as tf

from smcn_tf.contract.signatures import MODALITIES
from smcn_tf.model import metrics
from smcn_tf.records import pipeline


MISSING_ROUTES = ("head", "zeros")


def remove_modality(inputs, missing):
    """`inputs` with one modality emptied: zero features and length 0."""
    if missing not in MODALITIES:
        raise ValueError(f"missing must be one of {MODALITIES}, got {missing!r}.")
    inputs = dict(inputs)
    inputs[f"{missing}_features"] = tf.zeros_like(inputs[f"{missing}_features"])
    inputs[f"{missing}_length"] = tf.zeros_like(inputs[f"{missing}_length"])
    return inputs


def _missing_output(model, missing, route):
    """The output key that answers with `missing` removed, or a clear error."""
    if route not in MISSING_ROUTES:
        raise ValueError(f"route must be one of {MISSING_ROUTES}, got {route!r}.")
    modalities = tuple(getattr(model, "modalities", MODALITIES))
    variant = getattr(model, "variant", "this model")
    other = "text" if missing == "audio" else "audio"
    if modalities == (missing,):
        raise ValueError(
            f"variant {variant} reads only {missing}: nothing is left to answer without it."
        )
    if route == "zeros" or modalities == (other,):
        return "probabilities"  # a unimodal variant's output is its own head
    key = f"{other}_probabilities"
    outputs = getattr(model, "output", None)
    if not isinstance(outputs, dict) or key not in outputs:
        raise ValueError(
            f"variant {variant} has no unimodal heads: without {missing} only the fused head "
            "fed zeros can answer (route='zeros')."
        )
    return key


def predict_dataset(model, dataset, missing=None, route="head"):
    """Run a model over a dataset that yields `(inputs, labels, metadata)`.

    Args:
        model: a model whose output dict has `probabilities`.
        dataset: a `tf.data.Dataset` from `make_dataset(..., include_metadata=True)`.
        missing: `None`, or the modality ("audio" / "text") removed from every
            item (see the module docstring).
        route: with `missing`: "head" (the other modality's unimodal head) or
            "zeros" (the fused head fed the emptied modality).

    Returns:
        A dict of numpy arrays: `labels`, `probabilities`, `predictions`,
        `utterance_ids`.

    Raises:
        ValueError: the model cannot answer that way (a variant without
            unimodal heads on route "head", or the only modality removed).
    """
    key = "probabilities" if missing is None else _missing_output(model, missing, route)

    def probabilities_of(inputs):
        if missing is not None:
            inputs = remove_modality(inputs, missing)
        return model(inputs, training=False)[key]

    # One traced function for all batches: eager GRU loops are slow on long
    # test sets; reduce_retracing keeps padded shapes from retracing each batch.
    predict = tf.function(probabilities_of, reduce_retracing=True)
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


def held_out_dataset(records_dir, test_groups, batch_size, manifest=None):
    """The held-out groups of a fold, in file order, with their metadata.

    Args:
        records_dir: the prepared features.
        test_groups: the held-out group names.
        batch_size: the evaluation batch size.
        manifest: the records' `Manifest`, if the caller has read it already.
    """
    return pipeline.make_dataset(
        records_dir, groups=test_groups, batch_size=batch_size, include_metadata=True,
        manifest=manifest,
    )


def score_fold(model, records_dir, test_groups, class_names, batch_size, manifest=None):
    """Score a model on a fold's held-out groups.

    The evaluation path of `smcn evaluate`; `smcn train` scores its fold's
    one prediction pass (`smcn_tf.training.held_out`) with the same
    `fold_scores`, so both give the same numbers for the same model.

    Args:
        model: a model whose output dict has `probabilities`.
        records_dir: the prepared features.
        test_groups: the held-out group names.
        class_names: the class names.
        batch_size: the evaluation batch size.
        manifest: the records' `Manifest`, if the caller has read it already.

    Returns:
        `(scores, predictions)`: the `fold_scores` of the predictions, and
        the raw `predict_dataset` dict (labels, probabilities, predictions,
        utterance ids).
    """
    predictions = predict_dataset(
        model, held_out_dataset(records_dir, test_groups, batch_size, manifest=manifest)
    )
    return fold_scores(predictions, class_names), predictions


def fold_scores(predictions, class_names):
    """A fold's scores as results.json holds them, from its held-out predictions.

    Args:
        predictions: a `predict_dataset` dict (labels, predictions, utterance ids).
        class_names: the class names.

    Returns:
        The `score_predictions` report plus `predictions`, one
        `{"utterance_id", "label", "prediction"}` per utterance.
    """
    scores = score_predictions(
        predictions["labels"], predictions["predictions"], class_names
    )
    scores["predictions"] = [
        {"utterance_id": utterance_id, "label": int(label), "prediction": int(pred)}
        for utterance_id, label, pred in zip(
            predictions["utterance_ids"],
            predictions["labels"],
            predictions["predictions"],
        )
    ]
    return scores


def evaluate_missing(model, dataset, class_names, missing):
    """Scores with `missing` removed, by each route, beside the full model.

    Args:
        model: an `SMCNModel`.
        dataset: as for `predict_dataset`.
        class_names: the class names.
        missing: "audio" or "text".

    Returns:
        `{"both": report, "head": report, "zeros": report}` (`score_predictions`
        reports; "head" is absent for a variant without unimodal heads).
    """
    results = {}
    for name, route in (("both", None), ("head", "head"), ("zeros", "zeros")):
        try:
            predictions = predict_dataset(
                model, dataset, missing=None if route is None else missing,
                route=route or "head",
            )
        except ValueError:
            if route == "head":
                continue  # no unimodal heads: only the fused head can answer
            raise
        results[name] = score_predictions(
            predictions["labels"], predictions["predictions"], class_names
        )
    return results


def format_missing(results, missing):
    """A plain-text table of UA / WA (in %) of `evaluate_missing` results."""
    labels = {
        "both": "audio + text",
        "head": f"no {missing}: {'text' if missing == 'audio' else 'audio'} head",
        "zeros": f"no {missing}: fused head, zeros",
    }
    lines = [f"{'input':<28} {'UA':>7} {'WA':>7}"]
    for name in ("both", "head", "zeros"):
        if name in results:
            report = results[name]
            lines.append(
                f"{labels[name]:<28} {100 * report['unweighted_accuracy']:7.2f} "
                f"{100 * report['weighted_accuracy']:7.2f}"
            )
    return "\n".join(lines)


def summarize_folds(fold_results, class_names):
    """Mean and spread of per-fold scores, plus the pooled score.

    Args:
        fold_results: a dict from fold name to its `score_predictions` result.
        class_names: the class names.

    Returns:
        A JSON-ready dict with `folds` (per-fold UA / WA / weighted F1),
        `mean`, `std` and `pooled` (scores of the summed confusion matrix).
        `std` is the sample standard deviation over the folds (ddof=1), and
        0.0 with a single fold (a split protocol): nothing to spread, and NaN
        would not be valid JSON.
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
        "std": {
            name: float(np.std(values[name], ddof=1)) if len(values[name]) > 1 else 0.0
            for name in names
        },
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
