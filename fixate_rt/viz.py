"""`fixate-rt show`: the slate with the model's slot relevance beside the user's fixation distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics as M
from .data.slates import Slate
from .errors import UnavailableError
from .io import atomic_path


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UnavailableError("fixate-rt show needs matplotlib (a core dependency): pip install matplotlib") from None
    return plt


SIGNAL_NAMES = {"fixation": "fixation", "cursor": "cursor", "intersect": "fixation (dual-signal sessions)"}


def _outlined(ax, x, y, text, **kw) -> None:
    """Text that reads on any colour: white with a black outline."""
    import matplotlib.patheffects as pe

    ax.text(x, y, text, color="white", path_effects=[pe.withStroke(linewidth=2.2, foreground="black")], **kw)


def _slate_panel(ax, image, boxes: np.ndarray, values: np.ndarray, title: str, clicked: int, top: int, cmap,
                 norm, simulated: np.ndarray | None = None) -> None:
    """The slate, slightly softened so that titles and letters stay readable, each slot tinted by its share on
    ``norm`` (a square-root scale, so a spread-out distribution is not black) with the share written on it;
    ``simulated``: per slot, how many of the simulated clicks landed there (drawn as "n×")."""
    from matplotlib.patches import Rectangle

    ax.imshow(0.15 + 0.85 * np.asarray(image, dtype=np.float32) / 255)  # softened, never darkened
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        level = float(np.clip(norm(values[k]), 0.0, 1.0))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color=cmap(level), alpha=0.12 + 0.5 * level))
        _outlined(ax, x0 + 3, y0 + 3, f"{values[k]:.2f}", fontsize=8, weight="bold", va="top")
        if simulated is not None and simulated[k] > 0:
            _outlined(ax, x1 - 3, y1 - 3, f"{int(simulated[k])}× sim", fontsize=8, weight="bold", ha="right",
                      va="bottom")
    cx0, cy0, cx1, cy1 = boxes[clicked]
    ax.add_patch(Rectangle((cx0, cy0), cx1 - cx0, cy1 - cy0, fill=False, edgecolor="lime", linewidth=2.5))
    tx0, ty0, tx1, ty1 = boxes[top]
    ax.add_patch(Rectangle((tx0 + 4, ty0 + 4), tx1 - tx0 - 8, ty1 - ty0 - 8, fill=False, edgecolor="red",
                           linewidth=1.8, linestyle="--"))
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def _click_panel(ax, labels: tuple[str, ...], p_click: np.ndarray, clicked: int, top: int) -> None:
    """p_click per slot as bars (the clicked slot green, the model's top-attention slot outlined red)."""
    y = np.arange(len(labels))
    colours = ["#1a9850" if k == clicked else "#4575b4" for k in range(len(labels))]
    bars = ax.barh(y, p_click, color=colours)
    bars[top].set_edgecolor("red")
    bars[top].set_linestyle("--")
    bars[top].set_linewidth(1.5)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1e-6, float(p_click.max())) * 1.15)
    ax.set_xlabel("p_click", fontsize=9)
    ax.set_title("model's click probability per slot", fontsize=10)
    for k, v in enumerate(p_click):
        ax.text(v, k, f" {v:.2f}", va="center", fontsize=7)


def render_pair(path: Path, slate: Slate, user_id: str, relevance: np.ndarray, p_click: np.ndarray,
                dwell: np.ndarray, clicked: int, tau: float = 1.0, signal: str = "fixation", *,
                simulated_clicks: list[int] | None = None, run_label: str = "model", scale: str = "shared") -> dict:
    """Write one PNG: the model's slot relevance (panel named after ``run_label``, e.g. "backbone" or "FixATE")
    and the user's gaze target, on one square-root colour scale (``scale="shared"``, with its bar) or each on its
    own (``"per-panel"``); the model's p_click per slot; the observed click (green), the model's top-attention
    slot (red, dashed) and where the simulated clicks (every sample, ``simulated_clicks`` slot indices) landed,
    explained in a legend; metric values in the title. Returns the metrics."""
    plt = _pyplot()
    from matplotlib import cm
    from matplotlib.colors import PowerNorm
    from matplotlib.lines import Line2D

    gaze = M.gaze_target(dwell, tau)
    scores = M.sample_metrics(relevance, gaze, p_click, clicked)
    image = slate.load_image()
    boxes = slate.layout.boxes
    labels = slate.layout.labels
    top = int(M.rank(relevance)[0])
    model, target = M.normalise(relevance), M.normalise(gaze)
    vmax = max(float(model.max()), float(target.max()), 1e-12)  # one scale for both distributions
    norms = ([PowerNorm(0.5, 0, vmax)] * 2 if scale == "shared" else
             [PowerNorm(0.5, 0, max(float(v.max()), 1e-12)) for v in (model, target)])
    cmap = plt.get_cmap("viridis")
    counts = (np.bincount(np.asarray(simulated_clicks, dtype=np.int64), minlength=len(boxes))
              if simulated_clicks else None)
    width, height = slate.layout.image_size
    panel_w = 6.4  # inches per slate panel; the height follows the slate's aspect (tall result pages stay legible)
    fig_h = panel_w * min(max(height / width, 0.3), 2.5) + 1.4
    fig = plt.figure(figsize=(2 * panel_w + 4.2, fig_h), dpi=100)
    # slate, slate, colour bar, a spacer for the bar's label, p_click bars
    grid = fig.add_gridspec(1, 5, width_ratios=[panel_w, panel_w, 0.18, 0.55, 3.0], left=0.01, right=0.96, top=0.88,
                            bottom=0.12, wspace=0.06)
    axes = [fig.add_subplot(grid[0, k]) for k in (0, 1, 2, 4)]
    name = SIGNAL_NAMES.get(signal, signal)
    _slate_panel(axes[0], image, boxes, model, f"{run_label}: slot relevance (top slot {labels[top]})", clicked,
                 top, cmap, norms[0], counts)
    _slate_panel(axes[1], image, boxes, target, f"user {user_id}: {name} distribution (τ = {tau:g})", clicked, top,
                 cmap, norms[1])
    fig.colorbar(cm.ScalarMappable(norm=norms[0], cmap=cmap), cax=axes[2],
                 label="share of the slate, √ scale (" + ("both panels)" if scale == "shared" else "left panel)"))
    _click_panel(axes[3], labels, np.asarray(p_click, dtype=np.float64), clicked, top)
    handles = [Line2D([], [], color="lime", lw=2.5, label=f"observed click ({labels[clicked]})"),
               Line2D([], [], color="red", lw=1.8, ls="--", label=f"model's top slot ({labels[top]})")]
    if counts is not None:
        n = int(counts.sum())
        where = "where the simulated click landed" if n == 1 else f"where the {n} simulated clicks landed"
        handles.append(Line2D([], [], color="none", label=f"n× sim: {where}"))
    fig.legend(handles=handles, loc="lower left", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"user {user_id} · slate {slate.slate_id} · {name} · KL {scores['kl']:.3f} · JS {scores['js']:.3f} · "
                 f"cos {scores['cosine']:.3f} · CSH@1 {scores['csh@1']:.0f} · CSH@3 {scores['csh@3']:.0f} · "
                 f"TGO@3 {scores['tgo@3']:.2f} · p(click) {p_click[clicked]:.3f}", fontsize=10)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return scores
