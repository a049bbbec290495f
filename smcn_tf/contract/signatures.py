"""The served signatures of an SMCN: names, inputs and outputs, defined once.

`SIGNATURES` is the contract every export and every server shares:
`signature_specs` gives the `tf.TensorSpec`s a serving module (the exported
`SMCNServingModule`, and the contract stand-in of the tests) traces its
functions with, `signature_contract` the concrete shapes `smcn.json`
records, and `input_checks` checks a request against the same names.

Signatures:

    serving_default (raw inputs; log-Mel and BERT run inside the graph):
        inputs:  waveform        float32 [batch, samples]   16 kHz mono, zero-padded
                 waveform_length int32   [batch]            valid samples per item
                 input_ids       int32   [batch, tokens]    WordPiece ids, [CLS] .. [SEP]
                 attention_mask  int32   [batch, tokens]    1 on real tokens, 0 on padding
    features (precomputed features, as training reads them):
        inputs:  audio_features  float32 [batch, frames, audio_dim]
                 audio_length    int32   [batch]
                 text_features   float32 [batch, tokens, text_dim]
                 text_length     int32   [batch]
    both answer:
                 probabilities   float32 [batch, classes]
                 class_id        int32   [batch]
                 class_name      string  [batch]
                 modality        string  [batch]            "both", "audio" or "text"
                 audio_attention float32 [batch, frames]
                 text_attention  float32 [batch, tokens]

No TensorFlow at import: `signature_specs` imports it when called, so the
clients and `smcn serve` read the names cheaply.
"""

# The two modalities, in the order every branch, input and output uses them.
MODALITIES = ("audio", "text")
RAW_SIGNATURE = "serving_default"
FEATURES_SIGNATURE = "features"

OUTPUTS = {
    "probabilities": ("float32", ["batch", "classes"]),
    "class_id": ("int32", ["batch"]),
    "class_name": ("string", ["batch"]),
    "modality": ("string", ["batch"]),
    "audio_attention": ("float32", ["batch", "frames"]),
    "text_attention": ("float32", ["batch", "tokens"]),
}
# The serving contract: signature -> inputs/outputs -> name -> (dtype, dims).
# A dim is a name: `audio_dim`, `text_dim` and `classes` have the model's
# sizes, every other dim any size.
SIGNATURES = {
    RAW_SIGNATURE: {
        "inputs": {
            "waveform": ("float32", ["batch", "samples"]),
            "waveform_length": ("int32", ["batch"]),
            "input_ids": ("int32", ["batch", "tokens"]),
            "attention_mask": ("int32", ["batch", "tokens"]),
        },
        "outputs": OUTPUTS,
    },
    FEATURES_SIGNATURE: {
        "inputs": {
            "audio_features": ("float32", ["batch", "frames", "audio_dim"]),
            "audio_length": ("int32", ["batch"]),
            "text_features": ("float32", ["batch", "tokens", "text_dim"]),
            "text_length": ("int32", ["batch"]),
        },
        "outputs": OUTPUTS,
    },
}
# The input names of each signature, in argument order.
RAW_INPUTS = tuple(SIGNATURES[RAW_SIGNATURE]["inputs"])
FEATURE_INPUTS = tuple(SIGNATURES[FEATURES_SIGNATURE]["inputs"])


def input_ranks(signature_key):
    """The rank of each input of a signature.

    Args:
        signature_key: `"serving_default"` or `"features"`.

    Returns:
        A dict `{input name: rank}`.

    Example:

    >>> input_ranks("features")
    {'audio_features': 3, 'audio_length': 1, 'text_features': 3, 'text_length': 1}
    """
    inputs = SIGNATURES[signature_key]["inputs"]
    return {name: len(dims) for name, (_, dims) in inputs.items()}


def signature_contract(audio_dim, text_dim, num_classes):
    """The served signatures with concrete shapes, as `smcn.json` records them.

    Args:
        audio_dim: the model's audio feature size.
        text_dim: the model's text feature size.
        num_classes: the number of classes.

    Returns:
        A dict `{signature: {"inputs"|"outputs": {name: {"dtype", "shape",
        "dims"}}}}` where `shape` uses -1 for a dimension of any size (as
        `saved_model_cli` shows it) and `dims` names each dimension.

    Example:

    >>> signature_contract(78, 384, 4)["features"]["inputs"]["audio_features"]["shape"]
    [-1, -1, 78]
    """
    sizes = {
        "audio_dim": int(audio_dim),
        "text_dim": int(text_dim),
        "classes": int(num_classes),
    }
    contract = {}
    for signature, sides in SIGNATURES.items():
        contract[signature] = {}
        for side, tensors in sides.items():
            contract[signature][side] = {
                name: {
                    "dtype": dtype,
                    "shape": [sizes.get(dim, -1) for dim in dims],
                    "dims": list(dims),
                }
                for name, (dtype, dims) in tensors.items()
            }
    return contract


def signature_specs(audio_dim, text_dim):
    """The input `tf.TensorSpec`s of each signature, in argument order.

    Args:
        audio_dim: the model's audio feature size.
        text_dim: the model's text feature size.

    Returns:
        A dict `{signature: [tf.TensorSpec, ...]}`, the `input_signature`
        of that signature's `tf.function`; each spec is named after its input.

    Example:

    >>> signature_specs(78, 384)["features"][0]
    TensorSpec(shape=(None, None, 78), dtype=tf.float32, name='audio_features')
    """
    # Imported here: the clients read the names above without TensorFlow.
    import tensorflow as tf

    sizes = {"audio_dim": int(audio_dim), "text_dim": int(text_dim)}
    return {
        signature: [
            tf.TensorSpec([sizes.get(dim) for dim in dims], tf.as_dtype(dtype), name)
            for name, (dtype, dims) in sides["inputs"].items()
        ]
        for signature, sides in SIGNATURES.items()
    }
