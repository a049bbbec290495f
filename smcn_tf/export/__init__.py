"""Export: a trained model as a SavedModel for TF Serving, raw inputs in.

`exporter.py` holds `export_model` / `export_from_run` (the version directory,
the float32 serving copy, the tokenizer, the warm-up requests, `smcn.json`),
`SMCNServingModule` (the serving signatures) and `signature_contract`.
"""

from smcn_tf.export.exporter import (
    SIGNATURES,
    SMCNServingModule,
    export_from_run,
    export_model,
    serving_copy,
    signature_contract,
)

__all__ = [
    "SIGNATURES",
    "SMCNServingModule",
    "export_from_run",
    "export_model",
    "serving_copy",
    "signature_contract",
]
