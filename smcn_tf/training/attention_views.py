"""Where the model listens and reads: attention figures of a few held-out utterances.

For a few held-out utterances (`select_attention_examples`: the first ids of
each class, in sorted order), the log-Mel frames with the audio attention
under them and the token attention as bars over the tokens, one panel per
attention the variant has (intra F, calibration Fc, interaction I1'), logged
as images `attention/<utterance id>`.
"""

import os

import keras
import numpy as np

from smcn_tf.contract.signatures import MODALITIES
from smcn_tf.training.figures import attention_figure
from smcn_tf.training.summaries import ATTENTION_TAG_PREFIX, file_writer, image_summary

# Attention kinds, in drawing order: layer `<modality>_<kind>_attention`.
ATTENTION_KINDS = ("intra", "calibration", "interaction")


def select_attention_examples(utterance_ids, labels, per_class=2):
    """The utterances to draw: the first `per_class` ids (sorted) of each class.

    Deterministic whatever the order of the inputs.

    Args:
        utterance_ids: the held-out utterance ids.
        labels: their class ids.
        per_class: how many per class.

    Returns:
        A list of utterance ids, by class id, then id.
    """
    by_class = {}
    for utterance_id, label in zip(utterance_ids, np.asarray(labels).reshape(-1)):
        by_class.setdefault(int(label), []).append(str(utterance_id))
    chosen = []
    for label in sorted(by_class):
        chosen.extend(sorted(by_class[label])[:per_class])
    return chosen


def gather_examples(dataset, utterance_ids):
    """Pick utterances out of a `(inputs, labels, metadata)` dataset.

    Args:
        dataset: e.g. `make_dataset(records_dir, groups=test_groups,
            include_metadata=True)`.
        utterance_ids: the ids wanted.

    Returns:
        `(inputs, labels, ids)`: `inputs` a dict of numpy arrays padded to the
        longest chosen utterance, `labels` int64 `[k]`, `ids` in the order of
        `utterance_ids`.

    Raises:
        ValueError: an id is not in the dataset.
    """
    wanted = {str(utterance_id): None for utterance_id in utterance_ids}
    for inputs, labels, metadata in dataset:
        ids = [value.decode("utf-8") for value in np.asarray(metadata["utterance_id"])]
        for row, utterance_id in enumerate(ids):
            if utterance_id in wanted and wanted[utterance_id] is None:
                item = {}
                for modality in MODALITIES:
                    length = int(np.asarray(inputs[f"{modality}_length"])[row])
                    item[f"{modality}_features"] = np.asarray(
                        inputs[f"{modality}_features"][row]
                    )[:length]
                    item[f"{modality}_length"] = length
                wanted[utterance_id] = (item, int(np.asarray(labels)[row]))
        if all(value is not None for value in wanted.values()):
            break
    missing = [key for key, value in wanted.items() if value is None]
    if missing:
        raise ValueError(f"Utterance(s) {missing} are not in the dataset.")
    ids = list(wanted)
    items = [wanted[key][0] for key in ids]
    inputs = {}
    for modality in MODALITIES:
        lengths = np.array([item[f"{modality}_length"] for item in items], np.int32)
        features = [item[f"{modality}_features"] for item in items]
        padded = np.zeros(
            (len(items), max(1, int(lengths.max())), features[0].shape[-1]), np.float32
        )
        for row, values in enumerate(features):
            padded[row, : len(values)] = values
        inputs[f"{modality}_features"] = padded
        inputs[f"{modality}_length"] = lengths
    labels = np.array([wanted[key][1] for key in ids], np.int64)
    return inputs, labels, ids


