"""smcn-tf: the Self-guided Modality Calibration Network in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
