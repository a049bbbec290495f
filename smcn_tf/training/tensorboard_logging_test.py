"""TensorBoard views: read the event files back and check what a researcher would see."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.projector import projector_config_pb2

from smcn_tf import evaluate
from smcn_tf.training import tensorboard_logging as tb
from smcn_tf.config import Config
from smcn_tf.model.smcn import build_smcn

CLASSES = ["angry", "happy", "neutral", "sad"]
AUDIO_DIM, TEXT_DIM = 12, 6  # 12 = 4 log-Mel bands + deltas + delta-deltas


def _accumulator(log_dir):
    accumulator = event_accumulator.EventAccumulator(
        log_dir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0}
    )
    accumulator.Reload()
    return accumulator


def _image(accumulator, tag):
    """(height, width) of the PNG logged under tag, and the size recorded with it."""
    (event,) = accumulator.Tensors(tag)
    strings = tf.make_ndarray(event.tensor_proto)
    image = tf.image.decode_png(strings[2]).numpy()
    return image.shape[:2], (int(strings[1]), int(strings[0]))


def _text(accumulator, tag):
    (event,) = accumulator.Tensors(tag)
    return tf.make_ndarray(event.tensor_proto).item().decode("utf-8")


def _random_items(count, seed=0):
    rng = np.random.default_rng(seed)
    audio_length = rng.integers(3, 9, count).astype(np.int32)
    text_length = rng.integers(2, 6, count).astype(np.int32)
    audio = rng.normal(size=(count, 8, AUDIO_DIM)).astype(np.float32)
    text = rng.normal(size=(count, 5, TEXT_DIM)).astype(np.float32)
    audio[np.arange(8)[None, :] >= audio_length[:, None]] = 0.0
    text[np.arange(5)[None, :] >= text_length[:, None]] = 0.0
    inputs = {
        "audio_features": audio,
        "audio_length": audio_length,
        "text_features": text,
        "text_length": text_length,
    }
    labels = (np.arange(count) % len(CLASSES)).astype(np.int32)
    ids = np.array([f"utt{index:03d}".encode() for index in range(count)])
    return inputs, labels, ids


def _dataset(count=12, batch_size=4, metadata=True, seed=0):
    inputs, labels, ids = _random_items(count, seed)
    if metadata:
        elements = (inputs, labels, {"utterance_id": ids})
    else:
        elements = (inputs, labels)
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_smcn(
        "smcn", num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, hidden_units=4,
        head_units=4,
    )


def test_held_out_confusion_matrix_matches_a_hand_count_and_results_json(tmp_path):
    labels = [0, 0, 1, 1, 2, 3, 3, 3]
    predictions = [0, 1, 1, 1, 2, 3, 0, 3]
    by_hand = [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [1, 0, 0, 2]]
    log_dir = str(tmp_path / "held_out")

    scores = tb.log_held_out_evaluation(log_dir, labels, predictions, CLASSES, step=6)

    assert scores["confusion_matrix"] == by_hand
    assert scores == evaluate.score_predictions(labels, predictions, CLASSES)
    accumulator = _accumulator(log_dir)
    assert set(accumulator.Tags()["tensors"]) == {
        tb.CONFUSION_MATRIX_TAG, tb.CLASSIFICATION_REPORT_TAG,
    }
    assert accumulator.Tensors(tb.CONFUSION_MATRIX_TAG)[0].step == 6
    (height, width), recorded = _image(accumulator, tb.CONFUSION_MATRIX_TAG)
    assert (height, width) == recorded
    assert width > 2 * height > 400  # two square panels side by side
    report = _text(accumulator, tb.CLASSIFICATION_REPORT_TAG)
    assert "| angry | 0.5000 | 0.5000 | 0.5000 | 2 |" in report
    assert "| happy | 0.6667 | 1.0000 | 0.8000 | 2 |" in report
    assert "| sad | 1.0000 | 0.6667 | 0.8000 | 3 |" in report
    assert f"**UA** {scores['unweighted_accuracy']:.4f}" in report


def test_attention_examples_are_deterministic_and_every_attention_is_drawn(model, tmp_path):
    inputs, labels, ids = _random_items(12)
    order = np.random.default_rng(1).permutation(12)
    chosen = tb.select_attention_examples([i.decode() for i in ids], labels, per_class=2)
    shuffled = tb.select_attention_examples([ids[i].decode() for i in order], labels[order], 2)
    assert chosen == shuffled == [
        "utt000", "utt004", "utt001", "utt005", "utt002", "utt006", "utt003", "utt007"
    ]

    batch, batch_labels, batch_ids = tb.gather_examples(_dataset(), ["utt006", "utt001"])
    assert batch_ids == ["utt006", "utt001"] and batch_labels.tolist() == [2, 1]
    for row, index in enumerate((6, 1)):
        frames = inputs["audio_length"][index]
        assert batch["audio_length"][row] == frames
        np.testing.assert_array_equal(
            batch["audio_features"][row, :frames], inputs["audio_features"][index, :frames]
        )

    probe = tb.attention_probe(model)
    weights = probe(batch)
    assert sorted(key for key in weights if "/" in key) == sorted(
        f"{m}/{k}" for m in ("audio", "text") for k in ("intra", "calibration", "interaction")
    )
    np.testing.assert_allclose(
        np.asarray(weights["audio/interaction"]), np.asarray(model(batch)["audio_attention"])
    )
    for key in ("audio/intra", "text/calibration"):
        lengths = batch[f"{key.split('/')[0]}_length"]
        values = np.asarray(weights[key])
        np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-5)
        assert all(not values[row, length:].any() for row, length in enumerate(lengths))

    tokens = ["[CLS]"] + [f"w{i}" for i in range(int(batch["text_length"][0]) - 2)] + ["[SEP]"]
    log_dir = str(tmp_path / "held_out")
    tags = tb.log_attention(
        log_dir, model, batch, batch_ids, [tokens, None], step=3,
        labels=batch_labels, class_names=CLASSES,
    )
    assert tags == ["attention/utt006", "attention/utt001"]
    accumulator = _accumulator(log_dir)
    assert sorted(accumulator.Tags()["tensors"]) == sorted(tags)
    for tag in tags:
        (height, width), recorded = _image(accumulator, tag)
        assert (height, width) == recorded
        # Two columns (audio, text), four rows (spectrogram + three attentions).
        assert width == 1400 and height >= 100 + 4 * 200

    examples = tb.attention_examples(model, batch, batch_ids, [tokens, None], batch_labels, CLASSES)
    assert examples[0]["tokens"] == tokens and examples[0]["tokens_note"] is None
    assert examples[1]["tokens"] == [str(i) for i in range(int(batch["text_length"][1]))]
    assert "token positions" in examples[1]["tokens_note"]
    assert examples[0]["spectrogram"].shape == (int(batch["audio_length"][0]), 4)
    assert examples[0]["subtitle"].startswith("true: neutral   predicted: ")


def test_attention_of_a_variant_without_calibration(tmp_path):
    cat = build_smcn("cat", num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                     hidden_units=4, head_units=4)
    batch, _, ids = tb.gather_examples(_dataset(), ["utt000"])
    assert sorted(k for k in tb.attention_probe(cat).output if "/" in k) == [
        "audio/intra", "text/intra"
    ]
    tags = tb.log_attention(str(tmp_path), cat, batch, ids, None, step=0)
    (height, width), _ = _image(_accumulator(str(tmp_path)), tags[0])
    assert width == 1400 and 100 + 2 * 200 <= height < 100 + 3 * 200


def test_calibration_diagnostics_and_training_confusion_every_epoch(model, tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    held_out = _dataset(count=12, batch_size=4, seed=1)
    calibration_dir = str(tmp_path / "calibration")
    confusion_dir = str(tmp_path / "train_confusion")
    callbacks = [
        tb.CalibrationDiagnostics(calibration_dir, held_out, max_batches=2),
        tb.TrainingConfusionCallback(
            confusion_dir, _dataset(metadata=False), CLASSES, every_epochs=2
        ),
    ]
    # What `fit` does around its epochs, without the cost of tracing a train
    # step: two steps an epoch, then the epoch-end callbacks.
    model.optimizer.build(model.trainable_variables)
    for callback in callbacks:
        callback.set_model(model)
    for epoch in range(3):
        model.optimizer.iterations.assign(2 * (epoch + 1))
        for callback in callbacks:
            callback.on_epoch_end(epoch, {})
    for callback in callbacks:
        callback.on_train_end({})

    scalars = tb.read_scalars(calibration_dir)
    assert set(scalars) == set(tb.CALIBRATION_TAGS) | {tb.LEARNING_RATE_TAG}
    for tag in tb.CALIBRATION_TAGS:
        steps, values = scalars[tag]
        assert steps.tolist() == [0, 1, 2]
        if "/cosine_" in tag:
            assert np.all((values >= -1) & (values <= 1))
        else:
            assert np.all(values >= 0)
    # The learning rate of the schedule after 2, 4 and 6 steps.
    np.testing.assert_allclose(scalars[tb.LEARNING_RATE_TAG][1], [5e-3, 2.5e-3, 1.25e-3], rtol=1e-5)
    # The last epoch's values are the trained model's, on the first 8 utterances.
    first_two = held_out.take(2)
    outputs = {}
    for inputs, _, _ in first_two:
        for key, value in model(inputs).items():
            outputs.setdefault(key, []).append(np.asarray(value))
    expected = tb.calibration_statistics({k: np.concatenate(v) for k, v in outputs.items()})
    for tag, value in expected.items():
        np.testing.assert_allclose(scalars[tag][1][-1], value, rtol=1e-4, atol=1e-6)

    accumulator = _accumulator(confusion_dir)
    assert [event.step for event in accumulator.Tensors(tb.CONFUSION_MATRIX_TAG)] == [1]
    assert "| angry |" in _text(accumulator, tb.CLASSIFICATION_REPORT_TAG)


def test_calibration_diagnostics_log_what_a_variant_has(tmp_path):
    for variant, expected in (("cat", {"calibration/cosine_Fa_Ft", "calibration/mse_Fa_Ft"}),
                              ("audio", set())):
        other = build_smcn(variant, num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                           hidden_units=4, head_units=4)
        callback = tb.CalibrationDiagnostics(str(tmp_path / variant), _dataset(), max_batches=1)
        callback.set_model(other)  # not compiled: no optimizer, no learning rate
        callback.on_epoch_end(0)
        callback.on_train_end()
        assert set(tb.read_scalars(str(tmp_path / variant))) == expected


def _plugin_contents(log_dir, plugin):
    return {
        value.tag: value.metadata.plugin_data.content
        for event in tb.iter_events(log_dir)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == plugin
    }


def test_hparams_sessions_form_one_experiment(tmp_path):
    config = Config()
    config.model.variant = "inter"
    config.training.seed = 3
    scores = {"unweighted_accuracy": 0.5, "weighted_accuracy": 0.625, "weighted_f1": 0.6}
    fold_dir = str(tmp_path / "run" / "tensorboard" / "Session1")
    values = tb.log_hparams(fold_dir, config, scores)

    contents = _plugin_contents(fold_dir, hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(
        contents[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["variant"].string_value == "inter"
    assert start.hparams["fold"].string_value == "Session1"
    assert start.hparams["seed"].number_value == 3
    assert start.hparams["max_frames"].number_value == 500
    assert start.hparams["learning_rate"].number_value == pytest.approx(1e-4)
    assert start.hparams["stop_gradient_target"].bool_value is True
    assert start.hparams["audio_normalization"].string_value == "none"
    assert start.hparams["text_encoder"].string_value == "all-MiniLM-L6-v2 (default)"
    assert values["attention_units"] == 256
    experiment = hparams_metadata.parse_experiment_plugin_data(
        contents[hparams_metadata.EXPERIMENT_TAG]
    )
    assert {m.display_name for m in experiment.metric_infos} >= {"UA", "WA", "W-F1"}
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == set(values)
    # Typed, so that the HParams dashboard can filter and plot them; the
    # settings that tell runs apart come first in its table.
    assert "smcn" in [v.string_value for v in infos["variant"].domain_discrete.values]
    assert infos["learning_rate"].type == infos["seed"].type == api_pb2.DATA_TYPE_FLOAT64
    assert sorted(n for n, info in infos.items() if info.differs) == sorted(
        tb.DISTINGUISHING_HPARAMS
    )
    scalars = tb.read_scalars(fold_dir)
    assert {tag: v[1].tolist() for tag, v in scalars.items()} == {
        "scores/unweighted_accuracy": [0.5], "scores/weighted_accuracy": [0.625],
        "scores/weighted_f1": [pytest.approx(0.6)],
    }

    # Another run (another variant, a new setting) describes the same experiment.
    config.model.variant = "smcn"
    config.model.audio_normalization = "utterance"
    mean_dir = str(tmp_path / "other" / "tensorboard" / "mean")
    tb.log_hparams(mean_dir, config, scores)
    other = _plugin_contents(mean_dir, hparams_metadata.PLUGIN_NAME)
    assert other[hparams_metadata.EXPERIMENT_TAG] == contents[hparams_metadata.EXPERIMENT_TAG]
    start = hparams_metadata.parse_session_start_info_plugin_data(
        other[hparams_metadata.SESSION_START_INFO_TAG]
    )
    assert start.hparams["fold"].string_value == "mean"
    assert start.hparams["audio_normalization"].string_value == "utterance"


def test_projector_config_points_at_files_that_exist(model, tmp_path):
    log_dir = str(tmp_path / "projector")
    names = tb.log_embeddings(log_dir, model, _dataset(count=10, batch_size=4), CLASSES)

    assert sorted(names) == sorted(tb.EMBEDDING_OUTPUTS)
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
    assert tb.PROJECTOR_README_TAG in _accumulator(log_dir).Tags()["tensors"]
    with pytest.raises(ValueError, match="include_metadata"):
        tb.log_embeddings(log_dir, model, _dataset(metadata=False), CLASSES)


def test_backfilled_calibration_diagnostics_are_those_of_each_epoch(tmp_path):
    keras.utils.set_random_seed(1)
    model = build_smcn("smcn", num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                       hidden_units=4, head_units=4)
    dataset = _dataset(count=8, batch_size=8)
    (inputs, _, _), = list(dataset)
    expected, files = [], []
    for epoch in (1, 2):
        model.set_weights([w + 0.1 * epoch for w in model.get_weights()])
        files.append(str(tmp_path / f"epoch-{epoch:03d}.weights.h5"))
        model.save_weights(files[-1])
        expected.append(tb.calibration_statistics(
            {k: np.asarray(v) for k, v in model(inputs).items()}
        ))
    log_dir = str(tmp_path / "calibration")
    assert tb.backfill_calibration_diagnostics(log_dir, model, dataset, files) == [0, 1]
    scalars = tb.read_scalars(log_dir)
    assert set(scalars) == set(tb.CALIBRATION_TAGS)
    for tag in tb.CALIBRATION_TAGS:
        assert scalars[tag][0].tolist() == [0, 1]
        np.testing.assert_allclose(
            scalars[tag][1], [expected[0][tag], expected[1][tag]], rtol=1e-5, atol=1e-7
        )