def attention_probe(model, extra_outputs=()):
    """A `keras.Model` from the model's inputs to every attention's weights.

    Reads the second output (the weights) of each `<modality>_<kind>_attention`
    `AttentionPooling` layer the variant has. A model without those layers
    falls back to its `<modality>_attention` outputs (kind `"final"`).

    Args:
        model: a functional model (an `SMCNModel`).
        extra_outputs: names of the model's outputs to give as well (e.g.
            `audio_semantic`), so one pass serves several views.

    Returns:
        A model whose output dict maps `"<modality>/<kind>"` to `[batch, time]`
        weights, plus `"probabilities"` and the `extra_outputs`.
    """
    outputs = {}
    for modality in MODALITIES:
        for kind in ATTENTION_KINDS:
            try:
                layer = model.get_layer(f"{modality}_{kind}_attention")
            except ValueError:
                continue
            outputs[f"{modality}/{kind}"] = layer.output[1]
    model_outputs = model.output if isinstance(model.output, dict) else {}
    if not outputs:
        for modality in MODALITIES:
            if f"{modality}_attention" in model_outputs:
                outputs[f"{modality}/final"] = model_outputs[f"{modality}_attention"]
    for name in ("probabilities", *extra_outputs):
        if name in model_outputs:
            outputs[name] = model_outputs[name]
    return keras.Model(model.input, outputs, name="attention_probe")


def default_mel_bands(audio_dim):
    """The log-Mel bands of a frame: the first third of log-Mel + delta + delta-delta."""
    return audio_dim // 3 if audio_dim % 3 == 0 else audio_dim


def attention_examples(model, batch_inputs, utterance_ids, token_strings_or_none=None,
                       labels=None, class_names=None, n_mels=None):
    """Per-utterance attention data, sliced to the valid frames and tokens.

    Args:
        model: an `SMCNModel`.
        batch_inputs: the model's input dict for these utterances.
        utterance_ids: their ids.
        token_strings_or_none: None, or one list of token strings per utterance
            (`[CLS]`/`[SEP]` included, as the records' token vectors are).
        labels: optional true class ids.
        class_names: optional class names.
        n_mels: log-Mel bands drawn (default: `default_mel_bands`).

    Returns:
        A list of dicts with `utterance_id`, `spectrogram`, `audio_attention`,
        `tokens`, `tokens_note`, `text_attention`, `subtitle`: the keyword
        arguments of `attention_figure`.
    """
    probe = attention_probe(model)
    outputs = {key: np.asarray(value) for key, value in probe(batch_inputs, training=False).items()}
    features = np.asarray(batch_inputs["audio_features"])
    audio_lengths = np.asarray(batch_inputs["audio_length"]).reshape(-1)
    text_lengths = np.asarray(batch_inputs["text_length"]).reshape(-1)
    examples = []
    for row, utterance_id in enumerate(utterance_ids):
        frames = int(audio_lengths[row])
        examples.append(
            attention_example(
                utterance_id,
                features[row, :frames],
                {key: value[row] for key, value in outputs.items()},
                token_count=int(text_lengths[row]),
                tokens=None if token_strings_or_none is None else token_strings_or_none[row],
                label=None if labels is None else int(np.asarray(labels).reshape(-1)[row]),
                class_names=class_names,
                n_mels=n_mels,
            )
        )
    return examples


def attention_example(utterance_id, audio_frames, outputs, token_count, tokens=None,
                      label=None, class_names=None, n_mels=None):
    """One utterance's `attention_figure` arguments, from its probe outputs.

    Args:
        utterance_id: the utterance.
        audio_frames: its valid audio frames `[frames, audio_dim]`.
        outputs: its row of `attention_probe` outputs (`"<modality>/<kind>"`
            weights, at least as long as the valid frames and tokens, and
            `probabilities`, if the probe has them).
        token_count: its valid tokens.
        tokens: None, or its token strings.
        label: None, or its true class id.
        class_names: optional class names.
        n_mels: log-Mel bands drawn (default: `default_mel_bands`).

    Returns:
        A dict with `utterance_id`, `spectrogram`, `audio_attention`, `tokens`,
        `tokens_note`, `text_attention`, `subtitle`.
    """
    audio_frames = np.asarray(audio_frames)
    frames = audio_frames.shape[0]
    bands = n_mels or default_mel_bands(audio_frames.shape[-1])
    audio = {
        key.split("/")[1]: np.asarray(value)[:frames]
        for key, value in outputs.items() if key.startswith("audio/")
    }
    text = {
        key.split("/")[1]: np.asarray(value)[:token_count]
        for key, value in outputs.items() if key.startswith("text/")
    }
    labels, note = _token_labels(tokens, token_count) if text else (None, None)
    return {
        "utterance_id": utterance_id,
        "spectrogram": audio_frames[:, :bands] if audio else None,
        "audio_attention": audio,
        "tokens": labels,
        "tokens_note": note,
        "text_attention": text,
        "subtitle": _subtitle(label, outputs.get("probabilities"), class_names),
    }


