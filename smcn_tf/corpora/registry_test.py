"""Tests for the corpus registry, and for how `smcn prepare` picks its corpus."""

import os
import subprocess
import sys

import pytest

from smcn_tf.corpora import demo, iemocap, registry

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")


def test_names_and_defaults():
    assert registry.corpus_names() == ("iemocap", "demo", "meld", "demo-meld", "csv")
    defaults = {name: registry.get_corpus(name).defaults for name in registry.corpus_names()}
    assert {name: d.max_seconds for name, d in defaults.items()} == {
        "iemocap": None, "demo": None, "meld": 30.0, "demo-meld": 30.0, "csv": None,
    }
    assert [name for name, d in defaults.items() if d.real_release] == ["iemocap", "meld"]
    assert registry.get_corpus("csv").root_kind == "file"
    assert registry.get_corpus("iemocap").root_kind == "directory"


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(ValueError) as caught:
        registry.get_corpus("cmu-mosei")
    assert str(caught.value) == (
        "Unknown corpus 'cmu-mosei'; known corpora: "
        "['iemocap', 'demo', 'meld', 'demo-meld', 'csv']."
    )
    with pytest.raises(ValueError, match="Unknown corpus None"):
        registry.get_corpus(None)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return demo.write_demo_corpus(
        tmp_path_factory.mktemp("registry") / "demo", seed=0, utterances_per_speaker=4
    )


def test_iemocap_layout_load(demo_root):
    loaded = registry.get_corpus("demo").load(demo_root)
    parsed = iemocap.parse_iemocap(demo_root, strict=False)
    assert isinstance(loaded, registry.LoadedCorpus)
    assert loaded.name == "demo" and loaded.root == os.fspath(demo_root)
    assert loaded.utterances == parsed.utterances
    assert loaded.class_names == iemocap.CLASS_NAMES
    # report.json's `parser` entry, as before the registry.
    assert loaded.parser_report == {
        "dropped_labels": parsed.dropped_labels,
        "skipped": parsed.skipped,
        "kept_labels": parsed.kept_labels,
        "counts": parsed.counts(),
    }
    assert loaded.dropped == {
        f"label {label} (not one of the classes)": count
        for label, count in parsed.dropped_labels.items()
    }
    assert loaded.listed_counts == parsed.counts()["by_group"]
    assert loaded.counts_check["reference"] is None and loaded.counts_check["warnings"] == []

    # The same tree as the real release: compared with the published counts.
    check = registry.get_corpus("iemocap").load(demo_root).counts_check
    assert check["reference"] == "IEMOCAP_full_release, 4-class set (5531 utterances)"
    assert check["warnings"] == iemocap.compare_to_expected(parsed.counts())

    # A missing wav is a skip, still listed in its session.
    first = loaded.utterances[0]
    os.rename(first.audio_path, first.audio_path + ".away")
    try:
        again = registry.get_corpus("demo").load(demo_root)
        assert again.dropped["missing audio file"] == 1
        assert again.listed_counts == loaded.listed_counts
        with pytest.raises(ValueError, match="missing audio file"):
            registry.get_corpus("demo").load(demo_root, strict=True)
    finally:
        os.rename(first.audio_path + ".away", first.audio_path)


def test_options_a_corpus_does_not_take(demo_root):
    message = r"'demo' does not take the option\(s\) classes; it takes none"
    with pytest.raises(ValueError, match=message):
        registry.get_corpus("demo").load(demo_root, classes=["a"])


def test_register_corpus(monkeypatch):
    registry.corpus_names()  # the built-ins first
    monkeypatch.setattr(registry, "_ADAPTERS", dict(registry._ADAPTERS))

    class Tiny(registry.CorpusAdapter):
        name = "tiny"

        def load(self, root, *, strict=False, **options):
            raise NotImplementedError

    adapter = registry.register_corpus(Tiny())
    assert registry.get_corpus("tiny") is adapter
    assert registry.corpus_names()[-1] == "tiny"
    with pytest.raises(ValueError, match="already registered"):
        registry.register_corpus(Tiny())
    assert registry.register_corpus(Tiny(), replace=True) is not adapter
    with pytest.raises(ValueError, match="non-empty name"):
        registry.register_corpus(registry.CorpusAdapter())


