#!/usr/bin/env bash
# Quick start: set up, generate the synthetic demo data and simulate every user on every slate with the
# built-in pretrained slates-qwen3vl (a small Qwen3-VL trained to read these slates), then score it on the held-out
# sessions beside the cheap baselines. Results land in demo-output/; the last line says how often the simulated
# clicks land on the user's profile genre, against chance.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
OUT=${OUT:-demo-output}
# --overwrite: a rerun of the demo replaces the demo's own previous output (demo-output/ is this script's)
fixate-rt synth "$OUT/data" --overwrite
fixate-rt simulate --model slates-qwen3vl --users "$OUT/data/users.parquet" --images "$OUT/data/slates" \
  --out "$OUT/sim" --overwrite
# The simulation against the held-out sessions, beside what it has to beat: uniform and the train split's slot
# priors (population, per user). The pretrained backbone without trained prompts does not beat the per-user prior.
fixate-rt score --sim "$OUT/sim" --sessions "$OUT/data/sessions.parquet" --split test \
  --baselines uniform,population,user --out "$OUT/score" --overwrite
fixate-rt profile-match --data "$OUT/data" --sim "$OUT/sim"
