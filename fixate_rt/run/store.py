"""Which chunks of a run are done: the one resume store of both engines.

Chunk ``c`` (pairs ``c·n .. c·n+n-1`` for ``--shard-pairs n``) is done when its part files in ``OUT/simulations/``
hold every pair of the chunk exactly ``samples`` times. The local engine writes a chunk as one file, atomically;
Ray's workers write into ``simulations/.staging/`` and the driver moves a chunk's files into place once the chunk
is checked. ``simulations/_fingerprint.json`` records what defines the rows (inputs' digests, model, seed,
samples, probe, pooling, template, chunk size); ``--resume`` continues only a run with the same fingerprint, with
either engine, and recomputes an incomplete chunk (a file cut short, a move interrupted) from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, ValidationError
from ..io import atomic_path, write_json
from .layout import FINGERPRINT, FOLDER, chunk_of, chunk_ranges, conform, pairs_per_part, part_name

FORMAT = "fixate-rt/simulations/2"
STAGING = ".staging"


class IncompleteChunk(ValidationError):
    """A chunk's files do not hold each of its pairs exactly ``samples`` times."""


def _pairs(path: Path) -> np.ndarray:
    """A part file's ``pair`` column. Part files are written whole (atomically, or moved in after a check), so an
    unreadable one was damaged after the fact: named, never silently recomputed."""
    try:
        return pairs_per_part(path)
    except (pa.ArrowInvalid, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ValidationError(f"{path}: unreadable part file ({first}); delete it to recompute its pairs") from None


class ChunkStore:
    """The ``simulations/`` folder of one run, cut into ``chunk_pairs``-pair chunks of ``n_pairs`` pairs."""

    def __init__(self, out: Path, fingerprint: dict, *, resume: bool) -> None:
        self.dir = Path(out) / FOLDER
        self.fingerprint = {"format": FORMAT, **fingerprint}
        path = self.dir / FINGERPRINT
        if path.exists():
            if not resume:
                raise InputError(f"{self.dir}: an earlier run is here; pass --resume to continue it (or --overwrite "
                                 "to start over)")
            self._check_fingerprint(path)
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise InputError(f"{self.dir}: exists without {FINGERPRINT}; not a fixate-rt simulation folder")
        self.chunk_pairs = int(self.fingerprint["chunk_pairs"])
        self.chunks = chunk_ranges(int(self.fingerprint["n_pairs"]), self.chunk_pairs)
        self.samples = int(self.fingerprint["samples"])
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dir / STAGING, ignore_errors=True)  # an interrupted Ray write: recomputed
        if not path.exists():
            write_json(path, self.fingerprint)
        self.done = {i for i in range(len(self.chunks)) if self._complete(i)}

    def _check_fingerprint(self, path: Path) -> None:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValidationError(f"{path}: corrupt fingerprint") from None
        if isinstance(old.get("chunk_pairs"), int) and old["chunk_pairs"] > 0:
            self.fingerprint["chunk_pairs"] = old["chunk_pairs"]  # a run keeps the chunking it started with
        for key, value in self.fingerprint.items():
            if old.get(key) != value:
                raise InputError(f"cannot resume {self.dir.parent}: '{key}' differs from the interrupted run "
                                 f"({old.get(key)!r} there, {value!r} now)")

    # -------------------------------------------------------------------------------------------- reading
    def parts(self, chunk: int | None = None) -> list[Path]:
        """Part files, in chunk order (of one chunk if given)."""
        found = [p for p in self.dir.iterdir() if chunk_of(p) is not None and (chunk is None or chunk_of(p) == chunk)]
        return sorted(found, key=lambda p: (chunk_of(p), p.name))

    def check_chunk(self, chunk: int, files: list[Path]) -> None:
        """``files`` hold every pair of the chunk exactly ``samples`` times (nothing lost, nothing doubled)."""
        span = self.chunks[chunk]
        got = np.concatenate([_pairs(f) for f in files]) if files else np.zeros(0, np.int64)
        if got.size and (got.min() < span.start or got.max() >= span.stop):
            raise IncompleteChunk(f"{self.dir}, chunk {chunk}: rows of pairs outside the chunk")
        counts = np.bincount(got - span.start, minlength=len(span)) if got.size else np.zeros(len(span), int)
        if not (counts == self.samples).all():
            bad = int(np.flatnonzero(counts != self.samples)[0])
            raise IncompleteChunk(f"{self.dir}, chunk {chunk}: pair {bad + span.start} has {counts[bad]} rows, "
                                  f"expected {self.samples}")

    def _complete(self, chunk: int) -> bool:
        files = self.parts(chunk)
        if not files:
            return False
        try:
            self.check_chunk(chunk, files)
            return True
        except IncompleteChunk:
            for f in files:  # a Ray chunk whose files were not all moved in: recomputed whole
                f.unlink(missing_ok=True)
            return False

    @property
    def pending(self) -> list[int]:
        return [i for i in range(len(self.chunks)) if i not in self.done]

    def done_pairs(self) -> int:
        return sum(len(self.chunks[i]) for i in self.done)

    # -------------------------------------------------------------------------------------------- writing
    def write(self, chunk: int, table: pa.Table) -> Path:
        """The local engine: one chunk's rows as one part file, atomically."""
        table = conform(table).sort_by([("pair", "ascending"), ("sample", "ascending")])
        path = self.dir / part_name(chunk)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self.check_chunk(chunk, [path])
        self.done.add(chunk)
        return path

    @property
    def staging(self) -> Path:
        return self.dir / STAGING

    def adopt_staged(self, chunk: int, files: list[Path]) -> None:
        """The Ray engine: a chunk's staged files, checked, moved into place (a rename each, no copy)."""
        self.check_chunk(chunk, files)
        for k, f in enumerate(sorted(files)):
            os.replace(f, self.dir / part_name(chunk, k))
        self.done.add(chunk)
