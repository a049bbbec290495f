"""Shared pytest fixtures: the demo corpus and its prepared features, made once.

Also the setting of the `>>>` examples (pytest.ini turns on
`--doctest-modules`): each runs in a fresh temporary directory, so an example
may write relative paths, with the repository's `configs/` linked there.
"""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPOSITORY = pathlib.Path(__file__).resolve().parent

# Never collected, also with `pytest .` and --doctest-modules: the scripts run
# things when imported, work/ holds demo outputs, serving/ deployment files.
collect_ignore = ["scripts", "work", "serving", "docs", "setup.py"]


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """The default demo corpus (5 sessions, 240 utterances) in IEMOCAP's layout."""
    from smcn_tf.corpora.demo import write_demo_corpus

    return write_demo_corpus(str(tmp_path_factory.mktemp("demo") / "corpus"), seed=0)


@pytest.fixture(scope="session")
def demo_features(demo_corpus, tmp_path_factory):
    """The demo corpus prepared with the real log-Mel layer and MiniLM encoder.

    MiniLM is installed by `make install`; without it this fails (with the
    install hint of `default_checkpoint_dir`), it does not skip.
    """
    from smcn_tf.records.prepare import prepare_corpus

    out = str(tmp_path_factory.mktemp("demo") / "features")
    prepare_corpus(
        "demo", demo_corpus, out, pooling=5, max_frames=500, max_tokens=150,
        shard_size=64, progress=False,
    )
    return out


@pytest.fixture(scope="session")
def demo_features_augmented(demo_corpus, demo_features, tmp_path_factory):
    """`demo_features` plus speed-perturbed copies (0.9x, 1.1x) in `augmented/`.

    A copy of the prepared records, prepared again with speed perturbation:
    the main shards are reused as they are, only the copies are computed.
    """
    import shutil

    from smcn_tf.records.prepare import prepare_corpus

    out = str(tmp_path_factory.mktemp("demo") / "features-augmented")
    shutil.copytree(demo_features, out)
    prepare_corpus(
        "demo", demo_corpus, out, pooling=5, max_frames=500, max_tokens=150,
        shard_size=64, progress=False, speed_perturbation=(0.9, 1.1),
    )
    return out


@pytest.fixture(scope="session")
def doctest_text_encoder():
    """The `encoder` of the `TextEncoder` method examples (loaded once)."""
    from smcn_tf.features.text import TextEncoder

    return TextEncoder(max_tokens=150)


@pytest.fixture(scope="session")
def doctest_export(tmp_path_factory):
    """The `export/smcn` of the serving examples: a tiny model with SMCN's contract."""
    from tests.serving_support import write_contract_model

    base = tmp_path_factory.mktemp("doctest_export") / "smcn"
    write_contract_model(str(base), version=1)
    return base


# Examples that read what a user would have made before: an export of
# `smcn export` (the contract model stands in) or a loaded `encoder`.
_SERVING_EXAMPLES = ("smcn_tf.serving.local.server", "smcn_tf.serving.local.model_store")
_ENCODER_EXAMPLES = "smcn_tf.features.text.TextEncoder."


@pytest.fixture(autouse=True)
def _doctest_setting(request):
    doctest = getattr(request.node, "dtest", None)  # only `>>>` examples have one
    if doctest is None:
        return
    directory = request.getfixturevalue("tmp_path")
    (directory / "configs").symlink_to(REPOSITORY / "configs")
    if doctest.name.startswith(_SERVING_EXAMPLES):
        (directory / "export").mkdir()
        (directory / "export" / "smcn").symlink_to(request.getfixturevalue("doctest_export"))
    if doctest.name.startswith(_ENCODER_EXAMPLES):
        doctest.globs["encoder"] = request.getfixturevalue("doctest_text_encoder")
    monkeypatch = request.getfixturevalue("monkeypatch")
    if doctest.name.startswith("smcn_tf.corpora.registry."):
        # A corpus an example registers is forgotten after it.
        from smcn_tf.corpora import registry

        registry.corpus_names()  # the built-ins, before the copy
        monkeypatch.setattr(registry, "_ADAPTERS", dict(registry._ADAPTERS))
    monkeypatch.chdir(directory)
