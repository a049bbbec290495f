"""Training: `model.fit` on the tf.data pipeline, the fold loop, results per fold.

Layout of a run directory:

    <run>/config.yaml                 the resolved config
    <run>/features.json               the feature settings the models expect
    <run>/tensorboard/<fold>/         TensorBoard: every loss term and metric, the
                                      held-out confusion matrix and per-class table,
                                      attention figures, calibration diagnostics,
                                      HParams and the embedding projector (see
                                      smcn_tf.training.tensorboard_logging)
    <run>/<fold>/backup/              the last epoch's weights, optimizer, random
                                      state and data position (smcn_tf.training.resume);
                                      deleted when the fold is done
    <run>/<fold>/checkpoints/         weights at the end of every epoch
    <run>/<fold>/best.weights.h5      the best validation epoch's weights
                                      (training.select: best)
    <run>/<fold>/model.keras          the model after the last step
    <run>/<fold>/results.json         its scores on the held-out group
    <run>/<fold>/timing.json          wall times (kept out of results.json)
    <run>/summary.json                per-fold, mean, std and pooled scores

No checkpoint is ever chosen by its score on the test group. By default (the
paper) every fold trains for the configured number of steps and the last
weights are scored; with `evaluation.validation` a validation set is carved
out of the fold's training groups, and `training.select: best` keeps the
epoch with the best validation UA, optionally stopping early (see
`smcn_tf.training.selection`; `results.json` records the choice). A fold
whose `results.json` exists is not trained again, and a fold interrupted
after any epoch resumes from its backup: on CPU the resumed run ends with
weights and `results.json` bit-identical to an uninterrupted one.

`training.strategy` distributes training (see `smcn_tf.training.distribute`):
`training.batch_size` is the global batch, each worker reads its own shard of
the training data, and only the chief writes (TensorBoard, checkpoints,
backups, models, results, summary).
"""

import dataclasses
import hashlib
import json
import math
import os
import time
import typing

import keras
import tensorflow as tf
import yaml

from smcn_tf.training import distribute, held_out, resume, selection, summaries
from smcn_tf import evaluate
from smcn_tf.training import callbacks as board_callbacks
from smcn_tf.training import tensorboard_logging as board
from smcn_tf.records import pipeline, format as records
from smcn_tf.io_utils import read_json, write_json_atomic
from smcn_tf.model.smcn import SMCNModel, dtype_policy
from smcn_tf.model.normalization import adapt_audio_normalization
from smcn_tf.private_keras_api import private_method


def build_model(config, manifest, use_cudnn="auto", model_class=SMCNModel):
    """An `SMCNModel` sized for the prepared features of `manifest`.

    `model_class` is `SMCNModel` or a subclass (training under a strategy).
    """
    # Every `model` setting is a hyper-parameter of SMCNModel, passed through.
    return model_class.from_model_config(
        config.model,
        num_classes=len(manifest.class_names),
        class_names=list(manifest.class_names),
        audio_dim=manifest.audio_dim,
        text_dim=manifest.text_dim,
        use_cudnn=use_cudnn,
    )


def learning_rate_schedule(training):
    """The learning rate: a number (`constant`) or warm-up + cosine decay.

    `cosine` rises linearly from 0 to `learning_rate` over `warmup_steps`,
    then follows a cosine down to `final_learning_rate` at `steps`.
    """
    if training.schedule == "constant":
        return training.learning_rate
    peak = training.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if training.warmup_steps else peak,
        decay_steps=training.steps - training.warmup_steps,
        alpha=training.final_learning_rate / peak,
        warmup_target=peak if training.warmup_steps else None,
        warmup_steps=training.warmup_steps,
    )


def build_optimizer(training):
    """Adam (the paper) or AdamW, on the configured schedule, with optional EMA.

    With `ema_momentum` the optimizer keeps a moving average of the weights,
    and `fit` ends by writing it into the model (Keras' `use_ema`).
    """
    ema = dict(use_ema=True, ema_momentum=training.ema_momentum) if training.ema_momentum else {}
    rate = learning_rate_schedule(training)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=rate, weight_decay=training.weight_decay, **ema
        )
    if training.weight_decay:
        raise ValueError(
            "training.weight_decay needs training.optimizer: adamw (Adam's L2 "
            "penalty is not decoupled weight decay)."
        )
    return keras.optimizers.Adam(learning_rate=rate, **ema)


