"""The export conforms to what TensorFlow Serving loads and shows.

TF Serving loads a SavedModel with the TF1 session API, looks the
SignatureDefs up by name and feeds and fetches tensors by name; it has none
of our Python code. These tests do the same in a fresh interpreter that never
imports `smcn_tf`, and check the signatures `saved_model_cli` lists against
the serving contract.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from smcn_tf.contract.signatures import SIGNATURES, signature_contract
from smcn_tf.export.exporter import export_model
from smcn_tf.export.exporter_test import (
    CLASS_NAMES,
    TINY,
    assert_answers_match,
    feature_settings,
    minilm_export,
    offline_features,
    pad,
    random_features,
    raw_request,
    waveforms,
)
from smcn_tf.features.audio import LogMelFeatures, extract_audio_features
from smcn_tf.model.smcn import build_smcn

# Runs in a fresh interpreter: TF1 session loading, as TF Serving does it.
_SESSION_SCRIPT = r"""
import sys

import numpy as np
import tensorflow as tf

export_dir, inputs_path, outputs_path = sys.argv[1:]
inputs = np.load(inputs_path)
results = {}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    for signature_name in ("serving_default", "features"):
        signature = meta_graph.signature_def[signature_name]
        assert signature.method_name == "tensorflow/serving/predict", signature.method_name
        feed = {
            info.name: inputs[f"{signature_name}/{name}"]
            for name, info in signature.inputs.items()
        }
        names = sorted(signature.outputs)
        fetched = session.run([signature.outputs[name].name for name in names], feed)
        for name, value in zip(names, fetched):
            if value.dtype == object:
                value = np.array([item.decode("utf-8") for item in value])
            results[f"{signature_name}/{name}"] = value
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("smcn_tf", "keras_hub"))
assert not loaded, f"the server side must not need our Python code: {loaded}"
np.savez(outputs_path, **results)
"""


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return minilm_export(tmp_path_factory)


def _run_in_tf1_session(export_dir, requests, tmp_path):
    """Runs both signatures in a fresh interpreter, as TF Serving would.

    Args:
        export_dir: an export version directory.
        requests: `{signature: {input name: array}}`.
        tmp_path: where the .npz files go.

    Returns:
        `{signature: {output name: array}}`.
    """
    np.savez(
        tmp_path / "inputs.npz",
        **{
            f"{signature}/{name}": value
            for signature, request in requests.items()
            for name, value in request.items()
        },
    )
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="")
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _SESSION_SCRIPT,
            export_dir,
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        cwd=tmp_path,  # not the repository: smcn_tf must not be importable by accident
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    outputs = np.load(tmp_path / "outputs.npz")
    answers = {}
    for signature in requests:
        answers[signature] = {
            name: outputs[f"{signature}/{name}"] for name in SIGNATURES[signature]["outputs"]
        }
        assert list(answers[signature]["class_name"]) == [
            CLASS_NAMES[index] for index in answers[signature]["class_id"]
        ]
    return answers


def test_tf1_session_loading_answers_like_the_in_process_model(full, tmp_path):
    requests = {
        "serving_default": raw_request(full["text_encoder"]),
        "features": random_features(78, 384),
    }
    expected = {
        "serving_default": full["model"](offline_features(full["settings"], full["text_encoder"])),
        "features": full["model"](requests["features"]),
    }
    answers = _run_in_tf1_session(full["export_dir"], requests, tmp_path)
    for signature in ("serving_default", "features"):
        assert_answers_match(answers[signature], expected[signature], atol=1e-4)


def test_tf1_session_loading_of_an_export_without_text_encoder(tmp_path):
    # No MiniLM needed: an audio-only variant has no BERT in its graph, and its
    # variables must load in a TF1 session all the same.
    keras.utils.set_random_seed(5)
    model = build_smcn("audio", class_names=CLASS_NAMES, **TINY)
    export_dir = export_model(
        model,
        str(tmp_path / "export"),
        feature_settings=feature_settings("unused", max_tokens=None),
    )
    features = random_features(78, 384)
    waveform, waveform_length = pad(waveforms())
    requests = {
        "serving_default": {
            "waveform": waveform,
            "waveform_length": waveform_length,
            "input_ids": np.array([[101, 102]], "int32").repeat(2, axis=0),
            "attention_mask": np.ones([2, 2], "int32"),
        },
        "features": features,
    }
    answers = _run_in_tf1_session(export_dir, requests, tmp_path)
    expected = dict(model(features))
    expected["text_attention"] = np.zeros([3, 6], "float32")
    assert_answers_match(answers["features"], expected, atol=1e-5)
    layer = LogMelFeatures(pooling=5, max_frames=500)
    audio_features, audio_length = pad(extract_audio_features(waveforms(), layer))
    expected = dict(
        model(
            {
                "audio_features": audio_features,
                "audio_length": audio_length,
                "text_features": np.zeros([2, 2, 384], "float32"),
                "text_length": np.array([2, 2], "int32"),
            }
        )
    )
    expected["text_attention"] = np.zeros([2, 2], "float32")
    assert_answers_match(answers["serving_default"], expected, atol=1e-4)


_DTYPES = {"float32": "DT_FLOAT", "int32": "DT_INT32", "string": "DT_STRING"}


def _parse_saved_model_cli(text):
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from `show --all`."""
    signatures = {}
    signature = side = name = None
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r"signature_def\['(.+)'\]:$", line)
        if match:
            signature = signatures.setdefault(match.group(1), {"inputs": {}, "outputs": {}})
            continue
        match = re.match(r"(inputs|outputs)\['(.+)'\] tensor_info:$", line)
        if match and signature is not None:
            side, name = match.group(1), match.group(2)
            signature[side][name] = [None, None]
            continue
        if line.startswith("dtype:") and name is not None:
            signature[side][name][0] = line.split(":", 1)[1].strip()
        elif line.startswith("shape:") and name is not None:
            signature[side][name][1] = line.split(":", 1)[1].strip()
            name = None
    return {
        key: {side: {k: tuple(v) for k, v in tensors.items()} for side, tensors in value.items()}
        for key, value in signatures.items()
    }


