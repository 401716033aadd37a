"""Answer labels drawn onto a slate image, so the label the model answers with is one it can see.

Each label goes in a numbered-badge style box at its slot's top-left corner: outside the box on the left when
there is room (nothing of the slot is covered), else just inside the corner.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BADGE_FILL = (20, 60, 160)
BADGE_TEXT = (255, 255, 255)
BADGE_OUTLINE = (255, 255, 255)


def badge_box(box: np.ndarray, size: tuple[int, int], image_size: tuple[int, int], gap: int = 4) -> tuple[int, int, int, int]:
    """Where the badge of size (w, h) goes for slot ``box`` [4] in an image of ``image_size`` (W, H)."""
    w, h = size
    W, H = image_size
    x0, y0 = float(box[0]), float(box[1])
    left = x0 - gap - w if x0 - gap - w >= 0 else x0 + 1
    top = min(max(y0, 0), H - h)
    return int(left), int(top), int(left) + w, int(top) + h


def draw_badges(image: Image.Image, boxes: np.ndarray, labels: tuple[str, ...], font_size: int = 16) -> Image.Image:
    """A copy of ``image`` with each label drawn at its box (boxes [S, 4] in image px)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=font_size)
    for box, label in zip(np.asarray(boxes), labels):
        text_w = draw.textlength(label, font=font)
        size = (int(text_w) + 10, font_size + 8)
        bx = badge_box(box, size, out.size)
        draw.rounded_rectangle(bx, radius=5, fill=BADGE_FILL, outline=BADGE_OUTLINE, width=1)
        draw.text(((bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2), label, fill=BADGE_TEXT, font=font, anchor="mm")
    return out