def compile_model(model, config):
    """The configured optimizer, loss options and UA, WA and weighted F1 as metrics.

    The paper's settings (`adam`, `constant`, no smoothing, no EMA) compile
    Adam at `learning_rate`. Under a `mixed_float16` policy Keras wraps the
    optimizer in a `LossScaleOptimizer`; `training.jit_compile` XLA-compiles
    the train step.
    """
    model.compile(
        optimizer=build_optimizer(config.training),
        label_smoothing=config.training.label_smoothing,
        jit_compile=config.training.jit_compile,
    )
    return model


def balanced_class_weights(manifest, groups):
    """Weights N / (C * n_c) from the manifest's counts over `groups`.

    A class absent from `groups` gets weight 0 (it has no utterance to weigh).
    """
    class_names = manifest.class_names
    counts = manifest.class_counts(groups)
    total = sum(counts)
    return [
        total / (len(class_names) * count) if count else 0.0 for count in counts
    ]


def fold_plan(config, manifest):
    """The folds to run: a list of (name, train groups, test groups)."""
    groups = list(manifest.groups)
    evaluation = config.evaluation
    if evaluation.protocol == "loso":
        unknown = sorted(set(evaluation.folds) - set(groups))
        if unknown:
            raise ValueError(
                f"evaluation.folds names {unknown}, which the prepared data does "
                f"not have; it has {groups}."
            )
        return [
            (fold, [group for group in groups if group != fold], [fold])
            for fold in evaluation.folds
        ]
    unknown = sorted(
        set(evaluation.train_groups + evaluation.test_groups) - set(groups)
    )
    if unknown:
        raise ValueError(
            f"evaluation names groups {unknown}, which the prepared data does not "
            f"have; it has {groups}."
        )
    return [("split", list(evaluation.train_groups), list(evaluation.test_groups))]


def _config_fingerprint(config, train_groups, validation=None):
    """What a backup must have been written under to be resumed exactly."""
    settings = config.to_dict()
    relevant = {key: settings[key] for key in ("features", "model", "training")}
    relevant["train_groups"] = sorted(train_groups)
    if validation is not None:
        relevant["validation"] = validation
    text = json.dumps(relevant, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Under a strategy only, `_build_for_fit` calls Keras' private `_symbolic_build`
# and `DistributedSMCNModel` overrides its private `_maybe_symbolic_build`:
# checked here, at import (see smcn_tf.private_keras_api).
private_method(keras.Model, "_symbolic_build", parameters=("data_batch",))
private_method(keras.Model, "_maybe_symbolic_build", parameters=("iterator", "data_batch"))


class DistributedSMCNModel(SMCNModel):
    """`SMCNModel` for `fit` under a tf.distribute strategy.

    Never saved: the chief saves and scores a single-device copy
    (`_single_device_copy`). Set `batch_axis_logs` on several workers. (Its
    name has no leading underscore: Keras names a model after its class, and
    a scope name cannot start with one.)
    """

    batch_axis_logs = False

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Private Keras hook, called by `fit` under a strategy: it pulls a
        # batch through the replicas and all-reduces it just to build (which
        # fails for dict inputs on several workers). `_build_for_fit` has
        # built every variable from the input's spec already.
        return None

    def train_step(self, data):
        logs = super().train_step(data)
        if not self.batch_axis_logs:
            return logs
        # Keras 3 reduces a step's logs across workers with
        # strategy.reduce("MEAN", value, axis=0), which fails on scalars
        # (tensorflow/tensorflow#72388): give them a batch axis of one. The
        # epoch logs are read from the (all-reduced) metrics anyway.
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def _build_for_fit(model, element_spec, strategy):
    """Create every variable `fit` needs (model, optimizer, metrics) before `fit`.

    So that a backup can be loaded into the optimizer before training. On one
    device the public API does it (the model is built when made, the
    optimizer is built on its variables; Keras builds the compiled metrics
    when it traces the train step). Under a strategy the metrics must exist
    before `fit` too: Keras' private `_symbolic_build` builds them from the
    input's spec, without reading a batch.
    """
    if not distribute.is_distributed(strategy):
        model.optimizer.build(model.trainable_variables)
        return
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)


