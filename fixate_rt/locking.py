"""One run per output folder: an exclusive lock, and a clear line when a run is interrupted.

Two runs writing one ``--out`` would interleave shards and checkpoints so that neither could be resumed, and a
second run would take the first one's live files for an interrupted run. `output_lock` holds an advisory
``flock`` on ``OUT/.fixate-rt.lock`` for the whole run (the kernel drops it when the process dies, so a crash
never leaves a stale lock, and a finished run removes the file); the file records who holds it, for the
one-line error a second run gets.

`interruptible` turns SIGTERM into the same path as Ctrl-C, so a batch scheduler's kill is reported like one.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import FixateError, InputError

LOCK_NAME = ".fixate-rt.lock"


class Interrupted(FixateError):
    """A run stopped by SIGINT/SIGTERM; the message says what was kept and how to continue."""

    exit_code = 130


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return (f"{info.get('command', 'a fixate-rt run')} (pid {info.get('pid')} on {info.get('host')}, "
                f"since {info.get('since')})")
    except (ValueError, AttributeError):
        return "another fixate-rt run"


@contextlib.contextmanager
def output_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created already) for the block; refuse at once if it is held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks, run unguarded
        yield
        return
    path = Path(folder) / LOCK_NAME
    try:
        fh = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise InputError(f"{folder}: in use by {_holder(fh.read())}; wait for it to finish or choose another "
                             "--out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                             "since": datetime.datetime.now().isoformat(timespec="seconds")}))
        fh.flush()
        try:
            yield
        finally:
            # Removed while still held (the run's files are all written by now): a run that opened the old file
            # meanwhile fails on the held lock, a later one creates a fresh file. No lock file outlives its run.
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


@contextlib.contextmanager
def interruptible(kept: Callable[[], str]) -> Iterator[None]:
    """Run the block; on Ctrl-C or SIGTERM raise `Interrupted` with ``kept()`` (what was kept, how to resume)."""
    previous = None
    main = threading.current_thread() is threading.main_thread()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    if main:
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {kept()}") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

