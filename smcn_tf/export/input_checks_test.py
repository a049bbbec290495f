"""The export refuses bad inputs in its graph and answers a missing modality (issue 8).

The full SMCN export (MiniLM inside) is shared with `export_test.py`
(`minilm_export`, built once per session); the other variants are checked
on an unsaved `SMCNServingModule` (its tf.functions, no SavedModel written)
or on a quick audio-only export.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from smcn_tf.contract.input_checks import clean_graph_error
from smcn_tf.contract.layout import host_name, remove_stale_temporaries
from smcn_tf.export.exporter import SMCNServingModule, export_model, input_rules
from smcn_tf.export.exporter_test import (
    CLASS_NAMES,
    TINY,
    TEXTS,
    feature_settings,
    minilm_export,
    offline_features,
    pad,
    random_features,
    raw_request,
    waveforms,
)
from smcn_tf.model.smcn import build_smcn

GRAPH_NOISE = ("Graph execution error", "node", "Detected at", "[[", "Op:", "__inference")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return minilm_export(tmp_path_factory)


@pytest.fixture(scope="module")
def signatures(full):
    return tf.saved_model.load(full["export_dir"]).signatures


def run(function, inputs):
    return {
        name: value.numpy()
        for name, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()
    }


def refused(function, inputs):
    """The clean message of the INVALID_ARGUMENT a signature raises."""
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        run(function, inputs)
    assert "assertion failed" in caught.value.message  # a check of ours, not a kernel error
    message = clean_graph_error(caught.value.message)
    assert not [noise for noise in GRAPH_NOISE if noise in message], message
    return message


def test_smcn_json_records_the_input_checks(full):
    path = os.path.join(full["export_dir"], "assets.extra", "smcn.json")
    with open(path, encoding="utf-8") as stream:
        description = json.load(stream)
    assert description["format_version"] == 2
    checks = description["input_checks"]
    assert checks["variant"] == "smcn" and checks["unimodal_heads"] == ["audio", "text"]
    assert checks["vocab_size"] == 30522
    assert (checks["cls_token_id"], checks["separator_token_id"]) == (101, 102)
    assert checks["min_audio_samples"] == 1600 and checks["min_audio_seconds"] == 0.1
    assert checks["max_waveform_samples"] == 500 * 5 * 160 + 16000  # frames x pooling x hop + 1 s
    outputs = description["signatures"]["serving_default"]["outputs"]
    assert outputs["modality"] == {"dtype": "string", "shape": [-1], "dims": ["batch"]}


def test_raw_signature_refuses_bad_values_naming_input_and_row(full, signatures):
    function = signatures["serving_default"]
    good = raw_request(full["text_encoder"])
    vocab = 30522

    def changed(**changes):
        inputs = {name: value.copy() for name, value in good.items()}
        for name, change in changes.items():
            change(inputs[name]) if callable(change) else inputs.__setitem__(name, change)
        return inputs

    cases = {
        "input waveform: row 1 holds NaN or infinite values": changed(
            waveform=lambda w: w.__setitem__((1, 100), np.nan)
        ),
        "input waveform: row 0 holds NaN or infinite values ": changed(
            waveform=lambda w: w.__setitem__(0, np.inf)
        ),
        "input waveform_length: row 1 is -1 but must be between 0 and the padded waveform size":
            changed(waveform_length=np.array([100, -1], "int32")),
        "input waveform_length: row 0 is 20801 but must be between 0 and the padded waveform "
        "size 20800": changed(waveform_length=np.array([20801, 100], "int32")),
        f"input input_ids: row 1 holds id {vocab} at position 2 which is outside the "
        f"vocabulary of {vocab} ids (0 to {vocab - 1})":
            changed(input_ids=lambda ids: ids.__setitem__((1, 2), vocab)),
        "input input_ids: row 0 holds id -1 at position 3":
            changed(input_ids=lambda ids: ids.__setitem__((0, 3), -1)),
        "inputs input_ids and attention_mask have different shapes: [2, 14] and [2, 13]":
            changed(attention_mask=good["attention_mask"][:, :-1].copy()),
        "input attention_mask: row 0 holds 2 at position 4 but mask values must be 0 or 1":
            changed(attention_mask=lambda mask: mask.__setitem__((0, 4), 2)),
        "input attention_mask: row 0 has a 1 after a 0 at position 3": changed(
            attention_mask=lambda mask: mask.__setitem__((0, 2), 0)
        ),
        "row 1 has no audio (waveform_length below 1600 samples, 0.1 s) and no text (no "
        "token besides CLS and SEP); send at least one of them": changed(
            waveform_length=np.array([20800, 1599], "int32"),
            attention_mask=lambda mask: mask.__setitem__((1, slice(None)), 0),
        ),
    }
    assert good["input_ids"].shape == (2, 14) and good["waveform"].shape == (2, 20800)
    for message, inputs in cases.items():
        assert message.strip() in refused(function, inputs)
        # The same function still answers a good request.
        assert run(function, good)["modality"].tolist() == [b"both", b"both"]


def test_a_missing_modality_is_answered_by_the_other_unimodal_head(full, signatures):
    function = signatures["serving_default"]
    model, encoder = full["model"], full["text_encoder"]
    good = raw_request(encoder)
    expected = model(offline_features(full["settings"], encoder))
    # Row 0 without text (all-zeros mask), row 1 without audio (length 0).
    inputs = dict(good, waveform_length=np.array([good["waveform_length"][0], 0], "int32"))
    inputs["attention_mask"] = good["attention_mask"].copy()
    inputs["attention_mask"][0] = 0
    answer = run(function, inputs)
    assert answer["modality"].tolist() == [b"audio", b"text"]
    np.testing.assert_allclose(
        answer["probabilities"][0], np.asarray(expected["audio_probabilities"])[0], atol=1e-4
    )
    np.testing.assert_allclose(
        answer["probabilities"][1], np.asarray(expected["text_probabilities"])[1], atol=1e-4
    )
    np.testing.assert_array_equal(answer["class_id"], answer["probabilities"].argmax(-1))
    assert answer["class_name"].tolist() == [
        CLASS_NAMES[index].encode() for index in answer["class_id"]
    ]
    # The head that answered is explained by its own (intra-modal) attention; the
    # modality that did not answer has none.
    np.testing.assert_allclose(answer["audio_attention"][0].sum(), 1.0, atol=1e-5)
    assert not answer["text_attention"][0].any() and not answer["audio_attention"][1].any()
    np.testing.assert_allclose(answer["text_attention"][1].sum(), 1.0, atol=1e-5)

    # Only [CLS] [SEP], zero tokens, an empty [1, 0] waveform: the same answers.
    tokens = encoder.tokenize([""])
    assert tokens["input_ids"].tolist() == [[101, 102]]
    only_special = dict({n: v[:1] for n, v in good.items()}, **tokens)
    assert run(function, only_special)["modality"].tolist() == [b"audio"]
    zero_tokens = dict(only_special, input_ids=np.zeros([1, 0], "int32"),
                       attention_mask=np.zeros([1, 0], "int32"))
    answer = run(function, zero_tokens)
    assert answer["modality"].tolist() == [b"audio"]
    np.testing.assert_allclose(
        answer["probabilities"][0], np.asarray(expected["audio_probabilities"])[0], atol=1e-4
    )
    empty_audio = {
        "waveform": np.zeros([1, 0], "float32"), "waveform_length": np.array([0], "int32"),
        "input_ids": good["input_ids"][1:], "attention_mask": good["attention_mask"][1:],
    }
    answer = run(function, empty_audio)
    assert answer["modality"].tolist() == [b"text"]
    np.testing.assert_allclose(
        answer["probabilities"][0], np.asarray(expected["text_probabilities"])[1], atol=1e-4
    )


def test_features_signature_answers_and_refuses_the_same(full, signatures):
    function = signatures["features"]
    model = full["model"]
    inputs = random_features(78, 384)
    inputs["audio_length"] = np.array([8, 0, 5], "int32")
    inputs["text_length"] = np.array([2, 6, 0], "int32")
    answer = run(function, inputs)
    expected = model(inputs)
    assert answer["modality"].tolist() == [b"both", b"text", b"audio"]
    np.testing.assert_allclose(answer["probabilities"][0], expected["probabilities"][0], atol=1e-5)
    np.testing.assert_allclose(
        answer["probabilities"][1], expected["text_probabilities"][1], atol=1e-5
    )
    np.testing.assert_allclose(
        answer["probabilities"][2], expected["audio_probabilities"][2], atol=1e-5
    )
    bad = dict(inputs, audio_features=inputs["audio_features"].copy())
    bad["audio_features"][2, 0, 0] = np.nan
    assert "input audio_features: row 2 holds NaN" in refused(function, bad)
    bad = dict(inputs, text_length=np.array([2, 7, 0], "int32"))
    assert "input text_length: row 1 is 7 but must be between 0 and the padded number of " \
        "tokens 6" in refused(function, bad)
    bad = dict(inputs, text_length=np.array([2, 6, 0], "int32"),
               audio_length=np.array([8, 0, 0], "int32"))
    assert "row 2 has no audio (audio_length 0) and no text (text_length 0)" in refused(
        function, bad
    )


def _unsaved_module(variant):
    keras.utils.set_random_seed(1)
    model = build_smcn(variant, class_names=CLASS_NAMES, **TINY)
    return model, SMCNServingModule(model, rules=input_rules(model))


def test_cat_refuses_a_missing_modality_clearly():
    model, module = _unsaved_module("cat")
    inputs = random_features(78, 384)
    answer = module.features(**{n: tf.constant(v) for n, v in inputs.items()})
    assert answer["modality"].numpy().tolist() == [b"both"] * 3
    np.testing.assert_allclose(answer["probabilities"], model(inputs)["probabilities"], atol=1e-5)
    for length, message in (
        ("text_length", "row 1 has no text (text_length 0) but variant cat needs both audio "
         "and text (it has no unimodal head to answer from one modality)"),
        ("audio_length", "row 1 has no audio (audio_length 0) but variant cat needs both"),
    ):
        bad = dict(inputs, **{length: np.array([2, 0, 4], "int32")})
        assert message in refused(module.features, bad)


def test_unimodal_variants_need_only_their_modality():
    model, module = _unsaved_module("text")
    inputs = dict(random_features(78, 384), audio_length=np.array([0, 0, 0], "int32"))
    answer = module.features(**{n: tf.constant(v) for n, v in inputs.items()})
    assert answer["modality"].numpy().tolist() == [b"text"] * 3
    np.testing.assert_allclose(answer["probabilities"], model(inputs)["probabilities"], atol=1e-5)
    bad = dict(inputs, text_length=np.array([2, 0, 4], "int32"))
    assert "row 1 has no text (text_length 0) but variant text reads only text" in refused(
        module.features, bad
    )


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporary_export_directories_are_removed_and_running_ones_kept(tmp_path):
    model_dir = tmp_path / "export" / "smcn"
    model_dir.mkdir(parents=True)
    host = host_name()
    names = {
        "dead, old name": f".tmp-3-{_dead_pid()}",  # as the killed export of the issue left it
        "dead, this host": f".tmp-4-{_dead_pid()}-{host}",
        "this process, no export running": f".tmp-5-{os.getpid()}-{host}",
        "alive": f".tmp-6-{os.getppid()}-{host}",
        "other host, fresh": ".tmp-7-1-elsewhere",
        "other host, stale": ".tmp-8-1-elsewhere",
        "not ours": ".tmp-notes",
    }
    for name in names.values():
        (model_dir / name / "variables").mkdir(parents=True)
        (model_dir / name / "variables" / "variables.data").write_bytes(b"x" * 1000)
    two_days_ago = time.time() - 2 * 24 * 3600
    stale = model_dir / names["other host, stale"]
    for path in (stale / "variables" / "variables.data", stale / "variables", stale):
        os.utime(path, (two_days_ago, two_days_ago))

    keras.utils.set_random_seed(0)
    model = build_smcn("audio", class_names=CLASS_NAMES, **TINY)
    settings = feature_settings("not-needed-for-audio", max_tokens=None)
    version_dir = export_model(model, str(tmp_path / "export"), "smcn", feature_settings=settings)
    assert version_dir == str(model_dir / "1")
    left = sorted(os.listdir(model_dir))
    assert left == sorted(
        ["1", names["alive"], names["other host, fresh"], names["not ours"]]
    ), left
    # Nothing more to remove: the survivors belong to running exports (or are not ours).
    assert remove_stale_temporaries(str(model_dir)) == []


def test_the_raw_signature_runs_waveforms_and_texts_of_the_test_corpus(full, signatures):
    """A sanity check of the shared inputs the other tests change."""
    assert len(TEXTS) == len(waveforms()) == 2
    waveform, length = pad(waveforms())
    assert waveform.shape == (2, 20800) and length.tolist() == [20800, 9920]
    assert run(signatures["serving_default"], raw_request(full["text_encoder"]))[
        "modality"
    ].tolist() == [b"both", b"both"]