def _single_device_copy(model, config, manifest):
    """The trained model rebuilt outside any strategy, with its weights and optimizer.

    The chief saves and evaluates this copy: reading it needs no collective op,
    so the other workers need not take part.
    """
    copy = compile_model(build_model(config, manifest), config)
    copy.optimizer.build(copy.trainable_variables)
    copy.set_weights(model.get_weights())
    for target, source in zip(copy.optimizer.variables, model.optimizer.variables):
        target.assign(keras.ops.convert_to_numpy(source.value))
    return copy


@dataclasses.dataclass
class _FoldRun:
    """One fold's fixed plan: settings, data, groups, directories and step counts."""

    config: object
    records_dir: str
    manifest: records.Manifest
    strategy: object
    name: str
    train_groups: list
    test_groups: list
    fit_groups: list
    validation: typing.Optional[dict]
    fold_dir: str
    board_dir: str
    steps_per_epoch: int
    epochs: int

    @property
    def chief(self):
        """Whether this process writes the fold's files."""
        return distribute.is_chief(self.strategy)

    @property
    def backup_dir(self):
        """`<run>/<fold>/backup`: the last epoch's state (smcn_tf.training.resume)."""
        return os.path.join(self.fold_dir, "backup")

    @property
    def results_path(self):
        """`<run>/<fold>/results.json`: it exists once the fold is done."""
        return os.path.join(self.fold_dir, "results.json")

    @property
    def fingerprint(self):
        """What a backup of this fold must have been written under."""
        return _config_fingerprint(self.config, self.train_groups, self.validation)

    @property
    def holdout(self):
        """`make_dataset` arguments of a fraction validation plan (else none).

        The fraction is dropped from training and kept alone for validation.
        """
        if self.validation is None or self.validation["kind"] != "fraction":
            return {}
        return dict(
            holdout_fraction=self.validation["fraction"], holdout_seed=self.validation["seed"]
        )

    def dataset(self, groups, **options):
        """`make_dataset` of these records, with the manifest read once."""
        return pipeline.make_dataset(
            self.records_dir, groups=groups, manifest=self.manifest, **options
        )


def _plan_fold(config, records_dir, manifest, strategy, run_dir, fold, train_groups,
               test_groups):
    """The `_FoldRun` of a fold: its validation plan, directories and epochs."""
    training = config.training
    fit_groups, validation = selection.validation_plan(
        config.evaluation.validation,
        list(manifest.groups),
        train_groups,
        test_groups,
        config.evaluation.validation_fraction,
        training.seed,
    )
    steps_per_epoch = min(training.steps_per_epoch, training.steps)
    return _FoldRun(
        config=config, records_dir=records_dir, manifest=manifest, strategy=strategy,
        name=fold, train_groups=list(train_groups), test_groups=list(test_groups),
        fit_groups=fit_groups, validation=validation,
        fold_dir=os.path.join(run_dir, fold),
        board_dir=os.path.join(run_dir, "tensorboard", fold),
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(training.steps / steps_per_epoch),
    )


def _resume_point(run):
    """`(backup state or None, completed epochs)`; epochs -1: the fold is done.

    Every worker resumes from the chief's backup (a shared filesystem) and
    goes where the chief goes.
    """
    finished = os.path.exists(run.results_path)
    state = None if finished else resume.read_backup(run.backup_dir, run.fingerprint)
    completed_epochs = -1 if finished else (state["epoch"] if state else 0)
    # All workers go where the chief goes (a no-op without several workers).
    agreed = distribute.chief_value(run.strategy, completed_epochs)
    if agreed != completed_epochs and agreed >= 0:
        state = resume.read_backup(run.backup_dir, run.fingerprint)  # the chief's newer one
        completed_epochs = state["epoch"] if state else 0
        if completed_epochs != agreed:
            raise ValueError(
                f"The chief resumes fold {run.name} at epoch {agreed}, but this worker "
                f"finds {completed_epochs} in {run.backup_dir}: every worker must see "
                "the chief's run directory (a shared filesystem)."
            )
    return state, agreed


