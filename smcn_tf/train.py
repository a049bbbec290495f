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

import hashlib
import json
import math
import os
import time

import keras
import tensorflow as tf
import yaml

from smcn_tf.training import distribute, resume, selection
from smcn_tf import evaluate
from smcn_tf.training import tensorboard_logging as board
from smcn_tf.records import pipeline, format as records
from smcn_tf.io_utils import read_json, write_json_atomic
from smcn_tf.model.smcn import SMCNModel, dtype_policy
from smcn_tf.model.normalization import adapt_audio_normalization


def build_model(config, manifest, use_cudnn="auto"):
    """An `SMCNModel` sized for the prepared features of `manifest`."""
    # Every `model` setting is a hyper-parameter of SMCNModel, passed through.
    return SMCNModel.from_model_config(
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


def _build_for_fit(model, element_spec, strategy):
    """Create every variable (model, metrics, optimizer) before `fit`.

    From the input's spec, so that no batch is read for it: a backup can be
    loaded into the optimizer before training, and under a strategy Keras
    does not pull a batch through the replicas and all-reduce it just to
    build (which fails for dict inputs on several workers).
    """
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if distribute.is_multi_worker(strategy):
        # Keras 3 reduces a step's logs across workers with
        # strategy.reduce("MEAN", value, axis=0), which fails on scalars
        # (tensorflow/tensorflow#72388): give them a batch axis of one. The
        # epoch logs are read from the (all-reduced) metrics anyway.
        step = model.train_step

        def train_step(data):
            logs = step(data)
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}

        model.train_step = train_step


def _single_device_copy(model, config, manifest, element_spec):
    """The trained model rebuilt outside any strategy, with its weights and optimizer.

    The chief saves and evaluates this copy: reading it needs no collective op,
    so the other workers need not take part.
    """
    copy = compile_model(build_model(config, manifest), config)
    copy._symbolic_build(data_batch=element_spec)
    copy.set_weights(model.get_weights())
    for target, source in zip(copy.optimizer.variables, model.optimizer.variables):
        target.assign(keras.ops.convert_to_numpy(source.value))
    return copy


class _FlushingTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard that flushes its events at every epoch end.

    So the curves of the epochs a backup covers are on disk even if the
    process is killed right after the backup.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()


