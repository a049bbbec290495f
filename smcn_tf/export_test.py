"""The export answers like the in-process model, in TF Serving's layout."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from smcn_tf.export import export_model, existing_versions
from smcn_tf.model import build_smcn

TINY = dict(audio_dim=6, text_dim=5, num_classes=3, hidden_units=4, head_units=4)


def _batch():
    rng = np.random.default_rng(0)
    return {
        "audio_features": rng.normal(size=(3, 8, 6)).astype("float32"),
        "audio_length": np.array([8, 2, 5], "int32"),
        "text_features": rng.normal(size=(3, 4, 5)).astype("float32"),
        "text_length": np.array([1, 4, 3], "int32"),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export"))
    model = build_smcn("smcn", class_names=["angry", "happy", "sad"], **TINY)
    first = export_model(model, base, "smcn")
    second = export_model(model, base, "smcn")
    return model, base, first, second


def test_versions_grow_in_the_serving_layout_and_nothing_half_written_remains(exported):
    _, base, first, second = exported
    assert first == os.path.join(base, "smcn", "1")
    assert second == os.path.join(base, "smcn", "2")
    assert existing_versions(os.path.join(base, "smcn")) == [1, 2]
    assert sorted(os.listdir(os.path.join(base, "smcn"))) == ["1", "2"]
    assert os.path.isfile(os.path.join(first, "saved_model.pb"))
    model = exported[0]
    with pytest.raises(ValueError, match="already exists"):
        export_model(model, base, "smcn", version=2)


def test_export_answers_like_the_in_process_model(exported):
    model, _, first, _ = exported
    inputs = _batch()
    expected = model(inputs)
    loaded = tf.saved_model.load(first)
    for signature in ("serving_default", "features"):
        answer = loaded.signatures[signature](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        np.testing.assert_allclose(
            answer["probabilities"].numpy(), np.asarray(expected["probabilities"]), atol=1e-6
        )
        class_id = np.asarray(expected["probabilities"]).argmax(-1)
        np.testing.assert_array_equal(answer["class_id"].numpy(), class_id)
        names = np.array([b"angry", b"happy", b"sad"])
        np.testing.assert_array_equal(answer["class_name"].numpy(), names[class_id])
        for modality in ("audio", "text"):
            np.testing.assert_allclose(
                answer[f"{modality}_attention"].numpy(),
                np.asarray(expected[f"{modality}_attention"]),
                atol=1e-6,
            )


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


def test_exported_graph_has_only_stock_ops_and_no_cudnn(exported):
    ops = _graph_ops(exported[2])
    assert not [op for op in ops if "Cudnn" in op]
    # Every op must be registered in stock TensorFlow (TF Serving has no others);
    # function calls name functions of the graph's own library, not ops.
    unregistered = [
        op for op in ops if op_def_registry.get(op) is None and not op.startswith("__inference")
    ]
    assert not unregistered


def test_export_rejects_bad_names(tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        export_model(build_smcn("audio", **TINY), str(tmp_path), "my model")
