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

from smcn_tf.serving.local import commands

REPOSITORY = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


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


def test_serve_limit_flags():
    parser = argparse.ArgumentParser(prog="smcn")
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--model-base-path", "export/smcn"])
    assert (args.max_batch_size, args.max_tensor_bytes) == (None, 64 * 1024 * 1024)
    args = parser.parse_args(
        ["serve", "--model-base-path", "export/smcn", "--max-batch-size", "32",
         "--max-tensor-bytes", "1000000"]
    )
    assert (args.max_batch_size, args.max_tensor_bytes) == (32, 1000000)


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
        [sys.executable, "-m", "smcn_tf.serving.local.commands", "serve", "--model-base-path", export,
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
        tokenizer = ["--tokenizer-dir", os.path.join(export, "1", "assets.extra", "tokenizer")]
        for transport in (["--grpc", grpc_target], ["--rest", rest_url, "--rest-format", "inputs"]):
            assert commands.main(["predict", "--audio", clip, "--text", "leave me alone",
                                  "--class-names", "angry,happy,neutral,sad", *tokenizer,
                                  *transport]) == 0
            assert "Class: " in capsys.readouterr().out
        assert commands.main(["predict", "--audio", clip, "--text", "hi", "--grpc", grpc_target,
                              "--model-name", "bert", *tokenizer]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_predict_with_one_modality_says_which_answered(export, clip, capsys):
    assert commands.main(["predict", "--text", "I am so happy today", "--model-dir", export]) == 0
    out = capsys.readouterr().out
    assert "Answered from: text only (no usable audio: the model's text head answered)" in out
    assert "Most attended audio frame" not in out
    assert commands.main(["predict", "--audio", clip, "--model-dir", export, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["modality"] == "audio"
    assert commands.main(["predict", "--audio", clip, "--text", "hi", "--model-dir", export]) == 0
    assert "Answered from: audio and text" in capsys.readouterr().out


def test_predict_errors_are_clear(export, tmp_path, capsys):
    from smcn_tf import cli

    missing = str(tmp_path / "missing.wav")
    for main in (commands.main, cli.main):
        assert main(["predict", "--audio", missing, "--text", "hi", "--model-dir", export]) == 2
        assert capsys.readouterr().err.strip() == f"smcn predict: error: no such file: {missing}"
    assert commands.main(["predict", "--model-dir", export]) == 2
    assert "give --audio, --text or both" in capsys.readouterr().err
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a wav file")
    assert commands.main(["predict", "--audio", str(not_audio), "--model-dir", export]) == 2
    err = capsys.readouterr().err
    assert "notes.wav: cannot read audio" in err
