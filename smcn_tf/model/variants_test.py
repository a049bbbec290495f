"""Each Table 3 variant, checked in its built graph, and masking across a batch.

The first tests walk the functional graph back from the final head and name
each utterance-level feature that reaches it by what it is computed from,
not by a layer name or by `Variant`:

- F^i, semantic: attention over H^i, the intra-modal BiGRU branch (eq. 3);
- Fc^i, calibration: attention over H1^i, the calibration branch (eq. 10);
- I1'^i, interaction: attention over Φ1(H^i, H1^i) (eq. 12-13).

The result must match the rows of the paper's Table 3 (section 3.4).

The last tests check that an item's outputs do not depend on the batch it
is in: batched with longer items, padded with arbitrary values up to their
length, it gives the same outputs as alone.
"""

import keras
import numpy as np
import pytest

from smcn_tf.model.layers import AttentionPooling
from smcn_tf.model.smcn import VARIANTS, build_smcn
from smcn_tf.model.recurrent import FusedBidirectionalGRU

AUDIO_DIM, TEXT_DIM, CLASSES = 3, 5, 4
TINY = dict(
    audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, num_classes=CLASSES, hidden_units=2,
    head_units=2, attention_units=2,
)

F, FC, I1 = "semantic F", "calibration Fc", "interaction I1'"
# Table 3, from the paper's text (section 3.4): per modality, the features the
# final classifier reads. Audio / Text: BiGRU + attention alone, classified
# from F^i; Cat: "the high-level semantic features of the two modalities";
# Intra-modal learning: F^a and F^t within SMCN; Inter-modal calibration:
# Fc^a and Fc^t; First interaction: the temporal-scale interaction I1'^i
# only; Second interaction: the utterance-level stage only, Φ2(F^i, Fc^i);
# SMCN: both stages, I2^i = Φ2(I1'^i, F^i, Fc^i) (eq. 14).
TABLE_3 = {
    "audio": {"audio": {F}},
    "text": {"text": {F}},
    "cat": {"audio": {F}, "text": {F}},
    "intra": {"audio": {F}, "text": {F}},
    "inter": {"audio": {FC}, "text": {FC}},
    "first_interaction": {"audio": {I1}, "text": {I1}},
    "second_interaction": {"audio": {F, FC}, "text": {F, FC}},
    "smcn": {"audio": {I1, F, FC}, "text": {I1, F, FC}},
}


def _producer(tensor):
    """The layer that made `tensor`, which of its outputs it is, and its call."""
    layer, node_index, output_index = tensor._keras_history
    node = layer._inbound_nodes[node_index]
    return layer, output_index, node


def _positional(node):
    return keras.tree.flatten(node.arguments.args)


def _source_inputs(tensor):
    """The model inputs a tensor is computed from (through positional arguments)."""
    layer, _, node = _producer(tensor)
    if isinstance(layer, keras.layers.InputLayer):
        return {layer.name}
    return set().union(*(_source_inputs(argument) for argument in _positional(node)))


def _recurrent_branch(tensor):
    """`(modality, "intra" | "calibration")` for a BiGRU output, else None."""
    layer, output_index, node = _producer(tensor)
    if isinstance(layer, FusedBidirectionalGRU):
        branch = layer.branches[output_index]
    elif isinstance(layer, keras.layers.Bidirectional):
        # The "keras" core: one Bidirectional(GRU) per branch.
        branch = layer.name.split("_")[1]
    else:
        return None
    (features,) = _source_inputs(tensor)
    return features[: -len("_features")], branch


def _feature_kind(tensor):
    """`(modality, kind)` of an utterance-level feature, from how it is computed."""
    layer, output_index, node = _producer(tensor)
    assert isinstance(layer, AttentionPooling) and output_index == 0, (
        f"{layer.name}[{output_index}] is not an attention-pooled feature"
    )
    # Every pooling is masked by the modality's lengths.
    assert "mask" in node.arguments.kwargs, layer.name
    (sequence,) = _positional(node)
    branch = _recurrent_branch(sequence)
    if branch is not None:
        modality, name = branch
        return modality, {"intra": F, "calibration": FC}[name]
    # Φ1 of the two branches of one modality: the first interaction, eq. 12.
    fusion, _, fusion_node = _producer(sequence)
    branches = [_recurrent_branch(argument) for argument in _positional(fusion_node)]
    modalities = {branch[0] for branch in branches if branch is not None}
    assert len(modalities) == 1 and sorted(b[1] for b in branches) == ["calibration", "intra"], (
        f"{layer.name} pools {fusion.name}, which is not Φ1(H, H1) of one modality"
    )
    return modalities.pop(), I1


def _skip(tensor, layer_types):
    while isinstance(_producer(tensor)[0], layer_types):
        (tensor,) = _positional(_producer(tensor)[2])
    return tensor


