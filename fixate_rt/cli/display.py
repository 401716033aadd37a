"""How results are shown on the terminal (Rich tables); commands compute, these functions only print."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .common import out_console


def describe_implementations(record: dict[str, dict[str, str]]) -> str:
    """``{op: {impl, device}}`` (run.json) as ``op impl on device, ...``."""
    return ", ".join(f"{op} {r['impl']} on {r['device']}" for op, r in record.items())


def fit_title(*parts: str, width: int | None = None) -> str:
    """A table title from " · "-separated parts, broken into lines only between parts, so that a narrow terminal
    never cuts a phrase ("mean ± std over seeds" stays whole); ``width`` defaults to the console's."""
    width = (width or out_console.width) - 4
    lines, line = [], ""
    for part in parts:
        candidate = f"{line} · {part}" if line else part
        if line and len(candidate) > width:
            lines.append(line)
            candidate = part
        line = candidate
    return "\n".join([*lines, line])


def print_simulation_summary(out: Path, info: dict, seconds: float) -> None:
    summary = info["summary"]
    table = Table(title=fit_title(f"{info['rows']} simulated clicks", f"{info['pairs']} pairs",
                                  f"{info['pairs_per_s']} pairs/s", f"device {info['device']}"))
    for col in ("slot", "click share", "mean p_click", "mean slot relevance"):
        table.add_column(col, justify="right")
    for i, label in enumerate(summary["labels"]):
        table.add_row(label, f"{summary['click_share'][i]:.3f}", f"{summary['mean_p_click'][i]:.3f}",
                      f"{summary['mean_slot_relevance'][i]:.3f}")
    out_console.print(table)
    ran = (describe_implementations(info["implementations"]) if info.get("ray") is None
           else f"{info['ray']['workers']} Ray worker(s)")
    out_console.print(f"results: {info['outputs']['simulations']}\nrun info: {out / 'run.json'}\n"
                      f"{seconds:.1f} s in all; ran: {ran}; "
                      f"cold-start pairs (no trained prompt): {info['cold_start_pairs']}")


def print_score(payload: dict, signal: str, split: str, out: Path) -> None:
    from .. import metrics as M

    table = Table(title=fit_title(f"{payload['n_samples']} samples", f"{payload['n_users']} users", f"signal {signal}",
                                  f"split {split}", f"ties {payload['config']['tie_rule']}"))
    baselines = payload.get("baselines", {}).get("models", {})
    for col in ("metric", "micro", "macro", *(f"{b} (micro)" for b in baselines)):
        table.add_column(col, justify="right")
    for name in M.METRIC_NAMES:
        table.add_row(name + (" ↓" if name in M.LOWER_IS_BETTER else ""), f"{payload['micro'][name]:.4f}",
                      f"{payload['macro'][name]:.4f}", *(f"{b['micro'][name]:.4f}" for b in baselines.values()))
    out_console.print(table)
    if payload["skipped_no_mass"]["count"]:
        out_console.print(f"skipped {payload['skipped_no_mass']['count']} sessions with no {signal} mass")
    if payload["sessions_without_simulation"]:
        out_console.print(f"{payload['sessions_without_simulation']} sessions had no simulation and were not scored")


def short_p(p: float | None) -> str:
    """A p-value in at most five characters (metrics.json keeps it exact): <.001, 0.009, 0.37; "n<10" untested."""
    if p is None:
        return "n<10"
    return "<.001" if p < 0.001 else (f"{p:.3f}" if p < 0.01 else f"{p:.2f}")


def print_baseline_tests(section: dict) -> None:
    """The model against each baseline: mean per-user change, its direction and the Holm-corrected p (primary
    endpoints first, starred), and which users fell back to the population prior. Cells stay short enough for an
    80-column terminal with three baselines."""
    from .. import metrics as M

    models = section["models"]
    primary = section["primary_endpoints"]
    table = Table(title=fit_title("model − baseline, mean over users", "direction",
                                  "Holm-corrected p of a paired Wilcoxon (n<10: too few users)",
                                  f"* primary endpoints ({', '.join(primary)})"))
    table.add_column("metric")
    for name in models:
        table.add_column(f"vs {name}", justify="right")
    ordered = [*primary, *(m for m in M.METRIC_NAMES if m not in primary)]
    for metric in ordered:
        cells = []
        for model in models.values():
            test = model["model_vs_baseline"][metric]
            cells.append(f"{test['mean_diff']:+.2f} {test['direction']} {short_p(test['p_holm'])}")
        label = metric + (" ↓" if metric in M.LOWER_IS_BETTER else "") + (" *" if metric in primary else "")
        table.add_row(label, *cells)
    out_console.print(table)
    for name, model in models.items():
        fallback = model.get("fallback_to_population") or []
        if fallback:
            shown = ", ".join(fallback[:8]) + (", …" if len(fallback) > 8 else "")
            out_console.print(f"baseline {name}: {len(fallback)} user(s) without train sessions use the population "
                              f"prior ({shown})")


