#!/usr/bin/env bash
# Create .venv (if missing) and install fixate-rt with its test extras, CPU-only torch first.
# torch is pinned here, not in pyproject.toml: a bare "torch" requirement would pull a multi-GB CUDA build
# on CPU machines, while GPU users keep their own CUDA torch (pyproject.toml only sets a range).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "torch==2.13.0" numpy 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch" || { echo "torch failed to install" >&2; exit 1; }
# Triton (the `gpu` extra) only where a GPU is; scripts/test.sh adds it for the interpreter tests on CPU.
EXTRAS="test,onnx,clickmodels"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then EXTRAS="$EXTRAS,gpu"; fi
pip install -q -e ".[$EXTRAS]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import fixate_rt, fixate_rt.ops as o; print(f'fixate-rt {fixate_rt.__version__} installed (C++ module: {o.cpp_available()})')"
