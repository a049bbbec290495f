"""Export a trained SMCN as a SavedModel in TensorFlow Serving's layout.

    <export_base>/<model_name>/<version>/saved_model.pb
                                        /variables/...
                                        /assets.extra/smcn.json   (model config, class names)

Versions are integers that only grow; a version is written to a hidden
temporary directory beside it and renamed into place, so a server watching
the base path never sees a half-written export.

Signatures (both take precomputed features; the raw-input signature is a
later addition):

    serving_default, features:
        inputs:  audio_features float32 [batch, frames, audio_dim]
                 audio_length   int32   [batch]
                 text_features  float32 [batch, tokens, text_dim]
                 text_length    int32   [batch]
        outputs: probabilities  float32 [batch, classes]
                 class_id       int32   [batch]
                 class_name     string  [batch]
                 audio_attention float32 [batch, frames]
                 text_attention  float32 [batch, tokens]

The exported graph is built with `use_cudnn=False`, so a model trained on a
GPU still exports without cuDNN-only ops and loads on a CPU server.
"""

import json
import os
import re
import shutil

import tensorflow as tf

from smcn_tf.model import SMCNModel

_VERSION = re.compile(r"^\d+$")


def existing_versions(model_dir):
    """The integer versions already under `<export_base>/<model_name>`."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir) if _VERSION.match(name))


def serving_copy(model):
    """The same model and weights, rebuilt without cuDNN-only GRU kernels."""
    config = dict(model.get_config())
    config["use_cudnn"] = False
    copy = SMCNModel.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


class SMCNServingModule(tf.Module):
    """The tf.Module that holds the model and its serving functions."""

    def __init__(self, model):
        super().__init__(name="smcn_serving")
        self.model = serving_copy(model)
        names = self.model.class_names or [
            str(index) for index in range(self.model.num_classes)
        ]
        self.class_names = tf.constant(names, dtype=tf.string)
        self.features = tf.function(
            self._predict_features,
            input_signature=[
                tf.TensorSpec([None, None, self.model.audio_dim], tf.float32, "audio_features"),
                tf.TensorSpec([None], tf.int32, "audio_length"),
                tf.TensorSpec([None, None, self.model.text_dim], tf.float32, "text_features"),
                tf.TensorSpec([None], tf.int32, "text_length"),
            ],
        )

    def _predict_features(self, audio_features, audio_length, text_features, text_length):
        inputs = {
            "audio_features": audio_features,
            "audio_length": audio_length,
            "text_features": text_features,
            "text_length": text_length,
        }
        return self.answer(self.model(inputs, training=False), inputs)

    def answer(self, outputs, inputs):
        """The serving outputs from the model's output dict."""
        probabilities = outputs["probabilities"]
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        answer = {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
        }
        for modality in ("audio", "text"):
            key = f"{modality}_attention"
            if key in outputs:
                answer[key] = outputs[key]
            else:
                # A unimodal variant has no attention over the other modality.
                answer[key] = tf.zeros_like(inputs[f"{modality}_features"][:, :, 0])
        return answer


def export_model(model, export_base, model_name="smcn", version=None):
    """Write `model` as `<export_base>/<model_name>/<version>/`.

    Args:
        model: a trained `SMCNModel`.
        export_base: the base path a server watches.
        model_name: the model's name on the server.
        version: an integer version; by default one more than the newest.

    Returns:
        The path of the new version directory.
    """
    if not re.match(r"^[A-Za-z0-9_.-]+$", model_name):
        raise ValueError(
            f"model_name {model_name!r} must use letters, digits, '.', '_' or '-'."
        )
    model_dir = os.path.join(export_base, model_name)
    versions = existing_versions(model_dir)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
    version = int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}.")
    if version in versions:
        raise ValueError(
            f"{os.path.join(model_dir, str(version))} already exists; versions only grow."
        )
    final = os.path.join(model_dir, str(version))
    temporary = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    os.makedirs(model_dir, exist_ok=True)
    if os.path.exists(temporary):
        shutil.rmtree(temporary)
    try:
        module = SMCNServingModule(model)
        signature = module.features.get_concrete_function()
        tf.saved_model.save(
            module,
            temporary,
            signatures={"serving_default": signature, "features": signature},
        )
        extra = os.path.join(temporary, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, "smcn.json"), "w", encoding="utf-8") as stream:
            json.dump({"model_config": model.get_config()}, stream, indent=2)
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def load_for_keras(path):
    """Load a `.keras` model saved by `smcn train`."""
    if not os.path.isfile(path):
        raise ValueError(f"No saved model at {path}.")
    import keras

    return keras.saving.load_model(path)
