"""`SMCNClient` answers the same in-process, over gRPC and over REST."""

import math

import numpy as np
import pytest
import soundfile

from smcn_tf.serving.client import Prediction, SMCNClient
from smcn_tf.contract.errors import ServingError
from smcn_tf.serving.local.server import serve
from tests.serving_support import CLASS_NAMES, MAX_TOKENS


@pytest.fixture(scope="module")
def server(export):
    server = serve(export, grpc_port=0, rest_port=0, poll_seconds=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = str(tmp_path_factory.mktemp("audio") / "clip_8k.wav")
    # 8 kHz stereo PCM: the client mixes it down and resamples it to 16 kHz.
    soundfile.write(path, (0.2 * rng.standard_normal((6000, 2))).astype("float32"), 8000,
                    subtype="PCM_16")
    return [
        (path, "I am so happy today!"),
        ((0.1 * rng.standard_normal(16000)).astype("float32"), "leave me alone"),
        ((0.3 * rng.standard_normal(5000)).astype("float32"), "what? " * 40),
    ]


def _clients(export, server):
    return {
        "in-process": SMCNClient(model_dir=export),
        "grpc": SMCNClient(grpc_target=server.grpc_target, class_names=CLASS_NAMES),
        "rest-instances": SMCNClient(rest_url=server.rest_url, class_names=CLASS_NAMES),
        "rest-inputs": SMCNClient(
            rest_url=server.rest_url, rest_format="inputs", class_names=CLASS_NAMES
        ),
    }


def _predict_everywhere(export, server, batch):
    """`predict_batch(batch)` in-process, over gRPC and over REST, by transport."""
    tokenizer_dir = f"{export}/1/assets.extra/tokenizer"
    results = {}
    for name, client in _clients(export, server).items():
        if client.transport != "in-process":
            # Remote clients cannot read the export: give them its tokenizer and settings.
            client.tokenizer = SMCNClient._load_tokenizer(tokenizer_dir)
            client.max_tokens, client.pooling, client.max_frames = MAX_TOKENS, 5, 500
        with client:
            results[name] = client.predict_batch(batch)
    return results


def test_every_transport_gives_the_same_predictions(export, server, items):
    results = _predict_everywhere(export, server, items)
    reference = results.pop("in-process")
    assert [p.model_version for p in reference] == [1, 1, 1]
    for name, predictions in results.items():
        for expected, got in zip(reference, predictions):
            assert got.class_name == expected.class_name, name
            assert got.class_id == expected.class_id, name
            assert got.tokens == expected.tokens, name
            for field in ("probabilities", "text_attention", "audio_attention"):
                np.testing.assert_allclose(
                    getattr(got, field), getattr(expected, field), rtol=1e-5, atol=1e-7,
                    err_msg=f"{name} {field}",
                )
    assert [p.model_version for p in results["grpc"]] == [1, 1, 1]


def test_predictions_are_trimmed_to_real_frames_and_tokens(export, items):
    with SMCNClient(model_dir=export) as client:
        assert client.max_tokens == MAX_TOKENS and client.class_names == list(CLASS_NAMES)
        predictions = client.predict_batch(items)
    samples = [12000, 16000, 5000]  # the 8 kHz file has 6000 samples: 12000 at 16 kHz
    for prediction, count in zip(predictions, samples):
        assert isinstance(prediction, Prediction)
        frames = math.ceil((1 + (count - 400) // 160) / 5)
        assert len(prediction.audio_attention) == frames
        assert math.isclose(sum(prediction.audio_attention), 1.0, rel_tol=1e-5)
        assert prediction.tokens[0] == "[CLS]" and prediction.tokens[-1] == "[SEP]"
        assert len(prediction.text_attention) == len(prediction.tokens)
        assert math.isclose(sum(prediction.text_attention), 1.0, rel_tol=1e-5)
        assert prediction.class_name == CLASS_NAMES[prediction.class_id]
        assert set(prediction.probability_by_class) == set(CLASS_NAMES)
        assert all(not token.startswith("[") for token, _ in prediction.top_tokens(3))
    assert predictions[0].tokens == ["[CLS]", "i", "am", "so", "happy", "today", "!", "[SEP]"]
    assert len(predictions[2].tokens) == MAX_TOKENS  # truncated, [SEP] kept
    single = SMCNClient(model_dir=export).predict(*items[1])
    np.testing.assert_allclose(single.probabilities, predictions[1].probabilities, rtol=1e-5)


def test_metadata_is_the_same_over_every_transport(export, server):
    answers = [client.get_metadata() for client in _clients(export, server).values()]
    assert all(answer == answers[0] for answer in answers[1:])
    assert answers[0]["model_spec"] == {"name": "smcn", "signature_name": "", "version": "1"}
    signatures = answers[0]["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "features"} <= set(signatures)


def test_remote_errors_are_serving_errors(server, items):
    for client in (
        SMCNClient(grpc_target=server.grpc_target, model_name="bert"),
        SMCNClient(rest_url=server.rest_url, model_name="bert"),
    ):
        with pytest.raises(ServingError) as caught:
            client.predict(*items[1])
        assert caught.value.code == "NOT_FOUND"
        assert "Latest(bert)" in caught.value.message
    with pytest.raises(ServingError) as caught:
        SMCNClient(grpc_target=server.grpc_target, version=4).predict(*items[1])
    assert caught.value.code == "NOT_FOUND" and "Specific(smcn, 4)" in caught.value.message


def test_an_unreachable_server_is_unavailable(items):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for client in (
        SMCNClient(grpc_target=f"127.0.0.1:{port}", timeout=5),
        SMCNClient(rest_url=f"http://127.0.0.1:{port}", timeout=5),
    ):
        with pytest.raises(ServingError) as caught:
            client.predict(*items[1])
        assert caught.value.code == "UNAVAILABLE"
        assert "Is the server running?" in caught.value.message


def test_bad_arguments_are_value_errors(export, items):
    with pytest.raises(ValueError, match="exactly one of"):
        SMCNClient()
    with pytest.raises(ValueError, match="exactly one of"):
        SMCNClient(model_dir=export, rest_url="http://localhost:1")
    with pytest.raises(ValueError, match="rest_format"):
        SMCNClient(rest_url="http://localhost:1", rest_format="rows")
    client = SMCNClient(model_dir=export)
    with pytest.raises(ValueError, match="1-D float waveform"):
        client.predict(np.zeros((2, 100), "float32"), "hi")
    with pytest.raises(ValueError, match="must be a string or None"):
        client.predict(items[1][0], 7)
    with pytest.raises(ValueError, match="no such file: /nonexistent.wav"):
        client.predict("/nonexistent.wav", "hi")
    with pytest.raises(ValueError, match="neither audio nor text"):
        client.predict(None, "  ")
    with pytest.raises(ValueError, match="No SavedModel"):
        SMCNClient(model_dir=f"{export}/1/assets.extra")


def test_the_real_export_serves_the_same_in_process_and_over_grpc(tmp_path, items):
    """The real `export_model` on a tiny SMCN, when its API takes these settings."""
    from smcn_tf.export.exporter import export_model
    from smcn_tf.features.text import default_checkpoint_dir
    from smcn_tf.model.smcn import build_smcn

    text_encoder = default_checkpoint_dir()  # installed by `make install`
    model = build_smcn(
        audio_dim=78, text_dim=384, num_classes=4, hidden_units=4, head_units=4,
        class_names=list(CLASS_NAMES),
    )
    settings = {"pooling": 5, "max_frames": 500, "max_tokens": 32, "text_encoder": text_encoder,
                "class_names": list(CLASS_NAMES)}
    version_dir = export_model(model, str(tmp_path), "smcn", feature_settings=settings)
    in_process = SMCNClient(model_dir=version_dir)
    assert in_process.tokenizer.vocab_size >= 1000, "the export carries no real tokenizer"
    with serve(str(tmp_path / "smcn"), grpc_port=0, rest_port=0, poll_seconds=0) as server:
        remote = SMCNClient(grpc_target=server.grpc_target, max_tokens=32, pooling=5,
                            max_frames=500, class_names=list(CLASS_NAMES))
        remote.tokenizer = in_process.tokenizer
        expected, got = in_process.predict_batch(items[:2]), remote.predict_batch(items[:2])
    for left, right in zip(expected, got):
        assert left.class_name == right.class_name and left.tokens == right.tokens
        np.testing.assert_allclose(left.probabilities, right.probabilities, rtol=1e-5)
        np.testing.assert_allclose(left.text_attention, right.text_attention, rtol=1e-5,
                                   atol=1e-7)
        assert len(left.audio_attention) == len(right.audio_attention)
    # A clip longer than the model reads (26 s at these settings) is cut to it
    # by the client, not refused by the graph: the same answer as the cut clip.
    assert in_process.max_waveform_samples == 416_000
    long = np.random.default_rng(0).standard_normal(30 * 16000).astype("float32") * 0.1
    whole, cut = in_process.predict_batch([(long, "hi"), (long[:416_000], "hi")])
    np.testing.assert_array_equal(whole.probabilities, cut.probabilities)


def test_a_missing_modality_is_answered_and_said_over_every_transport(export, server, items):
    batch = [(None, "I am so happy today!"), (items[1][0], ""), items[1], (items[1][0], None)]
    results = _predict_everywhere(export, server, batch)
    for name, predictions in results.items():
        assert [p.modality for p in predictions] == ["text", "audio", "both", "audio"], name
        text_only, audio_only = predictions[0], predictions[1]
        assert text_only.audio_attention == [] and len(text_only.text_attention) == 8
        assert audio_only.text_attention == [] and len(audio_only.audio_attention) == 20
        assert audio_only.tokens == ["[CLS]", "[SEP]"]
        np.testing.assert_allclose(
            [p.probabilities for p in predictions],
            [p.probabilities for p in results["in-process"]], rtol=1e-5,
        )
    assert results["grpc"][3].to_dict()["modality"] == "audio"


def test_bad_values_are_refused_with_the_servers_message(export, server):
    """The in-process client checks like the server: the input and the row, no graph text."""
    for client in (SMCNClient(model_dir=export), SMCNClient(grpc_target=server.grpc_target)):
        inputs, _ = SMCNClient(model_dir=export).make_inputs([(np.zeros(2000, "float32"), "hi")])
        inputs["input_ids"][0, 1] = -1
        with pytest.raises(ServingError) as caught:
            client.predict_raw(inputs)
        assert caught.value.code == "INVALID_ARGUMENT"
        assert caught.value.message.startswith("input input_ids: row 0 holds id -1 at position 1")
        inputs["input_ids"][0, 1] = 5
        assert client.predict_raw(inputs)[0]["modality"].tolist() == [b"both"]
