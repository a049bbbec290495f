"""Training: `model.fit` on the tf.data pipeline, the fold loop, results per fold.

Layout of a run directory:

    <run>/config.yaml                 the resolved config
    <run>/features.json               the feature settings the models expect
    <run>/tensorboard/<fold>/         TensorBoard events: every loss term and metric
    <run>/<fold>/backup/              BackupAndRestore state (resume mid-fold)
    <run>/<fold>/checkpoints/         weights at the end of every epoch
    <run>/<fold>/model.keras          the model after the last step
    <run>/<fold>/results.json         its scores on the held-out group
    <run>/summary.json                per-fold, mean, std and pooled scores

No checkpoint is ever chosen by its score on the test group: every fold trains
for the configured number of steps and the last weights are scored. A fold
whose `results.json` exists is not trained again, so an interrupted run
resumes where it stopped.
"""

import math
import os
import time

import keras
import tensorflow as tf
import yaml

from smcn_tf import evaluate, metrics
from smcn_tf.data import pipeline, records
from smcn_tf.io_utils import read_json, write_json_atomic
from smcn_tf.model import build_smcn


def build_model(config, manifest, use_cudnn="auto"):
    """An `SMCNModel` sized for the prepared features of `manifest`."""
    model_config = config.model
    return build_smcn(
        variant=model_config.variant,
        num_classes=len(manifest["class_names"]),
        class_names=manifest["class_names"],
        audio_dim=int(manifest["audio_dim"]),
        text_dim=int(manifest["text_dim"]),
        hidden_units=model_config.hidden_units,
        attention_units=model_config.attention_units,
        head_units=model_config.head_units,
        head_activation=model_config.head_activation,
        first_fusion=model_config.first_fusion,
        second_fusion=model_config.second_fusion,
        stop_gradient_target=model_config.stop_gradient_target,
        dropout=model_config.dropout,
        use_cudnn=use_cudnn,
    )


