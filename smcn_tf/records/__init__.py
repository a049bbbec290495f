"""Records: the TFRecord format, `prepare` (corpus -> features -> shards) and the tf.data pipeline."""