def final_head_features(model):
    """Per modality, the set of feature kinds that reach the final classifier.

    Also checks the shape of the head on the way: the `probabilities` output
    is a softmax Dense; multimodal variants concatenate one vector per
    modality (`joint_features`), each a feature or a Φ2 of several.
    """
    probabilities = model.output["probabilities"]
    head, _, node = _producer(probabilities)
    assert isinstance(head, keras.layers.Dense) and head.activation.__name__ == "softmax"
    (joint,) = _positional(node)
    joint = _skip(joint, keras.layers.Dropout)
    if head.name != "emotion_head":
        # A unimodal row: its own two-layer head (eq. 7) is the prediction.
        assert head.name.endswith("_head"), head.name
        hidden_layer, _, hidden_node = _producer(joint)
        assert isinstance(hidden_layer, keras.layers.Dense), hidden_layer.name
        (feature,) = _positional(hidden_node)
        modality, kind = _feature_kind(_skip(feature, keras.layers.Dropout))
        return {modality: {kind}}
    concatenate, _, concat_node = _producer(joint)
    assert isinstance(concatenate, keras.layers.Concatenate), concatenate.name
    groups = {}
    for part in _positional(concat_node):
        layer, _, part_node = _producer(part)
        if isinstance(layer, AttentionPooling):
            kinds = [_feature_kind(part)]
        else:
            # Φ2 at utterance level (eq. 14) over several features of one modality.
            kinds = [_feature_kind(argument) for argument in _positional(part_node)]
            assert len(kinds) >= 2, layer.name
        modalities = {modality for modality, _ in kinds}
        assert len(modalities) == 1, f"{layer.name} mixes modalities before the head"
        modality = modalities.pop()
        assert modality not in groups, f"{modality} reaches the head twice"
        assert len({kind for _, kind in kinds}) == len(kinds), f"{layer.name} repeats a feature"
        groups[modality] = {kind for _, kind in kinds}
    return groups


def test_table_3_lists_every_variant():
    assert set(TABLE_3) == set(VARIANTS)


@pytest.mark.parametrize("recurrent_core", ["fused", "keras"])
@pytest.mark.parametrize("variant", sorted(TABLE_3))
def test_the_final_head_reads_the_features_of_table_3(variant, recurrent_core):
    model = build_smcn(variant, recurrent_core=recurrent_core, dropout=0.1, **TINY)
    assert final_head_features(model) == TABLE_3[variant]


def test_the_walk_sees_through_audio_normalization():
    model = build_smcn("smcn", audio_normalization="utterance", **TINY)
    assert final_head_features(model) == TABLE_3["smcn"]


def test_a_custom_fusion_layer_is_still_recognised_as_phi():
    # Φ1 / Φ2 may be any Keras layer; the walk recognises I1' by its inputs.
    model = build_smcn(
        "smcn", first_fusion=keras.layers.Multiply(), second_fusion=keras.layers.Average(),
        **TINY,
    )
    assert final_head_features(model) == TABLE_3["smcn"]


# Each item: (audio length, text length). Item 0 is the shortest, item 1 the
# longest in audio, item 2 the longest in text.
LENGTHS = [(2, 1), (9, 4), (5, 7)]


def _item(rng, audio_length, text_length):
    return {
        "audio_features": rng.normal(size=(1, audio_length, AUDIO_DIM)).astype("float32"),
        "audio_length": np.array([audio_length], "int32"),
        "text_features": rng.normal(size=(1, text_length, TEXT_DIM)).astype("float32"),
        "text_length": np.array([text_length], "int32"),
    }


def _batch_with_junk_padding(rng, items):
    """The items in one batch, padded to the longest with large random values."""
    batch = {}
    for modality, dim in (("audio", AUDIO_DIM), ("text", TEXT_DIM)):
        longest = max(item[f"{modality}_length"][0] for item in items)
        rows = []
        for item in items:
            features = item[f"{modality}_features"]
            junk = 100.0 * rng.normal(size=(1, longest - features.shape[1], dim))
            rows.append(np.concatenate([features, junk.astype("float32")], axis=1))
        batch[f"{modality}_features"] = np.concatenate(rows)
        batch[f"{modality}_length"] = np.concatenate(
            [item[f"{modality}_length"] for item in items]
        )
    return batch


# Item 0's one token: alone, its attention is a softmax over one step.
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1:UserWarning")
@pytest.mark.parametrize(
    "variant, options",
    [
        ("smcn", {}),
        ("audio", {}),
        ("text", {}),
        ("smcn", {"audio_normalization": "utterance"}),
    ],
    ids=["smcn", "audio", "text", "smcn-utterance-norm"],
)
def test_an_item_is_the_same_alone_and_batched_with_longer_items(variant, options):
    keras.utils.set_random_seed(7)
    model = build_smcn(variant, **dict(TINY, hidden_units=4, attention_units=4), **options)
    rng = np.random.default_rng(7)
    items = [_item(rng, *lengths) for lengths in LENGTHS]
    batch = _batch_with_junk_padding(rng, items)
    batched = model(batch, training=False)
    for index, item in enumerate(items):
        alone = model(item, training=False)  # no padding at all
        for key, value in alone.items():
            value = np.asarray(value)[0]
            other = np.asarray(batched[key])[index]
            if key.endswith("_attention"):
                # The weights of the padded steps are exactly zero.
                assert np.all(other[value.shape[0]:] == 0), (key, index)
                other = other[: value.shape[0]]
            np.testing.assert_allclose(
                other, value, rtol=1e-5, atol=1e-5, err_msg=f"{key} of item {index}"
            )
    # The junk would show if it were read: counted as real steps, it changes item 0.
    unmasked = dict(batch)
    for modality in ("audio", "text"):
        steps = batch[f"{modality}_features"].shape[1]
        unmasked[f"{modality}_length"] = np.full(len(items), steps, "int32")
    assert not np.allclose(
        np.asarray(model(unmasked, training=False)["probabilities"])[0],
        np.asarray(batched["probabilities"])[0], rtol=1e-5, atol=1e-5,
    )
