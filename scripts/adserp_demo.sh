#!/usr/bin/env bash
# The documented run on the real AdSERP sample (docs/adserp.md): import, simulate with the random tiny-qwen3vl
# (a pipeline check, as docs/adserp.md says: its numbers do not measure the method),
# score against the recorded fixations, draw `show` pictures, print the per-trial table.
# Usage: bash scripts/adserp_demo.sh [OUT]   (default runs/adserp; needs `bash scripts/setup.sh` and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/adserp}"
. .venv/bin/activate
# Never delete a folder this script did not make: a rerun replaces only a previous demo's output (it carries
# the marker below); anything else at OUT is refused.
MARKER="$OUT/.fixate-rt-adserp-demo"
if [ -e "$OUT" ]; then
  if [ -f "$MARKER" ]; then rm -rf "$OUT/data" "$OUT/sim" "$OUT/score" "$OUT/show";
  else echo "adserp_demo: $OUT exists and was not made by this script; pass another folder" >&2; exit 2; fi
fi
mkdir -p "$OUT" && touch "$MARKER"
fixate-rt import-adserp data/adserp-sample --out "$OUT/data"
# Each trial is one (participant, page) session: simulate exactly those pairs.
fixate-rt simulate --users "$OUT/data/users.parquet" --images "$OUT/data/slates" --pairs "$OUT/data/sessions.parquet" \
  --out "$OUT/sim" --samples 1 --seed 0 --model tiny-qwen3vl
fixate-rt score --sim "$OUT/sim" --sessions "$OUT/data/sessions.parquet" --out "$OUT/score"
fixate-rt show --sim "$OUT/sim" --sessions "$OUT/data/sessions.parquet" \
  --images "$OUT/data/slates" --out "$OUT/show"
python scripts/adserp_table.py "$OUT"