def _cli_shape(shape):
    return "(" + ", ".join(str(size) for size in shape) + ")"


def test_saved_model_cli_lists_the_contracted_signatures(full):
    cli = Path(sys.executable).parent / "saved_model_cli"
    # The tensorflow package installs it beside the interpreter.
    assert cli.exists(), f"{cli} is not installed"
    completed = subprocess.run(
        [str(cli), "show", "--dir", full["export_dir"], "--all"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    shown = _parse_saved_model_cli(completed.stdout)
    contract = signature_contract(78, 384, len(CLASS_NAMES))
    for signature in ("serving_default", "features"):
        assert signature in shown, sorted(shown)
        for side in ("inputs", "outputs"):
            expected = {
                name: (_DTYPES[spec["dtype"]], _cli_shape(spec["shape"]))
                for name, spec in contract[signature][side].items()
            }
            assert shown[signature][side] == expected, (signature, side)
    # Spot-check the contract itself, so a wrong contract cannot pass.
    assert shown["serving_default"]["inputs"]["waveform"] == ("DT_FLOAT", "(-1, -1)")
    assert shown["features"]["inputs"]["audio_features"] == ("DT_FLOAT", "(-1, -1, 78)")
    assert shown["features"]["outputs"]["class_name"] == ("DT_STRING", "(-1)")
    assert shown["serving_default"]["outputs"]["probabilities"] == ("DT_FLOAT", "(-1, 3)")


# Runs requests one by one in a fresh TF1 session, as TF Serving does; records
# each answer's `modality` or the error TensorFlow raises.
_REFUSAL_SCRIPT = r"""
import json
import sys

import numpy as np
import tensorflow as tf

export_dir, inputs_path, outputs_path = sys.argv[1:]
requests = np.load(inputs_path)
names = sorted({key.split("/")[0] for key in requests.files})
results = {}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta_graph.signature_def["serving_default"]
    for name in names:
        feed = {
            info.name: requests[f"{name}/{key}"] for key, info in signature.inputs.items()
        }
        try:
            modality, probabilities = session.run(
                [signature.outputs["modality"].name, signature.outputs["probabilities"].name],
                feed,
            )
            results[name] = {
                "modality": [item.decode() for item in modality],
                "probabilities": probabilities.tolist(),
            }
        except tf.errors.InvalidArgumentError as error:
            results[name] = {"error": error.message}
with open(outputs_path, "w") as stream:
    json.dump(results, stream)
"""


def test_tf1_session_loading_refuses_bad_inputs_and_answers_missing_modalities(full, tmp_path):
    """TF Serving runs none of our Python: the graph's own checks must refuse."""
    good = raw_request(full["text_encoder"])
    nan = dict(good, waveform=good["waveform"].copy())
    nan["waveform"][1, 10] = np.nan
    bad_id = dict(good, input_ids=good["input_ids"].copy())
    bad_id["input_ids"][0, 1] = -1
    no_text = dict(good, attention_mask=np.zeros_like(good["attention_mask"]))
    no_audio = dict(good, waveform_length=np.array([0, 0], "int32"))
    neither = dict(no_text, waveform_length=np.array([0, 0], "int32"))
    empty = {key: value[:0] for key, value in good.items()}
    # 500 frames x pooling 5 x hop 160, plus 1 s: 416,000 samples.
    too_long = dict(good, waveform=np.zeros([2, 416_001], "float32"))
    requests = {"good": good, "nan": nan, "bad_id": bad_id, "no_text": no_text,
                "no_audio": no_audio, "neither": neither, "empty": empty,
                "too_long": too_long}
    np.savez(
        tmp_path / "requests.npz",
        **{f"{name}/{key}": value for name, inputs in requests.items()
           for key, value in inputs.items()},
    )
    completed = subprocess.run(
        [sys.executable, "-c", _REFUSAL_SCRIPT, full["export_dir"],
         str(tmp_path / "requests.npz"), str(tmp_path / "answers.json")],
        cwd=tmp_path, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=""),
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    with open(tmp_path / "answers.json", encoding="utf-8") as stream:
        answers = json.load(stream)
    assert answers["good"]["modality"] == ["both", "both"]
    assert "assertion failed: [input waveform: row] [1] [holds NaN or infinite values" in \
        answers["nan"]["error"]
    assert "[input input_ids: row] [0] [holds id] [-1] [at position] [1]" in \
        answers["bad_id"]["error"]
    assert "[has] [no audio (waveform_length below 1600 samples, 0.1 s) and no text" in \
        answers["neither"]["error"]
    # It was an internal error (Matrix size-incompatible in the audio GRU).
    assert "assertion failed: [empty batch: send at least one row]" in answers["empty"]["error"]
    assert (
        "[input waveform: rows of] [416001] [samples are longer than this model can use: "
        "at most 416000 samples (26 s) per row"
    ) in answers["too_long"]["error"]
    expected = full["model"](offline_features(full["settings"], full["text_encoder"]))
    assert answers["no_text"]["modality"] == ["audio", "audio"]
    np.testing.assert_allclose(
        answers["no_text"]["probabilities"], expected["audio_probabilities"], atol=1e-4
    )
    assert answers["no_audio"]["modality"] == ["text", "text"]
    np.testing.assert_allclose(
        answers["no_audio"]["probabilities"], expected["text_probabilities"], atol=1e-4
    )
