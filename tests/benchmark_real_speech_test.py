"""Fast checks of scripts/benchmark_real_speech.py, without TensorFlow training.

The script itself (openSMILE, `smcn prepare`, `smcn train` on EmoDB) is not run
here: it needs the corpus and hours. These tests cover its pieces: the EmoDB
manifest, the reference classifier, the mean ± std formatting and what
`--quick` resolves to.
"""

import csv
import importlib.util
import os

import numpy as np
import pytest
import soundfile

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPOSITORY, "scripts", "benchmark_real_speech.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_real_speech", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_wav(path):
    soundfile.write(path, np.zeros(160, dtype=np.float32), 16000)


def test_manifest_from_emodb_file_names(bench, tmp_path):
    corpus = tmp_path / "wav"
    corpus.mkdir()
    for name in ("03a01Fa.wav", "16b10Tb.wav", "09a05Wc.wav"):
        _write_wav(corpus / name)
    (corpus / "notes.txt").write_text("not a wav")
    manifest = tmp_path / "out" / "emodb.csv"

    assert bench.write_manifest(str(corpus), str(manifest)) == 3
    with open(manifest, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["id"] for row in rows] == ["03a01Fa", "09a05Wc", "16b10Tb"]
    first, second, third = rows
    assert first == {
        "id": "03a01Fa",
        "path": str(corpus / "03a01Fa.wav"),
        "transcript": "Der Lappen liegt auf dem Eisschrank.",
        "label": "happiness",
        "group": "spk03-08",
        "speaker": "spk03",
    }
    assert (second["label"], second["group"], second["speaker"]) == ("anger", "spk09-10", "spk09")
    assert (third["label"], third["group"]) == ("sadness", "spk15-16")
    assert third["transcript"].startswith("Die wird auf dem Platz")
    assert bench.read_manifest(str(manifest)) == rows


