"""The rules a request to a served SMCN must meet, in numpy and in the graph.

Two places check the same rules, with the same words:

- the exported graph (`graph_checks_raw`, `graph_checks_features`,
  `graph_check_modalities`): `tf.debugging.Assert` ops, core TensorFlow only,
  made data dependencies of every output, so the stock TF Serving refuses a
  bad request with INVALID_ARGUMENT too. Its message reads
  `assertion failed: [input waveform: row] [1] [holds NaN or infinite values]`.
- the local server and the in-process client (`InputRules.check`), in numpy
  before the graph runs, with the clean text of the same message:
  `input waveform: row 1 holds NaN or infinite values`.

`clean_graph_error` turns any `tf.errors.OpError` message into text without
graph internals (node names, stack traces): an assertion becomes its
message, anything else its first meaningful line.

The rules (both signatures): every input has the same batch size, and at
least one row (`empty batch: send at least one row`). Per row of a batch:

`serving_default` (waveform, waveform_length, input_ids, attention_mask)
    - `input_ids` and `attention_mask` have the same shape;
    - `waveform` is at most `max_waveform_samples` long (what `max_frames`
      pooled frames read, plus 1 s), and holds only finite values;
    - `0 <= waveform_length <= samples` (the padded waveform size);
    - `0 <= input_ids < vocab_size`;
    - `attention_mask` holds only 0 and 1, as a prefix of 1s (ones, then
      zeros); positions after the row's first `[SEP]` are padding and not
      checked (TF Serving's batching pads the mask with 1 there).
`features` (audio_features, audio_length, text_features, text_length)
    - the features are finite;
    - `0 <= audio_length <= frames`, `0 <= text_length <= tokens`.
Both: a row whose audio is missing (fewer than `min_audio_samples` samples,
or `audio_length` 0) or whose text is missing (no token besides `[CLS]` and
`[SEP]`, or `text_length` 0) is answered by the other modality's unimodal
head; with both missing, or a missing modality that the model cannot do
without (a variant without unimodal heads, or the only modality of a
unimodal variant), the request is refused.
"""

import re

import numpy as np

from smcn_tf.features import MIN_SECONDS_DEFAULT
from smcn_tf.contract.errors import invalid_argument
from smcn_tf.contract.signatures import (
    FEATURE_INPUTS,
    MODALITIES,
    FEATURES_SIGNATURE,
    RAW_INPUTS,
    RAW_SIGNATURE,
    input_ranks,
)

BOTH = "both"
EMPTY_BATCH_MESSAGE = "empty batch: send at least one row"
# Audio shorter than this is treated as missing: too short to carry emotion.
DEFAULT_MIN_AUDIO_SECONDS = MIN_SECONDS_DEFAULT


