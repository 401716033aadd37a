"""Counterfactual slates: the same items in other positions (`fixate-rt permute`).

A policy maps each slate to an order: position j of the variant shows the item that was at position
``order[j]`` of the source. Pixels move with their items: each item's crop (its box) is pasted into the box of
its new position, so boxes must have equal sizes (grids, carousels); a slate whose boxes differ in size (result
pages with results of different heights) is refused with the reason. Layout labels and ``item`` metadata follow
their items, except the position fields ``row``/``col``, which describe the position. An item without an ``id``
gets its source label as id, so a variant's clicks name the same item as the source's.

Labels drawn on the image: the built-in synthetic grid draws its letters under the posters; there the letter
strip is redrawn so the drawn label follows its item too. Slates whose labels were drawn by their source
elsewhere (e.g. RecGaze screenshots) keep those pixels; use ``labels="position"`` to keep the layout's labels
with the positions there, so that layout and pixels agree.

Row headers ("Documentary") lie outside the item boxes. ``headers="position"`` (the default) leaves them where they
are, so a shuffled row may show other genres than its header says; ``headers="content"`` (the built-in grid,
whose header strips fixate-rt's renderer draws) moves each row's header with the content: a row shows the header
of the source row most of its items came from (a reversed slate's headers follow their rows exactly). The choice
is recorded in the variant folder's ``.permutation.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data import layout as grid
from ..data.render import BACKGROUND
from ..data.slates import Layout, Slate
from ..errors import ValidationError

POSITION_FIELDS = ("row", "col")
RECORD = ".permutation.json"  # policy and per-slate orders; a dot file, so it can never be a slate's layout
_SWAP = re.compile(r"^swap:([^,\s]+),([^,\s]+)$")


@dataclass(frozen=True)
class Policy:
    """``kind`` is reverse, shuffle, swap (``swap`` holds the two labels) or order (``orders`` per slate id)."""

    kind: str
    swap: tuple[str, str] | None = None
    orders: dict[str, list[str]] | None = None
    seed: int = 0

    def order(self, slate: Slate) -> list[int]:
        """Source position shown at each variant position."""
        labels = list(slate.layout.labels)
        n = len(labels)
        if self.kind == "reverse":
            return list(range(n))[::-1]
        if self.kind == "shuffle":
            digest = sum(ord(c) * 31 ** i for i, c in enumerate(slate.slate_id)) % 2**32
            return np.random.default_rng([self.seed, digest]).permutation(n).tolist()
        if self.kind == "swap":
            a, b = self.swap
            for label in (a, b):
                if label not in labels:
                    raise ValidationError(f"--policy swap:{a},{b}: slate '{slate.slate_id}' has no label '{label}' "
                                          f"(labels: {', '.join(labels)})")
            order = list(range(n))
            i, j = labels.index(a), labels.index(b)
            order[i], order[j] = j, i
            return order
        wanted = (self.orders or {}).get(slate.slate_id)
        if wanted is None:
            return list(range(n))
        return [labels.index(label) for label in wanted]


def parse_policy(text: str, seed: int = 0) -> Policy:
    """``reverse``, ``shuffle``, ``swap:A,F`` or a Parquet file of (slate_id, order) with order a list of labels."""
    if text in ("reverse", "shuffle"):
        return Policy(text, seed=seed)
    m = _SWAP.match(text)
    if m:
        if m[1] == m[2]:
            raise ValidationError(f"--policy {text}: swaps a label with itself")
        return Policy("swap", swap=(m[1], m[2]))
    path = Path(text)
    if path.suffix == ".parquet" or path.exists():
        return Policy("order", orders=read_orders(path))
    raise ValidationError(f"--policy '{text}': expected reverse, shuffle, swap:A,F or an order .parquet file")


def read_orders(path: Path) -> dict[str, list[str]]:
    from ..data.tables import read_parquet, require_column

    table = read_parquet(path, "order")
    slates = require_column(table, path, "slate_id", ("string",)).to_pylist()
    if "order" not in table.column_names:
        raise ValidationError(f"{path}, field 'order': required column is missing (a list of labels per slate)")
    orders = {}
    for row, (sid, order) in enumerate(zip(slates, table.column("order").to_pylist())):
        if not isinstance(order, list) or not all(isinstance(x, str) for x in order):
            raise ValidationError(f"{path}, row {row}, field 'order': expected a list of labels")
        if sid in orders:
            raise ValidationError(f"{path}, row {row}, field 'slate_id': duplicate slate '{sid}'")
        orders[sid] = order
    return orders


def check_order(order: list[int] | list[str], slate: Slate, source: str) -> None:
    labels = slate.layout.labels
    if sorted(order) != sorted(range(len(labels))):
        raise ValidationError(f"{source}, slate '{slate.slate_id}': the order must name each of its {len(labels)} "
                              f"items exactly once (labels: {', '.join(labels)})")


def check_movable(slate: Slate, order: list[int], images: Path) -> None:
    """Items move between boxes of equal size only (pixel-exact crops); say which boxes differ otherwise."""
    sizes = np.array([[b[2] - b[0], b[3] - b[1]] for b in map(_int_box, slate.layout.boxes)])
    for j, i in enumerate(order):
        if i != j and not np.array_equal(sizes[i], sizes[j]):
            a, b = slate.layout.labels[i], slate.layout.labels[j]
            raise ValidationError(f"{images}, slate '{slate.slate_id}': cannot move item {a} ({sizes[i][0]}x"
                                  f"{sizes[i][1]} px) into the box of {b} ({sizes[j][0]}x{sizes[j][1]} px); items "
                                  "move only between boxes of equal size")


def is_builtin_grid(layout: Layout) -> bool:
    """The synthetic RecGaze-like grid (its letters are drawn under the posters by fixate-rt's renderer)."""
    return (tuple(layout.image_size) == grid.IMAGE_SIZE and len(layout.labels) == len(grid.LETTERS)
            and np.allclose(layout.boxes, grid.recgaze_boxes(), atol=0.01))


def _int_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """The pixels of a box: rounded corner, rounded size (so equal-size boxes have equal pixel sizes)."""
    x0, y0 = int(round(float(box[0]))), int(round(float(box[1])))
    return x0, y0, x0 + int(round(float(box[2] - box[0]))), y0 + int(round(float(box[3] - box[1])))


HEADER_POLICIES = ("position", "content")


def _header_strip(row: int) -> tuple[int, int, int, int]:
    """The pixels of the built-in grid's header line above ``row`` (between the row above's letters and the
    posters)."""
    top = grid.ROW_TOPS[row] * grid.SCALE
    return 0, int(round(top - 72 * grid.SCALE)), grid.IMAGE_SIZE[0], int(round(top - 4))


def _move_headers(image: Image.Image, source: Image.Image, order: list[int]) -> list[int]:
    """Each row gets the header of the source row most of its items came from (ties: its first item's row).
    Returns the source row of every header."""
    chosen = []
    for r in range(grid.ROWS):
        rows = [i // grid.COLS for i in order[r * grid.COLS:(r + 1) * grid.COLS]]
        src = max(dict.fromkeys(rows), key=rows.count)  # dict keeps first-seen order: ties go to the first item
        chosen.append(src)
        if src != r:
            strip = source.crop(_header_strip(src))
            image.paste(strip, _header_strip(r)[:2])
    return chosen


def permute_slate(slate: Slate, order: list[int], labels: str = "item",
                  headers: str = "position") -> tuple[Image.Image, Layout]:
    """(variant image, variant layout) of ``slate`` with the source item ``order[j]`` at position j.

    ``labels``: ``item`` (labels follow their items) or ``position`` (labels stay with the positions).
    ``headers``: ``position`` (row headers stay) or ``content`` (they follow the rows' items; built-in grid)."""
    layout = slate.layout
    source = slate.load_image()
    image = source.copy()
    boxes = layout.boxes
    for j, i in enumerate(order):
        if i != j:
            image.paste(source.crop(_int_box(boxes[i])), _int_box(boxes[j])[:2])
    src_items = layout.items or tuple({} for _ in layout.labels)
    items = []
    for j, i in enumerate(order):
        item = {k: v for k, v in src_items[i].items() if k not in POSITION_FIELDS}
        item.setdefault("id", src_items[i].get("item_id", layout.labels[i]))
        item.update({k: src_items[j][k] for k in POSITION_FIELDS if k in src_items[j]})
        items.append(item)
    new_labels = tuple(layout.labels[i] for i in order) if labels == "item" else layout.labels
    if labels == "item" and is_builtin_grid(layout):
        _redraw_grid_letters(image, boxes, new_labels)
    if headers == "content":
        _move_headers(image, source, order)
    return image, Layout(layout.image_size, boxes.copy(), new_labels, tuple(items), layout.context)


def _redraw_grid_letters(image: Image.Image, boxes: np.ndarray, labels: tuple[str, ...]) -> None:
    """Clear and redraw the letters under the posters exactly as the synthetic renderer draws them."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    for box in boxes:
        draw.rectangle([float(box[0]), float(box[3]) + 1, float(box[2]), float(box[3]) + 24], fill=BACKGROUND)
    for box, label in zip(boxes, labels):
        cx = (box[0] + box[2]) / 2
        draw.text((cx, box[3] + 4 * grid.SCALE), label, fill=(255, 255, 255), font=font, anchor="mt")


def permute_folder(images: Path, out: Path, policy: Policy, labels: str = "item", *, headers: str = "position",
                   overwrite: bool = False) -> dict:
    """Write a variant of every slate of ``images`` into ``out`` (PNG + per-slate layout + .permutation.json).

    Every order is checked (each item once, boxes of equal size) before anything is written; the folder is built
    beside ``out``, read back with the slate checks, and swapped into place."""
    from ..data.slates import read_slates, write_layout
    from ..io import write_json
    from ..outputs import check_output, staged_output

    if labels not in ("item", "position"):
        raise ValidationError(f"--labels must be item or position, got '{labels}'")
    if headers not in HEADER_POLICIES:
        raise ValidationError(f"--headers must be position or content, got '{headers}'")
    images, out = Path(images), Path(out)
    slates = read_slates(images)
    if headers == "content":
        other = next((sid for sid, s in slates.items() if not is_builtin_grid(s.layout)), None)
        if other is not None:
            raise ValidationError(f"{images}, slate '{other}': --headers content moves the header lines of "
                                  "fixate-rt's synthetic grid; this slate's layout is another one (use --headers "
                                  "position)")
    if policy.orders is not None:
        unknown = sorted(set(policy.orders) - set(slates))
        if unknown:
            raise ValidationError(f"order file: unknown slate '{unknown[0]}' (not in {images})")
        for sid, wanted in policy.orders.items():
            bad = [x for x in wanted if x not in slates[sid].layout.labels]
            if bad:
                raise ValidationError(f"order file, slate '{sid}': unknown label '{bad[0]}' (labels: "
                                      f"{', '.join(slates[sid].layout.labels)})")
    orders = {}
    for sid, slate in slates.items():
        order = policy.order(slate)
        check_order(order, slate, "--policy")
        check_movable(slate, order, images)
        orders[sid] = order
    check_output(out, "permute", inputs=(images,), overwrite=overwrite)
    with staged_output(out, "permute", inputs=(images,), overwrite=overwrite) as stage:
        for sid, slate in slates.items():
            image, layout = permute_slate(slate, orders[sid], labels, headers)
            image.save(stage / f"{sid}.png", format="PNG")
            write_layout(stage / f"{sid}.json", layout)
        record = {"format": "fixate-rt/permutation/1", "source": str(images), "policy": policy.kind,
                  "swap": list(policy.swap) if policy.swap else None, "seed": policy.seed, "labels": labels,
                  "headers": headers,
                  "orders": {sid: [slates[sid].layout.labels[i] for i in o] for sid, o in orders.items()}}
        write_json(stage / RECORD, record)
        read_slates(stage)  # the variant folder passes the same checks as any --images
    moved = sum(sum(j != i for j, i in enumerate(o)) for o in orders.values())
    return {"slates": len(slates), "moved_items": moved, "out": str(out)}
