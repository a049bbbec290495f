"""Serving an exported SMCN: a local TF Serving stand-in and clients.

- `serve` / `ModelServer` (`server.py`): serves any SavedModel in TF Serving's
  layout over TF Serving's gRPC and REST API, with hot version reloads.
- `SMCNClient` / `Prediction` (`client.py`): audio + transcript in,
  class, probabilities and attention out, in-process or over gRPC or REST.
- `commands.py`: the `smcn serve` and `smcn predict` subcommands.

Names are imported on first use, so `import smcn_tf.serving` stays cheap.
"""

_EXPORTS = {
    "serve": "smcn_tf.serving.local.server",
    "ModelServer": "smcn_tf.serving.local.server",
    "ServerPorts": "smcn_tf.serving.local.server",
    "SMCNClient": "smcn_tf.serving.client",
    "Prediction": "smcn_tf.serving.client",
    "ServingError": "smcn_tf.serving.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'smcn_tf.serving' has no attribute {name!r}")