def train_fold(
    config,
    records_dir,
    run_dir,
    fold,
    train_groups,
    test_groups,
    verbose=1,
    callbacks=(),
):
    """Train one model on `train_groups` and score it on `test_groups`.

    An interrupted fold resumes from its backup (`<run>/<fold>/backup/`) and
    ends exactly as if it had not been interrupted (see `smcn_tf.training.resume`).

    Args:
        config: a `Config`.
        records_dir: the prepared features (a directory with `manifest.json`).
        run_dir: where this run writes (see the module docstring).
        fold: the fold's name, used for its directories.
        train_groups: group names to train on.
        test_groups: group names to test on.
        verbose: Keras verbosity for `fit`.
        callbacks: more Keras callbacks for `fit`, run after the backup.

    Returns:
        The fold's results dict (also written to `<run>/<fold>/results.json`),
        or None on a worker that is not the chief (it writes nothing).
    """
    training = config.training
    strategy = distribute.get_strategy(training.strategy)
    chief = distribute.is_chief(strategy)
    manifest = records.read_manifest(records_dir)
    fold_dir = os.path.join(run_dir, fold)
    results_path = os.path.join(fold_dir, "results.json")
    backup_dir = os.path.join(fold_dir, "backup")
    fit_groups, validation = selection.validation_plan(
        config.evaluation.validation,
        list(manifest["groups"]),
        train_groups,
        test_groups,
        config.evaluation.validation_fraction,
        training.seed,
    )
    fingerprint = _config_fingerprint(config, train_groups, validation)
    finished = os.path.exists(results_path)
    # Every worker resumes from the chief's backup (a shared filesystem).
    state = None if finished else resume.read_backup(backup_dir, fingerprint)
    completed_epochs = -1 if finished else (state["epoch"] if state else 0)
    # All workers go where the chief goes (a no-op without several workers).
    agreed = distribute.chief_value(strategy, completed_epochs)
    if agreed != completed_epochs and agreed >= 0:
        state = resume.read_backup(backup_dir, fingerprint)  # the chief's newer one
        completed_epochs = state["epoch"] if state else 0
        if completed_epochs != agreed:
            raise ValueError(
                f"The chief resumes fold {fold} at epoch {agreed}, but this worker "
                f"finds {completed_epochs} in {backup_dir}: every worker must see "
                "the chief's run directory (a shared filesystem)."
            )
    if agreed < 0:  # the chief has this fold's results
        if chief:  # in case a kill came between the results and the clean-up
            resume.remove_backup(backup_dir)
        return read_json(results_path) if chief else None
    if chief:
        os.makedirs(fold_dir, exist_ok=True)
    keras.utils.set_random_seed(training.seed)

    steps_per_epoch = min(training.steps_per_epoch, training.steps)
    epochs = math.ceil(training.steps / steps_per_epoch)
    # Each worker's input yields one batch per local replica and step.
    start_batch = completed_epochs * steps_per_epoch * distribute.local_replicas(strategy)
    class_weights = None
    if training.class_weights == "balanced":
        class_weights = balanced_class_weights(manifest, train_groups)

    # The fraction side of a validation plan: dropped from training, kept alone
    # for validation.
    holdout = {}
    if validation is not None and validation["kind"] == "fraction":
        holdout = dict(
            holdout_fraction=validation["fraction"], holdout_seed=validation["seed"]
        )

    def make_train_dataset(num_shards, shard_index, batch_size, start_batch=start_batch):
        dataset = pipeline.make_dataset(
            records_dir,
            groups=fit_groups,
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
            augmented=bool(config.features.speed_perturbation),
            **holdout,
        )
        if class_weights is not None:
            table = tf.constant(class_weights, tf.float32)
            dataset = dataset.map(
                lambda inputs, label: (inputs, label, tf.gather(table, label))
            )
        return dataset

    with dtype_policy(training.mixed_precision):
        with strategy.scope():
            model = compile_model(build_model(config, manifest), config)
        train_dataset = distribute.distribute_dataset(
            strategy, make_train_dataset, training.batch_size
        )
        element_spec = make_train_dataset(
            1, 0, distribute.per_replica_batch_size(strategy, training.batch_size), 0
        ).element_spec
        _build_for_fit(model, element_spec, strategy)
        if state:
            with strategy.scope():
                resume.restore_backup(model, backup_dir, state)
        else:
            # Statistics of the fitting data alone (a no-op without
            # model.audio_normalization: global); a resumed fold restores them.
            adapt_audio_normalization(
                model,
                pipeline.make_dataset(
                    records_dir, groups=fit_groups, batch_size=training.batch_size, **holdout
                ),
            )
        validation_dataset = None
        if validation is not None:
            validation_dataset = pipeline.make_dataset(
                records_dir,
                groups=validation["groups"],
                batch_size=training.batch_size,
                **({**holdout, "holdout": "only"} if holdout else {}),
            )
        selector = None
        if training.select == "best" or training.early_stopping_patience:
            selector = selection.BestValidationCheckpoint(
                os.path.join(fold_dir, selection.BEST_WEIGHTS_FILE),
                save=training.select == "best",
                patience=training.early_stopping_patience,
                write=chief,
                state=resume.callback_state(state, "selection"),
            )
        backup = resume.TrainingBackup(
            backup_dir,
            fingerprint=fingerprint,
            write=chief,
            state=state,
            extra={
                "steps_per_epoch": steps_per_epoch,
                "epochs": epochs,
                "replicas": strategy.num_replicas_in_sync,
                "workers": distribute.num_workers(strategy),
            },
            stateful={"selection": selector} if selector else None,
        )
        # The selector's state after an epoch belongs in that epoch's backup.
        fit_callbacks = [*([selector] if selector else []), backup, *callbacks]
        board_dir = os.path.join(run_dir, "tensorboard", fold)
        if chief:
            fit_callbacks = [
                _FlushingTensorBoard(board_dir, update_freq="epoch"),
                # Read-only views; they choose nothing.
                *_board_callbacks(
                    config, records_dir, board_dir, manifest, fit_groups, test_groups,
                    validation_dataset, holdout,
                ),
                keras.callbacks.ModelCheckpoint(
                    os.path.join(fold_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
                    save_weights_only=True,
                ),
                *fit_callbacks,
            ]
        started = time.time()
        stopped = selector is not None and selector.stopped_epoch is not None
        if not stopped:  # a fold that stopped early before a restart is done
            model.fit(
                train_dataset,
                epochs=epochs,
                initial_epoch=completed_epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=fit_callbacks,
                verbose=verbose,
                shuffle=False,  # the dataset itself shuffles, with the configured seed
                validation_data=validation_dataset,
            )
        training_seconds = time.time() - started
        if not chief:
            return None

        started = time.time()
        if distribute.is_distributed(strategy):
            model = _single_device_copy(model, config, manifest, element_spec)
        best_path = os.path.join(fold_dir, selection.BEST_WEIGHTS_FILE)
        if training.select == "best" and selector.best_epoch is not None:
            model.load_weights(best_path)
        model.save(os.path.join(fold_dir, "model.keras"))
        # Only what training computes: equal, bit for bit, whether or not the
        # fold was interrupted and resumed (wall times go to timing.json).
        epochs_run = epochs
        if selector is not None and selector.stopped_epoch is not None:
            epochs_run = selector.stopped_epoch
        results = {
            "fold": fold,
            "variant": config.model.variant,
            "train_groups": list(train_groups),
            "test_groups": list(test_groups),
            "steps": epochs_run * steps_per_epoch,
            "final_training_logs": backup.last_logs,
            "selection": _selection_record(
                config, validation, fit_groups, selector, epochs_run, records_dir
            ),
        }
        if test_groups:
            # The same scoring as `smcn evaluate` (evaluate.score_fold).
            scores, predictions = evaluate.score_fold(
                model, records_dir, test_groups, manifest["class_names"], training.batch_size
            )
            _log_test_scores(board_dir, scores, epochs)
            _log_held_out_views(
                board_dir, model, records_dir,
                evaluate.held_out_dataset(records_dir, test_groups, training.batch_size),
                predictions, manifest["class_names"], epochs,
            )
            board.log_hparams(board_dir, config, scores)
            results.update(scores)  # the report, then the per-utterance predictions
        else:  # the final model, nothing held out, nothing to score
            board.log_hparams(board_dir, config, None)
    write_json_atomic(
        os.path.join(fold_dir, "timing.json"),
        {
            "training_seconds": round(training_seconds, 2),
            "evaluation_seconds": round(time.time() - started, 2),
            "resumed_at_epoch": completed_epochs,
            "epochs": epochs,
            "strategy": distribute.describe(strategy),
        },
    )
    write_json_atomic(results_path, results)
    resume.remove_backup(backup_dir)
    return results


def _selection_record(config, validation, fit_groups, selector, epochs_run, records_dir):
    """What results.json says about the validation set and the kept weights."""
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
                records_dir, validation["groups"], validation["fraction"], validation["seed"]
            )
            record["validation_fraction"] = validation["fraction"]
            record["validation_examples"] = len(held_out)
        else:
            record["validation_examples"] = pipeline.count_examples(
                records_dir, groups=validation["groups"]
            )
    if selector is not None:
        record["best_validation_unweighted_accuracy"] = selector.best
        record["best_epoch"] = selector.best_epoch
        record["early_stopping_patience"] = selector.patience
        record["stopped_early_at_epoch"] = selector.stopped_epoch
        if config.training.select == "best" and selector.best_epoch is not None:
            record["kept_epoch"] = int(selector.best_epoch)
    return record