def print_comparison(tests: dict, out: Path, other: Path) -> None:
    from .. import metrics as M

    cmp = Table(title=f"paired Wilcoxon over users: this ({out}) vs {other}")
    for col in ("metric", "n", "this", "other", "mean Δ (this − other), direction, p"):
        cmp.add_column(col, justify="right")
    for name, t in tests.items():
        cmp.add_row(name, str(t["n"]), f"{t['mean_a']:.4f}", f"{t['mean_b']:.4f}", M.format_change(t, name))
    out_console.print(cmp)


def print_protocol(cfg) -> None:
    """Every protocol value of a training run and where it came from (option, preset or default)."""
    proto = cfg.protocol()
    seeds = proto["seeds"]
    out_console.print(f"training {len(cfg.seeds)} seeds ({', '.join(map(str, cfg.seeds))}; {seeds['source']}) × up "
                      f"to {cfg.epochs} epochs on {cfg.model}; --seeds chooses them")
    parts = [f"{name} {v['value'] if v['value'] is not None else '—'} ({v['source']})"
             for name, v in proto.items() if isinstance(v, dict)]
    out_console.print(f"protocol: preset {proto['preset']}; tie rule {proto['tie_rule']}; " + "; ".join(parts))


def print_training(payload: dict, out: Path) -> None:
    from .. import metrics as M

    table = Table(title=fit_title(f"test ({payload['test_split']}, {payload['samples']['test']} samples)",
                                  f"mean ± std over seeds {payload['seeds']}", f"preset {payload['protocol']['preset']}",
                                  f"ties {payload['protocol']['tie_rule']}"))
    table.add_column("metric")
    for column in ("backbone_tf", "fixate_tf", "backbone_fg", "fixate_fg"):
        table.add_column(column, justify="right")
    table.add_column("fixate − backbone (TF): Δ, direction, p", justify="right")
    summary, tests = payload["summary_micro_mean_std"], payload["wilcoxon_pooled_over_seeds"]
    for name in ("kl", "js", "cosine", "csh@1", "csh@3", "tgo@3", "logloss", "auc", "correct"):
        cells = [f"{summary[c][name]['mean']:.4f} ± {summary[c][name]['std']:.4f}"
                 for c in ("backbone_tf", "fixate_tf", "backbone_fg", "fixate_fg")]
        table.add_row(name + (" ↓" if name in M.LOWER_IS_BETTER else ""), *cells, M.format_change(tests[name], name))
    out_console.print(table)
    out_console.print(f"prompt bank: {out / 'prompts.safetensors'} (seed {payload['prompt_bank_seed']}); "
                      f"metrics: {out / 'metrics.json'}; curve: {out / 'learning_curve.png'}")


def print_profile(report: dict, stages: tuple[str, ...]) -> None:
    table = Table(title=fit_title(report["model"], report["backend"], report["probe"], str(report["device"]),
                                  f"batch {report['batch_size']}", f"T={report['sequence_length']}",
                                  f"{report['pairs']} pairs"))
    for col in ("stage", "p50 ms", "p90 ms", "calls", "ms per pair"):
        table.add_column(col, justify="right")
    for stage in (*stages, "decoder", "probe"):
        row = report["stages_ms"][stage]
        name = stage if stage in stages else f"({stage})"
        table.add_row(name, f"{row['p50']:.2f}", f"{row['p90']:.2f}", str(row["calls"]), f"{row['per_pair']:.3f}")
    out_console.print(table)
    out_console.print("(decoder) is the plain forward timed on the side; (probe) = decoder_and_probe − decoder")
    mfu = f"{100 * report['mfu']:.1f} %" if report["mfu"] is not None else "n/a (unknown device peak)"
    tf = f"{report['decoder_tflops_achieved']:.3f}" if report["decoder_tflops_achieved"] is not None else "n/a"
    out_console.print(f"{report['pairs_per_s']:.1f} pairs/s ({report['ms_per_pair']:.2f} ms per pair, sum of the "
                      f"stages); peak memory {report['peak_memory_gib']:.3f} GiB ({report['peak_memory_kind']}); "
                      f"decoder {tf} TFLOP/s; MFU {mfu}")


def print_stats(title: str, stats: dict) -> None:
    table = Table(title=title)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    out_console.print(table)


def print_adserp_report(report: dict, out: Path) -> None:
    table = Table(title=f"AdSERP import: {report['imported']} of {report['trials']} trials -> {out}")
    for col in ("trial", "status", "slots", "clicked", "by", "split / reason"):
        table.add_column(col)
    for e in report["per_trial"]:
        if e["status"] == "imported":
            table.add_row(e["trial"], e["status"], str(e["n_slots"]), f"{e['clicked_label']} ({e['clicked_kind']})",
                          e["click_resolved_by"], e["split"])
        else:
            table.add_row(e["trial"], e["status"], "", "", "", e["reason"])
    out_console.print(table)
    c = report["organic_box_cache"]
    out_console.print(f"organic boxes: {c['hits']} from the cache, {c['misses']} laid out by Chromium ({c['dir']})")