class InputRules:
    """What a served SMCN accepts, as `assets.extra/smcn.json` records it.

    Args:
        modalities: the modalities the model reads.
        unimodal_heads: the modalities with a head that answers alone (eq. 7).
        variant: the model variant, for messages.
        vocab_size: ids must be below it; `None` when the model reads no text.
        cls_token_id: the `[CLS]` id (not a word of the transcript).
        separator_token_id: the `[SEP]` id that ends a row's real tokens.
        min_audio_samples: audio shorter than this counts as missing.
        sample_rate: the waveform rate, for messages.
        modality_fallback: whether the graph answers a row with one modality
            (exports made before it existed answer every row with the fused
            head; then only the value checks apply).
        max_waveform_samples: the longest `waveform` (samples per row) the
            model can use; `None`: no bound (exports made before it).

    Example:

    >>> rules = InputRules(vocab_size=100, cls_token_id=2, separator_token_id=3,
    ...                    min_audio_samples=1600)
    >>> rules.to_json()["min_audio_seconds"]
    0.1
    """

    def __init__(
        self,
        modalities=MODALITIES,
        unimodal_heads=MODALITIES,
        variant=None,
        vocab_size=None,
        cls_token_id=None,
        separator_token_id=None,
        min_audio_samples=0,
        sample_rate=16000,
        modality_fallback=True,
        max_waveform_samples=None,
    ):
        self.modalities = tuple(modalities)
        self.unimodal_heads = tuple(unimodal_heads)
        self.variant = variant
        self.vocab_size = None if vocab_size is None else int(vocab_size)
        self.cls_token_id = cls_token_id
        self.separator_token_id = separator_token_id
        self.min_audio_samples = int(min_audio_samples)
        self.sample_rate = int(sample_rate)
        self.modality_fallback = bool(modality_fallback)
        self.max_waveform_samples = (
            None if max_waveform_samples is None else int(max_waveform_samples)
        )

    @property
    def special_token_ids(self):
        """The ids that are not words of the transcript (`[CLS]`, `[SEP]`)."""
        return tuple(
            int(token) for token in (self.cls_token_id, self.separator_token_id)
            if token is not None
        )

    def to_json(self):
        """The `input_checks` section of `smcn.json`."""
        return {
            "modalities": list(self.modalities),
            "unimodal_heads": list(self.unimodal_heads),
            "variant": self.variant,
            "vocab_size": self.vocab_size,
            "cls_token_id": self.cls_token_id,
            "separator_token_id": self.separator_token_id,
            "min_audio_samples": self.min_audio_samples,
            "min_audio_seconds": self.min_audio_samples / self.sample_rate,
            "sample_rate": self.sample_rate,
            "modality_fallback": self.modality_fallback,
            "max_waveform_samples": self.max_waveform_samples,
        }

    @classmethod
    def from_description(cls, description):
        """The rules of an export's `smcn.json` dict; `None` when it has none.

        An export made before `input_checks` existed gets the value checks
        that need no knowledge of the model (no vocabulary bound, no
        missing-modality answer).
        """
        if not isinstance(description, dict) or not description:
            return None
        checks = description.get("input_checks")
        if isinstance(checks, dict):
            known = {
                key: checks[key] for key in (
                    "modalities", "unimodal_heads", "variant", "vocab_size", "cls_token_id",
                    "separator_token_id", "min_audio_samples", "sample_rate",
                    "modality_fallback", "max_waveform_samples",
                ) if key in checks
            }
            return cls(**known)
        tokenizer = description.get("tokenizer") or {}
        audio = description.get("audio") or {}
        return cls(
            separator_token_id=tokenizer.get("separator_token_id"),
            sample_rate=audio.get("sample_rate") or 16000,
            modality_fallback=False,
        )

    def _describe(self):
        return f"variant {self.variant}" if self.variant else "this model"

    def missing_reason(self, signature_key, modality):
        """Why a row counts as having no audio / no text, for messages."""
        if signature_key == FEATURES_SIGNATURE:
            return f"{modality}_length 0"
        if modality == "text":
            return "no token besides CLS and SEP"
        if self.min_audio_samples > 1:
            return (
                f"waveform_length below {self.min_audio_samples} samples, "
                f"{self.min_audio_samples / self.sample_rate:g} s"
            )
        return "waveform_length 0"

    # numpy checks.
    def check(self, signature_key, inputs):
        """Refuses a request that breaks a rule, naming the input and the row.

        Args:
            signature_key: the signature the request runs.
            inputs: input name -> numpy array, already checked against the
                signature's dtypes, ranks and batch sizes.

        Raises:
            ServingError: INVALID_ARGUMENT.
        """
        if signature_key == RAW_SIGNATURE and _shaped(inputs, RAW_RANKS):
            audio_present, text_present = self._check_raw(inputs)
        elif signature_key == FEATURES_SIGNATURE and _shaped(inputs, FEATURE_RANKS):
            audio_present, text_present = self._check_features(inputs)
        else:
            return  # not SMCN's contract: the signature's own checks apply
        if self.modality_fallback:
            for message in _modality_failures(self, signature_key, audio_present, text_present):
                raise invalid_argument(_join(message))

    def _check_raw(self, inputs):
        waveform = inputs["waveform"]
        length = inputs["waveform_length"]
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        _check_batch(inputs, RAW_INPUTS)
        if ids.shape != mask.shape:
            raise invalid_argument(_join(_shape_message(list(ids.shape), list(mask.shape))))
        limit = self.max_waveform_samples
        if limit is not None and waveform.shape[1] > limit:
            raise invalid_argument(_join(_waveform_size_message(waveform.shape[1], limit, self)))
        _check_finite("waveform", waveform)
        samples = waveform.shape[1]
        bad = (length < 0) | (length > samples)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise invalid_argument(_join(_length_message(
                "waveform_length", row, int(length[row]), "the padded waveform size", samples
            )))
        if self.vocab_size is not None:
            bad = (ids < 0) | (ids >= self.vocab_size)
        else:
            bad = ids < 0
        if bad.any():
            row, position = (int(value) for value in np.argwhere(bad)[0])
            raise invalid_argument(_join(
                _id_message(row, int(ids[row, position]), position, self.vocab_size)
            ))
        bad = (mask != 0) & (mask != 1)
        if bad.any():
            row, position = (int(value) for value in np.argwhere(bad)[0])
            raise invalid_argument(_join(_mask_value_message(row, int(mask[row, position]), position)))
        checked = _checked_positions(ids, mask, self.separator_token_id)
        rises = np.zeros(mask.shape, bool)
        rises[:, 1:] = (mask[:, 1:] > mask[:, :-1]) & checked[:, 1:]
        if rises.any():
            row, position = (int(value) for value in np.argwhere(rises)[0])
            raise invalid_argument(_join(_mask_prefix_message(row, position)))
        audio_present = length >= max(self.min_audio_samples, 1)
        real = (mask == 1) & checked
        words = real & ~np.isin(ids, self.special_token_ids)
        return audio_present, words.any(axis=1)

    def _check_features(self, inputs):
        _check_batch(inputs, FEATURE_INPUTS)
        for modality, size_name in (("audio", "frames"), ("text", "tokens")):
            features = inputs[f"{modality}_features"]
            length = inputs[f"{modality}_length"]
            _check_finite(f"{modality}_features", features)
            size = features.shape[1]
            bad = (length < 0) | (length > size)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise invalid_argument(_join(_length_message(
                    f"{modality}_length", row, int(length[row]),
                    f"the padded number of {size_name}", size,
                )))
        return inputs["audio_length"] > 0, inputs["text_length"] > 0


