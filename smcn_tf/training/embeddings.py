"""How the utterances lie: the held-out features for TensorBoard's Projector."""

import os

import tensorflow as tf
from tensorboard.plugins import projector

from smcn_tf.training.model_outputs import output_names, predictor, run_model
from smcn_tf.training.summaries import EMBEDDING_OUTPUTS, PROJECTOR_README_TAG, file_writer

EMBEDDING_SYMBOLS = {
    "audio_semantic": "F^a",
    "text_semantic": "F^t",
    "audio_calibration": "Fc^a",
    "text_calibration": "Fc^t",
}


def log_embeddings(log_dir, model, dataset_with_metadata, class_names, max_examples=None):
    """Utterance-level F^a, F^t, Fc^a, Fc^t of the held-out group for the Projector.

    Runs `model` over the dataset, then `write_embeddings` (train.py passes
    the fold's one held-out prediction pass to `write_embeddings` instead).

    Args:
        log_dir: `<run>/tensorboard/<fold>/projector`.
        model: an `SMCNModel`.
        dataset_with_metadata: `make_dataset(..., include_metadata=True)` of
            the held-out group.
        class_names: the class names.
        max_examples: keep at most this many utterances (None: all).

    Returns:
        `{output name: checkpoint tensor name}` of the embeddings written.
    """
    keys = sorted(output_names(model) & (set(EMBEDDING_OUTPUTS) | {"probabilities"}))
    outputs = run_model(predictor(model, keys), dataset_with_metadata)
    if not outputs["utterance_ids"]:
        raise ValueError(
            "log_embeddings needs a dataset of (inputs, labels, metadata) with utterance "
            "ids: make_dataset(..., include_metadata=True)."
        )
    embeddings = {key: outputs[key] for key in EMBEDDING_OUTPUTS if key in outputs}
    return write_embeddings(
        log_dir, embeddings, outputs["utterance_ids"], outputs["labels"],
        outputs["probabilities"].argmax(axis=-1), class_names, max_examples,
    )


def write_embeddings(log_dir, embeddings, utterance_ids, labels, predictions, class_names,
                     max_examples=None):
    """Save utterance-level features, with their metadata, for the Projector.

    Writes into `log_dir` a checkpoint of one variable per feature in
    `embeddings` (`audio_semantic`, `text_semantic`, `audio_calibration`,
    `text_calibration`: those the variant has; rows are utterances),
    `metadata.tsv` (a header, then utterance id, label, prediction and
    whether it is correct, one row per utterance), `projector_config.pbtxt`
    pointing at them by relative paths, and a one-line text summary, which
    also makes the directory a TensorBoard run (the Projector looks for its
    config in runs).

    Args:
        log_dir: `<run>/tensorboard/<fold>/projector`.
        embeddings: `{output name: [n, features]}`.
        utterance_ids: the `n` utterance ids.
        labels: their int class ids.
        predictions: the predicted class ids.
        class_names: the class names.
        max_examples: keep at most this many utterances (None: all).

    Returns:
        `{output name: checkpoint tensor name}` of the embeddings written.
    """
    count = len(utterance_ids)
    if max_examples is not None:
        count = min(count, int(max_examples))
    os.makedirs(log_dir, exist_ok=True)
    _write_metadata(
        log_dir, utterance_ids[:count], labels[:count], predictions[:count], class_names
    )
    variables = {
        key: tf.Variable(embeddings[key][:count], trainable=False, name=key)
        for key in EMBEDDING_OUTPUTS
        if key in embeddings
    }
    checkpoint = tf.train.Checkpoint(**variables)
    manager = tf.train.CheckpointManager(
        checkpoint, log_dir, max_to_keep=1, checkpoint_name="embeddings"
    )
    manager.save()
    config = projector.ProjectorConfig()
    tensor_names = {}
    for key in variables:
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        tensor_names[key] = embedding.tensor_name
    projector.visualize_embeddings(log_dir, config)
    _write_readme(log_dir, count, variables)
    return tensor_names


def _write_metadata(log_dir, utterance_ids, labels, predictions, class_names):
    """`metadata.tsv`: utterance id, label, prediction and whether it is correct."""
    names = list(class_names)
    rows = ["utterance_id\tlabel\tprediction\tcorrect"]
    for utterance_id, label, predicted in zip(utterance_ids, labels, predictions):
        clean = str(utterance_id).replace("\t", " ").replace("\n", " ")
        rows.append(
            f"{clean}\t{names[int(label)]}\t{names[int(predicted)]}\t"
            f"{'yes' if int(label) == int(predicted) else 'no'}"
        )
    with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as stream:
        stream.write("\n".join(rows) + "\n")


def _write_readme(log_dir, count, variables):
    """A one-line text summary: it makes the directory a run the Projector reads."""
    writer = file_writer(log_dir)
    with writer.as_default():
        listed = ", ".join(f"{key} ({EMBEDDING_SYMBOLS[key]})" for key in variables)
        tf.summary.text(
            PROJECTOR_README_TAG,
            f"{count} held-out utterances; embeddings: {listed}. Open the Projector tab "
            "and colour by label or prediction.",
            step=0,
        )
    writer.close()
