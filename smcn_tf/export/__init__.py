"""Export: a trained model as a SavedModel for TF Serving, raw inputs in.

In Model Garden's shape:

- `exporter.py`: `export_model` / `export_from_run`, a short run of named
  steps (choose the version, build the serving copy, save, copy the
  tokenizer, write the warm-up requests and the description, publish).
- `serving_module.py`: `SMCNServingModule`, the served signatures traced
  from `smcn_tf.contract.signatures`.

What the export promises (the signatures, `ExportDescription`, the version
layout, the input rules) is `smcn_tf.contract`, which `smcn_tf.serving`
reads too; the contract's names are re-exported here for convenience.
Names are imported on first use: `import smcn_tf.export` does not load
Keras and the model code.
"""

from smcn_tf.contract.lazy import lazy_getattr

_EXPORTS = {
    "SIGNATURES": "smcn_tf.contract.signatures",
    "SMCNServingModule": "smcn_tf.export.serving_module",
    "serving_copy": "smcn_tf.export.serving_module",
    "signature_contract": "smcn_tf.contract.signatures",
    "signature_specs": "smcn_tf.contract.signatures",
    "export_from_run": "smcn_tf.export.exporter",
    "export_model": "smcn_tf.export.exporter",
    "load_tokenizer": "smcn_tf.export.exporter",
    "ExportDescription": "smcn_tf.contract.description",
    "list_versions": "smcn_tf.contract.layout",
    "write_version": "smcn_tf.contract.layout",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
