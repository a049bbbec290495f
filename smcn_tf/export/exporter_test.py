"""The export answers like the in-process model, in TF Serving's layout.

Two kinds of exports are built once each:

- an audio-only variant (no text encoder in its graph, seconds to export, no
  MiniLM needed) for the layout, versioning and `features` tests;
- a tiny full SMCN with the installed all-MiniLM-L6-v2 inside its raw
  `serving_default` graph, for parity with the offline feature path, the op
  set and the tokenizer copy. `minilm_export` builds it once per session and
  `export_conformance_test.py` reuses it.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from smcn_tf.contract.signatures import SIGNATURES, signature_contract
from smcn_tf.export.exporter import (
    export_from_run,
    export_model,
    existing_versions,
    load_tokenizer,
)
from smcn_tf.features.audio import LogMelFeatures, extract_audio_features
from smcn_tf.model.smcn import build_smcn

CLASS_NAMES = ["angry", "happy", "sad"]
# Tiny sizes; 78 = the log-Mel front end, 384 = MiniLM's hidden size.
TINY = dict(audio_dim=78, text_dim=384, num_classes=3, hidden_units=8, head_units=8)
SAMPLE_RATE = 16000
TEXTS = ["I am so happy to see you again today, really!", "Leave me alone."]


def feature_settings(text_encoder, **overrides):
    """A features.json dict as `smcn train` writes it."""
    settings = dict(
        corpus="demo",
        class_names=CLASS_NAMES,
        audio_dim=78,
        text_dim=384,
        text_encoder=text_encoder,
        pooling=5,
        max_frames=500,
        max_tokens=150,
    )
    settings.update(overrides)
    return settings


def waveforms():
    """Two synthetic utterances of different lengths (1.3 s and 0.62 s)."""
    rng = np.random.default_rng(0)
    time = np.arange(int(1.3 * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = 0.3 * np.sin(2 * np.pi * 220 * time) * np.sin(2 * np.pi * 3 * time)
    voiced += 0.02 * rng.normal(size=time.shape)
    noise = 0.1 * rng.normal(size=int(0.62 * SAMPLE_RATE))
    return [voiced.astype("float32"), noise.astype("float32")]


def pad(arrays, dtype="float32"):
    """Stacks arrays of different lengths, zero-padded at the end of axis 0."""
    length = max(array.shape[0] for array in arrays)
    batch = np.zeros((len(arrays), length) + arrays[0].shape[1:], dtype)
    for row, array in enumerate(arrays):
        batch[row, : array.shape[0]] = array
    return batch, np.array([array.shape[0] for array in arrays], "int32")


def raw_request(text_encoder):
    """The raw `serving_default` inputs for `waveforms()` and `TEXTS`."""
    waveform, waveform_length = pad(waveforms())
    tokens = text_encoder.tokenize(TEXTS)
    return {
        "waveform": waveform,
        "waveform_length": waveform_length,
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
    }


def offline_features(settings, text_encoder):
    """The padded model inputs the offline path (prepare) computes."""
    layer = LogMelFeatures(pooling=settings["pooling"], max_frames=settings["max_frames"])
    audio_features, audio_length = pad(extract_audio_features(waveforms(), layer))
    text_features, text_length = pad(text_encoder.encode(TEXTS))
    return {
        "audio_features": audio_features,
        "audio_length": audio_length,
        "text_features": text_features,
        "text_length": text_length,
    }


def random_features(audio_dim, text_dim):
    rng = np.random.default_rng(1)
    return {
        "audio_features": rng.normal(size=(3, 8, audio_dim)).astype("float32"),
        "audio_length": np.array([8, 2, 5], "int32"),
        "text_features": rng.normal(size=(3, 6, text_dim)).astype("float32"),
        "text_length": np.array([2, 6, 4], "int32"),
    }


def assert_answers_match(answer, expected, atol=1e-4):
    """`answer` (a signature's outputs) agrees with the model's output dict."""
    probabilities = np.asarray(expected["probabilities"])
    np.testing.assert_allclose(np.asarray(answer["probabilities"]), probabilities, atol=atol)
    class_id = probabilities.argmax(-1)
    np.testing.assert_array_equal(np.asarray(answer["class_id"]), class_id)
    names = np.array([name.encode() for name in CLASS_NAMES])
    class_name = np.asarray(answer["class_name"])
    if class_name.dtype.kind == "U":
        class_name = np.char.encode(class_name)
    np.testing.assert_array_equal(class_name, names[class_id])
    for modality in ("audio", "text"):
        key = f"{modality}_attention"
        np.testing.assert_allclose(
            np.asarray(answer[key]), np.asarray(expected[key]), atol=atol
        )


def _as_tensors(inputs):
    return {name: tf.constant(value) for name, value in inputs.items()}


_MINILM_EXPORT = {}


def minilm_export(tmp_path_factory):
    """A tiny full SMCN exported with MiniLM inside; built once per session.

    Returns:
        A dict with `model`, `export_dir`, `settings` and `text_encoder`.
    """
    if not _MINILM_EXPORT:
        from smcn_tf.features.text import TextEncoder, default_checkpoint_dir

        keras.utils.set_random_seed(3)
        model = build_smcn("smcn", class_names=CLASS_NAMES, **TINY)
        settings = feature_settings(default_checkpoint_dir())
        base = str(tmp_path_factory.mktemp("minilm_export"))
        export_dir = export_model(model, base, "smcn", feature_settings=settings)
        text_encoder = TextEncoder(settings["text_encoder"], max_tokens=settings["max_tokens"])
        _MINILM_EXPORT.update(
            model=model, export_dir=export_dir, settings=settings, text_encoder=text_encoder
        )
    return _MINILM_EXPORT


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two versions of an audio-only variant (no text encoder needed)."""
    base = str(tmp_path_factory.mktemp("export"))
    keras.utils.set_random_seed(0)
    model = build_smcn("audio", class_names=CLASS_NAMES, **TINY)
    settings = feature_settings("not-needed-for-audio", max_tokens=None)
    first = export_model(model, base, "smcn", feature_settings=settings)
    second = export_model(model, base, "smcn", feature_settings=settings)
    return model, base, first, second, settings


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return minilm_export(tmp_path_factory)


def test_versions_grow_in_the_serving_layout_and_nothing_half_written_remains(exported):
    model, base, first, second, settings = exported
    assert first == os.path.join(base, "smcn", "1")
    assert second == os.path.join(base, "smcn", "2")
    assert existing_versions(os.path.join(base, "smcn")) == [1, 2]
    # No hidden temporary directory is left beside the versions.
    assert sorted(os.listdir(os.path.join(base, "smcn"))) == ["1", "2"]
    assert os.path.isfile(os.path.join(first, "saved_model.pb"))
    with pytest.raises(ValueError, match="already exists"):
        export_model(model, base, "smcn", version=2, feature_settings=settings)
    assert sorted(os.listdir(os.path.join(base, "smcn"))) == ["1", "2"]
    third = export_model(model, base, "smcn", version=7, feature_settings=settings)
    assert third == os.path.join(base, "smcn", "7")
    assert existing_versions(os.path.join(base, "smcn")) == [1, 2, 7]


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    from smcn_tf.features.text import default_checkpoint_dir

    model = build_smcn("smcn", class_names=CLASS_NAMES, **TINY)
    # MiniLM has 512 positions: the text encoder refuses inside the export,
    # after its temporary directory exists.
    settings = feature_settings(default_checkpoint_dir(), max_tokens=1000)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        export_model(model, str(tmp_path), "smcn", feature_settings=settings)
    assert os.listdir(tmp_path / "smcn") == []


def test_unimodal_export_answers_like_the_model_and_zeros_the_missing_modality(exported):
    model, _, first, _, _ = exported
    loaded = tf.saved_model.load(first)
    inputs = random_features(78, 384)
    expected = dict(model(inputs))
    expected["text_attention"] = np.zeros(inputs["text_features"].shape[:2], "float32")
    assert_answers_match(loaded.signatures["features"](**_as_tensors(inputs)), expected, 1e-6)

    waveform, waveform_length = pad(waveforms())
    request = {
        "waveform": waveform,
        "waveform_length": waveform_length,
        "input_ids": np.array([[101, 7592, 102, 0], [101, 102, 0, 0]], "int32"),
        "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "int32"),
    }
    answer = loaded.signatures["serving_default"](**_as_tensors(request))
    layer = LogMelFeatures(pooling=5, max_frames=500)
    audio_features, audio_length = pad(extract_audio_features(waveforms(), layer))
    expected = model(
        {
            "audio_features": audio_features,
            "audio_length": audio_length,
            "text_features": np.zeros([2, 4, 384], "float32"),
            "text_length": np.array([3, 2], "int32"),
        }
    )
    expected = dict(expected, text_attention=np.zeros([2, 4], "float32"))
    assert_answers_match(answer, expected, 1e-4)


def test_raw_signature_matches_the_offline_feature_path(full):
    loaded = tf.saved_model.load(full["export_dir"])
    request = raw_request(full["text_encoder"])
    # Different lengths on both sides, so both are padded in the batch.
    assert len(set(request["waveform_length"])) == 2
    assert len(set(request["attention_mask"].sum(axis=1))) == 2
    answer = loaded.signatures["serving_default"](**_as_tensors(request))
    expected = full["model"](offline_features(full["settings"], full["text_encoder"]))
    assert_answers_match(answer, expected, atol=1e-4)


def test_features_signature_matches_the_in_process_model(full):
    loaded = tf.saved_model.load(full["export_dir"])
    inputs = random_features(78, 384)
    answer = loaded.signatures["features"](**_as_tensors(inputs))
    assert_answers_match(answer, full["model"](inputs), atol=1e-5)


def _pad_like_tf_serving(value, length):
    """Pads axis 1 to `length` with the tensor's first element, as TF Serving's
    `pad_variable_length_inputs` does when it batches requests together."""
    padding = [(0, 0)] * value.ndim
    padding[1] = (0, length - value.shape[1])
    return np.pad(value, padding, constant_values=value.flat[0])


def test_raw_signature_ignores_tf_serving_batch_padding(full):
    loaded = tf.saved_model.load(full["export_dir"])
    request = raw_request(full["text_encoder"])
    request["waveform"][0, 0] = 0.5  # a non-zero pad value
    plain = loaded.signatures["serving_default"](**_as_tensors(request))
    padded_request = dict(request)
    for name, extra in (("waveform", 4000), ("input_ids", 5), ("attention_mask", 5)):
        padded_request[name] = _pad_like_tf_serving(
            request[name], request[name].shape[1] + extra
        )
    # The batching pads attention_mask with 1: padding looks like real tokens.
    assert padded_request["attention_mask"][:, -1].tolist() == [1, 1]
    padded = loaded.signatures["serving_default"](**_as_tensors(padded_request))
    np.testing.assert_allclose(
        padded["probabilities"].numpy(), plain["probabilities"].numpy(), atol=1e-5
    )
    np.testing.assert_array_equal(padded["class_id"].numpy(), plain["class_id"].numpy())
    for modality in ("audio", "text"):
        key = f"{modality}_attention"
        length = plain[key].shape[1]
        assert padded[key].shape[1] > length
        np.testing.assert_allclose(padded[key].numpy()[:, :length], plain[key].numpy(), atol=1e-5)
        np.testing.assert_allclose(padded[key].numpy()[:, length:], 0.0, atol=1e-6)


def test_raw_signature_truncates_tokens_to_max_tokens(full):
    loaded = tf.saved_model.load(full["export_dir"])
    max_tokens = full["settings"]["max_tokens"]
    long_text = " ".join(["wonderful"] * (max_tokens + 40))
    tokenizer = full["text_encoder"].tokenizer
    untruncated = tokenizer([long_text], truncation=False)["input_ids"]
    assert len(untruncated[0]) > max_tokens
    waveform, waveform_length = pad(waveforms()[:1])
    answer = loaded.signatures["serving_default"](
        waveform=tf.constant(waveform),
        waveform_length=tf.constant(waveform_length),
        input_ids=tf.constant(untruncated, tf.int32),
        attention_mask=tf.ones([1, len(untruncated[0])], tf.int32),
    )
    assert answer["text_attention"].shape == (1, max_tokens)
    np.testing.assert_allclose(answer["text_attention"].numpy().sum(), 1.0, atol=1e-5)


def _graph_ops(export_dir):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as stream:
        saved_model.ParseFromString(stream.read())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def test_exported_graph_has_only_stock_ops_and_no_cudnn(full):
    ops = _graph_ops(full["export_dir"])
    # The raw graph really is in there: the STFT and BERT's einsums.
    assert {"RFFT", "Einsum"} <= ops
    assert not [op for op in ops if "Cudnn" in op]
    # Every op must be registered in stock TensorFlow (TF Serving has no others);
    # function calls name functions of the graph's own library, not ops.
    unregistered = [
        op for op in ops if op_def_registry.get(op) is None and not op.startswith("__inference")
    ]
    assert not unregistered


def test_assets_extra_describe_the_model_and_ship_the_tokenizer(full):
    export_dir = full["export_dir"]
    with open(os.path.join(export_dir, "assets.extra", "smcn.json"), encoding="utf-8") as stream:
        description = json.load(stream)
    assert description["class_names"] == CLASS_NAMES
    assert description["model_config"]["variant"] == "smcn"
    assert description["feature_settings"] == full["settings"]
    assert description["signatures"] == signature_contract(78, 384, 3)
    assert set(description["signatures"]) == set(SIGNATURES) == {"serving_default", "features"}
    assert description["tokenizer"]["max_tokens"] == 150
    tokenizer_dir = os.path.join(export_dir, "assets.extra", "tokenizer")
    assert {"vocab.txt", "tokenizer_config.json"} <= set(os.listdir(tokenizer_dir))

    tokenizer = load_tokenizer(export_dir)
    texts = TEXTS + ["Émotions, punctuation... and UNSEEN-words 123!"]
    original = full["text_encoder"].tokenizer
    for text in texts:
        assert tokenizer(text, truncation=True, max_length=150)["input_ids"] == original(
            text, truncation=True, max_length=150
        )["input_ids"]


def test_warmup_requests_parse_as_prediction_logs(full):
    from tensorflow_serving.apis import prediction_log_pb2  # a dependency in setup.py

    path = os.path.join(full["export_dir"], "assets.extra", "tf_serving_warmup_requests")
    signatures = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        signatures.append(request.model_spec.signature_name)
        assert set(request.inputs) == set(SIGNATURES[request.model_spec.signature_name]["inputs"])
    assert signatures == ["serving_default", "features"]


def test_export_requires_feature_settings(tmp_path):
    model = build_smcn("audio", **TINY)
    with pytest.raises(ValueError, match="needs feature_settings"):
        export_model(model, str(tmp_path), "smcn")


def test_export_checks_feature_settings_against_the_model(tmp_path):
    model = build_smcn("smcn", class_names=CLASS_NAMES, **TINY)
    with pytest.raises(ValueError, match="text_dim"):
        export_model(
            model, str(tmp_path), feature_settings=feature_settings("x", text_dim=768)
        )
    with pytest.raises(ValueError, match="text_encoder"):
        export_model(
            model, str(tmp_path), feature_settings=feature_settings(str(tmp_path / "missing"))
        )
    assert not os.path.exists(tmp_path / "smcn")


def test_export_rejects_bad_names(tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        export_model(
            build_smcn("audio", **TINY), str(tmp_path), "my model",
            feature_settings=feature_settings("x"),
        )


def test_export_from_run_reads_the_runs_feature_settings(tmp_path):
    run = tmp_path / "run"
    (run / "all").mkdir(parents=True)
    model = build_smcn("audio", class_names=CLASS_NAMES, **TINY)
    model.save(run / "all" / "model.keras")
    base = str(tmp_path / "export")
    with pytest.raises(ValueError, match=r"run[/\\]features\.json is missing"):
        export_from_run(str(run / "all" / "model.keras"), base)
    settings = feature_settings("unused", max_tokens=None, pooling=4, max_frames=100)
    (run / "features.json").write_text(json.dumps(dict(settings, audio_dim=80)))
    with pytest.raises(ValueError, match=r"features\.json: `audio_dim` is 80"):
        export_from_run(str(run / "all" / "model.keras"), base)
    (run / "features.json").write_text(json.dumps(settings))
    path = export_from_run(str(run / "all" / "model.keras"), base, "emotion", version=3)
    assert path == os.path.join(base, "emotion", "3")
    with open(os.path.join(path, "assets.extra", "smcn.json"), encoding="utf-8") as stream:
        description = json.load(stream)
    assert description["audio"]["pooling"] == 4
    assert description["audio"]["max_frames"] == 100
    assert description["tokenizer"]["directory"] is None
    with pytest.raises(ValueError, match="holds no tokenizer"):
        load_tokenizer(path)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_trains_and_exports_in_float32(policy, tmp_path):
    from smcn_tf.export.exporter import serving_copy
    from smcn_tf.model.smcn import dtype_policy

    rng = np.random.default_rng(2)
    inputs = random_features(78, 384)
    labels = rng.integers(0, len(CLASS_NAMES), 3)
    with dtype_policy(policy):
        keras.utils.set_random_seed(5)
        model = build_smcn("audio", class_names=CLASS_NAMES, **TINY)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(
            tf.data.Dataset.from_tensors((inputs, labels)).repeat(3), verbose=0
        )
        in_process = model(inputs)
    assert np.all(np.isfinite(history.history["loss"]))
    # The GRUs ran in reduced precision; the softmax and the loss in float32.
    assert model.get_layer("audio_gru").compute_dtype == policy.split("_")[1]
    assert in_process["probabilities"].dtype == "float32"
    assert in_process["audio_attention"].dtype == "float32"

    settings = feature_settings("not-needed-for-audio", max_tokens=None)
    export_dir = export_model(model, str(tmp_path), "smcn", feature_settings=settings)
    loaded = tf.saved_model.load(export_dir)
    answer = loaded.signatures["features"](**_as_tensors(inputs))
    assert answer["probabilities"].dtype == tf.float32
    float32_model = serving_copy(model)
    assert float32_model.get_layer("audio_gru").compute_dtype == "float32"
    expected = dict(float32_model(inputs))
    expected["text_attention"] = np.zeros(inputs["text_features"].shape[:2], "float32")
    # The export is the same weights computed in float32 ...
    assert_answers_match(answer, expected, atol=1e-6)
    # ... so it agrees with the in-process mixed-precision model up to its rounding.
    np.testing.assert_allclose(
        answer["probabilities"].numpy(), np.asarray(in_process["probabilities"]), atol=3e-2
    )
