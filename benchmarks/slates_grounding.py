"""Do the built-in slate models (`slates-qwen3vl`, `slates-qwen3vl-fair-deep`) read slates? Held-out grounding
accuracy and where their rollout looks.

For each grounding task (fixate_rt.data.grounding) on slates no pretraining step drew: the accuracy of the most
likely letter (p_click from `Simulator.simulate_slate`, the public path), and the fraction of tasks whose
rollout top-3 slots (slot_relevance) contain an asked-for poster, each beside its chance level and beside the
random `tiny-qwen3vl` run through the same code. Writes its section of docs/results.md and
benchmarks/results/slates_grounding.json.

    python benchmarks/slates_grounding.py [--per-task 100] [--models slates-qwen3vl,slates-qwen3vl-fair-deep,tiny-qwen3vl]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
import time
from math import comb
from pathlib import Path

import numpy as np
from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How well does each built-in model ground slate tasks (find a poster by genre, title, position)?"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def top3_chance(k: int, S: int = 15) -> float:
    """Probability that 3 slots drawn at random contain at least one of k answer slots."""
    return 1.0 - comb(S - k, 3) / comb(S, 3)


def measure(model: str, tasks) -> dict:
    from fixate_rt.data import layout as geo
    from fixate_rt.simulate import Simulator

    sim = Simulator(model, device="cpu", probe="rollout")
    base = geo.recgaze_layout()
    rows: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for task in tasks:
        layout = dataclasses.replace(base, context=task.context)
        res = sim.simulate_slate(task.render(), layout, ["u"], [task.profile])
        p, rel = res.p_click[0], res.slot_relevance[0]
        support = task.target > 0
        r = rows.setdefault(task.kind, {k: [] for k in ("acc", "acc_chance", "top3", "top3_chance", "mass")})
        r["acc"].append(float(support[int(np.argmax(p))]))
        r["acc_chance"].append(float(support.mean()))
        r["top3"].append(float(support[np.argsort(-rel, kind="stable")[:3]].any()))
        r["top3_chance"].append(top3_chance(int(support.sum())))
        r["mass"].append(float(p[support].sum()))
    out = {kind: {k: float(np.mean(v)) for k, v in r.items()} | {"n": len(r["acc"])} for kind, r in rows.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-task", type=int, default=100)
    ap.add_argument("--models", default="slates-qwen3vl,slates-qwen3vl-fair-deep,tiny-qwen3vl")
    args = ap.parse_args()

    import torch
    import transformers
    from results_doc import replace_section

    from fixate_rt.data.grounding import TASKS
    from fixate_rt.training.pretrain_slates import EVAL_SEED, held_out_tasks

    tasks = held_out_tasks(args.per_task)
    models = args.models.split(",")
    results = {m: measure(m, tasks) for m in models}
    command = "python benchmarks/slates_grounding.py " + " ".join(sys.argv[1:])
    head = " | ".join(f"{m} accuracy | {m} rollout top-3" for m in models)
    lines = ["### Grounding: do the built-in slate models read the slate?", "",
             f"`{command}` — {datetime.date.today().isoformat()}, CPU ({platform.machine()}, 2 cores), torch "
             f"{torch.__version__}, transformers {transformers.__version__}; {args.per_task} held-out tasks per kind "
             f"(slates from seed {EVAL_SEED}, which no pretraining step draws), rollout probe, p_click and "
             "slot_relevance from `Simulator.simulate_slate`.", "",
             "Accuracy: the most likely letter is an asked-for poster. Rollout top-3: the three slots with the most "
             "rollout relevance contain an asked-for poster. Chance: a uniform guess (accuracy) / three random "
             "slots (top-3), for the same tasks.", "",
             f"| task | chance (accuracy) | {head} | chance (top-3) |",
             "|---|---|" + "---|---|" * len(models) + "---|"]
    for kind in TASKS:
        first = results[models[0]][kind]
        cells = " | ".join(f"{results[m][kind]['acc']:.3f} | {results[m][kind]['top3']:.3f}" for m in models)
        lines.append(f"| {kind} | {first['acc_chance']:.3f} | {cells} | {first['top3_chance']:.3f} |")
    lines.append("")
    block = "\n".join(lines)
    print(block)
    rows = [{"model": m, "task": kind, **r} for m, per in results.items() for kind, r in per.items()
            if isinstance(r, dict)]  # (per model, beside its tasks: the seconds it took)
    write_result("slates_grounding", new_result(QUESTION, command, rows, results=results))
    print(replace_section(block))


if __name__ == "__main__":
    main()
