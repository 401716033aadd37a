"""Writing a whole dataset folder (users.parquet, slates/, sessions.parquet, ...) so that it is never mixed or
half-written: `synth` and the importers build it in a staging folder beside ``--out``, validate what they built
with the same checks every command applies to its inputs, and only then swap it into place.

A rerun into the same ``--out`` replaces the previous dataset whole (no stale slates from a larger earlier run);
a folder that holds anything else is refused, so no user file is ever deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError, ValidationError
from ..io import foreign_entry, staged_folder

# Every entry a dataset folder may hold (synth's truth files, the AdSERP import report).
DATASET_ENTRIES = frozenset({"users.parquet", "sessions.parquet", "slates", "truth.json", "true_attention.npy",
                             "import_report.json"})


def check_dataset_target(out: Path) -> None:
    """``out`` must be absent, an empty folder, or a previous dataset (then it is replaced whole)."""
    out = Path(out)
    if not out.exists():
        if out.parent.exists() and not out.parent.is_dir():
            raise InputError(f"{out}: its parent {out.parent} is not a folder")
        return
    foreign = foreign_entry(out, lambda p: p.name in DATASET_ENTRIES)
    if foreign == out:
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    if foreign is not None:
        raise InputError(f"{out}: holds '{foreign.name}', which is not part of a dataset; choose a new or empty "
                         "folder (a previous dataset there is replaced whole)")


def validate_dataset(folder: Path, shown_as: Path) -> None:
    """Read ``folder`` back with the input checks; errors name ``shown_as`` (the final --out), not the stage."""
    from .join import load_inputs

    try:
        load_inputs(users=folder / "users.parquet", images=folder / "slates", sessions=folder / "sessions.parquet")
    except ValidationError as exc:
        raise ValidationError(f"the data built for {shown_as} fails validation, nothing was written: "
                              f"{str(exc).replace(str(folder), str(shown_as))}") from None


@contextlib.contextmanager
def staged_dataset(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds, validate it and swap it onto ``out``.

    Call `check_dataset_target` (and every input check) first: this creates ``out``'s parent folders.
    """
    with staged_folder(out) as stage:
        yield stage
        validate_dataset(stage, Path(out))