def _build_fold_model(run):
    """The fold's compiled model, made under its strategy."""
    distributed = distribute.is_distributed(run.strategy)
    model_class = DistributedSMCNModel if distributed else SMCNModel
    with run.strategy.scope():
        model = compile_model(
            build_model(run.config, run.manifest, model_class=model_class), run.config
        )
    if distributed:
        model.batch_axis_logs = distribute.is_multi_worker(run.strategy)
    return model


def _training_data(run, completed_epochs):
    """`(training input for fit, its per-replica element spec)`, resumed at the epoch.

    The spec is read only under a strategy (`_build_for_fit`), else None.
    """
    training = run.config.training
    # Each worker's input yields one batch per local replica and step.
    start = completed_epochs * run.steps_per_epoch * distribute.local_replicas(run.strategy)
    class_weights = None
    if training.class_weights == "balanced":
        class_weights = balanced_class_weights(run.manifest, run.train_groups)

    def make_train_dataset(num_shards, shard_index, batch_size, start_batch=start):
        dataset = run.dataset(
            run.fit_groups,
            batch_size=batch_size,
            shuffle=True,
            repeat=True,
            seed=training.seed,
            shuffle_buffer=training.shuffle_buffer,
            bucket_window=training.bucket_window if training.length_bucketing else None,
            start_batch=start_batch,
            num_shards=num_shards,
            shard_index=shard_index,
            # The speed-perturbed copies of the fitting groups (training only).
            augmented=bool(run.config.features.speed_perturbation),
            **run.holdout,
        )
        if class_weights is not None:
            table = tf.constant(class_weights, tf.float32)
            dataset = dataset.map(
                lambda inputs, label: (inputs, label, tf.gather(table, label))
            )
        return dataset

    train_dataset = distribute.distribute_dataset(
        run.strategy, make_train_dataset, training.batch_size
    )
    element_spec = None
    if distribute.is_distributed(run.strategy):
        batch_size = distribute.per_replica_batch_size(run.strategy, training.batch_size)
        element_spec = make_train_dataset(1, 0, batch_size, 0).element_spec
    return train_dataset, element_spec


def _restore_or_adapt(run, model, state):
    """A resumed fold's backup into the model; else the audio statistics of the fitting data.

    The statistics are a no-op without `model.audio_normalization: global`; a
    resumed fold restores them with the weights.
    """
    if state:
        with run.strategy.scope():
            resume.restore_backup(model, run.backup_dir, state)
        return
    adapt_audio_normalization(
        model,
        run.dataset(run.fit_groups, batch_size=run.config.training.batch_size, **run.holdout),
    )


def _validation_data(run):
    """The validation set of the fold's plan, or None."""
    if run.validation is None:
        return None
    holdout = run.holdout
    return run.dataset(
        run.validation["groups"],
        batch_size=run.config.training.batch_size,
        **({**holdout, "holdout": "only"} if holdout else {}),
    )


