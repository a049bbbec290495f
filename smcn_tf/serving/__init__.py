"""Serving an exported SMCN: a local TF Serving stand-in and clients.

- `serve` / `ModelServer` (`server.py`): serves any SavedModel in TF Serving's
  layout over TF Serving's gRPC and REST API, with hot version reloads.
- `SMCNClient` / `Prediction` (`client.py`): audio + transcript in,
  class, probabilities and attention out, in-process or over gRPC or REST.
- `commands.py`: the `smcn serve` and `smcn predict` subcommands.
- `wire.py`: TF Serving's JSON tensor format and protos.

What a served SMCN promises (signatures, `smcn.json`, version layout, input
rules, `ServingError`) is `smcn_tf.contract`, which `smcn_tf.export` writes by.

Names are imported on first use, so `import smcn_tf.serving` stays cheap.
"""

from smcn_tf.contract.lazy import lazy_getattr

_EXPORTS = {
    "serve": "smcn_tf.serving.local.server",
    "ModelServer": "smcn_tf.serving.local.server",
    "ServerPorts": "smcn_tf.serving.local.server",
    "SMCNClient": "smcn_tf.serving.client",
    "Prediction": "smcn_tf.serving.client",
    "ServingError": "smcn_tf.contract.errors",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