RAW_RANKS = input_ranks(RAW_SIGNATURE)
FEATURE_RANKS = input_ranks(FEATURES_SIGNATURE)


def _shaped(inputs, ranks):
    """Whether `inputs` are numeric arrays with exactly these names and ranks."""
    if set(inputs) != set(ranks):
        return False
    return all(
        isinstance(inputs[name], np.ndarray) and inputs[name].ndim == rank
        and inputs[name].dtype.kind in "iuf"
        for name, rank in ranks.items()
    )


def _join(parts):
    """The text of a message given as parts (strings and numbers)."""
    return " ".join(str(part) for part in parts)


# The messages, as parts: strings, and row / value numbers (tensors in the graph).
def _batch_message(names, sizes):
    parts = []
    for index, (name, size) in enumerate(zip(names, sizes)):
        parts += [("inputs have different batch sizes: " if index == 0 else "") + name, size]
    return parts + ["(the first dimension of every input is the batch)"]


def _shape_message(ids_shape, mask_shape):
    return [
        "inputs input_ids and attention_mask have different shapes:", ids_shape, "and",
        mask_shape, "(send one attention_mask value per token id)",
    ]


def _nonfinite_message(name, row):
    return [f"input {name}: row", row, "holds NaN or infinite values (send finite numbers)"]


def _length_message(name, row, value, limit_text, limit):
    return [
        f"input {name}: row", row, "is", value, f"but must be between 0 and {limit_text}",
        limit,
    ]


def _waveform_size_message(samples, limit, rules):
    return [
        "input waveform: rows of", samples, "samples are longer than this model can use: "
        f"at most {limit} samples ({limit / rules.sample_rate:g} s) per row "
        "(max_frames x pooling x hop, plus 1 s); cut the audio to that length",
    ]


def _id_message(row, value, position, vocab_size):
    if vocab_size is None:
        bound = "but token ids must be 0 or more"
    else:
        bound = f"which is outside the vocabulary of {vocab_size} ids (0 to {vocab_size - 1})"
    return ["input input_ids: row", row, "holds id", value, "at position", position, bound]


def _mask_value_message(row, value, position):
    return [
        "input attention_mask: row", row, "holds", value, "at position", position,
        "but mask values must be 0 or 1",
    ]


def _mask_prefix_message(row, position):
    return [
        "input attention_mask: row", row, "has a 1 after a 0 at position", position,
        "but the mask must be ones on the real tokens then zeros on the padding",
    ]