def compile_model(model, config):
    """Adam at the configured rate, with UA, WA and weighted F1 as metrics."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.training.learning_rate),
        metrics=metrics.emotion_metrics(model.num_classes),
    )
    return model


def balanced_class_weights(manifest, groups):
    """Weights N / (C * n_c) from the manifest's counts over `groups`.

    A class absent from `groups` gets weight 0 (it has no utterance to weigh).
    """
    class_names = manifest["class_names"]
    counts = [
        sum(manifest["counts"].get(group, {}).get(name, 0) for group in groups)
        for name in class_names
    ]
    total = sum(counts)
    return [
        total / (len(class_names) * count) if count else 0.0 for count in counts
    ]


FEATURE_SETTINGS = (
    "corpus",
    "class_names",
    "audio_dim",
    "text_dim",
    "text_encoder",
    "pooling",
    "max_frames",
    "max_tokens",
)


def fold_plan(config, manifest):
    """The folds to run: a list of (name, train groups, test groups)."""
    groups = list(manifest["groups"])
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


def train_fold(
    config, records_dir, run_dir, fold, train_groups, test_groups, verbose=1
):
    """Train one model on `train_groups` and score it on `test_groups`.

    Args:
        config: a `Config`.
        records_dir: the prepared features (a directory with `manifest.json`).
        run_dir: where this run writes (see the module docstring).
        fold: the fold's name, used for its directories.
        train_groups: group names to train on.
        test_groups: group names to test on.
        verbose: Keras verbosity for `fit`.

    Returns:
        The fold's results dict (also written to `<run>/<fold>/results.json`).
    """
    manifest = records.read_manifest(records_dir)
    fold_dir = os.path.join(run_dir, fold)
    results_path = os.path.join(fold_dir, "results.json")
    if os.path.exists(results_path):
        return read_json(results_path)
    os.makedirs(fold_dir, exist_ok=True)
    keras.utils.set_random_seed(config.training.seed)

    training = config.training
    steps_per_epoch = min(training.steps_per_epoch, training.steps)
    epochs = math.ceil(training.steps / steps_per_epoch)
    train_dataset = pipeline.make_dataset(
        records_dir,
        groups=train_groups,
        batch_size=training.batch_size,
        shuffle=True,
        repeat=True,
        seed=training.seed,
        shuffle_buffer=training.shuffle_buffer,
    )
    if training.class_weights == "balanced":
        table = tf.constant(balanced_class_weights(manifest, train_groups), tf.float32)
        train_dataset = train_dataset.map(
            lambda inputs, label: (inputs, label, tf.gather(table, label))
        )
    model = compile_model(build_model(config, manifest), config)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(fold_dir, "backup")),
        keras.callbacks.TensorBoard(
            os.path.join(run_dir, "tensorboard", fold), update_freq="epoch"
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(fold_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
            save_weights_only=True,
        ),
    ]
    started = time.time()
    history = model.fit(
        train_dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset itself shuffles, with the configured seed
    )
    training_seconds = time.time() - started
    model.save(os.path.join(fold_dir, "model.keras"))

    results = {
        "fold": fold,
        "variant": config.model.variant,
        "train_groups": list(train_groups),
        "test_groups": list(test_groups),
        "steps": epochs * steps_per_epoch,
        "training_seconds": round(training_seconds, 2),
        "final_training_logs": {
            name: float(values[-1]) for name, values in history.history.items()
        },
    }
    if not test_groups:  # the final model: nothing held out, nothing to score
        write_json_atomic(results_path, results)
        return results
    test_dataset = pipeline.make_dataset(
        records_dir,
        groups=test_groups,
        batch_size=training.batch_size,
        include_metadata=True,
    )
    predictions = evaluate.predict_dataset(model, test_dataset)
    scores = evaluate.score_predictions(
        predictions["labels"], predictions["predictions"], manifest["class_names"]
    )
    _log_test_scores(os.path.join(run_dir, "tensorboard", fold), scores, epochs)
    results.update(scores)
    results.update({
        "predictions": [
            {"utterance_id": utterance_id, "label": int(label), "prediction": int(pred)}
            for utterance_id, label, pred in zip(
                predictions["utterance_ids"],
                predictions["labels"],
                predictions["predictions"],
            )
        ],
    })
    write_json_atomic(results_path, results)
    return results


def _log_test_scores(log_dir, scores, step):
    """Write the held-out scores to TensorBoard beside the training curves."""
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))
    with writer.as_default():
        for name in ("unweighted_accuracy", "weighted_accuracy", "weighted_f1"):
            tf.summary.scalar(f"test/{name}", scores[name], step=step)
    writer.flush()


def run_experiment(config, records_dir, run_dir, folds=None, verbose=1, log=print):
    """Train and score every fold of the configured protocol.

    Args:
        config: a `Config`.
        records_dir: prepared features.
        run_dir: output directory (created).
        folds: optional subset of fold names to run.
        verbose: Keras verbosity.
        log: where progress lines go.

    Returns:
        The summary dict (also written to `<run>/summary.json`).
    """
    manifest = records.read_manifest(records_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as stream:
        yaml.safe_dump(config.to_dict(), stream, sort_keys=False)
    # What export needs to rebuild the raw-input front end of these models.
    write_json_atomic(
        os.path.join(run_dir, "features.json"),
        {key: manifest[key] for key in FEATURE_SETTINGS if key in manifest},
    )
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
            config, records_dir, run_dir, fold, train_groups, test_groups, verbose
        )
        fold_results[fold] = result
        log(
            f"[{fold}] UA {100 * result['unweighted_accuracy']:.2f}  "
            f"WA {100 * result['weighted_accuracy']:.2f}  "
            f"W-F1 {100 * result['weighted_f1']:.2f}  "
            f"({result['num_examples']} test utterances)"
        )
    summary = evaluate.summarize_folds(fold_results, manifest["class_names"])
    summary["variant"] = config.model.variant
    summary["records_dir"] = os.path.abspath(records_dir)
    if config.evaluation.final_model and not folds:
        if config.evaluation.protocol == "loso":
            train_groups = list(manifest["groups"])
        else:
            train_groups = list(config.evaluation.train_groups)
        log(f"[all] training the final model on {train_groups}")
        train_fold(config, records_dir, run_dir, "all", train_groups, [], verbose)
        summary["final_model"] = os.path.join(run_dir, "all", "model.keras")
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    return summary
