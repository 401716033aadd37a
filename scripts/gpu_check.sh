#!/usr/bin/env bash
# The one prepared GPU run for a lent machine (device tool: `run` with this script, timeout ≈ 600 s).
# The GPU image has torch, triton, scikit-build-core, pybind11, typer, pyarrow (no network there), so the package is
# built and installed without build isolation or downloads. Its transformers is 5.17, which lacks
# `mm_encoder_outputs` (fixate-rt needs 5.18 to 5.25: with 5.17 the image features never reach the decoder), so carry
# a supported wheel: here, `echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps transformers==5.25.0 -d .whl`,
# then `run` with carry [".whl"]. Results land under $OUT.
# Not yet run on a GPU (no machine has been lent to this project so far).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 FIXATE_RT_CACHE=/tmp/fixate-rt-cache
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if ls .whl/transformers-5.*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -c "import transformers as t, sys; v = tuple(int(x) for x in t.__version__.split('.')[:2]); sys.exit(0 if (5, 18) <= v <= (5, 25) else 'transformers ' + t.__version__ + ': carry a 5.18-5.25 wheel (see the top of this script)')" || exit 1
python3 -m pip install -q --no-build-isolation --no-deps --no-index . > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
python3 - > "$OUT/versions.txt" 2>&1 <<'PY'
import torch, transformers, triton, fixate_rt
from fixate_rt import ops
print(torch.cuda.get_device_name(), torch.__version__, transformers.__version__, triton.__version__, fixate_rt.__version__,
      "cpp", ops.cpp_available())
PY
cat "$OUT/versions.txt"
step() { local name=$1 limit=$2; shift 2; echo "== $name"; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "rc=$?" >> "$OUT/$name.log"; tail -4 "$OUT/$name.log"; }
step pytest_gpu 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests_triton
step bench_rollout 180 python3 benchmarks/bench_rollout_gpu.py
step bench_simulate 180 python3 benchmarks/bench_simulate_gpu.py
step profile_4b 90 fixate-rt profile --model qwen3vl-4b-shape --device cuda --batch-size 32 --n-pairs 64 --out "$OUT/profile_4b"
cp benchmarks/results/rollout_gpu.json benchmarks/results/simulate_gpu.json "$OUT/" 2>/dev/null
exit 0
