#!/usr/bin/env bash
# Accuracy on real acted speech (EmoDB), against classic references (openSMILE
# ComParE_2016 / eGeMAPSv02 functionals + linear classifiers); not in CI.
# The references need `pip install -e ".[bench]"` (the opensmile package).
#
#   scripts/benchmark_real_speech.sh /data/emodb/wav [--work work/emodb] [--quick]
#   scripts/benchmark_real_speech.sh /data/emodb/wav --references-only
#
# See scripts/benchmark_real_speech.py for what it runs and prints.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [[ $# -lt 1 ]]; then
  echo "usage: $0 CORPUS_DIR [--work DIR] [--systems LIST|none] [--references LIST|none]" \
       "[--references-only] [--seeds N] [--steps N] [--classes 4|7|both]" \
       "[--set SECTION.KEY=VALUE ...] [--quick]" >&2
  exit 2
fi
exec "$PYTHON" "$REPO/scripts/benchmark_real_speech.py" "$@"
