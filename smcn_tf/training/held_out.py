"""A fold's held-out group, predicted once, and every held-out view drawn from it.

`predict_held_out` runs the model over the held-out group in one pass (a
probe of the model that outputs the probabilities, the utterance-level
features and every attention's weights) and keeps what each view needs:

- the labels, probabilities and utterance ids, which `results.json` scores
  (`smcn_tf.evaluate.fold_scores`) and the confusion matrix and per-class
  report draw (`smcn_tf.training.summaries.log_held_out_scores`);
- the utterance-level features for the Projector
  (`smcn_tf.training.embeddings.write_embeddings`);
- the inputs and attention weights of the few utterances the attention
  figures draw (`select_attention_examples`: the first ids of each class, in
  sorted order), chosen while the pass goes.

The probe runs the model's own layers on the same batches, so its
probabilities are the model's: on CPU bit for bit, as
`smcn_tf.evaluate.predict_dataset` gives them (held_out_test checks it).
"""

import bisect
import dataclasses
import os
import typing

import numpy as np
import tensorflow as tf

from smcn_tf.training.attention_views import (
    attention_example,
    attention_probe,
    write_attention,
)
from smcn_tf.training.embeddings import write_embeddings
from smcn_tf.training.model_outputs import output_names
from smcn_tf.training.summaries import (
    EMBEDDING_OUTPUTS,
    HELD_OUT_DIR,
    PROJECTOR_DIR,
    log_held_out_scores,
)


@dataclasses.dataclass
class HeldOutPredictions:
    """What one pass over the held-out group gives every view.

    Attributes:
        labels: int64 class ids `[n]`, in dataset order.
        probabilities: `[n, classes]`.
        utterance_ids: the `n` utterance ids.
        embeddings: `{output name: float32 [n, features]}` of the
            `EMBEDDING_OUTPUTS` the variant has.
        attention: the utterances the attention figures draw, by class id,
            then id: dicts with `utterance_id`, `label`, `audio_frames` (the
            valid frames), `token_count` and `outputs` (their probe outputs).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    utterance_ids: typing.List[str]
    embeddings: typing.Dict[str, np.ndarray]
    attention: typing.List[dict]

    @property
    def predictions(self):
        """The predicted class ids `[n]`."""
        return self.probabilities.argmax(axis=-1)

    @property
    def attention_ids(self):
        """The ids of the utterances the attention figures draw."""
        return [item["utterance_id"] for item in self.attention]

    def as_dict(self):
        """The `smcn_tf.evaluate.predict_dataset` dict of these predictions."""
        return {
            "labels": self.labels,
            "probabilities": self.probabilities,
            "predictions": self.predictions,
            "utterance_ids": list(self.utterance_ids),
        }

    def attention_examples(self, token_strings_or_none=None, class_names=None):
        """The `attention_figure` arguments of each drawn utterance."""
        return [
            attention_example(
                item["utterance_id"], item["audio_frames"], item["outputs"],
                token_count=item["token_count"],
                tokens=None if token_strings_or_none is None else token_strings_or_none[row],
                label=item["label"], class_names=class_names,
            )
            for row, item in enumerate(self.attention)
        ]


class _AttentionChoice:
    """The first `per_class` ids (sorted) of each class, chosen as batches go by.

    The same utterances as `select_attention_examples` over the whole group,
    without keeping more than `per_class` of each class in memory.
    """

    def __init__(self, per_class):
        self.per_class = per_class
        self.by_class = {}  # class id -> sorted [(id, arrival, example)]
        self.arrivals = 0  # tells equal ids apart, in the order they came

    def offer(self, inputs, outputs, labels, utterance_ids):
        """Keep the utterances of a batch that are among the first of their class."""
        if self.per_class <= 0:
            return  # no attention figures: nothing to keep
        for row, (utterance_id, label) in enumerate(zip(utterance_ids, labels)):
            chosen = self.by_class.setdefault(int(label), [])
            self.arrivals += 1
            if len(chosen) >= self.per_class and utterance_id >= chosen[-1][0]:
                continue
            example = _example(inputs, outputs, row, label, utterance_id)
            bisect.insort(chosen, (utterance_id, self.arrivals, example))
            del chosen[self.per_class:]

    def chosen(self):
        """The kept utterances, by class id, then id."""
        return [
            example
            for label in sorted(self.by_class)
            for _, _, example in self.by_class[label]
        ]


def _example(inputs, outputs, row, label, utterance_id):
    """One utterance's valid frames, token count and probe outputs."""
    frames = int(np.asarray(inputs["audio_length"])[row])
    return {
        "utterance_id": utterance_id,
        "label": int(label),
        "audio_frames": np.asarray(inputs["audio_features"][row])[:frames],
        "token_count": int(np.asarray(inputs["text_length"])[row]),
        "outputs": {
            key: value[row] for key, value in outputs.items()
            if "/" in key or key == "probabilities"
        },
    }


