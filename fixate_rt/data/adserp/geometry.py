"""Browser-free AdSERP geometry: scroll stops, viewport clipping, dwell per slot (docs/method.md §1.8).

Coordinates: the full-page screenshot is 1280 px wide; the logs' CSS pixels belong to a 1422-px-wide window,
so CSS px × 1280/1422 = screenshot px. Fixations (FPOGX/FPOGY) are already page coordinates in screenshot px.
Mouse positions are page coordinates in CSS px (evtrack's pageX/pageY: they exceed the 1137-px window height
on long pages), so they need the scale but no scroll correction. Scroll events carry the page's scroll offset
in CSS px. Times are Unix ms on one clock for all logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CSS_WIDTH = 1422
SCREENSHOT_WIDTH = 1280
CSS_TO_PX = SCREENSHOT_WIDTH / CSS_WIDTH
VIEWPORT = (1280, 922)  # round(1024 · 1280/1422): the 1024-px-high screen in screenshot px, as docs/method.md states
STOP_GAP_MS = 400.0


@dataclass(frozen=True)
class ScrollStop:
    """A still period of the page: [t_start, t_end) in ms at vertical scroll ``offset`` (screenshot px)."""

    t_start: float
    t_end: float
    offset: float


def scroll_stops(times: np.ndarray, offsets: np.ndarray, t_begin: float, t_click: float,
                 gap_ms: float = STOP_GAP_MS) -> list[ScrollStop]:
    """Scroll stops up to the click, in time order (the last one is the sample).

    times [E] (ms) and offsets [E] (screenshot px) are the scroll events. A stop is the dwell before the first
    scroll, then every gap of at least ``gap_ms`` between consecutive scroll events (at the offset reached by the
    first of the two); the click closes the last gap. Events at or after the click are ignored.
    """
    keep = times < t_click
    times, offsets = np.asarray(times, dtype=np.float64)[keep], np.asarray(offsets, dtype=np.float64)[keep]
    order = np.argsort(times, kind="stable")
    times, offsets = times[order], offsets[order]
    ends = np.append(times, t_click)
    stops = [ScrollStop(t_begin, float(ends[0]), 0.0)]
    for i in range(len(times)):
        if ends[i + 1] - times[i] >= gap_ms:
            stops.append(ScrollStop(float(times[i]), float(ends[i + 1]), float(offsets[i])))
    return stops


def clip_to_viewport(boxes: np.ndarray, offset: float, viewport: tuple[int, int] = VIEWPORT
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Page boxes [S, 4] (screenshot px) → (indices of the boxes that intersect the viewport, their boxes
    clipped to it in viewport px [S', 4])."""
    w, h = viewport
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [1, 3]] -= offset
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    keep = np.flatnonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    return keep, b[keep]


def inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """points [N, 2], boxes [S, 4] → bool [S, N]: x0 ≤ x < x1 and y0 ≤ y < y1 (half-open, as slot pooling)."""
    p, b = np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return ((b[:, None, 0] <= p[None, :, 0]) & (p[None, :, 0] < b[:, None, 2])
            & (b[:, None, 1] <= p[None, :, 1]) & (p[None, :, 1] < b[:, None, 3]))


def fixation_dwell(times: np.ndarray, points: np.ndarray, durations: np.ndarray, boxes: np.ndarray,
                   stop: ScrollStop) -> np.ndarray:
    """Per slot [S]: the summed duration (ms) of the fixations that start during ``stop`` inside the slot's box.

    points [N, 2] page px, boxes [S, 4] page px (already clipped to the viewport).
    """
    during = (np.asarray(times) >= stop.t_start) & (np.asarray(times) < stop.t_end)
    hit = inside(np.asarray(points)[during], boxes)
    return hit.astype(np.float64) @ np.asarray(durations, dtype=np.float64)[during]


def cursor_dwell(times: np.ndarray, points: np.ndarray, boxes: np.ndarray, stop: ScrollStop) -> np.ndarray:
    """Per slot [S]: ms the cursor spent inside the box during ``stop``.

    times [N] and points [N, 2] (page px) are the mouse positions in time order; each position holds until the
    next one (or the end of the stop). Intervals are clipped to the stop.
    """
    t = np.asarray(times, dtype=np.float64)
    if len(t) == 0:
        return np.zeros(len(boxes))
    start = np.clip(t, stop.t_start, stop.t_end)
    end = np.clip(np.append(t[1:], stop.t_end), stop.t_start, stop.t_end)
    return inside(points, boxes).astype(np.float64) @ np.maximum(end - start, 0.0)
