"""Where the TensorBoard views go, and the summaries they share.

The run directories under `<run>/tensorboard/<fold>/` (`fold_log_dir`), the
tags every view writes, the file writer and image summary helpers, and the
confusion matrix with its per-class report: the held-out group's
(`log_held_out_scores`) and, through `TrainingConfusionCallback`, the
training groups' (see `smcn_tf.training.tensorboard_logging` for the whole
layout).
"""

import os

import tensorflow as tf

from smcn_tf import evaluate
from smcn_tf.training.figures import confusion_matrix_figure, figure_to_png

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

# The utterance-level features the views read (those the variant has).
EMBEDDING_OUTPUTS = ("audio_semantic", "text_semantic", "audio_calibration", "text_calibration")


def fold_log_dir(run_dir, fold, kind=None):
    """`<run>/tensorboard/<fold>[/<kind>]`, where kind is one of the *_DIR names."""
    path = os.path.join(run_dir, "tensorboard", fold)
    return os.path.join(path, kind) if kind else path


def image_summary(tag, figure, step, description=None):
    """Log a matplotlib figure as a PNG image summary to the default writer."""
    image = tf.image.decode_png(figure_to_png(figure), channels=4)
    tf.summary.image(tag, image[None], step=step, description=description)


def file_writer(log_dir):
    """A summary file writer for `log_dir` (created)."""
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


def log_confusion(scores, class_names, step, what):
    """The confusion figure and the per-class report of `scores`, to the default writer."""
    figure = confusion_matrix_figure(
        scores["confusion_matrix"], class_names, confusion_title(scores, what)
    )
    image_summary(
        CONFUSION_MATRIX_TAG, figure, step,
        description=f"Confusion matrix on the {what} (rows: true class): counts, and "
        "rows normalised to 1 (the diagonal is each class' recall).",
    )
    tf.summary.text(CLASSIFICATION_REPORT_TAG, classification_report_markdown(scores), step=step)


def log_held_out_evaluation(log_dir, labels, predictions, class_names, step):
    """The held-out confusion matrix (image) and per-class report (text).

    Scored by `smcn_tf.evaluate.score_predictions`, as `results.json` is. A
    fold that has its scores already logs them with `log_held_out_scores`.

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
    log_held_out_scores(log_dir, scores, class_names, step)
    return scores


def log_held_out_scores(log_dir, scores, class_names, step):
    """`log_held_out_evaluation` of scores already computed (`score_predictions`)."""
    writer = file_writer(log_dir)
    with writer.as_default():
        log_confusion(scores, list(class_names), step, "held-out group")
    writer.close()


def log_test_scores(log_dir, scores, step):
    """The held-out UA, WA and weighted F1 as `test/*` scalars in `<log_dir>/test`."""
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))
    with writer.as_default():
        for name in ("unweighted_accuracy", "weighted_accuracy", "weighted_f1"):
            tf.summary.scalar(f"test/{name}", scores[name], step=step)
    writer.flush()
