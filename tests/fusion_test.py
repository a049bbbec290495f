"""Fusion really works: on held-out demo sessions SMCN beats each modality alone.

The demo corpus puts arousal only in the voice and valence only in the words,
so audio alone confuses angry with happy and text alone angry with sad.
SMCN must beat both unimodal variants by at least 10 points of UA.
"""

import os

import pytest

from smcn_tf.config import load_config
from smcn_tf.train import run_experiment

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
HELD_OUT = ["Session2", "Session5"]


@pytest.fixture(scope="module")
def pooled_ua(demo_features, tmp_path_factory):
    scores = {}
    for variant in ("smcn", "audio", "text"):
        config = load_config(
            os.path.join(CONFIGS, "demo.yaml"),
            [f"model.variant={variant}", f"evaluation.folds={HELD_OUT}",
             "evaluation.final_model=false"],
        )
        run_dir = str(tmp_path_factory.mktemp(variant))
        summary = run_experiment(config, demo_features, run_dir, verbose=0, log=print)
        scores[variant] = summary["pooled"]["unweighted_accuracy"]
    print("pooled UA on", HELD_OUT, {k: round(100 * v, 2) for k, v in scores.items()})
    return scores


def test_smcn_beats_audio_alone_by_ten_points(pooled_ua):
    assert pooled_ua["smcn"] >= pooled_ua["audio"] + 0.10, pooled_ua


def test_smcn_beats_text_alone_by_ten_points(pooled_ua):
    assert pooled_ua["smcn"] >= pooled_ua["text"] + 0.10, pooled_ua


def test_each_modality_alone_stays_near_its_ceiling(pooled_ua):
    # Each modality can separate 3 of the 4 classes, so neither should be
    # near 100%: if one were, the corpus would no longer need fusion.
    assert pooled_ua["audio"] < 0.85 and pooled_ua["text"] < 0.85, pooled_ua
