"""Position bias of simulated clicks vs the synthetic users' planted position curve, trained prompts vs none.

Generates `fixate-rt synth` data, trains per-user soft prompts (tiny-qwen3vl, CPU), makes shuffled variants of
the slates (`permute --policy shuffle`, so items visit many positions), simulates every user on every variant
with the trained bank and with no prompt, fits the conditional-logit position effects β to each, and compares
them with the planted curve.

The planted curve: synthetic attention has the reading prior −0.6·row − 0.35·col (docs/synthetic.md) and the
click is drawn ∝ (fixation share)³, so the clicks' position effect is about 3·(−0.6·row − 0.35·col). The distance
is the RMSE between β (first position = 0) and that curve over the 15 positions; the test is a Wilcoxon
signed-rank test over positions of the two runs' squared errors.

    python benchmarks/position_bias_synth.py [--users 16] [--slates 20] [--epochs 10] [--variants 3]
Writes benchmarks/results/position_bias_synth.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("Do the position-bias click models recover a planted position effect from simulated clicks, with "
            "trained prompts and without?")


def planted_curve() -> np.ndarray:
    rows, cols = np.divmod(np.arange(15), 5)
    curve = 3 * (-0.6 * rows - 0.35 * cols)
    return curve - curve[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--slates", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "position_bias_synth")
    args = ap.parse_args()

    import torch
    import transformers
    from scipy.stats import wilcoxon

    from fixate_rt.config import SimulateConfig
    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.experiments.permute import parse_policy, permute_folder
    from fixate_rt.experiments.position_bias import position_bias
    from fixate_rt.experiments.runs import read_run, slates_of
    from fixate_rt.simulate import run_simulation
    from fixate_rt.training import TrainConfig, train

    t0 = time.perf_counter()
    work = args.work
    data = work / "data"
    write_synth(data, SynthConfig(n_users=args.users, n_slates=args.slates, seed=0))
    run = work / "train"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    train(TrainConfig(sessions=data / "sessions.parquet", images=data / "slates", users=data / "users.parquet",
                      out=run, epochs=args.epochs, seeds=(1,), device="cpu", lr_basis=1e-2, lr_alpha=5e-2,
                      warmup_steps=10))
    runs: dict[str, list] = {"trained prompts": [], "no prompt (backbone)": []}
    for v in range(args.variants):
        variant = work / f"variant{v}"
        permute_folder(data / "slates", variant, parse_policy("shuffle", seed=v))
        for name, bank in (("trained prompts", run / "prompts.safetensors"), ("no prompt (backbone)", None)):
            out = work / f"sim_{'trained' if bank else 'backbone'}_{v}"
            run_simulation(SimulateConfig(users=data / "users.parquet", images=variant, out=out, prompts=bank,
                                          samples=args.samples, device="cpu", seed=v))
            runs[name].append(read_run(out))
    planted = planted_curve()
    results, errors = {}, {}
    for name, rs in runs.items():
        fit = position_bias(rs, [slates_of(r, None) for r in rs])
        beta = np.array(fit["logit"]["beta"])
        errors[name] = (beta - planted) ** 2
        results[name] = {"beta": beta.round(4).tolist(), "rmse": float(np.sqrt(errors[name].mean())),
                         "pearson_r": float(np.corrcoef(beta, planted)[0, 1]), "sessions": fit["sessions"],
                         "attention": np.round(fit["attention"], 4).tolist()}
    names = list(runs)
    p = float(wilcoxon(errors[names[0]], errors[names[1]]).pvalue)
    seconds = time.perf_counter() - t0
    command = "python benchmarks/position_bias_synth.py " + " ".join(sys.argv[1:])
    payload = new_result(QUESTION, command, [{"run": name, **r} for name, r in results.items()],
                         settings={"seconds": round(seconds, 1)}, planted_beta=planted.round(4).tolist(), runs=results,
                         wilcoxon_squared_error_trained_vs_backbone=p)
    write_result("position_bias_synth", payload)
    print(f"`{command}` — {payload['meta']['date']}, CPU ({platform.machine()}), torch {torch.__version__}, "
          f"transformers {transformers.__version__}; {args.users} users × {args.slates} slates × {args.variants} "
          "shuffled variants, "
          f"{args.samples} clicks per pair; {seconds / 60:.1f} min.\n")
    print("| clicks from | RMSE of β vs planted | Pearson r | sessions |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rmse']:.3f} | {r['pearson_r']:+.3f} | {r['sessions']} |")
    print(f"\nWilcoxon over the 15 positions (squared errors, trained vs backbone): p = {p:.3g}")
    print("planted β:", ", ".join(f"{v:.2f}" for v in planted))
    for name, r in results.items():
        print(f"{name} β:", ", ".join(f"{v:.2f}" for v in r["beta"]))


if __name__ == "__main__":
    main()
