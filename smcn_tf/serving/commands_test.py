"""`smcn serve` and `smcn predict` from the command line."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from smcn_tf.serving import commands

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("audio") / "clip.wav")
    rng = np.random.default_rng(0)
    soundfile.write(path, (0.1 * rng.standard_normal(20000)).astype("float32"), 16000)
    return path


def test_parsers_register_with_helpful_help(capsys):
    parser = argparse.ArgumentParser(prog="smcn")
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--model-base-path", "export/smcn", "--port", "0"])
    assert (args.port, args.rest_port, args.host, args.poll_seconds) == (0, 8501, "127.0.0.1", 2.0)
    assert args.handler is commands.command_serve
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--audio", "a.wav", "--text", "hi"])  # no transport
    for name in ("serve", "predict"):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        text = capsys.readouterr().out
        assert "TensorFlow Serving" in text and "Example" in text


def test_predict_in_process_prints_class_probabilities_and_tokens(export, clip, capsys):
    code = commands.main(["predict", "--audio", clip, "--text", "I am so happy today",
                          "--model-dir", export])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^Class: (angry|happy|neutral|sad) \(p = [01]\.\d{3}\)$", out, re.M), out
    assert all(name in out for name in ("angry", "happy", "neutral", "sad"))
    assert "Most attended tokens: " in out
    code = commands.main(["predict", "--audio", clip, "--text", "hi", "--model-dir", export,
                          "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["tokens"][0] == "[CLS]" and answer["model_version"] == 1
    assert set(answer["probability_by_class"]) == {"angry", "happy", "neutral", "sad"}


def test_serve_runs_until_sigterm_and_answers_predict(export, clip, capsys):
    environment = dict(os.environ, PYTHONPATH=REPOSITORY, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "smcn_tf.serving.commands", "serve", "--model-base-path", export,
         "--port", "0", "--rest-port", "0", "--poll-seconds", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("REST listening"):
                break
        text = "".join(lines)
        assert "Version(s): 1" in text, text
        grpc_target = re.search(r"gRPC listening on (\S+)", text).group(1)
        rest_url = re.search(r"REST listening on (\S+)", text).group(1)
        for transport in (["--grpc", grpc_target], ["--rest", rest_url, "--rest-format", "inputs"]):
            assert commands.main(["predict", "--audio", clip, "--text", "leave me alone",
                                  "--class-names", "angry,happy,neutral,sad", *transport]) == 0
            assert "Class: " in capsys.readouterr().out
        assert commands.main(["predict", "--audio", clip, "--text", "hi", "--grpc", grpc_target,
                              "--model-name", "bert"]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
