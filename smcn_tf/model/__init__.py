"""The model: SMCN's functional graph, its layers, the fused recurrent core, metrics.

- `smcn.py`: `SMCNModel` (`compile()` with the paper's defaults,
  `from_model_config`), `build_smcn` (every Table 3 variant from one builder),
  `LossTerm` (the terms of eq. 17 as data), `load_model`,
  `convert_recurrent_core`, `dtype_policy`;
- `layers.py`: `LengthMask`, `AttentionPooling`, `Fusion`;
- `recurrent.py`: `FusedBidirectionalGRU`, both BiGRU branches of a modality
  in one recurrence;
- `normalization.py`: `AudioNormalization` (`model.audio_normalization`);
- `metrics.py`: UA / WA / weighted F1, streaming (Keras) and offline.

The names most users need are importable from here.
"""

from smcn_tf.model.smcn import (
    MODALITIES,
    RECURRENT_CORES,
    VARIANTS,
    LossTerm,
    SMCNModel,
    Variant,
    build_smcn,
    convert_recurrent_core,
    dtype_policy,
    load_model,
    model_inputs,
)
from smcn_tf.model.normalization import AUDIO_NORMALIZATIONS, adapt_audio_normalization

__all__ = [
    "AUDIO_NORMALIZATIONS",
    "LossTerm",
    "MODALITIES",
    "RECURRENT_CORES",
    "SMCNModel",
    "VARIANTS",
    "Variant",
    "adapt_audio_normalization",
    "build_smcn",
    "convert_recurrent_core",
    "dtype_policy",
    "load_model",
    "model_inputs",
]
