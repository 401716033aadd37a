"""Peak memory of one exported decoder call at long slates: does it grow O(T) or O(T²)?

The mid-shaped Qwen3-VL ONNX export (probe contract qk v2) is run once per length T on one sample in a fresh
process; the figure is the growth of the process's peak RSS during that call (after the session was created and
warmed up at T = 64). Each length runs twice: with the decoder's attention on fixate-rt's fused causal kernel (what
`simulate` uses) and on ONNX Runtime's own `Attention` kernel (the baseline, FIXATE_RT_ORT_ATTENTION=onnxruntime);
and once as the torch.export program of the same model (`.pt2`; at load its attention is rewritten to the C++ causal
kernel on the key mask, but the program still builds the boolean [B, 1, T, T] mask).

    python benchmarks/export_memory.py [--lengths 1024 2048 4096 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Does the peak memory of one exported decoder call grow O(T) or O(T²) with the slate length?"
FOLDERS = {"onnx": ROOT / "benchmarks" / "work" / "export-qk2" / "mid-qwen3vl-onnx",
           "export": ROOT / "benchmarks" / "work" / "export-qk2" / "mid-qwen3vl-export"}
CHILD = r"""
import resource, sys
import numpy as np
T, P = int(sys.argv[1]), 600
from fixate_rt.backends.graph_runtime import GraphSession, read_manifest
from pathlib import Path
folder = Path(sys.argv[2])
manifest = read_manifest(folder)
g = manifest["graphs"]["decoder"]
session = GraphSession(manifest["runtime"], folder / g["file"], [t["name"] for t in g["inputs"]],
                       [t["name"] for t in g["outputs"]], listed=manifest["files"], authorised=True)  # we wrote it
D = manifest["hidden_size"]
def feed(T):
    rng = np.random.default_rng(0)
    vis = np.zeros((1, T), bool); vis[:, 8:8 + min(P, T - 16)] = True
    n = int(vis.sum())
    return {"inputs_embeds": rng.standard_normal((1, T, D), dtype=np.float32) * 0.1,
            "attention_mask": np.ones((1, T), np.int64),
            "position_ids": np.broadcast_to(np.arange(T), (3, 1, T)).copy().astype(np.int64),
            "visual_pos_masks": vis, "deepstack": rng.standard_normal((3, n, D), dtype=np.float32) * 0.1}
session.run(feed(64))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = session.run(feed(T))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, sum(o.nbytes for o in out) / 2**20, session.fused_attention)
"""
# name: (format, FIXATE_RT_ORT_ATTENTION)
KERNELS = {"fused": ("onnx", ""), "ort": ("onnx", "onnxruntime"), "torch_export": ("export", "")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    args = ap.parse_args()
    for fmt, folder in FOLDERS.items():
        if not (folder / "manifest.json").is_file():
            from fixate_rt.exporters.export import export_model

            export_model("mid-qwen3vl", folder, fmt=fmt, overwrite=True)
    rows = []
    for T in args.lengths:
        row = {"T": T}
        for kernel, (fmt, switch) in KERNELS.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(T), str(FOLDERS[fmt])], capture_output=True,
                                 text=True, check=True, env={**os.environ, "FIXATE_RT_ORT_ATTENTION": switch}).stdout.split()
            assert (out[2] == "True") == (kernel == "fused"), out  # the measurement ran on the kernel it names
            row[f"{kernel}_peak_rss_growth_mib"] = round(float(out[0]), 1)
            row["outputs_mib"] = round(float(out[1]), 1)
        row["ort_over_fused"] = round(row["ort_peak_rss_growth_mib"] / max(row["fused_peak_rss_growth_mib"], 1e-9), 2)
        rows.append(row)
        print(row, flush=True)
    for a, b in zip(rows, rows[1:]):
        for kernel in KERNELS:
            key = f"{kernel}_peak_rss_growth_mib"
            b[f"{kernel}_growth_vs_previous"] = round(b[key] / max(a[key], 1e-9), 2)
    payload = new_result(QUESTION, "python benchmarks/export_memory.py", rows,
                         settings={"model": "mid-qwen3vl (probe contract qk v2)", "batch": 1,
                                   "kernels": "fused: ONNX, fixate_rt.CausalAttention; ort: ONNX, ONNX Runtime's "
                                              "Attention; torch_export: the .pt2 program (C++ causal kernel after "
                                              "the load-time rewrite)"})
    write_result("export_memory", payload)
    print(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
