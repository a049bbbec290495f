"""The `smcn` command line, end to end on the demo corpus at tiny settings."""

import os
import subprocess
import sys

import pytest

from smcn_tf.cli import main

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
TINY = [
    "--config", os.path.join(CONFIGS, "demo.yaml"),
    "--set", "training.steps=2", "--set", "training.steps_per_epoch=2",
    "--set", "model.hidden_units=4", "--set", "model.head_units=4",
]


@pytest.mark.parametrize("command", ["demo-data", "prepare", "train", "evaluate", "export", "report", "serve", "predict"])
def test_every_subcommand_has_help(command):
    completed = subprocess.run(
        [sys.executable, "-m", "smcn_tf.cli", command, "--help"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0
    assert "usage: smcn " + command in completed.stdout


def test_train_evaluate_export_from_the_command_line(demo_features, demo_tiny_run, tmp_path,
                                                     capsys):
    # `smcn train --fold Session2` at tiny settings, run once for the session
    # (conftest.py; train_test reads the same run): it exited 0.
    run_dir, printed = demo_tiny_run
    assert "Session2" in printed and "mean" in printed and "tensorboard --logdir" in printed

    assert main(["evaluate", "--data", demo_features, "--run-dir", run_dir]) == 0
    evaluated = capsys.readouterr().out
    assert "Session2" in evaluated
    # One scoring path (evaluate.score_fold): evaluate re-scores the fold as train did.
    fold_row = [line for line in printed.splitlines() if line.startswith("Session2 ")]
    assert fold_row and fold_row[0] in evaluated.splitlines()

    export_base = str(tmp_path / "export")
    model = os.path.join(run_dir, "Session2", "model.keras")
    # A fresh process, as `make demo` runs it: nothing of ours is imported beforehand,
    # and no TF_CPP_MIN_LOG_LEVEL from the test session's conftest.
    environment = {
        key: value for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "SMCN_VERBOSE")
    }
    completed = subprocess.run(
        [sys.executable, "-m", "smcn_tf.cli", "export", "--model", model,
         "--export-base", export_base],
        capture_output=True, text=True, check=False, env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "smcn/1" in completed.stdout
    # Quiet by default: none of TensorFlow's C++ start-up lines.
    for noise in ("oneDNN", "absl::InitializeLog", "cuda drivers", "cuInit", "cpu_feature_guard"):
        assert noise not in completed.stderr, completed.stderr[-2000:]
    assert os.path.isfile(os.path.join(export_base, "smcn", "1", "saved_model.pb"))


def test_bad_input_gives_a_clear_error_not_a_traceback(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), *TINY])
    assert code == 2
    assert "manifest.json" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden: 3\n")
    code = main(["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "r"),
                 "--config", str(bad)])
    assert code == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_prepare_reads_audio_at_the_configured_sample_rate(monkeypatch, tmp_path, capsys):
    import smcn_tf.records.prepare

    seen = {}

    def fake_prepare_corpus(corpus, root, out, **settings):
        seen.update(settings)
        raise ValueError("stop here")

    monkeypatch.setattr(smcn_tf.records.prepare, "prepare_corpus", fake_prepare_corpus)
    code = main(["prepare", "demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "f"),
                 "--config", os.path.join(CONFIGS, "demo.yaml"),
                 "--set", "features.sample_rate=8000"])
    assert code == 2 and "stop here" in capsys.readouterr().err
    assert seen["sample_rate"] == 8000


def test_global_verbose_is_not_trains_keras_verbosity():
    from smcn_tf.cli import build_parser

    args = build_parser().parse_args(["--verbose", "train", "--data", "d", "--run-dir", "r"])
    assert args.startup_logs is True and args.verbose == 2
    args = build_parser().parse_args(["train", "--data", "d", "--run-dir", "r", "--verbose", "0"])
    assert args.startup_logs is False and args.verbose == 0