def test_reason_kinds():
    assert registry.reason_kind("missing audio file /a.wav (line 3)") == "missing audio file"
    assert registry.reason_kind("shorter than 0.1 s: 0.0001 s (1 sample)") == "shorter than 0.1 s"
    skipped = [("a", "missing media file x"), ("b", "missing media file y")]
    assert registry.count_reasons(skipped) == {"missing media file": 2}


# --------------------------------------------------------------------------
# `smcn prepare`: the corpus from the command line or the config's features.corpus.
# --------------------------------------------------------------------------


@pytest.fixture
def calls(monkeypatch):
    """Replace `prepare_corpus` with a recorder: the CLI's choice is what is tested."""
    from smcn_tf.records import prepare

    recorded = []

    def fake_prepare_corpus(corpus, data_dir, out_dir, **kwargs):
        recorded.append({"corpus": corpus, "data_dir": data_dir, **kwargs})
        return {"num_examples": 1}

    monkeypatch.setattr(prepare, "prepare_corpus", fake_prepare_corpus)
    return recorded


def _prepare(*arguments):
    from smcn_tf import cli

    return cli.main(["prepare", *arguments, "--out", "unused", "--quiet"])


def test_cli_takes_the_corpus_from_the_config(calls, capsys):
    demo_config = os.path.join(CONFIGS, "demo.yaml")
    assert _prepare("--data-dir", "corpus", "--config", demo_config) == 0
    assert calls[-1]["corpus"] == "demo" and calls[-1]["data_dir"] == "corpus"
    assert calls[-1]["max_seconds"] is None and calls[-1]["corpus_options"] == {}

    # Both given and equal: as before.
    assert _prepare("demo", "--data-dir", "corpus", "--config", demo_config) == 0
    assert calls[-1]["corpus"] == "demo"

    # No config: the positional alone (the built-in default corpus does not count).
    assert _prepare("meld", "--data-dir", "corpus") == 0
    assert calls[-1]["corpus"] == "meld"

    # --set features.corpus is the config's corpus too.
    assert _prepare("--data-dir", "corpus", "--set", "features.corpus=demo-meld") == 0
    assert calls[-1]["corpus"] == "demo-meld"
    assert len(calls) == 4
    capsys.readouterr()


def test_cli_corpus_conflicts_are_errors(calls, capsys):
    demo_config = os.path.join(CONFIGS, "demo.yaml")
    assert _prepare("meld", "--data-dir", "corpus", "--config", demo_config) == 2
    error = capsys.readouterr().err
    assert (
        f"the command line names corpus 'meld' but features.corpus in {demo_config} is 'demo'"
        in error
    )
    assert "--set features.corpus=meld" in error
    # ... which resolves it.
    assert _prepare("meld", "--data-dir", "corpus", "--config", demo_config,
                    "--set", "features.corpus=meld") == 0
    assert calls[-1]["corpus"] == "meld"

    assert _prepare("--data-dir", "corpus") == 2
    assert "name the corpus (iemocap, demo, meld, demo-meld, csv)" in capsys.readouterr().err
    assert _prepare("--data-dir", "corpus", "--set", "features.corpus=cmu-mosei") == 2
    assert "Unknown corpus 'cmu-mosei'; known corpora: [" in capsys.readouterr().err
    assert _prepare("demo") == 2
    assert "corpus 'demo' needs --data-dir" in capsys.readouterr().err
    assert len(calls) == 1


def test_cli_help_lists_the_registered_corpora():
    completed = subprocess.run(
        [sys.executable, "-m", "smcn_tf.cli", "prepare", "--help"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0
    assert "{iemocap,demo,meld,demo-meld,csv}" in completed.stdout
    assert "--manifest" in completed.stdout and "--label-map" in completed.stdout
