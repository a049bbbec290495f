"""Reading event files back: scalars by tag and step."""

import tensorflow as tf

from smcn_tf.training.events import iter_events, read_scalars


def test_a_step_logged_twice_keeps_its_last_value(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step, value in ((0, 1.0), (1, 2.0), (1, 3.0)):  # epoch 1 again, resumed
            tf.summary.scalar("epoch_loss", value, step=step)
        tf.summary.text("note", "not a scalar", step=0)
    writer.close()
    steps, values = read_scalars(str(tmp_path))["epoch_loss"]
    assert steps.tolist() == [0, 1] and values.tolist() == [1.0, 3.0]
    assert "note" not in read_scalars(str(tmp_path))
    tags = {value.tag for event in iter_events(str(tmp_path)) for value in event.summary.value}
    assert tags == {"epoch_loss", "note"}
