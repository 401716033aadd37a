#!/usr/bin/env bash
# Quick start: set up, generate the synthetic demo data and simulate every user on every slate with the
# embedded tiny Qwen3-VL model. Results land in demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
OUT=${OUT:-demo-output}
# --overwrite: a rerun of the demo replaces the demo's own previous output (demo-output/ is this script's)
fixate-rt synth "$OUT/data" --overwrite
fixate-rt simulate --users "$OUT/data/users.parquet" --images "$OUT/data/slates" --out "$OUT/sim" --overwrite
