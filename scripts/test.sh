#!/usr/bin/env bash
# Set up and run the whole CPU test suite. pytest's exit code 5 (no tests collected) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The AdSERP importer's tests lay real result pages out in Debian's headless Chromium; without it they skip
# with the reason (CI sets FIXATE_RT_REQUIRE_CHROMIUM=1, so there they can never be skipped).
bash scripts/install_chromium.sh || echo "Chromium not installed: the AdSERP import tests will be skipped" >&2
. .venv/bin/activate
export HF_HUB_OFFLINE=1
pytest -q -m "not gpu" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
[ "$status" -ne 0 ] && exit "$status"
# The Triton kernels on CPU: the interpreter must be switched on before triton is imported, so this is a
# separate pytest process over tests_triton/ (GPU checks are marked `gpu` and run on a lent GPU machine).
# The registry's parity cases for the triton implementations run here too (skipped in the run above).
pip install -q "triton>=3.8" 2>&1 | grep -v "^WARNING: Location" || true
TRITON_INTERPRET=1 pytest -q -m "not gpu" -p no:cacheprovider tests_triton tests/test_ops_parity.py -k "triton"
status=$?
[ "$status" -eq 5 ] && { echo "no Triton tests collected: failing" >&2; exit 1; }
exit "$status"
