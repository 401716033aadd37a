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
        raise UnavailableError("fixate-rt show needs matplotlib: pip install 'fixate-rt[viz]'") from None
    return plt


def _panel(ax, image, boxes: np.ndarray, values: np.ndarray, title: str, clicked: int, top: int, cmap) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(np.asarray(image, dtype=np.float32) / 255 * 0.35)  # dimmed, so the heat reads over any artwork
    vmax = max(float(values.max()), 1e-12)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color=cmap(values[k] / vmax), alpha=0.85 * values[k] / vmax))
        ax.text(x0 + 3, y0 + 12, f"{values[k]:.2f}", color="white", fontsize=7, weight="bold")
    cx0, cy0, cx1, cy1 = boxes[clicked]
    ax.add_patch(Rectangle((cx0, cy0), cx1 - cx0, cy1 - cy0, fill=False, edgecolor="lime", linewidth=2.5))
    tx0, ty0, tx1, ty1 = boxes[top]
    ax.add_patch(Rectangle((tx0 + 4, ty0 + 4), tx1 - tx0 - 8, ty1 - ty0 - 8, fill=False, edgecolor="red",
                           linewidth=1.8, linestyle="--"))
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def render_pair(path: Path, slate: Slate, user_id: str, relevance: np.ndarray, p_click: np.ndarray,
                dwell: np.ndarray, clicked: int, tau: float = 1.0) -> dict:
    """Write one PNG: left the model's slot relevance, right the gaze target; click (green) and the model's
    top slot (red, dashed) marked; metric values in the title. Returns the metrics."""
    plt = _pyplot()
    gaze = M.gaze_target(dwell, tau)
    scores = M.sample_metrics(relevance, gaze, p_click, clicked)
    image = slate.load_image()
    boxes = slate.layout.boxes
    top = int(M.rank(relevance)[0])
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), dpi=100)
    labels = slate.layout.labels
    _panel(axes[0], image, boxes, M.normalise(relevance),
           f"model slot relevance (top {labels[top]}, p_click max {labels[int(M.rank(p_click)[0])]})", clicked, top,
           plt.get_cmap("inferno"))
    _panel(axes[1], image, boxes, M.normalise(gaze), f"fixation distribution (clicked {labels[clicked]})",
           clicked, top, plt.get_cmap("viridis"))
    fig.suptitle(f"user {user_id} · slate {slate.slate_id} · KL {scores['kl']:.3f} · JS {scores['js']:.3f} · "
                 f"cos {scores['cosine']:.3f} · CSH@1 {scores['csh@1']:.0f} · CSH@3 {scores['csh@3']:.0f} · "
                 f"TGO@3 {scores['tgo@3']:.2f} · p(click) {p_click[clicked]:.3f}", fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return scores
