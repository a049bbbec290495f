#!/usr/bin/env bash
# Table 3: all 8 variants (audio, text, cat, intra, inter, first/second interaction, SMCN)
# on IEMOCAP (LOSO) and MELD (official split), configs/iemocap.yaml and configs/meld.yaml
# (the text encoder is the paper's bert-base-uncased only with TEXT_ENCODER set).
#
#   scripts/reproduce_table3.sh /data/IEMOCAP_full_release /data/MELD.Raw
#   scripts/reproduce_table3.sh --demo          # both built-in demo corpora
#
# Writes $WORK/table3.md. See scripts/common.sh for the environment.
source "$(dirname "$0")/common.sh"
WORK="${WORK:-work/table3}"
VARIANTS="${VARIANTS:-audio text cat intra inter first_interaction second_interaction smcn}"

if [[ $# -eq 1 && "$1" == "--demo" ]]; then
  iemocap_config="$REPO/configs/demo.yaml" iemocap_corpus=demo iemocap="$WORK/demo-corpus"
  meld_config="$REPO/configs/demo_meld.yaml" meld_corpus=demo-meld meld="$WORK/demo-meld-corpus"
  "$SMCN" demo-data --out "$iemocap"
  "$SMCN" demo-data --layout meld --utterances-per-class "${DEMO_MELD_PER_CLASS:-12}" --out "$meld"
elif [[ $# -eq 2 ]]; then
  iemocap_config="$REPO/configs/iemocap.yaml" iemocap_corpus=iemocap iemocap="$1"
  meld_config="$REPO/configs/meld.yaml" meld_corpus=meld meld="$2"
  require_dir "$iemocap"
  require_dir "$meld"
else
  echo "usage: $0 IEMOCAP_DIR MELD_DIR | --demo" >&2
  exit 2
fi
warn_text_encoder
prepare "$iemocap_corpus" "$iemocap" "$WORK/iemocap-features" "$iemocap_config"
prepare "$meld_corpus" "$meld" "$WORK/meld-features" "$meld_config"
run_args=()
for variant in $VARIANTS; do
  mapfile -t runs < <(train_seeds "$iemocap_config" "$WORK/iemocap-features" "$variant" \
    "$WORK/runs/iemocap/$variant")
  for run in "${runs[@]}"; do run_args+=(--run "$run"); done
  mapfile -t runs < <(train_seeds "$meld_config" "$WORK/meld-features" "$variant" \
    "$WORK/runs/meld/$variant")
  for run in "${runs[@]}"; do run_args+=(--run "$run"); done
done
"$SMCN" report --table 3 "${run_args[@]}" --out "$WORK/table3.md"
cat "$WORK/table3.md"
