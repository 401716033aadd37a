"""Output shards of a long `simulate` run, so an interrupted run can be resumed without losing or duplicating rows.

While a run goes, each chunk of finished pairs is written atomically to ``OUT/shards/part-NNNNNN.parquet`` (the
simulation columns plus ``pair``, the pair's index in the run's pair list). ``manifest.json`` records what
defines the rows (pairs, model, prompts, seed, samples, probe, pooling), so ``--resume`` continues only the same
run; batch size, device and kernels may change. When every pair is done the shards are assembled into
``simulations.parquet`` in pair order and the folder is removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError, ValidationError
from .io import atomic_path, write_json

FORMAT = "fixate-rt/simulate-shards/1"


def check_fingerprint(manifest_path: Path, current: dict, out: Path) -> None:
    """A resumed run must match the interrupted one on every key of ``current`` (one line naming the key)."""
    try:
        old = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError(f"{manifest_path}: corrupt manifest") from None
    for key, value in current.items():
        if old.get(key) != value:
            raise InputError(f"cannot resume {out}: '{key}' differs from the interrupted run "
                             f"({old.get(key)!r} there, {value!r} now)")


class ShardStore:
    """The shards folder of one run: which pairs are done, writing new shards, reading them all back."""

    def __init__(self, out: Path, fingerprint: dict, *, resume: bool) -> None:
        self.dir = Path(out) / "shards"
        self.manifest = {"format": FORMAT, **fingerprint}
        self.done: set[int] = set()
        self._next = 0
        manifest_path = self.dir / "manifest.json"
        if manifest_path.exists():
            if not resume:
                raise InputError(f"{self.dir}: an interrupted run is here; pass --resume to continue it "
                                 f"(or delete the folder to start over)")
            self._open_existing(manifest_path)
        else:
            if self.dir.exists() and any(self.dir.iterdir()):
                raise InputError(f"{self.dir}: exists without manifest.json; not a fixate-rt shards folder")
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(manifest_path, self.manifest)

    def _open_existing(self, manifest_path: Path) -> None:
        check_fingerprint(manifest_path, self.manifest, self.dir.parent)
        for path in self.parts():
            try:
                pairs = pq.read_table(path, columns=["pair"]).column("pair").to_numpy()
            except (pa.ArrowInvalid, OSError) as exc:
                raise ValidationError(f"{path}: unreadable shard ({exc}); delete it to recompute its pairs") from None
            unique = np.unique(pairs)
            if unique.size and (set(unique.tolist()) & self.done):
                raise ValidationError(f"{path}: holds pairs that another shard holds too")
            self.done.update(unique.tolist())
            self._next = max(self._next, int(path.stem.split("-")[1]) + 1)

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def write(self, table: pa.Table) -> Path:
        path = self.dir / f"part-{self._next:06d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        self._next += 1
        self.done.update(np.unique(table.column("pair").to_numpy()).tolist())
        return path

    def read_all(self) -> list[pa.Table]:
        return [pq.read_table(path) for path in self.parts()]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
