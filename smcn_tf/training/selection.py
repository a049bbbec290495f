"""Which weights a fold keeps: the last ones, or the best on a validation set.

The validation set is carved out of a fold's training groups (`validation_plan`),
never its test group, so no choice made here ever sees the test group:

- `evaluation.validation: group` holds out one training group: the one after
  the test group in the records' group order, cyclically (the last training
  group for the final model, which has no test group);
- `evaluation.validation: fraction` holds out `validation_fraction` of every
  training group's utterances, chosen by a hash of `(training.seed, id)`
  (`smcn_tf.records.pipeline.is_held_out`).

`training.select: best` keeps the weights of the epoch with the best
validation UA (`BestValidationCheckpoint`), and `training.early_stopping_patience`
stops a fold after that many epochs without a better one. The paper's setting,
`select: last` with `validation: none`, trains for the configured steps and
keeps the last weights.

The callback's state (best score, its epoch, epochs since, stopped) goes into
the fold's backup (`smcn_tf.training.resume`), so a resumed fold chooses exactly as an
uninterrupted one.
"""

import os

import keras
import numpy as np

from smcn_tf.records import pipeline

# The validation metric that `select: best` and early stopping follow.
MONITOR = "val_unweighted_accuracy"
BEST_WEIGHTS_FILE = "best.weights.h5"


def validation_plan(validation, group_order, train_groups, test_groups, fraction, seed):
    """Split a fold's training groups into fitting and validation data.

    Args:
        validation: `"none"`, `"group"` or `"fraction"`.
        group_order: every group of the records, in the manifest's order.
        train_groups: the fold's training groups.
        test_groups: the fold's test groups (empty for the final model).
        fraction: the held-out share for `"fraction"`.
        seed: the hash seed for `"fraction"`.

    Returns:
        `(fit_groups, plan)`: the groups the model is fitted on, and `None`
        (no validation) or a dict: `{"kind": "group", "groups": [name]}` or
        `{"kind": "fraction", "groups": train_groups, "fraction", "seed"}`.

    Raises:
        ValueError: `"group"` with fewer than two training groups.

    Example:

    >>> validation_plan("group", ["S1", "S2", "S3"], ["S1", "S2"], ["S3"], 0.1, 1)
    (['S2'], {'kind': 'group', 'groups': ['S1']})
    """
    train_groups = list(train_groups)
    if validation == "none":
        return train_groups, None
    if validation == "fraction":
        return train_groups, {
            "kind": "fraction", "groups": train_groups, "fraction": fraction, "seed": seed,
        }
    if validation != "group":
        raise ValueError(f"Unknown validation {validation!r}; use none, group or fraction.")
    if len(train_groups) < 2:
        raise ValueError(
            f"evaluation.validation: group needs at least two training groups, but this "
            f"fold trains on {train_groups}; use validation: fraction instead."
        )
    order = [group for group in group_order if group in train_groups]
    order += [group for group in train_groups if group not in order]
    if test_groups and test_groups[0] in group_order:
        # The first training group after the test group, cyclically: each
        # LOSO fold validates on a different group.
        start = group_order.index(test_groups[0])
        cycle = group_order[start + 1:] + group_order[:start]
        chosen = next(group for group in cycle if group in train_groups)
    else:
        chosen = order[-1]
    return [group for group in train_groups if group != chosen], {
        "kind": "group", "groups": [chosen],
    }


def selection_record(config, validation, fit_groups, selector, epochs_run, records_dir,
                     manifest=None):
    """What results.json says about the validation set and the kept weights.

    Args:
        config: the run's `Config`.
        validation: the fold's `validation_plan` (None: no validation set).
        fit_groups: the groups the model was fitted on.
        selector: the fold's `BestValidationCheckpoint`, or None.
        epochs_run: the epochs the fold trained (fewer if it stopped early).
        records_dir: the prepared features.
        manifest: their `Manifest`, if the caller has read it already.

    Returns:
        A JSON-ready dict.
    """
    record = {
        "select": config.training.select,
        "validation": config.evaluation.validation,
        "fit_groups": list(fit_groups),
        "epochs_run": int(epochs_run),
        "kept_epoch": int(epochs_run),
    }
    if validation is not None:
        record["validation_groups"] = list(validation["groups"])
        if validation["kind"] == "fraction":
            held_out, _ = pipeline.held_out_ids(
                records_dir, validation["groups"], validation["fraction"], validation["seed"],
                manifest=manifest,
            )
            record["validation_fraction"] = validation["fraction"]
            record["validation_examples"] = len(held_out)
        else:
            record["validation_examples"] = pipeline.count_examples(
                records_dir, groups=validation["groups"], manifest=manifest
            )
    if selector is not None:
        record["best_validation_unweighted_accuracy"] = selector.best
        record["best_epoch"] = selector.best_epoch
        record["early_stopping_patience"] = selector.patience
        record["stopped_early_at_epoch"] = selector.stopped_epoch
        if config.training.select == "best" and selector.best_epoch is not None:
            record["kept_epoch"] = int(selector.best_epoch)
    return record


def _write_weights_atomically(model, path):
    temporary = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
    model.save_weights(temporary)
    os.replace(temporary, path)


class BestValidationCheckpoint(keras.callbacks.Callback):
    """Keep the weights of the best validation epoch; optionally stop early.

    Put it before `smcn_tf.training.resume.TrainingBackup`, so that the backup of an
    epoch holds this callback's state after that epoch (`get_state`).

    Args:
        path: where the best weights go (written atomically).
        monitor: the log to maximise.
        save: keep the best weights (`select: best`); False only tracks
            the score (for early stopping alone).
        patience: stop after this many epochs without a better score
            (0: never stop).
        write: False on the workers that are not the chief.
        state: a `get_state()` dict to resume from.
    """

    def __init__(self, path, monitor=MONITOR, save=True, patience=0, write=True, state=None):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.save = save
        self.patience = int(patience)
        self.write = write
        state = state or {}
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")

    def get_state(self):
        """What a backup keeps to resume this callback exactly."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"{self.monitor} is not in the epoch logs ({sorted(logs)}): selecting "
                "by validation needs validation data in fit."
            )
        score = float(logs[self.monitor])
        # A NaN score is never the best.
        if not np.isnan(score) and (self.best is None or score > self.best):
            self.best, self.best_epoch, self.wait = score, epoch + 1, 0
            if self.save and self.write:
                _write_weights_atomically(self.model, self.path)
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                self.stopped_epoch = epoch + 1
                self.model.stop_training = True
