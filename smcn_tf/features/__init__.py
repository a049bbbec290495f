"""Feature extraction: log-Mel audio frames and frozen BERT token vectors."""
