"""Corpus parsers, the demo corpus, TFRecord shards and the tf.data pipeline."""