def _board_callbacks(
    config, records_dir, board_dir, manifest, fit_groups, test_groups, validation_dataset,
    holdout,
):
    """The per-epoch TensorBoard views: calibration diagnostics, training confusion.

    The calibration diagnostics read the held-out group (the final model, which
    has none, reads its validation set, else its training groups).
    """
    batch_size = config.training.batch_size
    if test_groups:
        diagnosed = pipeline.make_dataset(records_dir, groups=test_groups, batch_size=batch_size)
    elif validation_dataset is not None:
        diagnosed = validation_dataset
    else:
        diagnosed = pipeline.make_dataset(
            records_dir, groups=fit_groups, batch_size=batch_size, **holdout
        )
    views = [board.CalibrationDiagnostics(os.path.join(board_dir, board.CALIBRATION_DIR), diagnosed)]
    every = config.training.confusion_every_epochs
    if every:
        views.append(
            board.TrainingConfusionCallback(
                os.path.join(board_dir, board.TRAIN_CONFUSION_DIR),
                pipeline.make_dataset(
                    records_dir, groups=fit_groups, batch_size=batch_size, **holdout
                ),
                manifest["class_names"],
                every_epochs=every,
            )
        )
    return views


def _log_held_out_views(board_dir, model, records_dir, test_dataset, predictions,
                        class_names, step):
    """Confusion matrix, per-class table, attention figures and projector, held out."""
    held_out_dir = os.path.join(board_dir, board.HELD_OUT_DIR)
    board.log_held_out_evaluation(
        held_out_dir, predictions["labels"], predictions["predictions"], class_names, step
    )
    chosen = board.select_attention_examples(predictions["utterance_ids"], predictions["labels"])
    inputs, labels, ids = board.gather_examples(test_dataset, chosen)
    board.log_attention(
        held_out_dir, model, inputs, ids, records.read_token_strings(records_dir, ids), step,
        labels=labels, class_names=class_names,
    )
    board.log_embeddings(
        os.path.join(board_dir, board.PROJECTOR_DIR), model, test_dataset, class_names
    )