def _missing_messages(rules, signature_key):
    """`{case: message parts without the row}` for the modality rules."""
    audio = f"no audio ({rules.missing_reason(signature_key, 'audio')})"
    text = f"no text ({rules.missing_reason(signature_key, 'text')})"
    if len(rules.modalities) == 1:
        needs = f"but {rules._describe()} reads only {rules.modalities[0]}"
    else:
        needs = (
            f"but {rules._describe()} needs both audio and text (it has no unimodal head "
            "to answer from one modality)"
        )
    return {
        "neither": ["has", f"{audio} and {text}; send at least one of them"],
        "no_audio_needed": ["has", f"{audio} {needs}"],
        "no_text_needed": ["has", f"{text} {needs}"],
    }


def _modality_failures(rules, signature_key, audio_present, text_present):
    """Yields the message of the first row that breaks a modality rule (numpy)."""
    messages = _missing_messages(rules, signature_key)
    for case, bad in _modality_conditions(rules, np.asarray(audio_present, bool),
                                         np.asarray(text_present, bool), np):
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            yield ["row", row] + messages[case]
            return


def _modality_conditions(rules, audio_present, text_present, ops):
    """`(case, bad rows)` for each modality rule; `ops` is numpy or tensorflow.math."""
    uses_audio, uses_text = "audio" in rules.modalities, "text" in rules.modalities
    missing_audio = ops.logical_not(audio_present)
    missing_text = ops.logical_not(text_present)
    conditions = []
    if uses_audio and uses_text:
        conditions.append(("neither", ops.logical_and(missing_audio, missing_text)))
    if uses_audio and not (uses_text and "text" in rules.unimodal_heads):
        conditions.append(("no_audio_needed", missing_audio))
    if uses_text and not (uses_audio and "audio" in rules.unimodal_heads):
        conditions.append(("no_text_needed", missing_text))
    return conditions


def _check_batch(inputs, names):
    sizes = [inputs[name].shape[0] for name in names]
    if len(set(sizes)) > 1:
        raise invalid_argument(_join(_batch_message(names, sizes)))
    if sizes[0] == 0:
        raise invalid_argument(EMPTY_BATCH_MESSAGE)


def _check_finite(name, array):
    finite = np.isfinite(array).reshape(array.shape[0], -1).all(axis=1)
    if not finite.all():
        raise invalid_argument(_join(_nonfinite_message(name, int(np.flatnonzero(~finite)[0]))))


def _checked_positions(ids, mask, separator_token_id):
    """Positions up to each row's first real `[SEP]` (all without one) (numpy)."""
    positions = np.arange(ids.shape[1])[np.newaxis, :]
    if separator_token_id is None or ids.shape[1] == 0:
        return np.ones(ids.shape, bool)
    separator = (ids == separator_token_id) & (mask == 1)
    has = separator.any(axis=1, keepdims=True)
    first = np.where(has, separator.argmax(axis=1)[:, np.newaxis], ids.shape[1])
    return positions <= first


# Graph checks: the same rules as tf.debugging.Assert ops.
def _tf():
    import tensorflow as tf

    return tf


def _assert(condition, parts):
    tf = _tf()
    data = [tf.constant(part) if isinstance(part, str) else part for part in parts]
    return tf.debugging.Assert(condition, data, summarize=8)


def _first_true(flags):
    """The index of the first True of a bool vector, or 0 (int32, any length)."""
    tf = _tf()
    rows = tf.cast(tf.where(flags)[:, 0], tf.int32)
    return tf.concat([rows, [0]], axis=0)[0]


def _first_true_2d(flags, values):
    """`(row, position, value)` of the first True of a bool matrix, zeros if none."""
    tf = _tf()
    where = tf.cast(tf.where(flags), tf.int32)
    where = tf.concat([where, tf.zeros([1, 2], tf.int32)], axis=0)
    value = tf.concat([tf.boolean_mask(values, flags), tf.zeros([1], values.dtype)], axis=0)
    return where[0, 0], where[0, 1], value[0]


def _after(checks, tensors):
    """`tensors` as identities that run only after `checks` passed."""
    tf = _tf()
    with tf.control_dependencies(checks):
        return [tf.identity(tensor) for tensor in tensors]


