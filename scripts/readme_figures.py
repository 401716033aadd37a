"""The README's "Measured" figures, generated from benchmarks/results/*.json (never copied by hand).

    python scripts/readme_figures.py          # rewrite the block between the markers in README.md
    python scripts/readme_figures.py --check  # exit 1 if README.md disagrees with the results (tests run this)

Timings on a shared 2-core machine vary from run to run, so every figure is the median the benchmark recorded,
with its spread (min–max over the repeated runs) where the benchmark kept it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- figures:start (scripts/readme_figures.py) -->", "<!-- figures:end -->"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _spread(entry: dict) -> str:
    return f"{entry['ms_median']:.0f} ms ({entry['ms_min']:.0f}–{entry['ms_max']:.0f})"


def rollout() -> str:
    data = _load("rollout_cpu.json")
    rows = {r["model"]: r for r in data["rows"]}
    mid, tiny = rows["mid-qwen3vl"], rows["tiny-qwen3vl"]
    return (f"- the rollout probe on CPU, every layer SDPA and the row computed in C++ from the probed layers' Q and K "
            f"(`{data['meta']['command']}`, batch 2, medians with min–max of the repeated runs, "
            f"results/rollout_cpu.json): mid-size Qwen3-VL (T = {mid['T']}) {_spread(mid['fused_cpp'])} vs "
            f"{_spread(mid['sdpa'])} for the forward alone (**{mid['ratios']['fused_cpp_over_sdpa']:.3f}×**; the goal "
            f"is ≤ 1.15×), the eager capture {mid['ratios']['eager_cpp_over_sdpa']:.3f}×, the reference approach "
            f"{mid['ratios']['reference_over_fused_cpp']:.3f}× slower than the fused probe; tiny model "
            f"(T = {tiny['T']}) {tiny['ratios']['fused_cpp_over_sdpa']:.2f}× (eager capture "
            f"{tiny['ratios']['eager_cpp_over_sdpa']:.3f}×: at this size attention is most of the forward). The probe "
            f"holds Q, K and the log-sum-exp of the probed layers ({mid['probe_holds_mb_computed']['fused_cpp']:.1f} MB "
            f"on the mid model vs {mid['probe_holds_mb_computed']['reference']:.0f} MB for the reference's matrices), "
            "never a T × T matrix;")


def ray() -> str:
    data = _load("ray_cpu.json")
    r = data["rows"]
    meta = data["meta"]
    return (f"- Ray Data vs the local engine, {meta['model']}, {meta['pairs']} pairs (`{meta['command']}`, "
            f"results/ray_cpu.json, medians of {meta['reps']}): local "
            f"{r['local']['pairs_per_s']:.2f} pairs/s; Ray with 1 worker {r['ray_1_workers']['pairs_per_s']:.2f} "
            f"pairs/s for the whole job, {r['ray_1_workers']['pairs_per_s_after_startup']:.2f} after its "
            f"{r['ray_1_workers']['fixed_cost_seconds_median']:.1f} s start-up; 2 workers "
            f"{r['ray_2_workers']['pairs_per_s']:.2f} for the whole job, "
            f"{r['ray_2_workers']['pairs_per_s_after_startup']:.2f} after a "
            f"{r['ray_2_workers']['fixed_cost_seconds_median']:.1f} s start-up "
            f"({data['ratios']['ray_2_workers_after_startup_vs_local']:.3f}× local). On two cores Ray costs a fixed "
            "start-up and buys nothing; it pays off with more machines or GPUs (docs/scale-out.md);")


def probes() -> str:
    data = _load("probe_capture_cpu.json")
    rows = {(r["model"], r["probe"], r["method"]): r for r in data["rows"]}
    parts = []
    for probe in ("rollout", "attnlrp", "glimpse"):
        ref, ours = rows[("mid-qwen3vl", probe, "reference")], rows[("mid-qwen3vl", probe, "fixate-rt")]
        parts.append(f"{probe} {ref['ms_median'] / ours['ms_median']:.2f}× faster with "
                     f"{ref['peak_mb'] / ours['peak_mb']:.1f}× less peak memory")
    T = rows[("mid-qwen3vl", "rollout", "fixate-rt")]["T"]
    return (f"- probing vs the reference approach (all layers eager with `output_attentions=True`, full-matrix "
            f"operators), mid-size random Qwen3-VL (T = {T}, batch 2, medians): " + ", ".join(parts)
            + f" (`{data['meta']['command'].strip()}`, results/probe_capture_cpu.json);")


def cpu_ops() -> str:
    data = _load("cpu_ops.json")
    cpp = [r for r in data["rows"] if r["impl"] == "cpp"]
    parts = [f"{r['op']} ({r['size']}) {r['speedup_vs_torch']:.1f}× ({r['ms']:.0f} ms)" for r in cpp]
    return f"- C++ ops vs torch on CPU: {'; '.join(parts)} (`{data['meta']['command']}`, results/cpu_ops.json);"


def exports() -> str:
    data = _load("export_cpu.json")
    parts = [f"{r['model']} PyTorch {r['torch_ms_per_pair']:.1f} ms, ONNX Runtime {r['onnx_ms_per_pair']:.1f} ms "
             f"({r['speedup_onnx_vs_torch']:.2f}×), torch.export {r['export_ms_per_pair']:.1f} ms "
             f"({r['speedup_export_vs_torch']:.2f}×)" for r in data["rows"]]
    return (f"- exported graphs vs PyTorch per (user, slate) pair, batch 8, rollout probe (`{data['meta']['command']}`, "
            f"results/export_cpu.json): {'; '.join(parts)}. On this CPU the exports buy portability, not speed;")


def compare() -> str:
    data = _load("bench_compare.json")
    return (f"- `compare` on {data['users']:,} users × {data['slates']} slates × 2 variants ({data['resamples']:,} "
            f"paired bootstrap resamples): {data['compare_s']:.1f} s, report {data['write_report_s']:.1f} s "
            "(`python benchmarks/bench_compare.py`, results/bench_compare.json).")


def block() -> str:
    lines = ["Measured on this project's 2-core CPU machine (benchmarks/results/; this list is generated by",
             "`python scripts/readme_figures.py` from those files):"]
    for bullet in (rollout(), ray(), probes(), cpu_ops(), exports(), compare()):
        lines.extend(_wrap(bullet))
    return "\n".join([START, *lines, END])


def _wrap(text: str, width: int = 116) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md disagrees with the results")
    args = ap.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README}: the markers {START} … {END} are missing", file=sys.stderr)
        return 1
    current = text[text.index(START):text.index(END) + len(END)]
    wanted = block()
    if args.check:
        if current != wanted:
            print("README.md's measured figures disagree with benchmarks/results/: run "
                  "python scripts/readme_figures.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(text.replace(current, wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