def predict_held_out(model, dataset, per_class=2):
    """Run `model` once over the held-out group, for every held-out view.

    Args:
        model: an `SMCNModel` (a functional model with `probabilities`).
        dataset: `make_dataset(..., include_metadata=True)` of the held-out
            group (e.g. `smcn_tf.evaluate.held_out_dataset`).
        per_class: utterances of each class the attention figures draw.

    Returns:
        A `HeldOutPredictions`.

    Raises:
        ValueError: the dataset is empty.
    """
    keys = sorted(output_names(model) & set(EMBEDDING_OUTPUTS))
    probe = attention_probe(model, extra_outputs=keys)
    # One traced function for all batches; reduce_retracing keeps padded
    # shapes from retracing each batch (as evaluate.predict_dataset does).
    predict = tf.function(lambda inputs: probe(inputs, training=False), reduce_retracing=True)
    choice = _AttentionChoice(per_class)
    labels, probabilities, ids = [], [], []
    embeddings = {key: [] for key in keys}
    for inputs, batch_labels, metadata in dataset:
        outputs = {key: np.asarray(value) for key, value in predict(inputs).items()}
        batch_ids = [value.decode("utf-8") for value in np.asarray(metadata["utterance_id"])]
        batch_labels = np.asarray(batch_labels)
        probabilities.append(outputs["probabilities"])
        labels.append(batch_labels)
        ids.extend(batch_ids)
        for key in keys:
            embeddings[key].append(outputs[key].astype(np.float32))
        choice.offer(inputs, outputs, batch_labels, batch_ids)
    if not labels:
        raise ValueError("The evaluation dataset is empty.")
    return HeldOutPredictions(
        labels=np.concatenate(labels).astype(np.int64),
        probabilities=np.concatenate(probabilities),
        utterance_ids=ids,
        embeddings={key: np.concatenate(values) for key, values in embeddings.items()},
        attention=choice.chosen(),
    )


def log_held_out_views(board_dir, held_out, scores, class_names, step,
                       token_strings_or_none=None):
    """The held-out confusion matrix, report, attention figures and projector.

    Args:
        board_dir: `<run>/tensorboard/<fold>`.
        held_out: the fold's `HeldOutPredictions`.
        scores: their `smcn_tf.evaluate.fold_scores` (what results.json holds).
        class_names: the class names.
        step: the summary step (train.py uses the number of epochs).
        token_strings_or_none: None, or the token strings of each utterance
            of `held_out.attention_ids`.
    """
    held_out_dir = os.path.join(board_dir, HELD_OUT_DIR)
    log_held_out_scores(held_out_dir, scores, class_names, step)
    write_attention(
        held_out_dir, held_out.attention_examples(token_strings_or_none, class_names), step
    )
    write_embeddings(
        os.path.join(board_dir, PROJECTOR_DIR), held_out.embeddings, held_out.utterance_ids,
        held_out.labels, held_out.predictions, class_names,
    )
