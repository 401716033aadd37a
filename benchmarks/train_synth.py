"""FixATE on synthetic users with planted gaze patterns: backbone vs FixATE on the content-disjoint test split.

Generates `fixate-rt synth` data, trains per-user soft prompts with 3 seeds on a backbone (`--model`, default
`tiny-qwen3vl`; CPU), and writes the table (mean ± std over seeds, per-user Wilcoxon p pooled over seeds and per seed) to
docs/results.md and benchmarks/results/train_synth.json.

    python benchmarks/train_synth.py [--users 16] [--slates 20] [--epochs 10] [--probe rollout] [--seeds 1,2,3]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("On synthetic users with planted gaze, does FixATE align attention with gaze better than the "
            "backbone on content-disjoint test slates (per-user paired tests)?")
sys.path.insert(0, str(Path(__file__).resolve().parent))
METRICS = ("kl", "js", "cosine", "csh@1", "csh@3", "tgo@3", "logloss", "auc", "correct")
LOWER = {"kl", "js", "logloss"}


def run_name(args) -> str:
    """The run's folder and result-file name; the original random-backbone runs keep their names."""
    name = f"{args.probe}_wc{args.choice_weight:g}"
    if args.model != "tiny-qwen3vl":
        name = f"{Path(args.model).name}_{name}_w{args.warmup_steps}"
        name += "_nontp" if args.no_ntp else ""
        name += "_noalpha" if args.no_user_alpha else ""
    if args.variant != "profile":
        name = f"{args.variant}{args.data_seed}_{name}"
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--slates", type=int, default=None, help="[default: 20; the latent variant's 80]")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--variant", default="profile", choices=("profile", "latent"),
                    help="the synthetic data set (docs/synthetic.md); latent: 80 slates, 20 test slates by default")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--model", default="tiny-qwen3vl", help="the backbone (built-in name or checkpoint folder)")
    ap.add_argument("--no-ntp", action="store_true", help="ablation: no next-token loss")
    ap.add_argument("--no-user-alpha", action="store_true", help="ablation: one shared prompt (uniform mixture)")
    ap.add_argument("--probe", default="rollout")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--lr-basis", type=float, default=1e-2)
    ap.add_argument("--lr-alpha", type=float, default=5e-2)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--choice-weight", type=float, default=0.5)
    ap.add_argument("--lambda-attn", type=float, default=0.5)
    ap.add_argument("--attn-loss", default="weighted_full_kl")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "train_synth")
    ap.add_argument("--tie-rule", default="average", choices=("average", "lower-index", "reference"))
    ap.add_argument("--preset", default="none", choices=("none", "recgaze", "adserp"),
                    help="a training preset; the options above still win where given")
    ap.add_argument("--tag", default="", help="a label for this run in docs/results.md (a section with the same "
                                              "heading is replaced)")
    args = ap.parse_args()

    import torch
    import transformers
    from results_doc import replace_section

    from fixate_rt import metrics as M
    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.training import TrainConfig, train

    data = args.work / ("data" if args.variant == "profile" else f"data_{args.variant}{args.data_seed}")
    sizes = {"n_users": args.users, "seed": args.data_seed}
    if args.variant == "latent":
        synth_cfg = SynthConfig.latent(**sizes, **({"n_slates": args.slates} if args.slates else {}))
    else:
        synth_cfg = SynthConfig(**sizes, n_slates=args.slates or 20)
    args.slates = synth_cfg.n_slates
    write_synth(data, synth_cfg, overwrite=True)  # this benchmark's own folder: a rerun regenerates the same bytes
    cfg = TrainConfig.from_preset(args.preset, tie_rule=args.tie_rule,
                      sessions=data / "sessions.parquet", images=data / "slates", users=data / "users.parquet",
                      out=args.work / run_name(args), model=args.model, probe=args.probe,
                      no_ntp=args.no_ntp, no_user_alpha=args.no_user_alpha, overwrite=True, epochs=args.epochs, device="cpu",
                      seeds=tuple(int(s) for s in args.seeds.split(",")), lr_basis=args.lr_basis,
                      lr_alpha=args.lr_alpha, warmup_steps=args.warmup_steps, choice_weight=args.choice_weight,
                      lambda_attn=args.lambda_attn, attn_loss=args.attn_loss)
    t0 = time.perf_counter()
    res = train(cfg, on_step=lambda r: print(f"\rseed {r['seed']} epoch {r['epoch'] + 1} step {r['step']} "
                                              f"loss {r['loss']:.4f} attn {r['attn']:.4f}", end="", flush=True))
    seconds = time.perf_counter() - t0
    print()
    summary, pooled = res["summary_micro_mean_std"], res["wilcoxon_pooled_over_seeds"]
    per_seed_p = {s: v["wilcoxon_fixate_tf_vs_backbone_tf"] for s, v in res["per_seed"].items()}
    command = "python benchmarks/train_synth.py " + " ".join(sys.argv[1:])
    lines = [f"### {args.tag or 'FixATE vs backbone on synthetic users'} ({args.probe})", "",
             f"`{command}` — {datetime.date.today().isoformat()}, CPU ({platform.machine()}, 2 cores), torch "
             f"{torch.__version__}, transformers {transformers.__version__}; model `{args.model}`; "
             f"{args.users} users × {args.slates} slates ({args.variant} data set, seed {args.data_seed}) "
             f"(train/val/test {res['samples']['train']}/{res['samples']['val']}/{res['samples']['test']} sessions, "
             f"content-disjoint by slate), seeds {list(cfg.seeds)}, {args.epochs} epochs max, lr basis/alpha "
             f"{args.lr_basis}/{args.lr_alpha}, λ*={args.lambda_attn}, W={cfg.warmup_steps}, w_c={args.choice_weight}, "
             f"{args.attn_loss}{'; **no NTP**' if args.no_ntp else ''}"
             f"{'; **no user α**' if args.no_user_alpha else ''}; preset {cfg.preset}, selection {cfg.selection}, "
             f"top-k JS k={cfg.topk_js_k}, "
             f"template {cfg.template}, **ties {cfg.tie_rule}**; {seconds / 60:.1f} min.", "",
             "| metric | backbone (TF) | FixATE (TF) | FixATE (FG) | Δ FixATE−backbone | p (pooled) | p per seed |",
             "|---|---|---|---|---|---|---|"]
    for name in METRICS:
        b, f, fg = summary["backbone_tf"][name], summary["fixate_tf"][name], summary["fixate_fg"][name]
        seeds_p = ", ".join(M.format_p(per_seed_p[s][name]) for s in per_seed_p)
        lines.append(f"| {name}{' ↓' if name in LOWER else ''} | {b['mean']:.4f} ± {b['std']:.4f} | "
                     f"{f['mean']:.4f} ± {f['std']:.4f} | {fg['mean']:.4f} ± {fg['std']:.4f} | "
                     f"{f['mean'] - b['mean']:+.4f} | {M.format_p(pooled[name])} | {seeds_p} |")
    lines.append("")
    block = "\n".join(lines)
    print(block)
    rows = [{"split": split, **values} for split, values in res.items() if isinstance(values, dict)]
    out_json = write_result(f"train_synth_{run_name(args)}", new_result(QUESTION, command, rows,
                                                                        settings={"seconds": seconds}, metrics=res))
    print(f"{replace_section(block)}; full metrics in {out_json}")

if __name__ == "__main__":
    main()
