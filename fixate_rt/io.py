"""Atomic output writing: every file is written to a temp name in the same folder and renamed.

A failed or interrupted run therefore never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, ValidationError


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    """``$FIXATE_RT_CACHE`` or ``~/.cache/fixate-rt``: embedded models, AdSERP organic boxes."""
    return Path(os.environ.get("FIXATE_RT_CACHE", Path.home() / ".cache" / "fixate-rt"))


def _umask() -> int:
    """The process's umask, read without changing it (Linux exposes it in /proc; elsewhere a quick swap)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only if the block succeeds.

    The file gets the mode a plain ``open(final, "w")`` would (0666 less the umask), not mkstemp's private 0600.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_utf8(path: Path, what: str) -> str:
    """The text of an input file that must be UTF-8 (layouts, configs, records, CSVs): a missing or special file,
    an unreadable one and bytes that are not UTF-8 are each one line naming the file."""
    path = Path(path)
    if not path.is_file():  # also refuses a FIFO, which would block the read forever
        raise InputError(f"{path}: {what} not found (or not a regular file)")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; when the block succeeds, swap it onto ``out`` (a previous
    folder there is moved aside, then deleted). A failure leaves ``out`` as it was and removes the stage, so a
    folder of outputs is never half-written or mixed with an earlier one. Callers check ``out`` first."""
    out = Path(out).absolute()  # absolute: '' or '.' still has a parent to stage in
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
        os.chmod(stage, 0o777 & ~_umask())  # the mode a plain mkdir gives, not mkdtemp's private 0700
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        yield stage
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            try:
                os.replace(out, old / "previous")
                os.replace(stage, out)
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def write_json(final: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
