"""Metrics against a confusion matrix computed by hand."""

import numpy as np
import pytest

from smcn_tf import metrics

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
