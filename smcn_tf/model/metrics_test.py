"""Metrics against a confusion matrix computed by hand, and against sklearn."""

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from smcn_tf.model import metrics

# True:      0 0 0 1 1 2 2 2 2 3
# Predicted: 0 1 0 1 1 2 0 2 3 3
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
PREDICTIONS = np.array([0, 1, 0, 1, 1, 2, 0, 2, 3, 3])
MATRIX = [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 1], [0, 0, 0, 1]]
# Recall: 2/3, 1, 1/2, 1 -> UA = 19/24. Accuracy: 7/10.
# Precision: 2/3, 2/3, 1, 1/2; F1: 2/3, 4/5, 2/3, 2/3; support 3, 2, 4, 1
# -> weighted F1 = (3*2/3 + 2*4/5 + 4*2/3 + 1*2/3) / 10 = 0.69333...
UA, WA, WF1 = 19 / 24, 0.7, (2 + 1.6 + 8 / 3 + 2 / 3) / 10


def test_confusion_matrix_and_scores_by_hand():
    matrix = metrics.confusion_matrix(LABELS, PREDICTIONS, 4)
    assert matrix.tolist() == MATRIX
    assert metrics.unweighted_accuracy(matrix) == pytest.approx(UA)
    assert metrics.weighted_accuracy(matrix) == pytest.approx(WA)
    assert metrics.weighted_f1(matrix) == pytest.approx(WF1)


def test_classification_report():
    report = metrics.classification_report(MATRIX, ["ang", "hap", "neu", "sad"])
    assert report["classes"]["neu"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 4}
    )
    assert report["unweighted_accuracy"] == pytest.approx(UA)
    with pytest.raises(ValueError, match="class names"):
        metrics.classification_report(MATRIX, ["a", "b"])


def test_sklearn_on_the_raw_labels_agrees_with_the_hand_computed_scores():
    # sklearn straight on the label arrays, not through smcn_tf.model.metrics.
    assert sk_metrics.confusion_matrix(LABELS, PREDICTIONS).tolist() == MATRIX
    assert sk_metrics.balanced_accuracy_score(LABELS, PREDICTIONS) == pytest.approx(UA)
    assert sk_metrics.accuracy_score(LABELS, PREDICTIONS) == pytest.approx(WA)
    assert sk_metrics.f1_score(LABELS, PREDICTIONS, average="weighted") == pytest.approx(WF1)
    theirs = sk_metrics.classification_report(
        LABELS, PREDICTIONS, target_names=["ang", "hap", "neu", "sad"], output_dict=True
    )
    ours = metrics.classification_report(MATRIX, ["ang", "hap", "neu", "sad"])
    for name in ("ang", "hap", "neu", "sad"):
        assert ours["classes"][name] == pytest.approx({
            "precision": theirs[name]["precision"], "recall": theirs[name]["recall"],
            "f1": theirs[name]["f1-score"], "support": theirs[name]["support"],
        })
    assert ours["weighted_f1"] == pytest.approx(theirs["weighted avg"]["f1-score"])
    assert ours["weighted_accuracy"] == pytest.approx(theirs["accuracy"])


def test_random_predictions_match_numpy_formulas():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 5, size=300))
    matrix = metrics.confusion_matrix(labels, predictions, 5)
    assert matrix.dtype == np.int64 and matrix.sum() == 300
    recall = np.diag(matrix) / matrix.sum(axis=1)
    precision = np.diag(matrix) / matrix.sum(axis=0)
    f1 = 2 * precision * recall / (precision + recall)
    support = matrix.sum(axis=1)
    assert metrics.unweighted_accuracy(matrix) == pytest.approx(recall.mean())
    assert metrics.weighted_accuracy(matrix) == pytest.approx(np.trace(matrix) / 300)
    assert metrics.weighted_f1(matrix) == pytest.approx((f1 * support).sum() / 300)
    np.testing.assert_allclose(metrics.per_class_recall(matrix), recall)
    np.testing.assert_allclose(metrics.per_class_f1(matrix), f1)


def test_undefined_scores_are_zero_and_an_empty_matrix_scores_zero():
    # Class 2: never true, never predicted; class 1: true once, never predicted.
    matrix = metrics.confusion_matrix([0, 0, 1], [0, 0, 0], 3)
    report = metrics.classification_report(matrix, ["a", "b", "c"])
    assert report["classes"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["classes"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["unweighted_accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2 present classes
    assert report["weighted_f1"] == pytest.approx((2 * 0.8 + 0.0) / 3)  # F1(a) = 2*(2/3)/(5/3)
    empty = metrics.confusion_matrix([], [], 3)
    assert empty.tolist() == [[0, 0, 0]] * 3
    assert metrics.unweighted_accuracy(empty) == 0.0
    assert metrics.weighted_accuracy(empty) == 0.0
    assert metrics.weighted_f1(empty) == 0.0
    assert metrics.classification_report(empty, ["a", "b", "c"])["classes"]["a"]["f1"] == 0.0


def test_ua_ignores_classes_absent_from_the_labels():
    # Class 2 never occurs: UA is the mean recall of classes 0 and 1.
    matrix = metrics.confusion_matrix([0, 0, 1], [0, 2, 1], 3)
    assert metrics.unweighted_accuracy(matrix) == pytest.approx(0.75)


def test_confusion_matrix_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="labels"):
        metrics.confusion_matrix([0, 4], [0, 1], 4)


@pytest.mark.parametrize(
    "metric_class, expected",
    [
        (metrics.UnweightedAccuracy, UA),
        (metrics.WeightedAccuracy, WA),
        (metrics.WeightedF1, WF1),
    ],
)
def test_keras_metrics_accumulate_over_batches(metric_class, expected):
    metric = metric_class(4)
    probabilities = np.eye(4, dtype="float32")[PREDICTIONS] * 0.7 + 0.075
    metric.update_state(LABELS[:6], probabilities[:6])
    metric.update_state(LABELS[6:], probabilities[6:])
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert metric_class.from_config(metric.get_config()).num_classes == 4
