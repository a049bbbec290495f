"""Corpora: one adapter per corpus behind a registry, and the synthetic demo corpora."""
