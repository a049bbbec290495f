"""Export: a trained model as a SavedModel for TF Serving, raw inputs in.

In Model Garden's shape:

- `exporter.py`: `export_model` / `export_from_run`, a short run of named
  steps (choose the version, build the serving copy, save, copy the
  tokenizer, write the warm-up requests and the description, publish).
- `serving_module.py`: `SMCNServingModule` (the serving signatures),
  `SIGNATURES`, `signature_specs` and `signature_contract`.
- `description.py`: `ExportDescription`, `assets.extra/smcn.json` typed.
- `layout.py`: version directories: listing, atomic writing, stale
  temporaries.

Names are imported on first use: `smcn serve` and the clients import
`layout` and `description` without loading Keras and the model code.
"""

_EXPORTS = {
    "SIGNATURES": "smcn_tf.export.serving_module",
    "SMCNServingModule": "smcn_tf.export.serving_module",
    "serving_copy": "smcn_tf.export.serving_module",
    "signature_contract": "smcn_tf.export.serving_module",
    "signature_specs": "smcn_tf.export.serving_module",
    "export_from_run": "smcn_tf.export.exporter",
    "export_model": "smcn_tf.export.exporter",
    "load_tokenizer": "smcn_tf.export.exporter",
    "ExportDescription": "smcn_tf.export.description",
    "list_versions": "smcn_tf.export.layout",
    "write_version": "smcn_tf.export.layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'smcn_tf.export' has no attribute {name!r}")
