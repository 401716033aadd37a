"""Procedural RecGaze-like slate images: dark page, genre row titles, drawn posters, letters A–O."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import layout as geo
from .synth_vocab import GENRES

BACKGROUND = (16, 16, 16)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def genre_colour(genre: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """A hue per genre with some per-poster jitter, so genre is visible at a glance."""
    hue = (GENRES.index(genre) / len(GENRES) + rng.normal(0, 0.02)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.55 + 0.3 * rng.random(), 0.45 + 0.4 * rng.random())
    return int(r * 255), int(g * 255), int(b * 255)


def draw_poster(canvas: Image.Image, box: np.ndarray, item: dict, rng: np.random.Generator) -> None:
    """Draw one poster inside ``box`` (shapes are clipped to it: drawn on their own tile, then pasted)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = int(round(x1 - x0)), int(round(y1 - y0))
    base = genre_colour(item["genre"], rng)
    tile = Image.new("RGB", (w, h), base)
    draw = ImageDraw.Draw(tile)
    for _ in range(int(rng.integers(2, 5))):  # abstract "artwork"
        cx, cy = rng.random() * w, rng.random() * h
        r = (0.12 + 0.25 * rng.random()) * h
        shade = tuple(int(min(255, max(0, c + rng.integers(-90, 90)))) for c in base)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shade)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=shade)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=shade)
    draw.rectangle([0, 0.7 * h, w, h], fill=(0, 0, 0))
    draw.text((5, 0.72 * h), item["title"], fill=(245, 245, 245), font=_font(13))
    draw.text((5, 0.87 * h), item["genre"], fill=(190, 190, 190), font=_font(10))
    canvas.paste(tile, (int(round(x0)), int(round(y0))))


def render_slate(items: list[dict], row_genres: list[str], rng: np.random.Generator) -> Image.Image:
    """Draw a 1100×619 slate: ``items`` are the 15 posters in reading order (dicts with title, genre)."""
    img = Image.new("RGB", geo.IMAGE_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(img)
    boxes = geo.recgaze_boxes()
    s = geo.SCALE
    for row, genre in enumerate(row_genres):
        top = geo.ROW_TOPS[row] * s
        draw.text((geo.COLUMN_LEFTS[0] * s, top - 70 * s), genre, fill=(230, 230, 230), font=_font(20))
        mid = top + geo.POSTER[1] * s / 2
        for x in (50 * s, 1848 * s):  # carousel arrow buttons
            draw.ellipse([x - 12, mid - 12, x + 12, mid + 12], outline=(200, 200, 200), width=2)
    for slot, (box, item) in enumerate(zip(boxes, items)):
        draw_poster(img, box, item, rng)
        cx = (box[0] + box[2]) / 2
        draw.text((cx, box[3] + 4 * s), geo.LETTERS[slot], fill=(255, 255, 255), font=_font(15), anchor="mt")
    return img
