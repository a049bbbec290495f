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
def demo_tiny_run(demo_features, tmp_path_factory):
    """`smcn train` on the demo features at tiny sizes, fold Session2 only, run once.

    4 steps in 2 epochs of 2, 4 units: wiring, not accuracy. The tests of what
    `smcn train` writes and prints read it (cli_test, train_test); none may
    change it (copy it first). Returns (run directory, what `smcn train`
    printed on stdout).
    """
    import contextlib
    import io

    from smcn_tf.cli import main

    run_dir = str(tmp_path_factory.mktemp("demo_tiny_run") / "run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([
            "train", "--data", demo_features, "--run-dir", run_dir, "--fold", "Session2",
            "--verbose", "0", "--config", str(REPOSITORY / "configs" / "demo.yaml"),
            "--set", "training.steps=4", "--set", "training.steps_per_epoch=2",
            "--set", "model.hidden_units=4", "--set", "model.head_units=4",
        ])
    assert code == 0, printed.getvalue()[-3000:]
    return run_dir, printed.getvalue()


# Tests that only wait on child processes (see tests/background.py): their
# children start with the session and run beside the in-process tests, and
# their modules run last, when the children are done or nearly.


def _uses_early_jobs(item):
    return "early" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """Modules with tests on early jobs go last, each in its own order."""
    late = {item.getparent(pytest.Module) for item in items if _uses_early_jobs(item)}
    items[:] = sorted(items, key=lambda item: item.getparent(pytest.Module) in late)


_EARLY_JOBS = []  # the session's EarlyJobs, for the terminal summary


@pytest.fixture(scope="session", autouse=True)
def _early_jobs(request):
    """Starts the child-process jobs of the selected tests' modules (`early_jobs`)."""
    from tests.background import EarlyJobs

    jobs = EarlyJobs()
    _EARLY_JOBS.append(jobs)
    by_module = {}
    for item in request.session.items:
        if _uses_early_jobs(item):
            by_module.setdefault(item.getparent(pytest.Module), []).append(item)
    try:
        for module, items in by_module.items():
            module.obj.early_jobs(jobs, request, items)
        jobs.start()
        yield jobs
    finally:
        jobs.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With --durations: when each early job ran (seconds after the session's first test)."""
    if config.getoption("durations", None) is None or not _EARLY_JOBS:
        return
    timings = _EARLY_JOBS[0].timings
    if timings:
        terminalreporter.write_sep("=", "early jobs (child processes beside the tests)")
        for key, (start, end) in sorted(timings.items(), key=lambda entry: entry[1][0]):
            ran = f"{end - start:7.1f}s" if end is not None else "unfinished"
            terminalreporter.write_line(f"{ran}  {key}  (from {start:.0f}s)")
        if _EARLY_JOBS[0].first_wait is not None:
            terminalreporter.write_line(
                f"(the tests first waited for a job at {_EARLY_JOBS[0].first_wait:.0f}s)"
            )


@pytest.fixture(scope="session")
def early(_early_jobs):
    """`early(key)`: the value of the early job `key` (see tests/background.py)."""
    return _early_jobs.result


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
