"""Exact resume: a fold killed after any epoch and run again ends bit-identical.

`keras.callbacks.BackupAndRestore` restores the weights, the optimizer and the
epoch, but not the position in the data stream nor the random state of the
layers (the `SeedGenerator`s of `Dropout`, whose states `save_weights` leaves
out), so a resumed run drifts from an uninterrupted one. `TrainingBackup`
saves all of it at the end of every epoch:

    <backup>/epoch-NNN.weights.h5   model weights + optimizer state (save_weights)
    <backup>/state.json             {"epoch", "global_step", "weights",
                                     "random_state", "logs", "fingerprint"}

`state.json` is replaced atomically after its weights file is complete, and
older weight files are deleted only then, so a kill at any moment leaves a
consistent backup. `smcn_tf.train.train_fold` reads it before `fit`
(`read_backup`), restores the weights, the optimizer and the random state
(`restore_backup`), starts the data stream at batch `epoch * steps_per_epoch`
(`make_dataset(start_batch=...)`) and fits from `initial_epoch=epoch`.

With several workers the chief alone writes the backup and every worker
restores from it, so the backup directory must be on a shared filesystem.
"""

import glob
import os
import shutil

import keras
import numpy as np

from smcn_tf.io_utils import read_json, write_json_atomic
from smcn_tf.private_keras_api import private_constant, private_function

# Keras's global SeedGenerator has no public API: its private home, checked
# here (see smcn_tf.private_keras_api). The getter reads it without making it;
# `global_seed_generator()` makes it if unseeded keras.random never ran yet.
_get_global_attribute = private_function(
    "keras.src.backend.common.global_state", "get_global_attribute", parameters=("name",)
)
_GLOBAL_SEED_GENERATOR = private_constant(
    "keras.src.random.seed_generator", "GLOBAL_SEED_GENERATOR", str
)
_make_global_seed_generator = private_function(
    "keras.src.random.seed_generator", "global_seed_generator"
)

STATE_FILE = "state.json"
FORMAT = 1


def random_state_variables(model):
    """The model's variables that `save_weights` leaves out.

    These are the states of its `keras.random.SeedGenerator`s (one per
    `Dropout`, and those of the recurrent layers): the random state that
    training advances. Returned in the model's (deterministic) variable order.
    """
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _global_seed_generator():
    """Keras' global `SeedGenerator` (unseeded `keras.random` calls), if made."""
    return _get_global_attribute(_GLOBAL_SEED_GENERATOR)


def _variable_state(variable):
    value = np.asarray(keras.ops.convert_to_numpy(variable.value))
    return {
        "name": variable.path.rsplit("/", 1)[-1],
        "dtype": str(value.dtype),
        "value": value.tolist(),
    }


def _assign_state(variable, state, where):
    name = variable.path.rsplit("/", 1)[-1]
    if state["name"] != name:
        raise ValueError(
            f"{where}: random state {state['name']!r} does not match the model's "
            f"{name!r}; was the backup written by another model?"
        )
    variable.assign(np.asarray(state["value"], dtype=state["dtype"]))


def random_state(model):
    """A JSON-serializable snapshot of the random state training advances."""
    state = {"model": [_variable_state(v) for v in random_state_variables(model)]}
    generator = _global_seed_generator()
    if generator is not None:
        state["global"] = _variable_state(generator.state)
    return state


def set_random_state(model, state, where="<backup>"):
    """Restore a `random_state` snapshot into `model` (built the same way)."""
    variables = random_state_variables(model)
    if len(variables) != len(state["model"]):
        raise ValueError(
            f"{where}: the backup holds {len(state['model'])} random states but the "
            f"model has {len(variables)}; was it written by another model?"
        )
    for variable, saved in zip(variables, state["model"]):
        _assign_state(variable, saved, where)
    if "global" in state:
        _assign_state(_make_global_seed_generator().state, state["global"], where)


