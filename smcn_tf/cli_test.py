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


def test_train_evaluate_export_from_the_command_line(demo_features, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert main(["train", "--data", demo_features, "--run-dir", run_dir,
                 "--fold", "Session1", "--verbose", "0", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "Session1" in printed and "mean" in printed and "tensorboard --logdir" in printed

    assert main(["evaluate", "--data", demo_features, "--run-dir", run_dir]) == 0
    assert "Session1" in capsys.readouterr().out

    export_base = str(tmp_path / "export")
    model = os.path.join(run_dir, "Session1", "model.keras")
    # A fresh process, as `make demo` runs it: nothing of ours is imported beforehand.
    completed = subprocess.run(
        [sys.executable, "-m", "smcn_tf.cli", "export", "--model", model,
         "--export-base", export_base],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "smcn/1" in completed.stdout
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
