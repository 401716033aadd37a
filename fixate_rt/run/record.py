"""What defines a run's rows (its fingerprint, compared on ``--resume``) and its run.json: one schema for both
engines. Keys are always present; a value an engine cannot know (the Ray driver never loads the model, so it
has no layer count) is null, never a differently named key."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from ..config import SimulateConfig
from ..data.slates import Slate
from ..summary import SlotSummary
from .layout import PART_SCHEMA
from .store import ChunkStore

FORMAT = "fixate-rt/run/2"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fingerprint(config: SimulateConfig, backend: str, digests: dict, n_pairs: int) -> dict:
    """Everything that changes a row or the layout: the inputs' and model's digests, pair count and chunk size,
    seed, samples, probe, pooling, residual, template and backend. Engine, batch size, device and kernels may
    change between an interrupted run and its resume."""
    return {**{f"{name}_sha256": value for name, value in digests.items()}, "n_pairs": n_pairs,
            "chunk_pairs": config.shard_pairs, "seed": config.seed, "samples": config.samples,
            "probe": config.probe.value, "pool_mode": config.pool_mode.value, "residual": config.residual,
            "backend": backend, "template": config.template.value}


@dataclass
class RunClock:
    """Wall-clock marks of one run (seconds from its start)."""

    started_at: str = field(default_factory=utc_now)
    t0: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        """Seconds since the previous mark (or the start), recorded under ``name``."""
        now = time.perf_counter() - self.t0
        self.marks[name] = round(now - sum(self.marks.values()), 4)
        return self.marks[name]


def written_rows(store: ChunkStore, slates: dict[str, Slate]) -> dict:
    """Rows, cold-start pairs and the per-label summary, streamed part by part (bounded memory at any size)."""
    summary, rows, cold = SlotSummary(slates), 0, 0
    for path in store.parts():
        part = pq.read_table(path, columns=["slate_id", "click_slot", "p_click", "slot_relevance", "cold_start"],
                             schema=PART_SCHEMA)
        summary.add(part)
        rows += part.num_rows
        cold += int(np.sum(part.column("cold_start").to_numpy(zero_copy_only=False)))
    return {"rows": rows, "cold_start_pairs": cold // store.samples, "summary": summary.result()}


def run_record(config: SimulateConfig, *, engine: str, clock: RunClock, digests: dict, versions: dict,
               execution: dict, store: ChunkStore, slates: dict[str, Slate], resumed: int, run_s: float,
               timings: dict | None = None) -> dict:
    """run.json. ``execution``: the engine's facts about how rows were computed (device, backend, backbone, probe,
    template, implementations, threads, export trust/runtime/quantisation, ray), every key of `EXECUTION_KEYS`."""
    missing = [k for k in EXECUTION_KEYS if k not in execution]
    if missing or set(execution) - set(EXECUTION_KEYS):
        raise ValueError(f"run record: execution keys differ from the schema (missing {missing})")
    n_pairs = sum(len(c) for c in store.chunks)
    return {
        "format": FORMAT, "command": "simulate", "engine": engine,
        "started_at": clock.started_at, "finished_at": utc_now(),
        "config": config.to_json(), "digests_sha256": digests, "versions": versions,
        **execution,
        "pairs": n_pairs, "resumed_pairs": resumed, **written_rows(store, slates),
        "timings_s": {**clock.marks, **(timings or {}), "run_total": round(run_s, 4)},
        "pairs_per_s": round((n_pairs - resumed) / run_s, 3) if run_s > 0 else None,
        "outputs": {"simulations": str(store.dir), "chunks": len(store.chunks), "chunk_pairs": store.chunk_pairs,
                    "layout": "Parquet dataset: part-CHUNK-K.parquet files with a 'pair' column; sorted by (pair, "
                              "sample) the rows are the same whichever engine wrote them"},
    }


EXECUTION_KEYS = ("model_weights", "device", "backend", "backbone", "probe", "template", "implementations", "threads",
                  "export_trust", "export_runtime", "quantization", "ray")
