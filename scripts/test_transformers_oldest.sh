#!/usr/bin/env bash
# The model tests on the oldest supported transformers (pyproject.toml's lower bound), then back to the newest
# allowed release that scripts/setup.sh installed. The full suite runs on the newest (scripts/test.sh).
# tests/test_slates_model.py is here too: the shipped slates-qwen3vl checkpoint, saved with the newest, must load.
set -uo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
newest=$(python -c "import transformers; print(transformers.__version__)")
oldest=$(python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(re.search(r'transformers>=([0-9.]+)', ' '.join(deps))[1])")
pip install -q "transformers==$oldest.0" 2>&1 | grep -v "^WARNING: Location" | grep -v "dependency" || true
python -c "import transformers; print('model tests on transformers', transformers.__version__)"
pytest -q -m "not gpu" -p no:cacheprovider tests/test_backbones.py tests/test_backbone_qwen3.py tests/test_pipeline.py \
  tests/test_cli_simulate.py tests/test_probes.py tests/test_slates_model.py
status=$?
pip install -q "transformers==$newest" 2>&1 | grep -v "^WARNING: Location" || true
[ "$status" -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit "$status"