def _fit_fold(run, model, train_dataset, validation_dataset, state, completed_epochs,
              verbose, callbacks):
    """`fit` with its backup, selection and TensorBoard callbacks.

    Returns:
        `(selector or None, backup)`: the callbacks that `results.json` reads.
    """
    training = run.config.training
    selector = None
    if training.select == "best" or training.early_stopping_patience:
        selector = selection.BestValidationCheckpoint(
            os.path.join(run.fold_dir, selection.BEST_WEIGHTS_FILE),
            save=training.select == "best",
            patience=training.early_stopping_patience,
            write=run.chief,
            state=resume.callback_state(state, "selection"),
        )
    backup = resume.TrainingBackup(
        run.backup_dir,
        fingerprint=run.fingerprint,
        write=run.chief,
        state=state,
        extra={
            "steps_per_epoch": run.steps_per_epoch,
            "epochs": run.epochs,
            "replicas": run.strategy.num_replicas_in_sync,
            "workers": distribute.num_workers(run.strategy),
        },
        stateful={"selection": selector} if selector else None,
    )
    # The selector's state after an epoch belongs in that epoch's backup.
    fit_callbacks = [*([selector] if selector else []), backup, *callbacks]
    if run.chief:
        fit_callbacks = [*_chief_callbacks(run, validation_dataset), *fit_callbacks]
    if selector is None or selector.stopped_epoch is None:
        # (a fold that stopped early before a restart is done)
        model.fit(
            train_dataset,
            epochs=run.epochs,
            initial_epoch=completed_epochs,
            steps_per_epoch=run.steps_per_epoch,
            callbacks=fit_callbacks,
            verbose=verbose,
            shuffle=False,  # the dataset itself shuffles, with the configured seed
            validation_data=validation_dataset,
        )
    return selector, backup


def _chief_callbacks(run, validation_dataset):
    """What the chief alone writes during `fit`: TensorBoard views, per-epoch weights."""
    return [
        board_callbacks.FlushingTensorBoard(run.board_dir, update_freq="epoch"),
        # Read-only views; they choose nothing.
        *_board_callbacks(run, validation_dataset),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run.fold_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
            save_weights_only=True,
        ),
    ]


def _board_callbacks(run, validation_dataset):
    """The per-epoch TensorBoard views: calibration diagnostics, training confusion.

    The calibration diagnostics read the held-out group (the final model, which
    has none, reads its validation set, else its training groups).
    """
    batch_size = run.config.training.batch_size
    views = []
    calibration_batches = run.config.training.calibration_batches
    if calibration_batches:
        if run.test_groups:
            diagnosed = run.dataset(run.test_groups, batch_size=batch_size)
        elif validation_dataset is not None:
            diagnosed = validation_dataset
        else:
            diagnosed = run.dataset(run.fit_groups, batch_size=batch_size, **run.holdout)
        views.append(board_callbacks.CalibrationDiagnostics(
            os.path.join(run.board_dir, summaries.CALIBRATION_DIR), diagnosed,
            max_batches=calibration_batches,
        ))
    every = run.config.training.confusion_every_epochs
    if every:
        views.append(
            board_callbacks.TrainingConfusionCallback(
                os.path.join(run.board_dir, summaries.TRAIN_CONFUSION_DIR),
                run.dataset(run.fit_groups, batch_size=batch_size, **run.holdout),
                run.manifest.class_names,
                every_epochs=every,
            )
        )
    return views


def _epochs_run(run, selector):
    """The epochs the fold trained: all, or up to where it stopped early."""
    if selector is not None and selector.stopped_epoch is not None:
        return selector.stopped_epoch
    return run.epochs


def _kept_model(run, model, selector):
    """The model the fold keeps (the last or the best epoch's), saved as model.keras."""
    if distribute.is_distributed(run.strategy):
        model = _single_device_copy(model, run.config, run.manifest)
    if run.config.training.select == "best" and selector.best_epoch is not None:
        model.load_weights(os.path.join(run.fold_dir, selection.BEST_WEIGHTS_FILE))
    model.save(os.path.join(run.fold_dir, "model.keras"))
    return model


def _fold_results(run, selector, backup):
    """The fold's results before scoring.

    Only what training computes: equal, bit for bit, whether or not the fold
    was interrupted and resumed (wall times go to timing.json).
    """
    epochs_run = _epochs_run(run, selector)
    return {
        "fold": run.name,
        "variant": run.config.model.variant,
        "train_groups": list(run.train_groups),
        "test_groups": list(run.test_groups),
        "steps": epochs_run * run.steps_per_epoch,
        "final_training_logs": backup.last_logs,
        "selection": selection.selection_record(
            run.config, run.validation, run.fit_groups, selector, epochs_run,
            run.records_dir, manifest=run.manifest,
        ),
    }


