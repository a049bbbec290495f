"""The Projector: embeddings, metadata and config, read back."""

import os

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

from smcn_tf.training import board_testing as bt
from smcn_tf.training.board_testing import CLASSES
from smcn_tf.training.embeddings import log_embeddings
from smcn_tf.training.summaries import EMBEDDING_OUTPUTS, PROJECTOR_README_TAG


@pytest.fixture(scope="module")
def model():
    return bt.tiny_model(seed=0)


def test_projector_config_points_at_files_that_exist(model, tmp_path):
    log_dir = str(tmp_path / "projector")
    names = log_embeddings(log_dir, model, bt.dataset(count=10, batch_size=4), CLASSES)

    assert sorted(names) == sorted(EMBEDDING_OUTPUTS)
    config = projector_config_pb2.ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as stream:
        text_format.Parse(stream.read(), config)
    checkpoint = tf.train.latest_checkpoint(log_dir)
    assert checkpoint is not None
    with open(os.path.join(log_dir, "checkpoint")) as stream:
        assert not os.path.isabs(stream.read().split('"')[1])  # relative: the run can move
    shapes = dict(tf.train.list_variables(checkpoint))
    assert len(config.embeddings) == 4
    for embedding in config.embeddings:
        assert not os.path.isabs(embedding.metadata_path)
        assert os.path.isfile(os.path.join(log_dir, embedding.metadata_path))
        assert shapes[embedding.tensor_name] == [10, 8]  # 10 utterances, 2 x 4 GRU units
    with open(os.path.join(log_dir, "metadata.tsv")) as stream:
        rows = stream.read().splitlines()
    assert len(rows) == 10 + 1
    assert rows[0] == "utterance_id\tlabel\tprediction\tcorrect"
    assert rows[1].split("\t")[:2] == ["utt000", "angry"]
    # The directory is a TensorBoard run (the Projector only looks in runs).
    assert PROJECTOR_README_TAG in bt.accumulator(log_dir).Tags()["tensors"]
    with pytest.raises(ValueError, match="include_metadata"):
        log_embeddings(log_dir, model, bt.dataset(metadata=False), CLASSES)
