"""Feature extraction: log-Mel audio frames and frozen BERT token vectors."""

# The shortest audio worth a prediction: `smcn prepare` skips shorter clips and
# a served model answers them from the text alone. Kept here, free of
# TensorFlow imports, so the serving checks can share it.
MIN_SECONDS_DEFAULT = 0.1
