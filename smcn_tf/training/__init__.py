"""The training engine's parts: exact resume, tf.distribute, best-epoch selection, TensorBoard views."""
