"""Running a model over a dataset for the TensorBoard views: chosen outputs, concatenated."""

import numpy as np
import tensorflow as tf


def batch_inputs_of(element):
    """The inputs of a dataset element: `inputs` or the first of `(inputs, labels, ...)`."""
    return element[0] if isinstance(element, (tuple, list)) else element


def predictor(model, keys):
    """A traced function: inputs -> the model's outputs named in `keys`."""
    def outputs_of(inputs):
        outputs = model(inputs, training=False)
        return {key: outputs[key] for key in keys if key in outputs}

    return tf.function(outputs_of, reduce_retracing=True)


def output_names(model):
    """The names of a functional model's output dict (empty for another output)."""
    outputs = getattr(model, "output", None)
    return set(outputs) if isinstance(outputs, dict) else set()


def run_model(predict, dataset, max_batches=None):
    """Concatenated outputs, labels and utterance ids (if the dataset has them)."""
    collected, labels, ids = {}, [], []
    for index, element in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        outputs = predict(batch_inputs_of(element))
        for key, value in outputs.items():
            collected.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
        if isinstance(element, (tuple, list)) and len(element) > 1:
            labels.append(np.asarray(element[1]).reshape(-1))
        if (
            isinstance(element, (tuple, list))
            and len(element) > 2
            and isinstance(element[2], dict)
            and "utterance_id" in element[2]
        ):
            ids.extend(
                value.decode("utf-8") for value in np.asarray(element[2]["utterance_id"])
            )
    result = {key: np.concatenate(values) for key, values in collected.items()}
    result["labels"] = np.concatenate(labels).astype(np.int64) if labels else None
    result["utterance_ids"] = ids
    return result
