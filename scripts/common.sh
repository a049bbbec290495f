# Shared by the reproduce_table*.sh scripts; source it, do not run it.
#
# Environment (all optional):
#   SEEDS         seeds to repeat each run with (default "1 2 3"); mean ± std in the report
#   WORK          output directory (default work/<script name>)
#   SMCN          the smcn command (default .venv/bin/smcn if present, else smcn)
#   SMCN_SET      extra space-separated section.key=value overrides for every train run
#   TEXT_ENCODER  a local Hugging Face BERT dir; the paper's is bert-base-uncased (768-d).
#                 Unset: the installed all-MiniLM-L6-v2 (384-d), and every report says that
#                 its text and fusion scores are not comparable with the paper's.
#   DEMO_MELD_PER_CLASS  --demo only: utterances per class and split of the MELD demo (12)

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEEDS="${SEEDS:-1 2 3}"
if [[ -z "${SMCN:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/smcn" ]]; then SMCN="$REPO/.venv/bin/smcn"; else SMCN=smcn; fi
fi

# --set arguments from SMCN_SET.
overrides=()
for item in ${SMCN_SET:-}; do overrides+=(--set "$item"); done

log() { printf '\n== %s\n' "$*" >&2; }

# The text encoder, named up front: its scores are only comparable with the paper's
# for bert-base-uncased (768-d). `smcn prepare` and `smcn report` name the encoder and
# its dimension as found in the features, and warn on stderr when it is not the paper's.
warn_text_encoder() {
  if [[ -z "${TEXT_ENCODER:-}" ]]; then
    printf '%s\n' "warning: Text encoder: all-MiniLM-L6-v2 (384-d, TEXT_ENCODER is not set)," \
      "not the paper's bert-base-uncased (768-d): text and fusion scores are not comparable" \
      "with the paper's. Set TEXT_ENCODER to a local bert-base-uncased directory for those." >&2
  else
    log "text encoder: $TEXT_ENCODER (the report checks it against the paper's bert-base-uncased)"
  fi
}

# prepare CORPUS DATA_DIR OUT CONFIG: features for a corpus (resumes if interrupted).
prepare() {
  local corpus="$1" data_dir="$2" out="$3" config="$4"
  local encoder=()
  [[ -n "${TEXT_ENCODER:-}" ]] && encoder=(--text-encoder "$TEXT_ENCODER")
  log "prepare $corpus: $data_dir -> $out"
  "$SMCN" prepare "$corpus" --data-dir "$data_dir" --out "$out" --config "$config" "${encoder[@]}"
}

# train_seeds CONFIG FEATURES VARIANT OUT_DIR: one run per seed; prints the run dirs.
train_seeds() {
  local config="$1" features="$2" variant="$3" out="$4" seed
  for seed in $SEEDS; do
    log "train $variant seed $seed -> $out/seed$seed"
    "$SMCN" train --config "$config" --data "$features" --run-dir "$out/seed$seed" \
      --verbose 0 --set "model.variant=$variant" --set "training.seed=$seed" \
      --set evaluation.final_model=false "${overrides[@]}" >&2
    echo "$out/seed$seed"
  done
}

# demo_or_dir ARG: "--demo" or a corpus directory that must exist.
require_dir() {
  if [[ ! -d "$1" ]]; then
    echo "error: $1 is not a directory" >&2
    exit 2
  fi
}

# train_and_report TABLE CONFIG FEATURES: SMCN for every seed, then the markdown table.
train_and_report() {
  local table="$1" config="$2" features="$3" run run_args=()
  mapfile -t runs < <(train_seeds "$config" "$features" smcn "$WORK/runs/smcn")
  for run in "${runs[@]}"; do run_args+=(--run "$run"); done
  "$SMCN" report --table "$table" "${run_args[@]}" --out "$WORK/table$table.md"
  cat "$WORK/table$table.md"
}
