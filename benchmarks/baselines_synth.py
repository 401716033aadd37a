"""FixATE beside the predictors a reviewer asks for, on the same test sessions: uniform, the population slot prior,
the per-user slot prior (fitted on the train split, `fixate_rt.baselines`, as `score --baselines` fits them) and the
bare backbone.

Reads `benchmarks/train_synth.py` run folders (their per-sample test rows, every seed) and the data they trained
on; trains nothing. Two predictors are simulated through the CLI on the test pairs (`simulate` + `score`): the
bare backbone, checked against the training run's own backbone rows, and a **random prompt** of the trained
prompt's size (every basis token a random direction with the trained token's norm, α drawn with the trained α's
spread): what an arbitrary push of the same strength does. Per-user paired Wilcoxon tests of each FixATE run
against each predictor, Holm-corrected over the primary endpoints (KL, CSH@1) × comparisons; effect = mean
per-user change with a 95 % bootstrap interval over users. Writes a docs/results.md section and
benchmarks/results/baselines_synth.json.

    python benchmarks/baselines_synth.py --run NAME=benchmarks/work/train_synth/<run> [--run NAME=...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import shlex
import sys
from pathlib import Path

import numpy as np
from harness import new_result, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
QUESTION = ("On the synthetic users' content-disjoint test slates, does FixATE predict a session's gaze and click "
            "better than uniform, the population slot prior, the per-user slot prior and the bare backbone?")
SHOWN = ("kl", "csh@1", "js", "tgo@3", "logloss", "correct")
PRIMARY = ("kl", "csh@1")
BOOTSTRAP = 4000
PERMUTATIONS = 2**20  # sign flips over test slates: exact up to 20 slates


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: (v if k in ("user_id", "slate_id") else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]


def seeds_of(run: Path) -> list[int]:
    return sorted(int(p.name.split("_")[2][4:]) for p in run.glob("per_sample_seed*_fixate_tf.csv"))


def baseline_rows(data: Path, keys: list[tuple[str, str]], tau: float) -> dict[str, list[dict]]:
    """Per-sample metrics of each baseline on the test rows ``keys`` ((user, slate)), fitted on the train split."""
    from fixate_rt import metrics as M
    from fixate_rt.baselines import Baseline, fit_baselines
    from fixate_rt.data.tables import read_sessions

    sessions = read_sessions(data / "sessions.parquet")
    index = {k: i for i, k in enumerate(zip(sessions.user_ids, sessions.slate_ids))}
    names = (Baseline.uniform, Baseline.population, Baseline.user)
    fitted = fit_baselines(names, sessions.user_ids, sessions.splits, sessions.fixation_ms, sessions.clicked_slot,
                           tau, [u for u, _ in keys], str(data / "sessions.parquet"))
    assert not fitted.fallback_users, fitted.fallback_users  # every synthetic user has train sessions
    out: dict[str, list[dict]] = {}
    for name in names:
        rows = []
        for u, s in keys:
            i = index[(u, s)]
            relevance, p_click = fitted.predict(name, u, sessions.fixation_ms[i].size)
            metrics = M.sample_metrics(relevance, M.gaze_target(sessions.fixation_ms[i], tau), p_click,
                                       int(sessions.clicked_slot[i]), "average")
            rows.append({"user_id": u, "slate_id": s, **metrics})
        out[name.value] = rows
    return out


def cli(*args) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "fixate_rt", *map(str, args)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def random_bank(trained: Path, out: Path, seed: int = 0) -> Path:
    """A bank like ``trained`` (same users, shape, template) whose basis tokens point in random directions with
    the trained tokens' norms, and whose α is drawn with the trained α's standard deviation."""
    import dataclasses

    import torch

    from fixate_rt.prompts import SoftPromptBank

    bank = SoftPromptBank.load(trained)
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(bank.basis.shape, generator=gen)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    basis = direction * bank.basis.norm(dim=-1, keepdim=True)
    alpha = torch.randn(bank.alpha.shape, generator=gen) * bank.alpha.std()
    dataclasses.replace(bank, basis=basis, alpha=alpha).save(out)
    return out


def simulated_rows(run: Path, data: Path, keys: list[tuple[str, str]], work: Path,
                   with_backbone: bool) -> dict[str, list[dict]]:
    """Per-sample test rows of a random prompt shaped like ``run``'s (and of the bare backbone), through `simulate`
    and `score`."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    config = json.loads((run / "train_config.json").read_text())
    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user_id": [u for u, _ in keys], "slate_id": [s for _, s in keys]}), work / "pairs.parquet")
    common = ["--model", config["model"], "--users", data / "users.parquet", "--images", data / "slates",
              "--pairs", work / "pairs.parquet", "--device", "cpu", "--probe", config["probe"]]
    out = {}
    predictors = [("random prompt", ["--prompts", random_bank(run / "prompts.safetensors", work / "random.safetensors")])]
    for name, extra in [("backbone (simulated)", [])] * with_backbone + predictors:
        folder = work / name.split()[0]
        cli("simulate", *common, *extra, "--out", folder / "sim")
        cli("score", "--sim", folder / "sim", "--sessions", data / "sessions.parquet", "--split", "test",
            "--tau", config["tau"], "--out", folder / "score")
        rows = {(r["user_id"], r["slate_id"]): r for r in read_rows(folder / "score" / "per_sample.csv")}
        out[name] = [rows[k] for k in keys]
    return out


