"""Slate folders: one image per slate plus its layout (slot boxes and answer labels).

``slates/<slate_id>.png|.jpg`` and either ``slates/layout.json`` (shared by every slate) or
``slates/<slate_id>.json`` (per slate, takes precedence). Layout JSON::

    {"image_size": [W, H], "slots": [{"box": [x0, y0, x1, y1], "label": "A"}, ...]}

Slots are in reading order; boxes are in pixels of that image. Extra keys (e.g. ``item``) are kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, ValidationError
from ..io import atomic_path, read_utf8
from .images import image_size, load_rgb
from .text import check_path_id, check_prompt_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The answer is one token, so a slate has at most as many slots as single-token labels can name: A–Z plus
# a–z with the default alphabet (``default_labels``); a layout may bring its own labels (digits, …) instead.
MAX_SLOTS = 52
_ALPHABET = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1)) + tuple(chr(c) for c in range(ord("a"), ord("z") + 1))


def default_labels(n: int) -> tuple[str, ...]:
    """The first ``n`` default answer labels: A–Z, then a–z (each a single token for the supported tokenizers)."""
    if not 0 <= n <= MAX_SLOTS:
        raise ValidationError(f"{n} slots: a slate supports at most {MAX_SLOTS} single-token labels")
    return _ALPHABET[:n]
SHARED_LAYOUT = "layout.json"


@dataclass(frozen=True)
class Layout:
    """Where the slots are. ``boxes`` is float [S, 4] in image pixels; ``labels`` are the answer labels."""

    image_size: tuple[int, int]  # (W, H)
    boxes: np.ndarray | Sequence[Sequence[float]]  # given as any [S, 4] array-like; held as float32 np.ndarray
    labels: tuple[str, ...] | Sequence[str]  # given as any sequence; held as a tuple
    items: tuple[dict, ...] = field(default=(), compare=False)
    context: str = ""  # the slate's own prompt line (e.g. "Search query: ..."); empty for none

    def __post_init__(self) -> None:
        """Normalise (lists become tuples / arrays) and validate exactly like a layout file."""
        size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else self.image_size
        if not (isinstance(size, tuple) and len(size) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ValidationError(f"layout, field 'image_size': expected (W, H) positive integers, got {self.image_size!r}")
        labels = tuple(self.labels) if isinstance(self.labels, (list, tuple)) else self.labels
        if not isinstance(labels, tuple) or not labels:
            raise ValidationError(f"layout, field 'labels': expected a non-empty list of strings, got {self.labels!r}")
        try:
            boxes = np.asarray(self.boxes, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValidationError("layout, field 'boxes': not a list of [x0, y0, x1, y1] numbers") from None
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValidationError(f"layout, field 'boxes': expected shape [S, 4], got {list(boxes.shape)}")
        if len(boxes) != len(labels):
            raise ValidationError(f"layout: {len(boxes)} boxes but {len(labels)} labels (one label per box)")
        if len(labels) > MAX_SLOTS:
            raise ValidationError(f"layout: {len(labels)} slots, more than the supported {MAX_SLOTS}")
        w, h = size
        for i, (box, label) in enumerate(zip(boxes, labels)):
            x0, y0, x1, y1 = (float(v) for v in box)
            if not np.isfinite(box).all() or not (x1 > x0 and y1 > y0):
                raise ValidationError(f"layout, slot {i}, field 'box': empty or non-finite box {box.tolist()}")
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise ValidationError(f"layout, slot {i}, field 'box': {box.tolist()} lies outside the {w}x{h} image")
            if not isinstance(label, str) or not label.strip():
                raise ValidationError(f"layout, slot {i}, field 'label': expected a non-empty string, got {label!r}")
            check_prompt_text(label, f"layout, slot {i}, field 'label'")
        if len(set(labels)) != len(labels):
            dup = next(lab for lab in labels if labels.count(lab) > 1)
            raise ValidationError(f"layout, field 'labels': duplicate label '{dup}'")
        items = tuple(self.items)
        if items and (len(items) != len(labels) or not all(isinstance(it, dict) for it in items)):
            raise ValidationError(f"layout, field 'items': expected one dict per slot ({len(labels)}), got {len(items)}")
        check_prompt_text(self.context, "layout, field 'context'")
        for name, value in (("image_size", (int(w), int(h))), ("boxes", boxes), ("labels", labels), ("items", items)):
            object.__setattr__(self, name, value)

    @property
    def n_slots(self) -> int:
        return len(self.labels)

    @property
    def has_overlaps(self) -> bool:
        """True when two slot boxes share a positive area (free-form layouts such as result pages with ads)."""
        b = self.boxes.astype(np.float64)
        w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        inter = (w > 0) & (h > 0)
        np.fill_diagonal(inter, False)
        return bool(inter.any())

    def slot_keys(self, slot: int) -> dict:
        """What downstream tools join a slot on, from its ``item`` metadata (None where absent): the item's
        ``id``, ``kind`` and ``rank``, and the slot's ``row`` and ``col`` in the layout's grid."""
        item = self.items[slot] if self.items else {}

        def text(value):
            return None if value is None else str(value)

        def whole(value):  # an integer field: anything else (free metadata) is left out rather than guessed
            return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None

        return {"item_id": text(item.get("id", item.get("item_id"))), "kind": text(item.get("kind")),
                "rank": whole(item.get("rank")), "row": whole(item.get("row")), "col": whole(item.get("col"))}

    def pool_mode(self, requested: str) -> str:
        """Resolve ``auto``: ``overlap`` when boxes overlap (each slot keeps all its tokens), else ``exclusive``."""
        if requested != "auto":
            return requested
        return "overlap" if self.has_overlaps else "exclusive"

    def to_json(self) -> dict:
        slots = []
        for i, (box, label) in enumerate(zip(self.boxes.tolist(), self.labels)):
            slot = {"box": [round(v, 3) for v in box], "label": label}
            if self.items:
                slot["item"] = self.items[i]
            slots.append(slot)
        payload: dict = {"image_size": list(self.image_size), "slots": slots}
        if self.context:
            payload["context"] = self.context
        return payload


@dataclass(frozen=True)
class Slate:
    slate_id: str
    image_path: Path
    layout: Layout

    def load_image(self) -> Image.Image:
        """Decode the slate image as RGB (validated already, so this only fails on a race)."""
        return load_rgb(self.image_path)


def parse_layout(payload: object, source: Path) -> Layout:
    """Validate a layout JSON object; every problem names the file and the slot."""
    if not isinstance(payload, dict):
        raise ValidationError(f"{source}: layout must be a JSON object")
    size = payload.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ValidationError(f"{source}, field 'image_size': expected [W, H] positive integers, got {size!r}")
    slots = payload.get("slots")
    if not isinstance(slots, list) or not slots:
        raise ValidationError(f"{source}, field 'slots': expected a non-empty list")
    w, h = size
    boxes, labels, items = [], [], []
    for i, slot in enumerate(slots):
        loc = f"{source}, slot {i}"
        if not isinstance(slot, dict):
            raise ValidationError(f"{loc}: expected an object with 'box' and 'label'")
        box = slot.get("box")
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise ValidationError(f"{loc}, field 'box': expected [x0, y0, x1, y1], got {box!r}")
        if not all(np.isfinite(box)):
            raise ValidationError(f"{loc}, field 'box': non-finite coordinate in {box}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x1 > x0 and y1 > y0):
            raise ValidationError(f"{loc}, field 'box': empty box {box}")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise ValidationError(f"{loc}, field 'box': {box} lies outside the {w}x{h} image")
        label = slot.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ValidationError(f"{loc}, field 'label': expected a non-empty string")
        check_prompt_text(label, f"{loc}, field 'label'")
        if label in labels:
            raise ValidationError(f"{loc}, field 'label': duplicate label '{label}'")
        boxes.append([x0, y0, x1, y1])
        labels.append(label)
        items.append(slot.get("item", {}))
    if len(labels) > MAX_SLOTS:
        raise ValidationError(f"{source}, field 'slots': {len(labels)} slots, more than the supported {MAX_SLOTS}")
    context = payload.get("context", "")
    check_prompt_text(context, f"{source}, field 'context'")
    has_items = any(items)
    return Layout((w, h), np.asarray(boxes, dtype=np.float32), tuple(labels), tuple(items) if has_items else (),
                  context)


def read_layout(path: Path) -> Layout:
    text = read_utf8(path, "layout")
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise ValidationError(f"{path}: {exc}") from None
    return parse_layout(payload, Path(path))


def _no_constant(name: str) -> float:
    raise ValueError(f"invalid JSON number {name} (NaN and Infinity are not JSON)")


def write_layout(path: Path, layout: Layout) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(layout.to_json(), indent=1) + "\n")


def read_slates(folder: str | os.PathLike[str]) -> dict[str, Slate]:
    """Read and validate a slates folder. Returns slates by id, sorted by id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: slates folder not found")
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            check_path_id(path.stem, f"{path}: slate id")
            if path.stem in images:
                raise ValidationError(f"{path}: two images for slate '{path.stem}'")
            images[path.stem] = path
    if not images:
        raise InputError(f"{folder}: no slate images (*.png, *.jpg) found")
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):  # records beside the slates (a variant folder's .permutation.json)
            continue
        if path.name != SHARED_LAYOUT and path.stem not in images:
            raise ValidationError(f"{path}: layout has no image {path.stem}.png/.jpg beside it")
    shared_path = folder / SHARED_LAYOUT
    shared = read_layout(shared_path) if shared_path.exists() else None
    slates = {}
    for slate_id, image_path in images.items():
        own = folder / f"{slate_id}.json"
        if own.exists():
            layout, layout_path = read_layout(own), own
        elif shared is not None:
            layout, layout_path = shared, shared_path
        else:
            raise ValidationError(f"{image_path}: image has no layout ({slate_id}.json or {SHARED_LAYOUT})")
        size = image_size(image_path)
        if size != layout.image_size:
            raise ValidationError(
                f"{image_path}: image is {size[0]}x{size[1]} but {layout_path.name} says "
                f"{layout.image_size[0]}x{layout.image_size[1]}"
            )
        slates[slate_id] = Slate(slate_id, image_path, layout)
    return slates
