"""What int8 costs: the ONNX export of the pretrained slate model in fp32 and with `--quantize int8`, run on the same
synthetic users and slates with the same seed, compared pair by pair and scored against the same gaze.

Reported: click agreement with fp32 (same seed, so a disagreement is the quantisation moving p_click across a
sampling threshold), max and median |Δp_click|, KL(fp32 slot relevance ‖ int8 slot relevance), and `score`'s
alignment and click metrics for both. No threshold: the table is for a user deciding whether int8 is enough.

    python benchmarks/int8_fidelity.py [--users 16] [--slates 12] [--samples 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from harness import new_result, write_result

from fixate_rt.run.layout import read_simulation

QUESTION = ("What does int8 quantisation of the exported decoder cost in fidelity (clicks, p_click, slot "
            "relevance, alignment metrics) against fp32?")

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "int8_fidelity"
METRICS = ("kl", "js", "cosine", "csh@1", "csh@3", "tgo@3", "logloss", "auc", "correct")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="slates-qwen3vl")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--slates", type=int, default=12)
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()

    from fixate_rt import SimulateConfig, run_simulation
    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.exporters.export import export_model
    from fixate_rt.score import score

    data = WORK / "data"
    write_synth(data, SynthConfig(n_users=args.users, n_slates=args.slates, seed=5), overwrite=True)
    runs = {}
    for name, quantize in (("fp32", None), ("int8", "int8")):
        folder = WORK / f"export-{name}"
        if not (folder / "manifest.json").is_file():  # exported once (a minute each), then reused
            export_model(args.model, folder, fmt="onnx", quantize=quantize, overwrite=True)
        sim = WORK / f"sim-{name}"
        run_simulation(SimulateConfig(users=data / "users.parquet", images=data / "slates", out=sim, model=str(folder),
                                      samples=args.samples, seed=0, device="cpu", overwrite=True))
        scored = score(sim, data / "sessions.parquet", WORK / f"score-{name}", overwrite=True)
        runs[name] = (read_simulation(sim)[0].to_pydict(), scored)
    a, b = runs["fp32"][0], runs["int8"][0]
    p_a, p_b = np.array(a["p_click"]), np.array(b["p_click"])
    r_a, r_b = np.clip(np.array(a["slot_relevance"]), 1e-12, None), np.clip(np.array(b["slot_relevance"]), 1e-12, None)
    kl = (r_a * np.log(r_a / r_b)).sum(1)
    diff = np.abs(p_a - p_b).max(1)
    summary = {
        "pairs": len(set(zip(a["user_id"], a["slate_id"]))), "simulated_rows": len(a["click_slot"]),
        "click_agreement": float(np.mean(np.array(a["click_slot"]) == np.array(b["click_slot"]))),
        "top_slot_agreement": float(np.mean(p_a.argmax(1) == p_b.argmax(1))),
        "p_click_abs_diff": {"max": float(diff.max()), "median": float(np.median(diff))},
        "relevance_kl_fp32_to_int8": {"mean": float(kl.mean()), "max": float(kl.max())},
        "score": {name: {m: runs[name][1]["micro"][m] for m in METRICS} for name in runs},
    }
    rows = [{"artefact": name, **{m: runs[name][1]["micro"][m] for m in METRICS}} for name in runs]
    settings = {"model": args.model, "users": args.users, "slates": args.slates, "samples": args.samples}
    out = write_result("int8_fidelity", new_result(QUESTION, "python benchmarks/int8_fidelity.py", rows,
                                                   settings=settings, **summary))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