def random_label(run_name: str) -> str:
    return f"random prompt ({run_name}'s norm)"


def compared(run_name: str, other: str, runs: dict, backbone_of: dict[str, str]) -> bool:
    """Whether a FixATE run is tested against ``other``: the baselines, its own backbone and its own random
    prompt."""
    if other in runs:
        return False
    if other.startswith("random prompt"):
        return other == random_label(run_name)
    if other.startswith("backbone "):
        return other == backbone_of[run_name]
    return True


def pooled(per_seed: list[list[dict]], metric: str, by: str = "user_id") -> dict[str, float]:
    """Each user's (``by="slate_id"``: each test slate's) per-seed mean, averaged over seeds (as train_synth.py
    pools users)."""
    from fixate_rt import metrics as M

    maps = [M.per_user_means(rows, [r[by] for r in rows], metric) for rows in per_seed]
    return {k: float(np.mean([m[k] for m in maps])) for k in maps[0]}


def slate_sign_flip(a: dict[str, float], b: dict[str, float], seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of the mean per-slate change a − b (scipy; exact for few slates)."""
    from scipy.stats import permutation_test

    d = np.round(np.array([a[s] - b[s] for s in sorted(a)]), 12)
    if np.all(d == 0):
        return 1.0
    res = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=PERMUTATIONS,
                           alternative="two-sided", random_state=seed)
    return float(res.pvalue)


def interval(d: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean over users."""
    from scipy.stats import bootstrap

    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    res = bootstrap((d,), np.mean, n_resamples=BOOTSTRAP, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True,
                    help="NAME=FOLDER: a train_synth.py run folder and its label (repeatable; runs of one label "
                         "on several data sets are pooled, users and slates kept apart by data set)")
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--tag", default="Baselines beside FixATE (slates-qwen3vl)")
    ap.add_argument("--result", default="baselines_synth", help="the benchmarks/results/ file name")
    args = ap.parse_args()

    import json
    import tempfile

    from results_doc import replace_section

    from fixate_rt import metrics as M

    # Runs that share a label pool their data sets (users and slates are prefixed by the data folder's name, since
    # every data seed draws new users and slates); every label must cover the same data sets.
    runs: dict[str, list[Path]] = {}
    for spec in args.run:
        name, _, folder = spec.partition("=")
        runs.setdefault(name, []).append(Path(folder))
    config = {run: json.loads((run / "train_config.json").read_text()) for group in runs.values() for run in group}
    # A data set is its sessions file's content: runs that regenerated the same seed in other folders share it.
    from fixate_rt.io import sha256_file

    folder_of_digest: dict[str, Path] = {}
    data_of = {}
    for run, cfg in config.items():
        folder = Path(cfg["sessions"]).parent
        data_of[run] = folder_of_digest.setdefault(sha256_file(folder / "sessions.parquet"), folder)
    datasets = sorted({data_of[run] for group in runs.values() for run in group}, key=str)
    for name, group in runs.items():
        if sorted((data_of[r] for r in group), key=str) != datasets:
            sys.exit(f"--run {name}: covers {[str(data_of[r]) for r in group]}, not every data set of this table "
                     f"({[str(d) for d in datasets]}); give each label one run per data set")
    tags = {d: d.name if len({x.name for x in datasets}) == len(datasets) else str(d) for d in datasets}

    def tagged(rows: list[dict], data: Path) -> list[dict]:
        if len(datasets) == 1:
            return rows
        return [{**r, "user_id": f"{tags[data]}/{r['user_id']}", "slate_id": f"{tags[data]}/{r['slate_id']}"}
                for r in rows]

    predictors: dict[str, list[list[dict]]] = {}
    backbone_of: dict[str, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix="baselines-synth-"))
    gap = 0.0
    keys_of: dict[Path, list[tuple[str, str]]] = {}
    for data in datasets:
        run = next(r for group in runs.values() for r in group if data_of[r] == data)
        rows = read_rows(run / f"per_sample_seed{seeds_of(run)[0]}_backbone_tf.csv")
        keys_of[data] = [(r["user_id"], r["slate_id"]) for r in rows]
        for name, baseline in baseline_rows(data, keys_of[data], args.tau).items():
            predictors.setdefault(name, [[]])[0].extend(tagged(baseline, data))
    for i, (name, group) in enumerate(runs.items()):
        model = config[group[0]]["model"]
        backbone_of[name] = f"backbone {Path(model).name} (no prompt)"
        new_backbone = backbone_of[name] not in predictors
        per_seed: list[list[dict]] = []
        for j, run in enumerate(group):
            data = data_of[run]
            if config[run]["model"] != model:
                sys.exit(f"--run {name}: mixes backbones ({model}, {config[run]['model']})")
            backbone = read_rows(run / f"per_sample_seed{seeds_of(run)[0]}_backbone_tf.csv")
            check_first = i == 0 and j == 0
            simulated = simulated_rows(run, data, keys_of[data], scratch / f"{i}-{j}", with_backbone=check_first)
            if check_first:  # the CLI's backbone must reproduce the training run's own evaluation of it
                gap = max(abs(a[m] - b[m]) for a, b in zip(simulated.pop("backbone (simulated)"), backbone)
                          for m in ("kl", "csh@1"))
                print(f"backbone through simulate + score vs the training run's rows: max |Δ| of KL, CSH@1 {gap:.2e}")
            predictors.setdefault(random_label(name), [[]])[0].extend(tagged(simulated["random prompt"], data))
            if new_backbone:
                predictors.setdefault(backbone_of[name], [[]])[0].extend(tagged(backbone, data))
            seeds = [read_rows(run / f"per_sample_seed{s}_fixate_tf.csv") for s in seeds_of(run)]
            for rows in seeds:
                if [(r["user_id"], r["slate_id"]) for r in rows] != keys_of[data]:
                    sys.exit(f"{run}: its test rows differ from the backbone's")
            if not per_seed:
                per_seed = [[] for _ in seeds]
            if len(seeds) != len(per_seed):
                sys.exit(f"--run {name}: its runs have different seed counts")
            for acc, rows in zip(per_seed, seeds):
                acc.extend(tagged(rows, data))
        predictors[name] = per_seed
    # Order: baselines, backbones, random prompts, FixATE runs.
    order = [n for n in predictors if n in ("uniform", "population", "user")]
    order += sorted({b for b in backbone_of.values()}) + [random_label(n) for n in runs] + list(runs)
    predictors = {n: predictors[n] for n in order}
    keys = [(r["user_id"], r["slate_id"]) for data in datasets
            for r in tagged([{"user_id": u, "slate_id": s} for u, s in keys_of[data]], data)]
    n_users, n_slates = len({u for u, _ in keys}), len({s for _, s in keys})
    pooled_note = f" pooled over {len(datasets)} data sets ({', '.join(tags.values())})" if len(datasets) > 1 else ""

    command = "python benchmarks/baselines_synth.py " + shlex.join(sys.argv[1:])
    lines = [f"### {args.tag}", "",
             f"`{command}` — "
             f"{datetime.date.today().isoformat()}; {len(keys)} test sessions ({n_users} users, {n_slates} "
             f"content-disjoint test slates{pooled_note}), the same rows for every predictor; baselines fitted on the "
             "train split (fixate_rt.baselines, as `score --baselines`); FixATE: mean ± std over its seeds; ties average. "
             f"Backbone through `simulate` + `score` vs the training run's evaluation: max |Δ| {gap:.1e}.", "",
             "| predictor | " + " | ".join(m + (" ↓" if m in M.LOWER_IS_BETTER else "") for m in SHOWN) + " |",
             "|---|" + "---|" * len(SHOWN)]
    table_rows = []
    for name, per_seed in predictors.items():
        cells = []
        for metric in SHOWN:
            means = [np.mean([r[metric] for r in rows]) for rows in per_seed]
            cells.append(f"{np.mean(means):.3f}" + (f" ± {np.std(means):.3f}" if len(means) > 1 else ""))
            table_rows.append({"predictor": name, "metric": metric, "mean": float(np.mean(means)),
                               "std": float(np.std(means)), "seeds": len(means)})
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    tests = {}
    for run_name in runs:
        for other in predictors:
            if not compared(run_name, other, runs, backbone_of):
                continue
            for metric in M.METRIC_NAMES:
                a, b = pooled(predictors[run_name], metric), pooled(predictors[other], metric)
                tests[(run_name, other, metric)] = M.paired_wilcoxon(a, b)
                users = sorted(a)
                tests[(run_name, other, metric)]["ci95"] = interval(np.array([a[u] - b[u] for u in users]))
                if metric in PRIMARY:
                    tests[(run_name, other, metric)]["p_slates"] = slate_sign_flip(
                        pooled(predictors[run_name], metric, "slate_id"), pooled(predictors[other], metric, "slate_id"))
    adjusted = M.holm({k: t["p"] for k, t in tests.items() if k[2] in PRIMARY})
    adjusted_slates = M.holm({k: t["p_slates"] for k, t in tests.items() if k[2] in PRIMARY})
    lines += ["", "Per-user paired Wilcoxon (pooled over seeds), FixATE − predictor: mean change [95 % bootstrap "
              f"interval over users], direction, Holm-corrected p over the primary endpoints ({', '.join(PRIMARY)}) "
              f"× {len([k for k in tests if k[2] == PRIMARY[0]])} comparisons. Slates p: the same change averaged per "
              "test slate, sign-flip permutation test over slates (content as the random unit; exact when 2^slates ≤ "
              f"{PERMUTATIONS}), Holm-corrected as its own family; with 3 slates it cannot go below 0.25.", "",
              "| FixATE run vs | " + " | ".join(f"{m} Δ [95 % CI], p (Holm), slates p" for m in PRIMARY) + " |",
              "|---|" + "---|" * len(PRIMARY)]
    for run_name in runs:
        for other in predictors:
            if not compared(run_name, other, runs, backbone_of):
                continue
            cells = []
            for metric in PRIMARY:
                t = tests[(run_name, other, metric)]
                lo, hi = t["ci95"]
                p = adjusted[(run_name, other, metric)]
                ps = adjusted_slates[(run_name, other, metric)]
                cells.append(f"{t['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {M.direction(metric, t['mean_diff'])}, "
                             + ("n too small" if p is None else f"p {p:.3g}") + f", slates {ps:.3g}")
            lines.append(f"| {run_name} vs {other} | " + " | ".join(cells) + " |")
    lines.append("")
    block = "\n".join(lines)
    print(block)
    rows = [*table_rows, *({"comparison": f"{a} vs {b}", "metric": m, **t,
                            "p_holm": adjusted.get((a, b, m)), "p_slates_holm": adjusted_slates.get((a, b, m))}
                           for (a, b, m), t in tests.items())]
    out_json = write_result(args.result, new_result(QUESTION, command, rows,
                                                          settings={"runs": {k: [str(r) for r in v]
                                                                             for k, v in runs.items()},
                                                                    "test_sessions": len(keys), "users": n_users,
                                                                    "slates": n_slates, "data_sets": len(datasets)}))
    print(f"{replace_section(block)}; full results in {out_json}")


if __name__ == "__main__":
    main()
