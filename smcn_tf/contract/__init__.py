"""The serving contract: what an export promises and what a server checks.

Both `smcn_tf.export` (which writes a model) and `smcn_tf.serving` (which
loads and queries it) stand on this package, and it imports neither:

- `signatures.py`: the served signatures (`SIGNATURES`: names, inputs,
  outputs), `signature_specs` and `signature_contract`.
- `description.py`: `ExportDescription`, `assets.extra/smcn.json` typed.
- `layout.py`: TF Serving's version directories: listing, atomic writing,
  stale temporaries.
- `input_checks.py`: `InputRules`, the rules a request must meet, in numpy
  and as graph assertions, and `clean_graph_error`.
- `requests.py`: the gRPC `PredictRequest` of a signature.
- `errors.py`: `ServingError`, with TF Serving's status codes.
- `lazy.py`: package attributes imported on first use.

Names are imported on first use, so `import smcn_tf.contract` stays cheap.
"""

from smcn_tf.contract.lazy import lazy_getattr

_EXPORTS = {
    "SIGNATURES": "smcn_tf.contract.signatures",
    "signature_contract": "smcn_tf.contract.signatures",
    "signature_specs": "smcn_tf.contract.signatures",
    "ExportDescription": "smcn_tf.contract.description",
    "list_versions": "smcn_tf.contract.layout",
    "resolve_version_dir": "smcn_tf.contract.layout",
    "write_version": "smcn_tf.contract.layout",
    "InputRules": "smcn_tf.contract.input_checks",
    "clean_graph_error": "smcn_tf.contract.input_checks",
    "predict_request": "smcn_tf.contract.requests",
    "ServingError": "smcn_tf.contract.errors",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