def _token_labels(tokens, count):
    """The token axis labels, and a note when they are positions, not strings."""
    if tokens is not None and len(tokens) == count:
        return [str(token) for token in tokens], None
    note = (
        "token positions: the records store token vectors, not token strings"
        if tokens is None
        else f"token positions: {len(tokens)} token strings for {count} token vectors"
    )
    return [str(index) for index in range(count)], note


def _subtitle(label, probabilities, class_names):
    """`true: <class>   predicted: <class> (p = ...)`, of what is known, or None."""
    names = list(class_names) if class_names is not None else None
    parts = []
    if label is not None:
        parts.append(f"true: {names[label] if names else label}")
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        predicted = int(probabilities.argmax())
        parts.append(
            f"predicted: {names[predicted] if names else predicted} "
            f"(p = {float(probabilities[predicted]):.2f})"
        )
    return "   ".join(parts) or None


def log_attention(log_dir, model, batch_inputs, utterance_ids, token_strings_or_none,
                  step, labels=None, class_names=None, n_mels=None):
    """One image per utterance: its log-Mel frames and every attention over them.

    Tags `attention/<utterance id>`. Without token strings the token axis is
    labelled with positions, and the figure says so.

    Args:
        log_dir: `<run>/tensorboard/<fold>/held_out`.
        model: an `SMCNModel`.
        batch_inputs: the input dict of these utterances (`gather_examples`).
        utterance_ids: their ids.
        token_strings_or_none: None, or one list of token strings per
            utterance (e.g. from `token_strings`).
        step: the summary step.
        labels, class_names: optional, to title each image with the true and
            predicted class.
        n_mels: log-Mel bands drawn (default: `default_mel_bands`).

    Returns:
        The tags written.
    """
    examples = attention_examples(
        model, batch_inputs, utterance_ids, token_strings_or_none, labels, class_names, n_mels
    )
    return write_attention(log_dir, examples, step)


def write_attention(log_dir, examples, step):
    """Log `attention_figure(**example)` of each example as `attention/<utterance id>`.

    Returns:
        The tags written.
    """
    tags = []
    writer = file_writer(log_dir)
    with writer.as_default():
        for example in examples:
            tag = ATTENTION_TAG_PREFIX + _safe_tag(example["utterance_id"])
            image_summary(
                tag, attention_figure(**example), step,
                description="Log-Mel frames (valid frames only) with the audio attention "
                "weights under them, and the token attention weights, one panel per "
                "attention (intra F, calibration Fc, interaction I1').",
            )
            tags.append(tag)
    writer.close()
    return tags


def _safe_tag(text):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(text))


def token_strings(transcripts, tokenizer_dir, max_tokens):
    """Word pieces of transcripts as `smcn prepare` tokenized them.

    Uses the checkpoint's `transformers` tokenizer with the settings of
    `smcn_tf.features.text.TextEncoder` (special tokens, truncation to
    `max_tokens`), so each list lines up with an utterance's token vectors.

    Args:
        transcripts: a list of strings.
        tokenizer_dir: the text encoder checkpoint directory (the run's
            `features.json` `text_encoder`).
        max_tokens: the features' `max_tokens`.

    Returns:
        One list of token strings per transcript.
    """
    # Tokenizers only: no "PyTorch was not found" advice.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers  # slow to import; only the render script needs word pieces

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    encoded = tokenizer(
        list(transcripts), add_special_tokens=True, truncation=True, max_length=max_tokens,
        padding=False, return_attention_mask=False, return_token_type_ids=False,
    )
    return [tokenizer.convert_ids_to_tokens(ids) for ids in encoded["input_ids"]]
