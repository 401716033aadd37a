"""Qwen3-VL 3-D M-RoPE positions in numpy, for runtimes without the model class (ONNX Runtime backend).

Same rule as the model's ``get_rope_index`` (tests compare them): over the real (unpadded) tokens, a text run
gets t = h = w = consecutive positions; an image block of an (H, W) merged grid starting at position s gets
t = s, h = s + i, w = s + j (row-major), and the next position is s + max(H, W). Padding gets 0.
"""

from __future__ import annotations

import numpy as np


def mrope_positions(types: np.ndarray, mask: np.ndarray, grids: list[tuple[int, int]]) -> np.ndarray:
    """types/mask [B, T] (1 = image token; 1 = real token), grids[b] = merged (H, W) of row b -> [3, B, T]."""
    B, T = types.shape
    out = np.zeros((3, B, T), dtype=np.int64)
    for b in range(B):
        idx = np.flatnonzero(mask[b])
        kinds = types[b, idx]
        pos, cur, k = [], 0, 0
        while k < len(idx):
            end = k
            while end < len(idx) and kinds[end] == kinds[k]:
                end += 1
            n = end - k
            if kinds[k] == 0:
                pos.append(np.repeat((np.arange(n) + cur)[None], 3, 0))
                cur += n
            else:
                h, w = grids[b]
                if h * w != n:
                    raise ValueError(f"row {b}: {n} image tokens but the grid is {h}×{w}")
                ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
                pos.append(np.stack([np.full(n, cur), ii.ravel() + cur, jj.ravel() + cur]))
                cur += max(h, w)
            k = end
        out[:, b, idx] = np.concatenate(pos, 1)
    return out
