"""Output ownership: a command writes only into a folder it made and marked, and replaces only its own output.

Each command marks the ``--out`` folder it creates with ``.fixate-rt-output.json`` (the command, a run id, the
time, the version). The rules, enforced here for every command and every API entry point that writes a folder:

- an ``--out`` that is, or contains, one of the command's inputs is refused (``export-clicks SIM --out SIM``);
- a new or empty folder is taken; a folder marked by the same command is that command's earlier output, which
  ``--overwrite`` replaces (or ``--resume`` continues, where the command has it) — but only while everything in
  it is something that command writes;
- everything else is refused, with or without ``--overwrite``: a file, a folder holding anything the command
  does not write, a folder another command marked, an unmarked folder (a user's, or an output of a fixate-rt
  that predates markers). Nothing a user owns is ever deleted;
- `check_output` is read-only, so commands call it first and cheaply; `owned_output` and `staged_output` create
  and mark the folder only once every input and option has passed, and `owned_output` takes the folder's lock
  before it deletes anything.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError
from .locking import LOCK_NAME, output_lock

MARKER = ".fixate-rt-output.json"
MARKER_FORMAT = "fixate-rt/output/1"
DATASET = ("users.parquet", "sessions.parquet", "slates", "truth.json", "true_attention.npy", "import_report.json")

# What each command may leave in its --out (file-name patterns). Anything else makes the folder not its own.
WRITES: dict[str, tuple[str, ...]] = {
    # (simulations.parquet, shards and ray-run.json are the layouts before 0.2: --overwrite replaces them too)
    "simulate": ("simulations", "run.json", "ray-logs", "simulations.parquet", "shards", "ray-run.json"),
    "score": ("metrics.json", "per_sample.csv", "per_sample_baselines.csv"),
    "show": ("*.png",),
    "train": ("checkpoints", "prompts.safetensors", "train_config.json", "metrics.json", "learning_curve.png",
              "per_sample_seed*.csv"),
    "export": ("manifest.json", "*.onnx", "*.onnx.data", "*.data", "*.pt2", "*.pt", "*.json", "*.jinja", "*.txt",
               "prompts.safetensors", "model.sig"),
    "profile": ("profile.json", "trace.json"),
    "synth": DATASET,
    "import-recgaze": DATASET,
    "import-adserp": DATASET,
    "permute": ("*.png", "*.json"),
    "compare": ("compare.json", "compare.png", "per_item.csv", "per_position.csv"),
    "position-bias": ("position_bias.json", "position_bias.csv", "position_bias.png", "position_bias_*.png"),
    "export-clicks": ("clicks.tsv", "ids.csv", "examination.tsv", "clicks.parquet"),
}
HOUSEKEEPING = (MARKER, LOCK_NAME)
CAN_RESUME = ("simulate", "train")


def _marker(folder: Path) -> dict | None:
    """The folder's marker, None when it has none; an unreadable marker is refused (never guessed at)."""
    path = folder / MARKER
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("not a regular file")
        marker = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
            raise ValueError(f"format is not {MARKER_FORMAT}")
        return marker
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable output marker ({exc}); choose another --out") from None


def _own(name: str, command: str) -> bool:
    return name in HOUSEKEEPING or any(fnmatch.fnmatchcase(name, p) for p in WRITES[command])


def _check_inputs(out: Path, inputs: Iterable[Path | str | None]) -> None:
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if source == target or target in source.parents:
            what = "is" if source == target else "contains"
            raise InputError(f"--out {out}: {what} the input {given}; write the output to a new folder")


def check_output(out: Path | str, command: str, *, inputs: Iterable[Path | str | None] = (),
                 overwrite: bool = False, resume: bool = False) -> bool:
    """Read-only: may ``command`` write into ``out``? Raises `InputError` (one line) if not.

    Returns True when ``out`` already holds this command's own output (to replace or resume), else False.
    """
    if command not in WRITES:
        raise ValueError(f"unknown command {command!r}")
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise InputError(f"--out {out}: a broken symbolic link; give a folder path")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is not a folder")
    _check_inputs(out, inputs)
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder; choose a folder path")
    entries = sorted(p.name for p in out.iterdir())
    content = [name for name in entries if name not in HOUSEKEEPING]
    marker = _marker(out)
    if marker is None and not content:  # empty (a lock file alone is a run that has just begun, or crashed)
        return False
    if marker is None:
        raise InputError(f"--out {out}: holds '{content[0]}' and was not created by `fixate-rt {command}` (no "
                         f"{MARKER}); choose a new or empty folder — fixate-rt never replaces files it did not write")
    if marker.get("command") != command:
        raise InputError(f"--out {out}: holds the output of `fixate-rt {marker.get('command')}`; `fixate-rt "
                         f"{command}` writes only into a new or empty folder or its own output")
    foreign = next((name for name in entries if not _own(name, command)), None)
    if foreign is not None:
        raise InputError(f"--out {out}: holds '{foreign}', which `fixate-rt {command}` did not write; move it away "
                         "or choose another folder (--overwrite replaces only the command's own files)")
    if not overwrite and not resume and content:
        hint = " (or --resume to continue it)" if command in CAN_RESUME else ""
        raise InputError(f"--out {out}: holds an earlier `fixate-rt {command}` output; pass --overwrite to replace "
                         f"it{hint}, or choose another folder")
    return True


def write_marker(folder: Path, command: str) -> None:
    """Mark ``folder`` as ``command``'s output (kept if already there: a resumed run keeps its run id)."""
    from ._version import __version__
    from .io import write_json

    if (folder / MARKER).is_file():
        return
    write_json(folder / MARKER, {"format": MARKER_FORMAT, "command": command, "run_id": uuid.uuid4().hex,
                                 "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                 "fixate_rt": __version__})


def _clear(folder: Path, command: str) -> None:
    """Delete ``command``'s own entries (checked by `check_output`; the lock is held)."""
    for entry in sorted(folder.iterdir()):
        if entry.name in HOUSEKEEPING or not _own(entry.name, command):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def owned_output(out: Path | str, command: str, *, inputs: Iterable[Path | str | None] = (),
                 overwrite: bool = False, resume: bool = False) -> Iterator[Path]:
    """Check ``out``, create and mark it, hold its lock for the block; with ``overwrite`` (and no ``resume``) the
    command's previous files are deleted once the lock is held. Yields the folder."""
    out = Path(out)
    inputs = list(inputs)
    check_output(out, command, inputs=inputs, overwrite=overwrite, resume=resume)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: output folder is not writable")
    with output_lock(out, f"fixate-rt {command}"):
        # checked again under the lock: the folder may have changed since the first look
        existing = check_output(out, command, inputs=inputs, overwrite=overwrite, resume=resume)
        if existing and overwrite and not resume:
            _clear(out, command)
        write_marker(out, command)
        yield out


@contextlib.contextmanager
def staged_output(out: Path | str, command: str, *, inputs: Iterable[Path | str | None] = (),
                  overwrite: bool = False) -> Iterator[Path]:
    """Check ``out``; yield a marked staging folder that replaces ``out`` whole when the block succeeds."""
    from .io import staged_folder

    out = Path(out)
    check_output(out, command, inputs=inputs, overwrite=overwrite)
    with staged_folder(out) as stage:
        write_marker(stage, command)
        yield stage
