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

The views live in modules by concern, and their public names are importable
from here too:

- `smcn_tf.training.figures`: the matplotlib figures;
- `smcn_tf.training.summaries`: run directories, tags, writers, the
  confusion matrix and per-class report;
- `smcn_tf.training.callbacks`: the per-epoch views of `fit`;
- `smcn_tf.training.attention_views`: the attention figures' data;
- `smcn_tf.training.embeddings`: the Projector;
- `smcn_tf.training.held_out`: a fold's one prediction pass over its
  held-out group, and every held-out view drawn from it;
- `smcn_tf.training.events`: reading event files back;
- this module: the HParams experiment.
"""


import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import plugin_data_pb2

from smcn_tf.config import MIXED_PRECISION
from smcn_tf.features.text import text_encoder_name
from smcn_tf.model.layers import Fusion
from smcn_tf.model.smcn import VARIANTS
from smcn_tf.training.attention_views import (  # noqa: F401 (re-exported)
    ATTENTION_KINDS,
    MODALITIES,
    attention_example,
    attention_examples,
    attention_probe,
    default_mel_bands,
    gather_examples,
    log_attention,
    select_attention_examples,
    token_strings,
    write_attention,
)
from smcn_tf.training.callbacks import (  # noqa: F401 (re-exported)
    CALIBRATION_PAIRS,
    CALIBRATION_TAGS,
    CalibrationDiagnostics,
    FlushingTensorBoard,
    TrainingConfusionCallback,
    backfill_calibration_diagnostics,
    calibration_statistics,
    current_learning_rate,
    write_calibration_scalars,
)
from smcn_tf.training.embeddings import (  # noqa: F401 (re-exported)
    EMBEDDING_SYMBOLS,
    log_embeddings,
    write_embeddings,
)
from smcn_tf.training.events import iter_events, read_scalars  # noqa: F401 (re-exported)
from smcn_tf.training.figures import (  # noqa: F401 (re-exported)
    ATTENTION_TITLES,
    attention_figure,
    calibration_figure,
    confusion_matrix_figure,
    figure_to_png,
)
from smcn_tf.training.summaries import (  # noqa: F401 (re-exported)
    ATTENTION_TAG_PREFIX,
    CALIBRATION_DIR,
    CLASSIFICATION_REPORT_TAG,
    CONFUSION_MATRIX_TAG,
    EMBEDDING_OUTPUTS,
    HELD_OUT_DIR,
    LEARNING_RATE_TAG,
    MEAN_SESSION,
    PROJECTOR_DIR,
    PROJECTOR_README_TAG,
    SCORE_NAMES,
    SCORE_TAGS,
    TRAIN_CONFUSION_DIR,
    classification_report_markdown,
    confusion_title,
    file_writer,
    fold_log_dir,
    log_held_out_evaluation,
    log_held_out_scores,
)


# --------------------------------------------------------------------------
# HParams


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
        "text_encoder": text_encoder_name(features.text_encoder),
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
    writer = file_writer(log_dir)
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
