"""Feedback while an evaluation runs: a progress bar with an ETA on a terminal, plain log
lines (``advlab.progress`` logger, at most one every ``every`` seconds) otherwise, so that a
CI log shows how far a long run is instead of staying empty.

A progress is ``progress(description, total)``: a context manager yielding ``advance(n)``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Progress", "log_progress", "terminal_progress", "default_progress", "eta_text"]

Progress = Callable[[str, int], Any]  # (description, total) -> context manager yielding advance(n)

log = logging.getLogger("advlab.progress")


def eta_text(seconds: float) -> str:
    """``"1 h 02 min"``, ``"3 min 07 s"`` or ``"12 s"``."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


@contextlib.contextmanager
def log_progress(description: str, total: int, every: float = 10.0) -> Iterator[Callable[[int], None]]:
    """Log ``description: k/total units, elapsed, ETA`` lines (the first unit, then at most
    one every ``every`` seconds, and the last)."""
    start = time.perf_counter()
    state = {"done": 0, "last": -every}
    log.info("%s: %d units", description, total)

    def advance(n: int) -> None:
        state["done"] += n
        now = time.perf_counter() - start
        done = state["done"]
        if done == total or now - state["last"] >= every or done == n:
            eta = now / done * (total - done) if done else 0.0
            log.info("%s: %d/%d units, %s elapsed, ETA %s", description, done, total, eta_text(now), eta_text(eta))
            state["last"] = now

    yield advance


@contextlib.contextmanager
def terminal_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with elapsed time and ETA (cleared when done)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


def default_progress() -> Progress:
    """The bar on a terminal, log lines otherwise."""
    isatty = getattr(sys.stderr, "isatty", None)
    return terminal_progress if callable(isatty) and isatty() else log_progress
