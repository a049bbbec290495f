"""Clients of a served SMCN: in-process, gRPC (TF Serving's API) or REST.

`SMCNClient` turns what a user has (an audio file or a waveform, and a
transcript) into the `serving_default` inputs of an SMCN export (16 kHz
waveforms and WordPiece ids, padded per batch), sends them over the chosen
transport, and returns `Prediction`s: the class, the probabilities and the
attention weights trimmed to the real frames and tokens, with the tokens
themselves for explanation, and which input answered (`modality`: "both",
or "audio" / "text" when the other is missing and the model's unimodal head
answered). Either input may be missing (`None`, an empty transcript or
waveform), not both.

The three transports answer the same for the same export:

- `model_dir=`: loads the SavedModel in this process (no server).
- `grpc_target="host:8500"`: `PredictionService.Predict` of TF Serving or
  `smcn serve`.
- `rest_url="http://host:8501"`: `POST /v1/models/<name>:predict`, in the
  row (`"instances"`) or columnar (`"inputs"`) format.

Example, against a trained model served on port 8500 (not run as a test: the
output is that model's):

>>> client = SMCNClient(grpc_target="localhost:8500")  # doctest: +SKIP
>>> prediction = client.predict("clip.wav", "I can't believe you did that!")  # doctest: +SKIP
>>> prediction.class_name, prediction.top_tokens(3)  # doctest: +SKIP
('ang', [('believe', 0.31), ('did', 0.22), ('!', 0.12)])
"""

import dataclasses
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from smcn_tf.contract.description import ExportDescription
from smcn_tf.contract.errors import ServingError, code_for_http_status
from smcn_tf.contract.input_checks import clean_graph_error
from smcn_tf.contract.layout import resolve_version_dir
from smcn_tf.contract.requests import predict_request
from smcn_tf.contract.signatures import RAW_SIGNATURE
from smcn_tf.features.settings import FeatureSettings
from smcn_tf.features.text import default_checkpoint_dir
from smcn_tf.features.text import pad_token_ids
from smcn_tf.serving import wire

DEFAULT_MAX_TOKENS = 150
DEFAULT_SAMPLE_RATE = 16000
SIGNATURE = RAW_SIGNATURE


@dataclasses.dataclass
class Prediction:
    """One answer of a served SMCN.

    Attributes:
        class_name: the predicted class's name.
        class_id: the predicted class's index.
        probabilities: one probability per class, in class order.
        class_names: the class names in order, when known (in-process from
            the export's `smcn.json`, or passed to the client); else `None`.
        tokens: the word pieces the model read, `[CLS]` and `[SEP]` included.
        text_attention: one weight per token of `tokens`.
        audio_attention: one weight per pooled audio frame (trimmed to the
            clip's real frames when the frame settings are known).
        model_version: the version that answered, when the transport says.
        modality: which input answered: "both", "audio" (no usable text: the
            audio head answered) or "text" (no usable audio); `None` from an
            export made before the `modality` output existed.
    """

    class_name: str
    class_id: int
    probabilities: list
    class_names: list = None
    tokens: list = dataclasses.field(default_factory=list)
    text_attention: list = dataclasses.field(default_factory=list)
    audio_attention: list = dataclasses.field(default_factory=list)
    model_version: int = None
    modality: str = None

    @property
    def probability_by_class(self):
        """Class name (or index as a string when names are unknown) -> probability."""
        names = self.class_names or [str(index) for index in range(len(self.probabilities))]
        return dict(zip(names, self.probabilities))

    def top_tokens(self, count=5, skip_special=True):
        """The `count` most attended tokens as `(token, weight)`, highest first."""
        pairs = [
            (token, weight)
            for token, weight in zip(self.tokens, self.text_attention)
            if not (skip_special and token.startswith("[") and token.endswith("]"))
        ]
        return sorted(pairs, key=lambda pair: -pair[1])[:count]

    def to_dict(self):
        """A JSON-ready dict of every field plus `probability_by_class`."""
        result = dataclasses.asdict(self)
        result["probability_by_class"] = self.probability_by_class
        return result


