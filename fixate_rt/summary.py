"""The per-label summary of a simulation (click share, mean p_click, mean slot relevance), accumulated chunk by
chunk so a distributed run of any size summarises without holding its rows."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa

from .data.slates import Slate


class SlotSummary:
    """Sums per layout (label tuple); the summary reports the commonest layout, as the terminal table shows it."""

    def __init__(self, slates: dict[str, Slate]) -> None:
        self.slates = slates
        self._rows: dict[tuple[str, ...], int] = defaultdict(int)
        self._clicks: dict[tuple[str, ...], np.ndarray] = {}
        self._p: dict[tuple[str, ...], np.ndarray] = {}
        self._rel: dict[tuple[str, ...], np.ndarray] = {}

    def add(self, table: pa.Table) -> None:
        """Rows with ``slate_id``, ``click_slot``, ``p_click`` and ``slot_relevance``."""
        cols = table.select(["slate_id", "click_slot", "p_click", "slot_relevance"]).to_pydict()
        for sid, click, p, rel in zip(cols["slate_id"], cols["click_slot"], cols["p_click"], cols["slot_relevance"]):
            labels = self.slates[sid].layout.labels
            if labels not in self._clicks:
                S = len(labels)
                self._clicks[labels], self._p[labels], self._rel[labels] = np.zeros(S), np.zeros(S), np.zeros(S)
            self._rows[labels] += 1
            self._clicks[labels][click] += 1
            self._p[labels] += np.asarray(p, dtype=np.float64)
            self._rel[labels] += np.asarray(rel, dtype=np.float64)

    def result(self) -> dict:
        if not self._rows:
            return {"labels": [], "rows": 0, "click_share": [], "mean_p_click": [], "mean_slot_relevance": []}
        common = max(self._rows, key=lambda labels: self._rows[labels])
        n = self._rows[common]
        return {"labels": list(common), "rows": n, "click_share": (self._clicks[common] / n).tolist(),
                "mean_p_click": (self._p[common] / n).round(6).tolist(),
                "mean_slot_relevance": (self._rel[common] / n).round(6).tolist()}
