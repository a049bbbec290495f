"""Reading TensorBoard event files back: events and scalar series."""

import glob
import os

import numpy as np
import tensorflow as tf

def _event_files(log_dir):
    return sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))


def iter_events(log_dir):
    """The `tf.compat.v1.Event`s of the event files in `log_dir` (not below), in file order."""
    for path in _event_files(log_dir):
        for record in tf.data.TFRecordDataset(path):
            yield tf.compat.v1.Event.FromString(record.numpy())


def read_scalars(log_dir):
    """`{tag: (steps, values)}` of the scalar summaries in a run directory.

    Reads the event files of `log_dir` itself (not its subdirectories); a
    step logged twice (e.g. a resumed epoch) keeps its last value.
    """
    found = {}
    for event in iter_events(log_dir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                number = float(value.simple_value)
            elif value.metadata.plugin_data.plugin_name == "scalars":
                number = float(tf.make_ndarray(value.tensor).reshape(()))
            else:
                continue
            found.setdefault(value.tag, {})[int(event.step)] = number
    return {
        tag: (np.array(sorted(by_step)), np.array([by_step[s] for s in sorted(by_step)]))
        for tag, by_step in found.items()
    }
