#!/usr/bin/env bash
# Table 1: SMCN on IEMOCAP, 5-fold leave-one-session-out, configs/iemocap.yaml (the paper's
# settings where it gives them; the text encoder is the paper's bert-base-uncased only with
# TEXT_ENCODER set, else all-MiniLM-L6-v2 and the report says the scores are not comparable).
#
#   scripts/reproduce_table1.sh /data/IEMOCAP_full_release
#   scripts/reproduce_table1.sh --demo          # the built-in demo corpus, demo settings
#
# Writes $WORK/table1.md (UA and WA per fold and pooled, the paper's numbers beside ours,
# confusion matrices and per-class reports). See scripts/common.sh for the environment.
source "$(dirname "$0")/common.sh"
[[ $# -eq 1 ]] || { echo "usage: $0 IEMOCAP_DIR | --demo" >&2; exit 2; }
WORK="${WORK:-work/table1}"

if [[ "$1" == "--demo" ]]; then
  config="$REPO/configs/demo.yaml" corpus=demo data="$WORK/demo-corpus"
  "$SMCN" demo-data --out "$data"
else
  config="$REPO/configs/iemocap.yaml" corpus=iemocap data="$1"
  require_dir "$data"
fi
warn_text_encoder
prepare "$corpus" "$data" "$WORK/features" "$config"
train_and_report 1 "$config" "$WORK/features"