def _graph_batch_check(tensors, names):
    """One batch size for every input, and at least one row (an op running both checks)."""
    tf = _tf()
    sizes = [tf.shape(tensor)[0] for tensor in tensors]
    same = _assert(tf.reduce_all(tf.equal(tf.stack(sizes), sizes[0])), _batch_message(names, sizes))
    # After `same`, so rows that differ are reported as such, not as an empty batch.
    with tf.control_dependencies([same]):
        # Without it a 0-row batch fails deep in the model (MatMul shapes): INTERNAL.
        nonempty = _assert(sizes[0] > 0, [EMPTY_BATCH_MESSAGE])
    return tf.group(same, nonempty)


def _graph_finite_check(name, tensor):
    tf = _tf()
    flat = tf.reshape(tensor, [tf.shape(tensor)[0], -1])
    bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(flat), axis=1))
    return _assert(tf.logical_not(tf.reduce_any(bad)), _nonfinite_message(name, _first_true(bad)))


def _graph_length_check(name, length, size, limit_text):
    tf = _tf()
    bad = tf.logical_or(length < 0, length > size)
    value = tf.concat([tf.boolean_mask(length, bad), [0]], axis=0)[0]
    return _assert(
        tf.logical_not(tf.reduce_any(bad)),
        _length_message(name, _first_true(bad), value, limit_text, size),
    )


def graph_checks_raw(rules, waveform, waveform_length, input_ids, attention_mask):
    """The checks of `serving_default` in the graph.

    Args:
        rules: the `InputRules` of the export.
        waveform, waveform_length, input_ids, attention_mask: the signature's
            input tensors.

    Returns:
        A tuple `(waveform, waveform_length, input_ids, attention_mask)` of
        the same tensors, computed only once every check has passed (use
        them, not the inputs, so the checks are data dependencies of every
        output).
    """
    tf = _tf()
    shapes = _assert(
        tf.reduce_all(tf.equal(tf.shape(input_ids), tf.shape(attention_mask))),
        _shape_message(tf.shape(input_ids), tf.shape(attention_mask)),
    )
    batch = _graph_batch_check(
        [waveform, waveform_length, input_ids, attention_mask], RAW_INPUTS
    )
    gate = [shapes, batch]
    if rules.max_waveform_samples is not None:
        samples = tf.shape(waveform)[1]
        gate.append(_assert(
            samples <= rules.max_waveform_samples,
            _waveform_size_message(samples, rules.max_waveform_samples, rules),
        ))
    waveform, waveform_length, input_ids, attention_mask = _after(
        gate, [waveform, waveform_length, input_ids, attention_mask]
    )
    checks = [
        _graph_finite_check("waveform", waveform),
        _graph_length_check(
            "waveform_length", waveform_length, tf.shape(waveform)[1], "the padded waveform size"
        ),
    ]
    if rules.vocab_size is not None:
        bad = tf.logical_or(input_ids < 0, input_ids >= rules.vocab_size)
    else:
        bad = input_ids < 0
    row, position, value = _first_true_2d(bad, input_ids)
    checks.append(_assert(
        tf.logical_not(tf.reduce_any(bad)), _id_message(row, value, position, rules.vocab_size)
    ))
    bad = tf.logical_and(attention_mask != 0, attention_mask != 1)
    row, position, value = _first_true_2d(bad, attention_mask)
    checks.append(_assert(
        tf.logical_not(tf.reduce_any(bad)), _mask_value_message(row, value, position)
    ))
    checked = graph_checked_positions(input_ids, attention_mask, rules.separator_token_id)
    rises = tf.logical_and(attention_mask[:, 1:] > attention_mask[:, :-1], checked[:, 1:])
    row, position, _ = _first_true_2d(rises, attention_mask[:, 1:])
    checks.append(_assert(
        tf.logical_not(tf.reduce_any(rises)), _mask_prefix_message(row, position + 1)
    ))
    return tuple(_after(checks, [waveform, waveform_length, input_ids, attention_mask]))