def _first(*values):
    for value in values:
        if value is not None:
            return value
    return None


class Transport:
    """How a client reaches a served model; one subclass per transport.

    Attributes:
        name: "in-process", "grpc" or "rest" (`SMCNClient.transport`).
        description: the export's `ExportDescription` when the transport can
            read it (in-process), else `None`.
    """

    name = None
    description = None

    def predict(self, inputs, signature_name=SIGNATURE):
        """Runs a signature on `inputs` (name -> numpy array).

        Returns:
            `(outputs, version)`: output name -> numpy array, and the version
            that answered when the transport says (else `None`).

        Raises:
            ServingError: the model or the server refused, or is unreachable.
        """
        raise NotImplementedError

    def metadata(self):
        """TF Serving's REST metadata JSON of the model (the same over every transport)."""
        raise NotImplementedError

    def close(self):
        """Releases connections (nothing to do by default)."""


class InProcessTransport(Transport):
    """Loads an export's SavedModel in this process and calls its signatures.

    Args:
        model_dir: a version directory, a model base directory (newest
            version) or an export base with `<model_name>/<version>`.
        model_name: the model's name under an export base.
        version: a version to load instead of the newest.

    Raises:
        ValueError: no SavedModel there, or no such version.
    """

    name = "in-process"

    def __init__(self, model_dir, model_name="smcn", version=None):
        self.model_name = model_name
        self.version_dir, found_version = resolve_version_dir(model_dir, model_name)
        if version is not None and found_version not in (None, version):
            self.version_dir = os.path.join(os.path.dirname(self.version_dir), str(version))
            if not os.path.isdir(self.version_dir):
                raise ValueError(f"No version {version} at {self.version_dir}.")
            found_version = version
        self.model_version = found_version
        self.description = ExportDescription.read(self.version_dir)
        self.input_rules = self.description.input_rules() if self.description else None
        self._loaded = None

    def _signatures(self):
        # TensorFlow is imported on first use: a gRPC or REST client never loads it.
        import tensorflow as tf

        if self._loaded is None:
            self._loaded = tf.saved_model.load(self.version_dir)
        return self._loaded.signatures

    def predict(self, inputs, signature_name=SIGNATURE):
        import tensorflow as tf  # on first use, see `_signatures`

        signatures = self._signatures()
        if signature_name not in signatures:
            raise ServingError(
                "FAILED_PRECONDITION",
                f'Serving signature key "{signature_name}" not found in {self.version_dir} '
                f"(it has: {', '.join(sorted(signatures))}).",
            )
        if self.input_rules is not None:
            # The same checks as `smcn serve`: clean messages before the graph runs.
            self.input_rules.check(signature_name, inputs)
        try:
            outputs = signatures[signature_name](
                **{name: tf.constant(value) for name, value in inputs.items()}
            )
        except (TypeError, ValueError) as error:
            raise ServingError("INVALID_ARGUMENT", f"The model rejected this input: {error}")
        except tf.errors.OpError as error:
            code = "INVALID_ARGUMENT" if isinstance(
                error, tf.errors.InvalidArgumentError) else "INTERNAL"
            raise ServingError(code, clean_graph_error(error.message or "")) from None
        return {name: value.numpy() for name, value in outputs.items()}, self.model_version

    def metadata(self):
        # The SavedModel's protos need TensorFlow: imported on first use.
        from smcn_tf.serving.local.model_store import read_signature_defs

        signature_map = wire.signature_def_map(read_signature_defs(self.version_dir))
        return wire.metadata_to_json(self.model_name, self.model_version, signature_map)


