"""The per-epoch views: calibration diagnostics, learning rate, training confusion."""

import keras
import numpy as np
import pytest

from smcn_tf.training import board_testing as bt
from smcn_tf.training.board_testing import AUDIO_DIM, CLASSES, TEXT_DIM
from smcn_tf.training.callbacks import (
    CALIBRATION_TAGS,
    CalibrationDiagnostics,
    TrainingConfusionCallback,
    backfill_calibration_diagnostics,
    calibration_statistics,
)
from smcn_tf.training.events import read_scalars
from smcn_tf.training.summaries import (
    CLASSIFICATION_REPORT_TAG,
    CONFUSION_MATRIX_TAG,
    LEARNING_RATE_TAG,
)
from smcn_tf.model.smcn import build_smcn


@pytest.fixture(scope="module")
def model():
    return bt.tiny_model(seed=0)


def test_calibration_diagnostics_and_training_confusion_every_epoch(model, tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    held_out = bt.dataset(count=12, batch_size=4, seed=1)
    calibration_dir = str(tmp_path / "calibration")
    confusion_dir = str(tmp_path / "train_confusion")
    callbacks = [
        CalibrationDiagnostics(calibration_dir, held_out, max_batches=2),
        TrainingConfusionCallback(
            confusion_dir, bt.dataset(metadata=False), CLASSES, every_epochs=2
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

    scalars = read_scalars(calibration_dir)
    assert set(scalars) == set(CALIBRATION_TAGS) | {LEARNING_RATE_TAG}
    for tag in CALIBRATION_TAGS:
        steps, values = scalars[tag]
        assert steps.tolist() == [0, 1, 2]
        if "/cosine_" in tag:
            assert np.all((values >= -1) & (values <= 1))
        else:
            assert np.all(values >= 0)
    # The learning rate of the schedule after 2, 4 and 6 steps.
    np.testing.assert_allclose(scalars[LEARNING_RATE_TAG][1], [5e-3, 2.5e-3, 1.25e-3], rtol=1e-5)
    # The last epoch's values are the trained model's, on the first 8 utterances.
    first_two = held_out.take(2)
    outputs = {}
    for inputs, _, _ in first_two:
        for key, value in model(inputs).items():
            outputs.setdefault(key, []).append(np.asarray(value))
    expected = calibration_statistics({k: np.concatenate(v) for k, v in outputs.items()})
    for tag, value in expected.items():
        np.testing.assert_allclose(scalars[tag][1][-1], value, rtol=1e-4, atol=1e-6)

    accumulator = bt.accumulator(confusion_dir)
    assert [event.step for event in accumulator.Tensors(CONFUSION_MATRIX_TAG)] == [1]
    assert "| angry |" in bt.text(accumulator, CLASSIFICATION_REPORT_TAG)


def test_calibration_diagnostics_log_what_a_variant_has(tmp_path):
    for variant, expected in (("cat", {"calibration/cosine_Fa_Ft", "calibration/mse_Fa_Ft"}),
                              ("audio", set())):
        other = build_smcn(variant, num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                           hidden_units=4, head_units=4)
        callback = CalibrationDiagnostics(str(tmp_path / variant), bt.dataset(), max_batches=1)
        callback.set_model(other)  # not compiled: no optimizer, no learning rate
        callback.on_epoch_end(0)
        callback.on_train_end()
        assert set(read_scalars(str(tmp_path / variant))) == expected


def test_backfilled_calibration_diagnostics_are_those_of_each_epoch(tmp_path):
    keras.utils.set_random_seed(1)
    model = build_smcn("smcn", num_classes=4, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM,
                       hidden_units=4, head_units=4)
    dataset = bt.dataset(count=8, batch_size=8)
    (inputs, _, _), = list(dataset)
    expected, files = [], []
    for epoch in (1, 2):
        model.set_weights([w + 0.1 * epoch for w in model.get_weights()])
        files.append(str(tmp_path / f"epoch-{epoch:03d}.weights.h5"))
        model.save_weights(files[-1])
        expected.append(calibration_statistics(
            {k: np.asarray(v) for k, v in model(inputs).items()}
        ))
    log_dir = str(tmp_path / "calibration")
    assert backfill_calibration_diagnostics(log_dir, model, dataset, files) == [0, 1]
    scalars = read_scalars(log_dir)
    assert set(scalars) == set(CALIBRATION_TAGS)
    for tag in CALIBRATION_TAGS:
        assert scalars[tag][0].tolist() == [0, 1]
        np.testing.assert_allclose(
            scalars[tag][1], [expected[0][tag], expected[1][tag]], rtol=1e-5, atol=1e-7
        )
