"""Wall time per pipeline stage, with CUDA synchronisation so GPU work is charged to the stage that queued it.

One `StageTimer` serves `simulate` (totals in run.json) and `profile` (every sample, for p50/p90): both time
the same code, so their figures agree.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Accumulates seconds per stage; ``samples[stage]`` keeps every timed call (one per slate or batch)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[float]] = defaultdict(list)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (nested stages are charged to both)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            elapsed = time.perf_counter() - t0
            self.seconds[name] += elapsed
            self.samples[name].append(elapsed)

    def reset(self) -> None:
        """Forget everything timed so far (after warm-up)."""
        self.seconds.clear()
        self.samples.clear()

    def rounded(self, digits: int = 4) -> dict[str, float]:
        return {k: round(v, digits) for k, v in self.seconds.items()}
