"""The output layout of `fixate-rt simulate`, and the one reader of it.

A run folder holds ``run.json`` (written last: a run without it is unfinished) and ``simulations/``, a Parquet
dataset: the pair list is cut into chunks of ``--shard-pairs`` consecutive pairs, and chunk ``c`` is stored in
``simulations/part-CCCCCC-K.parquet`` (one file from the local engine, one or more from Ray's workers), each
row a (pair, sample) with the simulation columns plus ``pair``, the pair's index in the run's pair list. Part
files are bounded by the chunk size, so a billion-row run is many small files that any reader streams; names
starting with ``_`` or ``.`` (the run's fingerprint, Ray's staging folder) are skipped by Parquet readers.

Every engine writes this layout, so pandas (``pd.read_parquet("OUT/simulations")``), pyarrow, DuckDB
(``read_parquet('OUT/simulations/*.parquet')``) and Ray (``ray.data.read_parquet``) open any run with one call;
sorted by (pair, sample) the rows are the same whichever engine computed them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.tables import SIMULATIONS_SCHEMA
from ..errors import InputError, ValidationError

FOLDER = "simulations"
RUN_RECORD = "run.json"
PART_SCHEMA = SIMULATIONS_SCHEMA.append(pa.field("pair", pa.int64()))
PART_NAME = re.compile(r"part-(\d{6,})-(\d+)\.parquet")
FINGERPRINT = "_fingerprint.json"  # what defines the rows (fixate_rt.run.store)
LEGACY_FILE = "simulations.parquet"  # the local engine's single file before 0.2; still read


def part_name(chunk: int, index: int = 0) -> str:
    return f"part-{chunk:06d}-{index}.parquet"


def chunk_of(path: Path) -> int | None:
    """The chunk a part file belongs to (None for a file that is not a part)."""
    match = PART_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def chunk_ranges(n_pairs: int, chunk_pairs: int) -> list[range]:
    """Pair indices of each chunk: consecutive runs of ``chunk_pairs`` (the last may be shorter)."""
    return [range(i, min(i + chunk_pairs, n_pairs)) for i in range(0, n_pairs, chunk_pairs)]


def conform(table: pa.Table) -> pa.Table:
    """A table of simulation rows (+ ``pair``) in `PART_SCHEMA`'s column order and types. Ray's numpy batches
    turn an all-null column into float NaN and may widen types; every part file gets the same schema."""
    columns = []
    for field in PART_SCHEMA:
        if field.name not in table.column_names:
            raise ValidationError(f"simulation rows: missing column '{field.name}'")
        col = table.column(field.name)
        if col.type != field.type:
            if pa.types.is_floating(col.type) and not pa.types.is_floating(field.type):  # all-null read as NaN
                values = [None if v is None or v != v else v for v in col.to_pylist()]
                col = pa.chunked_array([pa.array([None if v is None else (int(v) if pa.types.is_integer(field.type)
                                                                         else v) for v in values], field.type)])
            else:
                col = col.cast(field.type)
        columns.append(col)
    return pa.table(columns, schema=PART_SCHEMA)


def sort_rows(table: pa.Table) -> pa.Table:
    """Rows in (pair, sample) order: the local engine's order, whichever engine wrote them."""
    if "pair" not in table.column_names or table.num_rows == 0:
        return table
    return table.sort_by([("pair", "ascending"), ("sample", "ascending")])


@dataclass(frozen=True)
class SimulationFiles:
    """Where a simulation's rows are (a run's ``simulations/`` folder or a single Parquet file) and its run.json."""

    rows: Path
    record: Path | None


def locate(path: Path | str) -> SimulationFiles:
    """A run folder, its ``simulations/`` folder, or a single simulations Parquet file → where to read.
    An unfinished run (no run.json beside its ``simulations/``) is refused: its rows are incomplete."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: simulation not found (a `fixate-rt simulate --out` folder, its simulations/ "
                         "folder, or a simulations Parquet file)")
    if path.is_file():
        record = path.parent / RUN_RECORD
        return SimulationFiles(path, record if record.is_file() else None)
    if (path / FOLDER).is_dir():
        run, rows = path, path / FOLDER
    elif path.name == FOLDER and (path.parent / RUN_RECORD).exists():
        run, rows = path.parent, path
    elif (path / LEGACY_FILE).is_file():
        return SimulationFiles(path / LEGACY_FILE, path / RUN_RECORD if (path / RUN_RECORD).is_file() else None)
    elif any(chunk_of(p) is not None for p in path.iterdir()):
        return SimulationFiles(path, None)  # a copied simulations/ folder without its run.json
    else:
        raise InputError(f"{path}: holds no simulation (no simulations/ folder or part files)")
    if not (run / RUN_RECORD).is_file():
        raise InputError(f"{run}: an unfinished simulation (no {RUN_RECORD}); rerun the same `fixate-rt simulate` "
                         "with --resume to complete it")
    return SimulationFiles(rows, run / RUN_RECORD)


def read_simulation(path: Path | str) -> tuple[pa.Table, SimulationFiles]:
    """The one reader of simulate's output, for every command: rows sorted by (pair, sample), each Arrow value
    validated (one `InputError` line naming the file when unreadable), and where they came from."""
    files = locate(path)
    if files.rows.is_dir() and not any(chunk_of(p) is not None for p in files.rows.iterdir()):
        raise InputError(f"{files.rows}: no part files (part-*.parquet); not a finished simulation")
    try:
        table = pq.read_table(files.rows, partitioning=None)
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{files.rows}: not a readable simulation ({first})") from None
    expected = _expected_rows(files.rows)
    if expected is not None and table.num_rows < expected:
        raise InputError(f"{files.rows}: {table.num_rows} rows but the run wrote {expected} (pairs × samples); a part "
                         "file is missing")
    return sort_rows(table), files


def _expected_rows(folder: Path) -> int | None:
    """pairs × samples from a run's fingerprint (None for a single file or a folder without one)."""
    try:
        fingerprint = json.loads((folder / FINGERPRINT).read_text(encoding="utf-8"))
        return int(fingerprint["n_pairs"]) * int(fingerprint["samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_images(files: SimulationFiles) -> Path | None:
    """The slates folder named in the run's run.json, when it still exists."""
    if files.record is None:
        return None
    try:
        folder = json.loads(files.record.read_text(encoding="utf-8")).get("config", {}).get("images")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return Path(folder) if folder and Path(folder).is_dir() else None


def pairs_per_part(path: Path) -> np.ndarray:
    """The ``pair`` column of one part file (for the store's completeness checks)."""
    return pq.read_table(path, columns=["pair"]).column("pair").to_numpy()
