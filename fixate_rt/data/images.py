"""Reading untrusted image files: regular files only, an explicit pixel limit, one-line errors.

A FIFO or device named ``x.png`` would block the reader forever, and a small PNG can decode to gigabytes
(a decompression bomb), so both are refused before any pixel is decoded.
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import InputError, ValidationError

MAX_PIXELS = 40_000_000  # width × height; a full-page 1280-px-wide screenshot may be ~31 000 px tall
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def require_regular_file(path: Path, what: str = "image") -> Path:
    """Refuse a missing path, a folder or a special file (FIFO, socket, device) without opening it."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a folder, FIFO or device cannot be an {what})")
    return Path(path)


def check_pixels(size: tuple[int, int], path: Path) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ValidationError(f"{path}: image is {w}x{h} = {w * h:,} pixels, more than the {MAX_PIXELS:,} pixels "
                              "allowed")


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of a fully decoded image (a truncated file fails here, not mid-run)."""
    with _open(path) as img:
        size = img.size
        _decode(img, path, load_only=True)
    return size


def load_rgb(path: Path) -> Image.Image:
    """The decoded image as RGB, after the file and pixel checks."""
    with _open(path) as img:
        return _decode(img, path)


def _open(path: Path) -> Image.Image:
    require_regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombWarning:
        raise ValidationError(f"{path}: image has more than the {MAX_PIXELS:,} pixels allowed") from None
    except _DECODE_ERRORS as exc:
        raise InputError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from None
    try:
        check_pixels(img.size, path)
    except ValidationError:
        img.close()
        raise
    return img


def _decode(img: Image.Image, path: Path, load_only: bool = False) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            return img if load_only else img.convert("RGB")
    except Image.DecompressionBombWarning:
        raise ValidationError(f"{path}: image has more than the {MAX_PIXELS:,} pixels allowed") from None
    except _DECODE_ERRORS as exc:
        raise InputError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from None