class GrpcTransport(Transport):
    """TF Serving's gRPC `PredictionService` (TF Serving or `smcn serve`).

    Args:
        target: `host:port` of the gRPC API.
        model_name: the served model's name.
        version: a version to ask for; default the newest.
        timeout: seconds to wait for an answer.
    """

    name = "grpc"

    def __init__(self, target, model_name="smcn", version=None, timeout=60.0):
        # grpc and the TF Serving protos (which load TensorFlow) are imported
        # here, not at the top: a REST or in-process client does not need them.
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self._grpc = grpc
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as error:
            raise _grpc_error(error, self.target)

    def predict(self, inputs, signature_name=SIGNATURE):
        request = predict_request(self.model_name, signature_name, inputs, self.version)
        response = self._call(self._stub.Predict, request)
        return wire.response_outputs(response), response.model_spec.version.value

    def metadata(self):
        request = wire.metadata_request(self.model_name, self.version)
        response = self._call(self._stub.GetModelMetadata, request)
        return wire.metadata_to_json(
            response.model_spec.name, response.model_spec.version.value,
            wire.unpack_signature_def_map(response),
        )

    def close(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class RestTransport(Transport):
    """TF Serving's REST API: `POST /v1/models/<name>[/versions/<v>]:predict`.

    Args:
        url: `http://host:port` of the REST API.
        model_name: the served model's name.
        version: a version to ask for; default the newest.
        timeout: seconds to wait for an answer.
        rest_format: `"instances"` (row format) or `"inputs"` (columnar).

    Raises:
        ValueError: a URL that is not `http(s)://host:port`, or a bad format.
    """

    name = "rest"

    def __init__(self, url, model_name="smcn", version=None, timeout=60.0,
                 rest_format="instances"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"rest_url must look like http://host:8501, got {url!r}.")
        if rest_format not in ("instances", "inputs"):
            raise ValueError(f"rest_format must be 'instances' or 'inputs', got {rest_format!r}.")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.rest_format = rest_format

    def _model_path(self):
        path = f"/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
        return path + (f"/versions/{self.version}" if self.version is not None else "")

    def _call(self, path, body=None):
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("error", error.reason)
            except (ValueError, AttributeError):
                message = str(error.reason)
            raise ServingError(code_for_http_status(error.code), message, http_status=error.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise ServingError(
                "UNAVAILABLE",
                f"Cannot reach the REST API at {self.url}: "
                f"{getattr(error, 'reason', error)}. Is the server running?",
            )

    def predict(self, inputs, signature_name=SIGNATURE):
        body = wire.predict_body(inputs, signature_name, self.rest_format)
        answer = self._call(self._model_path() + ":predict", body)
        return wire.read_predict_body(answer), self.version

    def metadata(self):
        return self._call(self._model_path() + "/metadata")


TRANSPORTS = {
    transport.name: transport for transport in (InProcessTransport, GrpcTransport, RestTransport)
}


class SMCNClient:
    """Predicts emotions from audio + transcript with a served SMCN.

    Pass exactly one of `model_dir`, `grpc_target` or `rest_url`.

    Args:
        model_dir: an export to load in this process: a version directory,
            a model base directory (newest version) or an export base with
            `<model_name>/<version>`.
        grpc_target: `host:port` of TF Serving's (or `smcn serve`'s) gRPC API.
        rest_url: `http://host:port` of the REST API.
        model_name: the served model's name.
        version: a version number to ask for; default the newest.
        tokenizer_dir: a Hugging Face tokenizer directory; default the
            export's `assets.extra/tokenizer` (in-process), else the installed
            all-MiniLM-L6-v2's.
        max_tokens: the most tokens per transcript, `[CLS]`/`[SEP]` included;
            default from the export's `smcn.json` (in-process), else 150.
        rest_format: `"instances"` (row format) or `"inputs"` (columnar).
        class_names: the class names; default from the export's `smcn.json`
            (in-process), else unknown (probabilities are a plain list).
        pooling: log-Mel frames per pooled frame, to trim `audio_attention`
            to a clip's real frames; default from `smcn.json`, else no
            trimming in batches (a single clip is never padded).
        max_frames: the most pooled frames; default from `smcn.json`.
        sample_rate: the waveform rate the model takes; default 16000.
        timeout: seconds to wait for a remote answer.
        transport: a `Transport` to use instead of the three above (one
            of `InProcessTransport`, `GrpcTransport`, `RestTransport`, or
            your own subclass).

    Raises:
        ValueError: bad arguments, or no export / tokenizer where named.

    Example, on an export of a trained model (not run as a test: the output
    is that model's):

    >>> client = SMCNClient(model_dir="export/smcn")  # doctest: +SKIP
    >>> client.predict("clip.wav", "leave me alone").class_name  # doctest: +SKIP
    'sad'
    """

    def __init__(
        self,
        model_dir=None,
        grpc_target=None,
        rest_url=None,
        model_name="smcn",
        version=None,
        tokenizer_dir=None,
        max_tokens=None,
        rest_format="instances",
        class_names=None,
        pooling=None,
        max_frames=None,
        sample_rate=None,
        timeout=60.0,
        transport=None,
    ):
        chosen = [name for name, value in (
            ("model_dir", model_dir), ("grpc_target", grpc_target), ("rest_url", rest_url),
            ("transport", transport),
        ) if value]
        if len(chosen) != 1:
            raise ValueError(
                "Pass exactly one of model_dir=, grpc_target=, rest_url= or transport= "
                f"(got {', '.join(chosen) or 'none'})."
            )
        if rest_format not in ("instances", "inputs"):
            raise ValueError(f"rest_format must be 'instances' or 'inputs', got {rest_format!r}.")
        self.model_name = model_name
        self.version = None if version is None else int(version)
        self.rest_format = rest_format
        self.timeout = timeout
        if transport is not None:
            if not isinstance(transport, Transport):
                raise ValueError(
                    f"transport must be a Transport (InProcessTransport, GrpcTransport, "
                    f"RestTransport), got {type(transport).__name__}."
                )
            self.backend = transport
        elif model_dir:
            self.backend = InProcessTransport(model_dir, model_name, self.version)
            self.version_dir = self.backend.version_dir
            self.model_version = self.backend.model_version
            directory = self.backend.description and self.backend.description.tokenizer_directory
            exported_tokenizer = os.path.join(
                self.version_dir, "assets.extra", directory or "tokenizer"
            )
            if tokenizer_dir is None and os.path.isdir(exported_tokenizer):
                tokenizer_dir = exported_tokenizer
        elif grpc_target:
            self.backend = GrpcTransport(grpc_target, model_name, self.version, timeout)
            self.grpc_target = grpc_target
        else:
            self.backend = RestTransport(rest_url, model_name, self.version, timeout, rest_format)
            self.rest_url = self.backend.url
        self.transport = self.backend.name  # "in-process", "grpc" or "rest"
        description = self.backend.description or ExportDescription()
        features = description.features
        self.class_names = _first(class_names, description.all_class_names)
        self.max_tokens = int(_first(max_tokens, description.max_tokens, DEFAULT_MAX_TOKENS))
        self.pooling = _first(pooling, features and features.pooling)
        self.max_frames = _first(max_frames, features and features.max_frames)
        self.sample_rate = int(_first(
            sample_rate, features and features.sample_rate, DEFAULT_SAMPLE_RATE
        ))
        rules = description.input_checks or {}
        self.max_waveform_samples = rules.get("max_waveform_samples")  # None: no limit known
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 ([CLS] and [SEP]), got {self.max_tokens}.")
        self.tokenizer = self._load_tokenizer(tokenizer_dir)

    @staticmethod
    def _load_tokenizer(tokenizer_dir):
        # transformers is imported here, not at the top: seconds of start-up
        # that `import smcn_tf.serving.client` should not pay before it is used.
        import transformers

        if tokenizer_dir is None:
            tokenizer_dir = default_checkpoint_dir()
        if not os.path.isdir(tokenizer_dir):
            raise ValueError(f"tokenizer_dir {tokenizer_dir} is not a directory.")
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        if tokenizer.pad_token_id is None:
            raise ValueError(f"The tokenizer in {tokenizer_dir} defines no padding token.")
        return tokenizer

    # Life cycle.
    def close(self):
        """Closes the transport (the gRPC channel; nothing to do for the others)."""
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # Inputs.
    def _waveform(self, audio, index):
        if audio is None:
            return np.zeros([0], np.float32)  # no audio: the text head answers
        if isinstance(audio, (str, os.PathLike)):
            # features.audio loads TensorFlow: only a client reading files needs it.
            from smcn_tf.features.audio import read_waveform

            path = os.fspath(audio)
            if not os.path.exists(path):
                raise ValueError(f"audio of item {index}: no such file: {path}")
            if os.path.isdir(path):
                raise ValueError(f"audio of item {index}: {path} is a directory, not an audio file.")
            if not os.access(path, os.R_OK):
                raise ValueError(f"audio of item {index}: {path} is not readable (permission denied).")
            try:
                return read_waveform(path, sample_rate=self.sample_rate)
            except ValueError as error:
                raise ValueError(f"audio of item {index}: {error}") from None
        try:
            array = np.asarray(audio, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(
                f"audio of item {index} must be a file path, a 1-D float waveform at "
                f"{self.sample_rate} Hz or None, got {type(audio).__name__}."
            ) from None
        if array.ndim != 1:
            raise ValueError(
                f"audio of item {index} must be a file path, a 1-D float waveform at "
                f"{self.sample_rate} Hz or None (no audio), got an array of shape {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"audio of item {index} holds NaN or infinite samples.")
        return array

    def make_inputs(self, items):
        """The `serving_default` inputs of a batch of `(audio, text)` pairs.

        Args:
            items: a list of `(audio, text)`; audio is a path (read and
                resampled to the model's rate), a 1-D float32 waveform, or
                `None` for no audio; text is the transcript (`None` or ""
                for none).

        Returns:
            A tuple `(inputs, token_lists)`: the dict of padded numpy inputs
            and, per item, the list of its token ids.
        """
        items = list(items)
        if not items:
            raise ValueError("Nothing to predict: the batch is empty.")
        waveforms, texts = [], []
        for index, item in enumerate(items):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"Item {index} must be an (audio, text) pair, got {item!r}.")
            audio, text = item
            if text is None:
                text = ""  # no transcript: [CLS] [SEP] only, the audio head answers
            if not isinstance(text, str):
                raise ValueError(
                    f"text of item {index} must be a string or None, got {type(text).__name__}."
                )
            if (audio is None or (not isinstance(audio, (str, os.PathLike))
                                  and np.size(audio) == 0)) and not text.strip():
                raise ValueError(
                    f"item {index} has neither audio nor text: send at least one of them."
                )
            # Cut to what the model reads (max_frames): the rest cannot change
            # the answer, and the exported graph refuses longer rows.
            waveforms.append(self._waveform(audio, index)[:self.max_waveform_samples])
            texts.append(text)
        token_lists = self.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens,
            padding=False, return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]
        samples = max(waveform.shape[0] for waveform in waveforms)
        batch = len(items)
        input_ids, attention_mask = pad_token_ids(token_lists, self.tokenizer.pad_token_id)
        inputs = {
            "waveform": np.zeros((batch, samples), np.float32),
            "waveform_length": np.zeros((batch,), np.int32),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }
        for row, waveform in enumerate(waveforms):
            inputs["waveform"][row, : waveform.shape[0]] = waveform
            inputs["waveform_length"][row] = waveform.shape[0]
        return inputs, token_lists

    def _valid_frames(self, num_samples):
        """Pooled log-Mel frames of a clip, or `None` when the settings are unknown."""
        if not self.pooling:
            return None
        settings = FeatureSettings(
            sample_rate=int(self.sample_rate), pooling=int(self.pooling),
            max_frames=int(self.max_frames) if self.max_frames else None,
        )
        return settings.num_frames(num_samples)

    # Transports.
    def predict_raw(self, inputs, signature_name=SIGNATURE):
        """Sends prepared inputs; returns `(outputs, version)` as numpy arrays."""
        return self.backend.predict(inputs, signature_name)

    def get_metadata(self):
        """The model's signatures, as TF Serving's REST metadata JSON.

        Returns:
            `{"model_spec": {"name", "signature_name", "version"},
            "metadata": {"signature_def": {"signature_def": {...}}}}`, the
            same dict over every transport.
        """
        return self.backend.metadata()

    # Predictions.
    def predict(self, audio, text):
        """Predicts one clip.

        Args:
            audio: a WAV/FLAC path (resampled to 16 kHz), a 1-D float32
                waveform at the model's sample rate, or `None` (no audio:
                the text head answers).
            text: the transcript, or `None` / "" (no text: the audio head
                answers).

        Returns:
            A `Prediction`; `prediction.modality` says which input answered.
        """
        return self.predict_batch([(audio, text)])[0]

    def predict_batch(self, items):
        """Predicts a batch of `(audio, text)` pairs in one request.

        To score a whole manifest of clips (parallel decoding, batches by
        length, bounded requests in flight, a resumable output file), see
        `smcn_tf.serving.batch.predict_manifest`.

        Returns:
            A list of `Prediction`, in input order.
        """
        inputs, token_lists = self.make_inputs(items)
        outputs, version = self.predict_raw(inputs)
        return self.read_predictions(inputs, token_lists, outputs, version)

    def read_predictions(self, inputs, token_lists, outputs, version):
        """The `Prediction`s of one answer of the model.

        Args:
            inputs: the inputs sent (from `make_inputs`).
            token_lists: the token ids of each row (from `make_inputs`).
            outputs: output name -> numpy array, as `predict_raw` returns them.
            version: the version that answered, or `None`.

        Returns:
            A list of `Prediction`, one per row.

        Raises:
            ServingError: the answer is not an SMCN's.
        """
        missing = {"probabilities", "class_id", "class_name"} - set(outputs)
        if missing:
            raise ServingError(
                "FAILED_PRECONDITION",
                f"The model's answer lacks {sorted(missing)}: is it an SMCN export?",
            )
        padded_frames = None
        if "audio_attention" in outputs:
            padded_frames = np.asarray(outputs["audio_attention"]).shape[1]
        return [
            self._read_row(inputs, outputs, version, row, ids, padded_frames)
            for row, ids in enumerate(token_lists)
        ]

    def _read_row(self, inputs, outputs, version, row, ids, padded_frames):
        """The `Prediction` of one row of an answer."""
        name = _text(outputs["class_name"][row])
        modality = _text(outputs["modality"][row]) if "modality" in outputs else None
        audio_attention, text_attention = [], []
        if "audio_attention" in outputs and modality != "text":
            frames = self._valid_frames(int(inputs["waveform_length"][row]))
            if frames is None and len(inputs["waveform_length"]) == 1:
                frames = padded_frames  # a lone clip is not padded
            audio_attention = [float(v) for v in outputs["audio_attention"][row][:frames]]
        if "text_attention" in outputs and modality != "audio":
            text_attention = [float(v) for v in outputs["text_attention"][row][: len(ids)]]
        return Prediction(
            class_name=name,
            class_id=int(outputs["class_id"][row]),
            probabilities=[float(v) for v in outputs["probabilities"][row]],
            class_names=list(self.class_names) if self.class_names else None,
            tokens=self.tokenizer.convert_ids_to_tokens(list(ids)),
            text_attention=text_attention,
            audio_attention=audio_attention,
            model_version=int(version) if version else None,
            modality=modality,
        )


def _text(value):
    """A string output's value as `str` (numpy bytes are UTF-8)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _grpc_error(error, target):
    code = error.code()
    details = error.details() or ""
    if code.name == "UNAVAILABLE":
        details = f"Cannot reach the gRPC API at {target}: {details}. Is the server running?"
    return ServingError(code.name if code.name != "OK" else "UNKNOWN", details)
