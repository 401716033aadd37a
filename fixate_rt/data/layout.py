"""RecGaze geometry (docs/method.md §1.3), scaled from the 1920×1080 viewport to the 1100×619 model image.

Three fully visible rows of five 342×193 posters at column lefts 76, 427, 778, 1129, 1480 and row tops
176, 516, 855 (pitch ≈ 339.5 px); letters A–O in reading order under the posters.
"""

from __future__ import annotations

import numpy as np

from .slates import Layout

VIEWPORT = (1920, 1080)
IMAGE_SIZE = (1100, 619)
SCALE = IMAGE_SIZE[0] / VIEWPORT[0]  # 0.5729…, as the reference's resize to IMAGE_MAX_W = 1100
POSTER = (342, 193)
COLUMN_LEFTS = (76, 427, 778, 1129, 1480)
ROW_TOPS = (176, 516, 855)
ROWS, COLS = len(ROW_TOPS), len(COLUMN_LEFTS)
LETTERS = tuple(chr(ord("A") + i) for i in range(ROWS * COLS))


def recgaze_boxes() -> np.ndarray:
    """Poster boxes [15, 4] in 1100×619 image pixels, row by row, left to right."""
    boxes = [[x, y, x + POSTER[0], y + POSTER[1]] for y in ROW_TOPS for x in COLUMN_LEFTS]
    return (np.asarray(boxes, dtype=np.float64) * SCALE).astype(np.float32)


def recgaze_layout(items: tuple[dict, ...] = ()) -> Layout:
    """The 3 × 5 poster grid; every slot's item metadata carries its ``row`` and ``col``."""
    items = items or tuple({} for _ in LETTERS)
    placed = tuple({**item, "row": slot_row_col(i)[0], "col": slot_row_col(i)[1]} for i, item in enumerate(items))
    return Layout(IMAGE_SIZE, recgaze_boxes(), LETTERS, placed)


def slot_row_col(slot: int) -> tuple[int, int]:
    return divmod(slot, COLS)