def graph_checked_positions(input_ids, attention_mask, separator_token_id):
    """Positions up to each row's first real `[SEP]` (all without one) (graph)."""
    tf = _tf()
    if separator_token_id is None:
        return tf.ones_like(input_ids, tf.bool)
    separator = tf.logical_and(
        tf.equal(input_ids, separator_token_id), tf.not_equal(attention_mask, 0)
    )
    tokens = tf.shape(input_ids)[1]
    positions = tf.range(tokens, dtype=tf.int32)[tf.newaxis, :]
    # The first separator of each row; `tokens` for a row without one.
    first = tf.reduce_min(
        tf.where(separator, tf.broadcast_to(positions, tf.shape(input_ids)), tokens), axis=1
    )
    return positions <= first[:, tf.newaxis]


def graph_checks_features(audio_features, audio_length, text_features, text_length):
    """The checks of the `features` signature in the graph; see `graph_checks_raw`."""
    tf = _tf()
    tensors = [audio_features, audio_length, text_features, text_length]
    tensors = _after([_graph_batch_check(tensors, FEATURE_INPUTS)], tensors)
    audio_features, audio_length, text_features, text_length = tensors
    checks = [
        _graph_finite_check("audio_features", audio_features),
        _graph_finite_check("text_features", text_features),
        _graph_length_check(
            "audio_length", audio_length, tf.shape(audio_features)[1],
            "the padded number of frames",
        ),
        _graph_length_check(
            "text_length", text_length, tf.shape(text_features)[1],
            "the padded number of tokens",
        ),
    ]
    return tuple(_after(checks, tensors))


def graph_check_modalities(rules, signature_key, audio_present, text_present):
    """The modality rules in the graph.

    Args:
        rules: the `InputRules`.
        signature_key: the signature being built, for messages.
        audio_present, text_present: bool `[batch]` tensors.

    Returns:
        A tuple `(checks, modality)`: the assert ops (make every output
        depend on them) and the string `[batch]` tensor naming the input
        that answers each row ("both", "audio" or "text").
    """
    tf = _tf()
    messages = _missing_messages(rules, signature_key)
    checks = [
        _assert(tf.logical_not(tf.reduce_any(bad)), ["row", _first_true(bad)] + messages[case])
        for case, bad in _modality_conditions(rules, audio_present, text_present, tf.math)
    ]
    if rules.modalities == ("audio",) or rules.modalities == ("text",):
        modality = tf.fill(tf.shape(audio_present), rules.modalities[0])
    else:
        modality = tf.where(
            tf.logical_and(audio_present, text_present),
            tf.constant(BOTH),
            tf.where(audio_present, tf.constant("audio"), tf.constant("text")),
        )
    return checks, modality


# Error messages of the graph, cleaned.
_ASSERTION = re.compile(r"assertion failed: ((?:\[[^\[\]]*\] ?)+)")
_GROUP = re.compile(r"\[([^\[\]]*)\]")
_NUMBERS = re.compile(r"^-?\d+(?: -?\d+)+$")
_NOISE = (
    "Graph execution error",
    "Detected at node",
    "<stack traces unavailable>",
    "Detected unsupported operations",
)


def clean_graph_error(message):
    """The message of a `tf.errors.OpError` without graph internals.

    An assertion of `graph_checks_*` becomes its own message; any other
    error its first line that is not a node name, a stack frame or an op
    wrapper.

    Example:

    >>> clean_graph_error("Graph execution error:\\n\\nDetected at node A\\n"
    ...                   "assertion failed: [input waveform: row] [1] [holds NaN]\\n"
    ...                   "\\t [[{{node A}}]] [Op:__inference_x_1]")
    'input waveform: row 1 holds NaN'
    """
    match = _ASSERTION.search(message)
    if match:
        parts = []
        for group in _GROUP.findall(match.group(1)):
            group = group.replace("\\'", "'")
            if _NUMBERS.match(group):
                group = "[" + ", ".join(group.split()) + "]"
            parts.append(group)
        return " ".join(parts)
    for line in message.splitlines():
        line = line.strip()
        if not line or any(line.startswith(noise) for noise in _NOISE):
            continue
        if line.startswith("[[") or line.startswith("File ") or line.startswith("{{"):
            continue
        line = re.sub(r"\s*\[\[\{\{.*$", "", line)
        line = re.sub(r"\s*\[Op:[^\]]*\]", "", line)
        line = re.sub(r"\{\{[^}]*\}\}", "", line).strip()
        if line:
            return line
    return "the model could not run on this input"