def _score_and_log(run, model, results):
    """Predict the held-out group once; score it into `results`; log every view.

    The final model (nothing held out) logs its hyper-parameters alone.
    """
    if not run.test_groups:
        board.log_hparams(run.board_dir, run.config, None)
        return
    class_names = run.manifest.class_names
    dataset = evaluate.held_out_dataset(
        run.records_dir, run.test_groups, run.config.training.batch_size,
        manifest=run.manifest,
    )
    predictions = held_out.predict_held_out(
        model, dataset, per_class=run.config.training.attention_examples_per_class
    )
    # The same scoring as `smcn evaluate` (evaluate.fold_scores).
    scores = evaluate.fold_scores(predictions.as_dict(), class_names)
    summaries.log_test_scores(run.board_dir, scores, run.epochs)
    held_out.log_held_out_views(
        run.board_dir, predictions, scores, class_names, run.epochs,
        token_strings_or_none=records.read_token_strings(
            run.records_dir, predictions.attention_ids, manifest=run.manifest
        ),
    )
    board.log_hparams(run.board_dir, run.config, scores)
    results.update(scores)  # the report, then the per-utterance predictions


def _write_fold_files(run, results, timing):
    """timing.json, then results.json (the fold is done), then the backup goes."""
    write_json_atomic(os.path.join(run.fold_dir, "timing.json"), timing)
    write_json_atomic(run.results_path, results)
    resume.remove_backup(run.backup_dir)


def train_fold(
    config,
    records_dir,
    run_dir,
    fold,
    train_groups,
    test_groups,
    verbose=1,
    callbacks=(),
    manifest=None,
):
    """Train one model on `train_groups` and score it on `test_groups`.

    An interrupted fold resumes from its backup (`<run>/<fold>/backup/`) and
    ends exactly as if it had not been interrupted (see `smcn_tf.training.resume`).
    The steps: plan and resume point, data, model, `fit`, the kept weights,
    one prediction pass over the held-out group, its scores and views.

    Args:
        config: a `Config`.
        records_dir: the prepared features (a directory with `manifest.json`).
        run_dir: where this run writes (see the module docstring).
        fold: the fold's name, used for its directories.
        train_groups: group names to train on.
        test_groups: group names to test on.
        verbose: Keras verbosity for `fit`.
        callbacks: more Keras callbacks for `fit`, run after the backup.
        manifest: the records' `Manifest` (read from `records_dir` if None).

    Returns:
        The fold's results dict (also written to `<run>/<fold>/results.json`),
        or None on a worker that is not the chief (it writes nothing).
    """
    if manifest is None:
        manifest = records.read_manifest(records_dir)
    strategy = distribute.get_strategy(config.training.strategy)
    run = _plan_fold(
        config, records_dir, manifest, strategy, run_dir, fold, train_groups, test_groups
    )
    state, completed_epochs = _resume_point(run)
    if completed_epochs < 0:  # the chief has this fold's results
        if run.chief:  # in case a kill came between the results and the clean-up
            resume.remove_backup(run.backup_dir)
        return read_json(run.results_path) if run.chief else None
    if run.chief:
        os.makedirs(run.fold_dir, exist_ok=True)
    keras.utils.set_random_seed(config.training.seed)
    with dtype_policy(config.training.mixed_precision):
        model = _build_fold_model(run)
        train_dataset, element_spec = _training_data(run, completed_epochs)
        _build_for_fit(model, element_spec, strategy)
        _restore_or_adapt(run, model, state)
        validation_dataset = _validation_data(run)
        started = time.time()
        selector, backup = _fit_fold(
            run, model, train_dataset, validation_dataset, state, completed_epochs,
            verbose, callbacks,
        )
        training_seconds = time.time() - started
        if not run.chief:
            return None
        started = time.time()
        model = _kept_model(run, model, selector)
        results = _fold_results(run, selector, backup)
        _score_and_log(run, model, results)
    _write_fold_files(run, results, {
        "training_seconds": round(training_seconds, 2),
        "evaluation_seconds": round(time.time() - started, 2),
        "resumed_at_epoch": completed_epochs,
        "epochs": run.epochs,
        "strategy": distribute.describe(strategy),
    })
    return results


