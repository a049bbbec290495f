"""HParams sessions, read back from the event files, and the names this module re-exports."""

import pytest
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from smcn_tf.config import Config
from smcn_tf.training import tensorboard_logging as tb


def _plugin_contents(log_dir, plugin):
    return {
        value.tag: value.metadata.plugin_data.content
        for event in tb.iter_events(log_dir)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == plugin
    }


def test_hparams_sessions_form_one_experiment(tmp_path):
    config = Config()
    config.model.variant = "inter"
    config.training.seed = 3
    scores = {"unweighted_accuracy": 0.5, "weighted_accuracy": 0.625, "weighted_f1": 0.6}
    fold_dir = str(tmp_path / "run" / "tensorboard" / "Session1")
    values = tb.log_hparams(fold_dir, config, scores)

    contents = _plugin_contents(fold_dir, hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(
        contents[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["variant"].string_value == "inter"
    assert start.hparams["fold"].string_value == "Session1"
    assert start.hparams["seed"].number_value == 3
    assert start.hparams["max_frames"].number_value == 500
    assert start.hparams["learning_rate"].number_value == pytest.approx(1e-4)
    assert start.hparams["stop_gradient_target"].bool_value is True
    assert start.hparams["audio_normalization"].string_value == "none"
    assert start.hparams["text_encoder"].string_value == "all-MiniLM-L6-v2"
    assert values["attention_units"] == 256
    experiment = hparams_metadata.parse_experiment_plugin_data(
        contents[hparams_metadata.EXPERIMENT_TAG]
    )
    assert {m.display_name for m in experiment.metric_infos} >= {"UA", "WA", "W-F1"}
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == set(values)
    # Typed, so that the HParams dashboard can filter and plot them; the
    # settings that tell runs apart come first in its table.
    assert "smcn" in [v.string_value for v in infos["variant"].domain_discrete.values]
    assert infos["learning_rate"].type == infos["seed"].type == api_pb2.DATA_TYPE_FLOAT64
    assert sorted(n for n, info in infos.items() if info.differs) == sorted(
        tb.DISTINGUISHING_HPARAMS
    )
    scalars = tb.read_scalars(fold_dir)
    assert {tag: v[1].tolist() for tag, v in scalars.items()} == {
        "scores/unweighted_accuracy": [0.5], "scores/weighted_accuracy": [0.625],
        "scores/weighted_f1": [pytest.approx(0.6)],
    }

    # Another run (another variant, a new setting) describes the same experiment.
    config.model.variant = "smcn"
    config.model.audio_normalization = "utterance"
    mean_dir = str(tmp_path / "other" / "tensorboard" / "mean")
    tb.log_hparams(mean_dir, config, scores)
    other = _plugin_contents(mean_dir, hparams_metadata.PLUGIN_NAME)
    assert other[hparams_metadata.EXPERIMENT_TAG] == contents[hparams_metadata.EXPERIMENT_TAG]
    start = hparams_metadata.parse_session_start_info_plugin_data(
        other[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["fold"].string_value == "mean"
    assert start.hparams["audio_normalization"].string_value == "utterance"


def test_the_views_stay_importable_from_here():
    # scripts/render_tensorboard_figures.py reads every view through this module.
    from smcn_tf.training import attention_views, callbacks, events, figures, summaries

    for module, names in (
        (figures, ("figure_to_png", "confusion_matrix_figure", "attention_figure",
                   "calibration_figure")),
        (summaries, ("fold_log_dir", "confusion_title", "CALIBRATION_DIR",
                     "log_held_out_evaluation", "HELD_OUT_DIR", "MEAN_SESSION")),
        (callbacks, ("CalibrationDiagnostics", "TrainingConfusionCallback",
                     "backfill_calibration_diagnostics", "calibration_statistics")),
        (attention_views, ("select_attention_examples", "gather_examples",
                           "attention_examples", "log_attention", "token_strings")),
        (events, ("read_scalars", "iter_events")),
    ):
        for name in names:
            assert getattr(tb, name) is getattr(module, name), name
