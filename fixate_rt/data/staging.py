"""Writing a whole dataset folder (users.parquet, slates/, sessions.parquet, ...) so that it is never mixed or
half-written: `synth` and the importers build it in a staging folder beside ``--out``, validate what they built
with the same checks every command applies to its inputs, and only then swap it into place.

A rerun into the same ``--out`` with ``--overwrite`` replaces the previous dataset whole (no stale slates from a
larger earlier run); a folder that holds anything else is refused, so no user file is ever deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import ValidationError
from ..outputs import staged_output


def validate_dataset(folder: Path, shown_as: Path) -> None:
    """Read ``folder`` back with the input checks; errors name ``shown_as`` (the final --out), not the stage."""
    from .join import load_inputs

    try:
        load_inputs(users=folder / "users.parquet", images=folder / "slates", sessions=folder / "sessions.parquet")
    except ValidationError as exc:
        raise ValidationError(f"the data built for {shown_as} fails validation, nothing was written: "
                              f"{str(exc).replace(str(folder), str(shown_as))}") from None


@contextlib.contextmanager
def staged_dataset(out: Path, command: str, *, inputs=(), overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty, marked staging folder; when the block succeeds, validate it and swap it onto ``out``.

    Call `fixate_rt.outputs.check_output` (and every input check) first: this creates ``out``'s parent folders.
    """
    with staged_output(out, command, inputs=inputs, overwrite=overwrite) as stage:
        yield stage
        validate_dataset(stage, Path(out))