def _write_run_files(config, manifest, run_dir):
    """`config.yaml` and `features.json` of the run (the chief's)."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as stream:
        yaml.safe_dump(config.to_dict(), stream, sort_keys=False)
    # What export needs to rebuild the raw-input front end of these models.
    write_json_atomic(os.path.join(run_dir, "features.json"), manifest.features.to_json())


def _chosen_folds(plan, folds):
    """The entries of `plan` named in `folds` (all without `folds`)."""
    if not folds:
        return plan
    known = [name for name, _, _ in plan]
    unknown = sorted(set(folds) - set(known))
    if unknown:
        raise ValueError(f"Unknown fold(s) {unknown}; this protocol has {known}.")
    return [entry for entry in plan if entry[0] in folds]


def _log_fold_scores(log, fold, result):
    """One progress line: the fold's UA, WA and weighted F1 in %."""
    log(
        f"[{fold}] UA {100 * result['unweighted_accuracy']:.2f}  "
        f"WA {100 * result['weighted_accuracy']:.2f}  "
        f"W-F1 {100 * result['weighted_f1']:.2f}  "
        f"({result['num_examples']} test utterances)"
    )


def _final_model_groups(config, manifest):
    """What the final model trains on: every group (loso), or the split's training groups."""
    if config.evaluation.protocol == "loso":
        return list(manifest.groups)
    return list(config.evaluation.train_groups)


def _summary(config, records_dir, run_dir, manifest, fold_results, final_model):
    """The run's summary.json (per-fold, mean, std, pooled), and the mean HParams session."""
    summary = evaluate.summarize_folds(fold_results, manifest.class_names)
    if fold_results:
        board.log_hparams(
            os.path.join(run_dir, "tensorboard", summaries.MEAN_SESSION), config,
            summary["mean"], fold=summaries.MEAN_SESSION,
        )
    summary["variant"] = config.model.variant
    summary["records_dir"] = os.path.abspath(records_dir)
    if final_model:
        summary["final_model"] = os.path.join(run_dir, "all", "model.keras")
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    return summary


def run_experiment(
    config, records_dir, run_dir, folds=None, verbose=1, log=print, callbacks=()
):
    """Train and score every fold of the configured protocol.

    The manifest is read once, here, and passed down. With
    `training.strategy: multi_worker` every worker runs this same call; the
    chief alone writes into `run_dir` (which every worker must see: they
    resume from the chief's backups), and the others return None.

    Args:
        config: a `Config`.
        records_dir: prepared features.
        run_dir: output directory (created).
        folds: optional subset of fold names to run.
        verbose: Keras verbosity.
        log: where progress lines go.
        callbacks: more Keras callbacks for every fold's `fit`.

    Returns:
        The summary dict (also written to `<run>/summary.json`), or None on a
        worker that is not the chief.
    """
    # First: a multi-worker strategy must exist before TensorFlow runs an op.
    strategy = distribute.get_strategy(config.training.strategy)
    chief = distribute.is_chief(strategy)
    if distribute.is_distributed(strategy):
        log(f"Distributed training: {distribute.describe(strategy)}")
    manifest = records.read_manifest(records_dir)
    if chief:
        _write_run_files(config, manifest, run_dir)
    fold_results = {}
    for fold, train_groups, test_groups in _chosen_folds(fold_plan(config, manifest), folds):
        log(f"[{fold}] training on {train_groups}, testing on {test_groups}")
        result = train_fold(
            config, records_dir, run_dir, fold, train_groups, test_groups, verbose,
            callbacks=callbacks, manifest=manifest,
        )
        if result is None:  # not the chief: it scores nothing
            continue
        fold_results[fold] = result
        _log_fold_scores(log, fold, result)
    final_model = config.evaluation.final_model and not folds
    if final_model:
        train_groups = _final_model_groups(config, manifest)
        log(f"[all] training the final model on {train_groups}")
        train_fold(
            config, records_dir, run_dir, "all", train_groups, [], verbose,
            callbacks=callbacks, manifest=manifest,
        )
    if not chief:
        return None
    return _summary(config, records_dir, run_dir, manifest, fold_results, final_model)
