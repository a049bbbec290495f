#!/usr/bin/env bash
# Accuracy on real acted speech (EmoDB), against a simple reference; not in CI.
#
#   scripts/benchmark_real_speech.sh /data/emodb/wav [--work work/emodb] [--quick]
#
# See scripts/benchmark_real_speech.py for what it runs and prints.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [[ $# -lt 1 ]]; then
  echo "usage: $0 CORPUS_DIR [--work DIR] [--config YAML] [--steps N] [--quick]" >&2
  exit 2
fi
exec "$PYTHON" "$REPO/scripts/benchmark_real_speech.py" "$@"
