#!/usr/bin/env bash
# Table 2: SMCN on MELD, the official train/dev/test split, configs/meld.yaml (the paper's
# settings where it gives them; the text encoder is the paper's bert-base-uncased only with
# TEXT_ENCODER set, else all-MiniLM-L6-v2 and the report says the scores are not comparable).
#
#   scripts/reproduce_table2.sh /data/MELD.Raw
#   scripts/reproduce_table2.sh --demo          # the built-in demo corpus in MELD's layout
#
# Writes $WORK/table2.md (accuracy and weighted F1, the paper's numbers beside ours,
# confusion matrix and per-class report). See scripts/common.sh for the environment.
source "$(dirname "$0")/common.sh"
[[ $# -eq 1 ]] || { echo "usage: $0 MELD_DIR | --demo" >&2; exit 2; }
WORK="${WORK:-work/table2}"

if [[ "$1" == "--demo" ]]; then
  config="$REPO/configs/demo_meld.yaml" corpus=demo-meld data="$WORK/demo-corpus"
  "$SMCN" demo-data --layout meld --utterances-per-class "${DEMO_MELD_PER_CLASS:-12}" --out "$data"
else
  config="$REPO/configs/meld.yaml" corpus=meld data="$1"
  require_dir "$data"
fi
warn_text_encoder
prepare "$corpus" "$data" "$WORK/features" "$config"
train_and_report 2 "$config" "$WORK/features"
