"""Stable per-request random streams: blake2b of (seed, user, slate, sample), never Python's ``hash``.

The same seed gives the same clicks whatever the batch size, backend, device or kernel.
"""

from __future__ import annotations

import hashlib

import numpy as np


def request_seed(seed: int, user_id: str, slate_id: str, sample: int) -> int:
    key = f"{seed}\x1f{user_id}\x1f{slate_id}\x1f{sample}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def request_generator(seed: int, user_id: str, slate_id: str, sample: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(request_seed(seed, user_id, slate_id, sample)))


def draw_click(p: np.ndarray, seed: int, user_id: str, slate_id: str, sample: int) -> int:
    """Inverse-CDF draw of one slot from ``p`` [S] (float64) with the request's own stream."""
    u = request_generator(seed, user_id, slate_id, sample).random()
    cdf = np.cumsum(p, dtype=np.float64)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(p) - 1))
