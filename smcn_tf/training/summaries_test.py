"""The held-out confusion matrix and per-class report, read back from the event files."""

from smcn_tf import evaluate
from smcn_tf.training import board_testing as bt
from smcn_tf.training.board_testing import CLASSES
from smcn_tf.training.summaries import (
    CLASSIFICATION_REPORT_TAG,
    CONFUSION_MATRIX_TAG,
    log_held_out_evaluation,
    log_held_out_scores,
)


def test_held_out_confusion_matrix_matches_a_hand_count_and_results_json(tmp_path):
    labels = [0, 0, 1, 1, 2, 3, 3, 3]
    predictions = [0, 1, 1, 1, 2, 3, 0, 3]
    by_hand = [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [1, 0, 0, 2]]
    log_dir = str(tmp_path / "held_out")

    scores = log_held_out_evaluation(log_dir, labels, predictions, CLASSES, step=6)

    assert scores["confusion_matrix"] == by_hand
    assert scores == evaluate.score_predictions(labels, predictions, CLASSES)
    accumulator = bt.accumulator(log_dir)
    assert set(accumulator.Tags()["tensors"]) == {
        CONFUSION_MATRIX_TAG, CLASSIFICATION_REPORT_TAG,
    }
    assert accumulator.Tensors(CONFUSION_MATRIX_TAG)[0].step == 6
    (height, width), recorded = bt.image(accumulator, CONFUSION_MATRIX_TAG)
    assert (height, width) == recorded
    assert width > 2 * height > 400  # two square panels side by side
    report = bt.text(accumulator, CLASSIFICATION_REPORT_TAG)
    assert "| angry | 0.5000 | 0.5000 | 0.5000 | 2 |" in report
    assert "| happy | 0.6667 | 1.0000 | 0.8000 | 2 |" in report
    assert "| sad | 1.0000 | 0.6667 | 0.8000 | 3 |" in report
    assert f"**UA** {scores['unweighted_accuracy']:.4f}" in report


def test_scores_already_computed_draw_the_same_views(tmp_path):
    labels, predictions = [0, 1, 2, 3, 3], [0, 1, 2, 3, 0]
    scores = evaluate.score_predictions(labels, predictions, CLASSES)
    log_held_out_scores(str(tmp_path / "given"), scores, CLASSES, step=2)
    log_held_out_evaluation(str(tmp_path / "scored"), labels, predictions, CLASSES, step=2)
    given = bt.accumulator(str(tmp_path / "given"))
    scored = bt.accumulator(str(tmp_path / "scored"))
    assert bt.text(given, CLASSIFICATION_REPORT_TAG) == bt.text(scored, CLASSIFICATION_REPORT_TAG)
    assert bt.image(given, CONFUSION_MATRIX_TAG) == bt.image(scored, CONFUSION_MATRIX_TAG)
