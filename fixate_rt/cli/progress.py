"""Progress you can follow anywhere: a Rich bar on a terminal, periodic log lines elsewhere (CI, batch jobs,
Ray workers, `| tee`), where a transient bar would print nothing or garbage.

Both have one interface: ``total(n)``, ``advance(k)``, ``describe(text)``; the line reporter logs at most every
``every_s`` seconds and once at the end, through the ``fixate_rt`` logger (so ``-q`` silences it).
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .common import console

log = logging.getLogger("fixate_rt")


class Reporter:
    """What the commands call; `progress` picks the implementation for the console it writes to."""

    def total(self, n: int | None) -> None: ...

    def advance(self, k: int = 1) -> None: ...

    def describe(self, text: str) -> None: ...

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None


class BarReporter(Reporter):
    def __init__(self, label: str, unit: str) -> None:
        self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(f"{unit}"),
                                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                  transient=True)
        self._task = None

    def __enter__(self) -> BarReporter:
        self._progress.__enter__()
        self._task = self._progress.add_task("", total=None)
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self._progress.__exit__(kind, exc, tb)

    def total(self, n: int | None) -> None:
        self._progress.update(self._task, total=n)

    def advance(self, k: int = 1) -> None:
        self._progress.advance(self._task, k)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


class LineReporter(Reporter):
    """``simulating: 120/1200 pairs (10 %), 34.1 pairs/s, 3.5 s`` every ``every_s`` seconds and at the end."""

    def __init__(self, label: str, unit: str, every_s: float = 10.0) -> None:
        self.label, self.unit, self.every_s = label, unit, every_s
        self.done, self.n, self.text = 0, None, ""
        self.t0 = self.last = time.monotonic()
        self.reported = -1  # the count the last line showed: the closing line is not repeated

    def total(self, n: int | None) -> None:
        self.n = n

    def advance(self, k: int = 1) -> None:
        self.done += k
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line()

    def describe(self, text: str) -> None:
        self.text = text

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None and self.reported != self.done:
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.t0
        of = f"/{self.n}" if self.n else ""
        share = f" ({100 * self.done / self.n:.0f} %)" if self.n else ""
        rate = f", {self.done / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self.text}" if self.text else ""
        log.info(f"{self.label}: {self.done}{of} {self.unit}{share}{rate}{extra}, {elapsed:.1f} s")
        self.reported = self.done


def progress(label: str, unit: str) -> Reporter:
    """A bar on a terminal; periodic log lines when stderr is not one."""
    return BarReporter(label, unit) if console.is_terminal else LineReporter(label, unit)