def _log_test_scores(log_dir, scores, step):
    """Write the held-out scores to TensorBoard beside the training curves."""
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))
    with writer.as_default():
        for name in ("unweighted_accuracy", "weighted_accuracy", "weighted_f1"):
            tf.summary.scalar(f"test/{name}", scores[name], step=step)
    writer.flush()


def run_experiment(
    config, records_dir, run_dir, folds=None, verbose=1, log=print, callbacks=()
):
    """Train and score every fold of the configured protocol.

    With `training.strategy: multi_worker` every worker runs this same call;
    the chief alone writes into `run_dir` (which every worker must see: they
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
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as stream:
            yaml.safe_dump(config.to_dict(), stream, sort_keys=False)
        # What export needs to rebuild the raw-input front end of these models.
        write_json_atomic(os.path.join(run_dir, "features.json"), manifest.features.to_json())
    plan = fold_plan(config, manifest)
    if folds:
        known = [name for name, _, _ in plan]
        unknown = sorted(set(folds) - set(known))
        if unknown:
            raise ValueError(f"Unknown fold(s) {unknown}; this protocol has {known}.")
        plan = [entry for entry in plan if entry[0] in folds]
    fold_results = {}
    for fold, train_groups, test_groups in plan:
        log(f"[{fold}] training on {train_groups}, testing on {test_groups}")
        result = train_fold(
            config, records_dir, run_dir, fold, train_groups, test_groups, verbose,
            callbacks=callbacks,
        )
        if result is None:  # not the chief: it scores nothing
            continue
        fold_results[fold] = result
        log(
            f"[{fold}] UA {100 * result['unweighted_accuracy']:.2f}  "
            f"WA {100 * result['weighted_accuracy']:.2f}  "
            f"W-F1 {100 * result['weighted_f1']:.2f}  "
            f"({result['num_examples']} test utterances)"
        )
    final_model = config.evaluation.final_model and not folds
    if final_model:
        if config.evaluation.protocol == "loso":
            train_groups = list(manifest["groups"])
        else:
            train_groups = list(config.evaluation.train_groups)
        log(f"[all] training the final model on {train_groups}")
        train_fold(
            config, records_dir, run_dir, "all", train_groups, [], verbose,
            callbacks=callbacks,
        )
    if not chief:
        return None
    summary = evaluate.summarize_folds(fold_results, manifest["class_names"])
    if fold_results:
        board.log_hparams(
            os.path.join(run_dir, "tensorboard", board.MEAN_SESSION), config, summary["mean"],
            fold=board.MEAN_SESSION,
        )
    summary["variant"] = config.model.variant
    summary["records_dir"] = os.path.abspath(records_dir)
    if final_model:
        summary["final_model"] = os.path.join(run_dir, "all", "model.keras")
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    return summary
