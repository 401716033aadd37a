#!/usr/bin/env bash
# The experiment loop of docs/experiments.md on a small synthetic data set: permute -> simulate both ->
# compare -> position-bias -> export-clicks. Run after scripts/setup.sh; results land in $OUT
# (default experiments-output/, created by this script and never deleted by it).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1
OUT=${OUT:-experiments-output}
if [ -e "$OUT" ]; then echo "$OUT exists; set OUT to a new folder" >&2; exit 2; fi
fixate-rt synth "$OUT/data" --users 12 --slates 8
fixate-rt permute --images "$OUT/data/slates" --out "$OUT/shuffled" --policy shuffle --seed 1
fixate-rt simulate --users "$OUT/data/users.parquet" --images "$OUT/data/slates" --out "$OUT/sim_original" --samples 4
fixate-rt simulate --users "$OUT/data/users.parquet" --images "$OUT/shuffled" --out "$OUT/sim_shuffled" --samples 4
fixate-rt compare "$OUT/sim_original" "$OUT/sim_shuffled" --out "$OUT/compare"
fixate-rt position-bias "$OUT/sim_original" "$OUT/sim_shuffled" --out "$OUT/position_bias"
fixate-rt export-clicks "$OUT/sim_shuffled" --format yandex --out "$OUT/clicks/yandex"
fixate-rt export-clicks "$OUT/sim_shuffled" --format clax --out "$OUT/clicks/clax"
