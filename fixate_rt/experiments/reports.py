"""Writing the experiment commands' results: JSON and CSV for machines, a PNG a person reads at a glance.

Everything is written into a staging folder beside ``--out`` and swapped into place, so a failure leaves
nothing half-written."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..io import write_json
from ..outputs import staged_output


@contextlib.contextmanager
def report_folder(out: Path, command: str, *, inputs=(), overwrite: bool = False) -> Iterator[Path]:
    """A marked staging folder swapped onto ``out`` when the block succeeds; ``out`` must be new, empty, or this
    command's earlier report with ``overwrite`` (`fixate_rt.outputs`)."""
    with staged_output(out, command, inputs=inputs, overwrite=overwrite) as stage:
        yield stage


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_compare(path: Path, result: dict, top: int = 20) -> None:
    """Left: the items whose share moved most, with their intervals; right: the effect per position."""
    plt = _plt()
    items = sorted(result["per_item"], key=lambda r: -abs(r["diff"]))[:top][::-1]
    pos = result["per_position"]
    fig, axes = plt.subplots(1, 2, figsize=(13, max(4.0, 0.28 * len(items) + 1.5)), dpi=100,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    level = int(round(100 * result["level"]))
    for ax, rows, key, title in ((axes[0], items, "item", f"items that moved most (top {len(items)})"),
                                 (axes[1], pos, "label", "by position (slot label)")):
        y = np.arange(len(rows))
        d = np.array([r["diff"] for r in rows])
        err = np.array([[r["diff"] - r["low"] for r in rows], [r["high"] - r["diff"] for r in rows]])
        colours = ["#b2182b" if v < 0 else "#2166ac" for v in d]
        ax.barh(y, d, xerr=err, color=colours, alpha=0.85, error_kw={"elinewidth": 1, "capsize": 2})
        ax.set_yticks(y, [str(r.get(key, r.get("position"))) for r in rows], fontsize=8)
        span = max(float(np.max([r["high"] for r in rows] + [0.0])), 1e-9)
        for yi, r in zip(y, rows):  # the paired Wilcoxon p-value the JSON holds, right of each interval
            ax.text(max(r["high"], 0.0) + 0.02 * span, yi, f"p={r['p_wilcoxon']:.2g}", va="center", fontsize=7,
                    color="#333333")
        ax.margins(x=0.15)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"click share B − A (mean over users, {level}% bootstrap CI)\np: paired Wilcoxon over users",
                      fontsize=9)
        ax.set_title(title, fontsize=10)
        if key == "label":  # positions read top-down in slot order, A first
            ax.invert_yaxis()
    tv = result["overall"]
    fig.suptitle(f"{_run_name(result['a'])} → {_run_name(result['b'])}: "
                 f"{result['users']} users; total variation {tv['total_variation']:.3f} "
                 f"[{tv['low']:.3f}, {tv['high']:.3f}]", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _run_name(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.suffix == ".parquet" else p.name


def write_compare(out: Path, result: dict, *, inputs=(), overwrite: bool = False) -> None:
    with report_folder(out, "compare", inputs=inputs, overwrite=overwrite) as stage:
        write_json(stage / "compare.json", result)
        write_csv(stage / "per_item.csv", result["per_item"])
        write_csv(stage / "per_position.csv", result["per_position"])
        plot_compare(stage / "compare.png", result)


def _overlay(ax, image, boxes, values, title, cmap, vmax) -> None:
    """The slate with each box tinted by its value (one colour scale per panel) and the value written on it."""
    import matplotlib.patheffects as pe
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    cm = colormaps[cmap]
    for box, v in zip(boxes, values):
        x0, y0, x1, y1 = (float(t) for t in box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=cm(v / vmax if vmax > 0 else 0), alpha=0.6,
                               edgecolor="white", lw=0.8))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white",
                path_effects=[pe.withStroke(linewidth=2.5, foreground="black")])
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def plot_position_curves(path: Path, result: dict, labels: list[str]) -> None:
    """Each model's per-position parameter as a line with its bootstrap interval (logit θ and PBM θ relative to
    their largest, the cascade's examination probability), beside the observed click share and the model's mean
    attention (each relative to its largest): a quantity per position that can be read off, unlike a tint."""
    plt = _plt()
    n = result["positions"]
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * n + 3), 4.4), dpi=100)
    intervals = result.get("intervals") or {}
    curves = [("logit", "click model (logit): θ = exp(β) / max", result["logit"]["theta"], "#1b9e77"),
              ("pbm", "PBM examination θ / max", result["pbm"]["theta_relative"], "#d95f02"),
              ("cascade", "cascade: P(reach position)", result["cascade"]["examination"], "#7570b3")]
    for key, name, values, colour in curves:
        ax.plot(x, values[:n], marker="o", ms=4, lw=1.6, color=colour, label=name)
        if key in intervals:
            ax.fill_between(x, intervals[key]["low"][:n], intervals[key]["high"][:n], color=colour, alpha=0.18, lw=0)
    for name, values, colour in (("click share / max (observed)", result["click_share"], "#444444"),
                                 ("model attention / max", result["attention"], "#e7298a")):
        v = np.asarray(values[:n], dtype=float)
        ax.plot(x, v / max(v.max(), 1e-12), ls="--", lw=1.2, color=colour, label=name)
    ax.set_xticks(x, labels[:n])
    ax.set_xlabel("position (slot label)")
    ax.set_ylabel("relative effect (largest = 1)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    band = (f"; bands: {int(round(100 * intervals['level']))}% bootstrap intervals over "
            f"{intervals['resamples']} refits" if intervals else "")
    ax.set_title(f"position effects from {result['sessions']} simulated sessions over {result['configurations']} "
                 f"configurations{band}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_position_bias(path: Path, result: dict, slate) -> None:
    """Three panels over one slate's positions: the logit model's θ = exp(β) (max 1), PBM's relative θ, and the
    model's mean attention; a colour bar per panel."""
    plt = _plt()
    from matplotlib import cm as mcm
    from matplotlib.colors import Normalize

    image = slate.load_image()
    boxes = slate.layout.boxes
    n = len(boxes)
    panels = [("click model (logit): θ = exp(β), largest = 1", result["logit"]["theta"][:n], "viridis"),
              ("PBM examination θ (relative)", result["pbm"]["theta_relative"][:n], "viridis"),
              ("model attention (mean slot relevance)", result["attention"][:n], "magma")]
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6), dpi=100)
    for ax, (title, values, cmap) in zip(axes, panels):
        vmax = max(values) if values else 1.0
        _overlay(ax, image, boxes, values, title, cmap, vmax)
        fig.colorbar(mcm.ScalarMappable(norm=Normalize(0, vmax), cmap=cmap), ax=ax, fraction=0.03, pad=0.01)
    fig.suptitle(f"position effects from {result['sessions']} simulated sessions over {result['configurations']} "
                 f"slate configurations (shown on slate '{slate.slate_id}')", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_position_bias(out: Path, result: dict, slate, *, inputs=(), overwrite: bool = False) -> None:
    with report_folder(out, "position-bias", inputs=inputs, overwrite=overwrite) as stage:
        write_json(stage / "position_bias.json", result)
        rows = [{"position": k, "attention": result["attention"][k], "click_share": result["click_share"][k],
                 "logit_beta": result["logit"]["beta"][k], "logit_theta": result["logit"]["theta"][k],
                 "pbm_theta": result["pbm"]["theta"][k], "cascade_examination": result["cascade"]["examination"][k],
                 **{f"{m}_{side}": (result["intervals"] or {}).get(m, {}).get(side, [None] * (k + 1))[k]
                    for m in ("logit", "pbm", "cascade") for side in ("low", "high")}}
                for k in range(result["positions"])]
        write_csv(stage / "position_bias.csv", rows)
        plot_position_curves(stage / "position_bias.png", result, list(slate.layout.labels))
        plot_position_bias(stage / "position_bias_overlay.png", result, slate)