def test_manifest_rejects_other_names(bench, tmp_path):
    _write_wav(tmp_path / "03a01Fa.wav")
    _write_wav(tmp_path / "speaker3_happy.wav")
    with pytest.raises(ValueError, match="not an EmoDB file name"):
        bench.write_manifest(str(tmp_path), str(tmp_path / "m.csv"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .wav"):
        bench.write_manifest(str(empty), str(tmp_path / "m.csv"))


def _separable(seed=0, per_class=12):
    """3 classes, far apart in 2 of 5 dimensions; 5 folds holding every class."""
    rng = np.random.default_rng(seed)
    centres = np.array([[8.0, 0.0], [-8.0, 0.0], [0.0, 8.0]])
    features, labels, groups = [], [], []
    for label, centre in enumerate(centres):
        for item in range(per_class):
            informative = centre + rng.normal(scale=0.5, size=2)
            features.append(np.concatenate([informative, rng.normal(size=3)]))
            labels.append(label)
            groups.append(f"fold{item % 5}")
    return np.array(features), np.array(labels), np.array(groups)


@pytest.mark.parametrize("kind, C, name", [("lr", 0.1, "LogisticRegression"),
                                          ("svm", 0.01, "LinearSVC")])
def test_reference_separable_case_scores_100(bench, kind, C, name):
    features, labels, groups = _separable()
    folds = [f"fold{index}" for index in range(5)]
    scores = bench.fit_reference(features, labels, groups, folds, kind, C)
    assert scores["unweighted_accuracy"] == 1.0 and scores["weighted_accuracy"] == 1.0
    assert set(scores["folds"]) == set(folds)
    assert sum(fold["test_items"] for fold in scores["folds"].values()) == len(labels)
    # C is passed through to the fitted estimator, never chosen.
    assert scores["C"] == C
    assert scores["classifier"] == f"StandardScaler + {name}(C={C:g})"
    assert scores["converged"] is True
    assert bench.make_reference_classifier(kind, C)[-1].C == C


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_reference_fits_on_the_training_folds_only(bench):
    """A fold whose classes never appear elsewhere cannot be recognised: 0 %."""
    features, labels, groups = _separable()
    groups = np.where(labels == 2, "fold-of-class-2", "rest")
    scores = bench.fit_reference(features, labels, groups, ["fold-of-class-2"], "lr", 0.1)
    assert scores["weighted_accuracy"] == 0.0


def test_mean_std_formatting(bench):
    # Hand-computed: mean 82, deviations -2, 0, +2: sample variance (4+0+4)/2 = 4, std 2.
    assert bench.format_mean_std([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    # Two runs: mean 75.5, std = |0.70 - 0.81| / sqrt(2) = 7.778...
    assert bench.format_mean_std([0.70, 0.81]) == "75.50 ± 7.78"
    # One run: no std (ddof=1 is undefined).
    assert bench.format_mean_std([0.7312]) == "73.12"
    summary = bench.summarise([0.80, 0.82, 0.84])
    assert summary["mean"] == pytest.approx(0.82) and summary["std"] == pytest.approx(0.02)
    assert bench.summarise([0.5])["std"] is None


def test_quick_resolves_to_the_documented_settings(bench):
    settings = bench.resolve_settings(bench.build_parser().parse_args(["corpus", "--quick"]))
    assert settings["quick"] is True
    assert settings["seeds"] == 1
    assert settings["classes"] == ["4"]
    assert settings["steps"] == 60
    assert settings["systems"] == ["paper-audio", "recipe-smcn"]
    assert settings["references"] == ["egemaps-lr", "egemaps-svm", "logmel-lr"]
    assert not any(name.startswith("compare") for name in settings["references"])
    # The module docstring documents the same.
    assert "1 seed, 4 classes, `--steps 60`" in bench.__doc__
    assert "egemaps-lr,egemaps-svm,logmel-lr" in bench.__doc__
    assert "(`paper-audio,recipe-smcn`)" in bench.__doc__

    # Explicit flags win over --quick's.
    settings = bench.resolve_settings(bench.build_parser().parse_args(
        ["corpus", "--quick", "--seeds", "2", "--classes", "7", "--systems", "paper-smcn"]))
    assert (settings["seeds"], settings["classes"], settings["systems"]) == (2, ["7"], ["paper-smcn"])


def test_default_settings(bench):
    settings = bench.resolve_settings(bench.build_parser().parse_args(["corpus"]))
    assert settings["seeds"] == 3 and settings["classes"] == ["4", "7"]
    assert settings["systems"] == ["paper-audio", "recipe-audio"]
    assert settings["steps"] is None
    assert settings["references"] == [
        "compare-lr", "compare-svm", "egemaps-lr", "egemaps-svm", "logmel-lr"]
    only = bench.resolve_settings(bench.build_parser().parse_args(["corpus", "--references-only"]))
    assert only["systems"] == [] and only["references"] == settings["references"]
    none = bench.resolve_settings(bench.build_parser().parse_args(["corpus", "--systems", "none"]))
    assert none["systems"] == []
    with pytest.raises(SystemExit):
        bench.resolve_settings(bench.build_parser().parse_args(["corpus", "--systems", "nope"]))


def test_paper_systems_train_600_steps_unless_steps_is_given(bench, tmp_path):
    settings = bench.resolve_settings(bench.build_parser().parse_args(
        ["corpus", "--set", "training.learning_rate=0.001"]))
    runner = bench.Benchmark("corpus", str(tmp_path), settings)
    overrides = runner.train_overrides("paper-smcn")
    assert "training.steps=600" in overrides and "model.variant=smcn" in overrides
    assert "training.learning_rate=0.001" in overrides
    assert "evaluation.protocol=loso" in overrides
    assert not any(o.startswith("training.steps") for o in runner.train_overrides("recipe-audio"))

    settings = bench.resolve_settings(bench.build_parser().parse_args(["corpus", "--steps", "60"]))
    runner = bench.Benchmark("corpus", str(tmp_path), settings)
    for name in ("paper-audio", "recipe-smcn"):
        steps = [o for o in runner.train_overrides(name) if o.startswith("training.steps")]
        assert steps == ["training.steps=60"]


def test_features_section_follows_feature_overrides(bench):
    section = bench.features_section(
        bench.PAPER_PRESET, ["features.corpus=csv", "features.speed_perturbation=[0.9, 1.1]",
                             "training.steps=5"])
    assert section["corpus"] == "csv" and section["speed_perturbation"] == [0.9, 1.1]
    assert section["pooling"] == 5 and "steps" not in section


def test_missing_opensmile_says_how_to_install(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "opensmile_available", lambda: False)
    code = bench.main([str(tmp_path), "--work", str(tmp_path / "work"), "--references-only"])
    assert code == 2
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err


def test_an_asked_for_system_without_its_preset_stops(bench, tmp_path, monkeypatch, capsys):
    missing = bench.System(str(tmp_path / "no_such_preset.yaml"), "audio")
    monkeypatch.setitem(bench.SYSTEMS, "recipe-audio", missing)
    code = bench.main([str(tmp_path), "--work", str(tmp_path / "work"),
                       "--systems", "recipe-audio", "--references", "none"])
    assert code == 2
    assert "no_such_preset.yaml does not exist" in capsys.readouterr().err