def _fsync(path):
    """Flush a file (or directory) to disk, so a backup survives a power cut too."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. directories on some platforms
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


def write_backup(model, backup_dir, epoch, logs=None, fingerprint=None, extra=None):
    """Save everything needed to continue training after `epoch` epochs.

    Args:
        model: a compiled, built model.
        backup_dir: the backup directory (created).
        epoch: how many epochs are complete.
        logs: the last epoch's logs (kept as the run's final logs if it
            resumes after its last epoch).
        fingerprint: a string identifying the settings; `read_backup`
            refuses a backup written under others.
        extra: more JSON-serializable values to keep in `state.json`.

    Returns:
        The state dict written to `state.json`.
    """
    os.makedirs(backup_dir, exist_ok=True)
    name = f"epoch-{epoch:03d}.weights.h5"
    temporary = os.path.join(backup_dir, f".partial-{name}")
    model.save_weights(temporary)
    _fsync(temporary)
    os.replace(temporary, os.path.join(backup_dir, name))
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "global_step": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "weights": name,
        "random_state": random_state(model),
        "logs": {key: float(value) for key, value in (logs or {}).items()},
        "fingerprint": fingerprint,
    }
    state.update(extra or {})
    write_json_atomic(os.path.join(backup_dir, STATE_FILE), state)
    _fsync(backup_dir)
    # Only now is the new backup complete: drop the older ones.
    stale = glob.glob(os.path.join(backup_dir, "*.weights.h5"))
    stale += glob.glob(os.path.join(backup_dir, ".partial-*"))
    for path in stale:
        if os.path.basename(path) != name:
            os.remove(path)
    return state


def read_backup(backup_dir, fingerprint=None):
    """The state of the last complete backup in `backup_dir`, or None.

    Raises:
        ValueError: the backup was written under other settings (its
            fingerprint differs), or its weights file is missing.
    """
    path = os.path.join(backup_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    state = read_json(path)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown backup format {state.get('format')!r}.")
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{backup_dir} was written with other settings (features, model, "
            "training or the training groups differ): resume with the same "
            "settings, or delete it to train this fold from the start."
        )
    if not os.path.isfile(os.path.join(backup_dir, state["weights"])):
        raise ValueError(f"{path} names {state['weights']}, which is missing.")
    return state


def restore_backup(model, backup_dir, state):
    """Load a backup's weights, optimizer state and random state into `model`.

    The model must be compiled and built, its optimizer included (so that the
    optimizer's variables exist to receive the saved values).
    """
    model.load_weights(os.path.join(backup_dir, state["weights"]))
    set_random_state(model, state["random_state"], where=backup_dir)


def remove_backup(backup_dir):
    """Delete a backup once the fold it belongs to is finished."""
    shutil.rmtree(backup_dir, ignore_errors=True)


class TrainingBackup(keras.callbacks.Callback):
    """Back up weights, optimizer, random state and epoch at every epoch end.

    Put it after the callbacks whose output should be complete for a backed-up
    epoch (TensorBoard, ModelCheckpoint): an epoch counts as done once its
    backup is.

    Args:
        backup_dir: where to write.
        fingerprint: see `write_backup`.
        write: False on the workers that are not the chief: they only track
            the logs.
        state: the state this run resumed from, if any.
        extra: more values for `state.json`.
        stateful: `{name: callback}` of callbacks with a `get_state()` whose
            state must resume too (`smcn_tf.training.selection`); saved under
            `state.json`'s `"callbacks"`, read back with `callback_state`.
    """

    def __init__(
        self, backup_dir, fingerprint=None, write=True, state=None, extra=None, stateful=None
    ):
        super().__init__()
        self.backup_dir = backup_dir
        self.fingerprint = fingerprint
        self.write = write
        self.extra = extra
        self.stateful = dict(stateful or {})
        # The logs of the last finished epoch, also when it ran before a resume.
        self.last_logs = dict(state["logs"]) if state else {}

    def on_epoch_end(self, epoch, logs=None):
        self.last_logs = {key: float(value) for key, value in (logs or {}).items()}
        if self.write:
            write_backup(
                self.model,
                self.backup_dir,
                epoch + 1,
                logs=self.last_logs,
                fingerprint=self.fingerprint,
                extra={
                    **(self.extra or {}),
                    "callbacks": {
                        name: callback.get_state() for name, callback in self.stateful.items()
                    },
                },
            )


def callback_state(state, name):
    """The state a `TrainingBackup` kept for its stateful callback `name`, or None."""
    if not state:
        return None
    return state.get("callbacks", {}).get(name)
