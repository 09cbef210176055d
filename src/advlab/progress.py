"""Progress of long operations, one helper for the whole library.

Training, black-box attacks, substitute and AdvGAN training, universal-perturbation and patch
fitting, and evaluations report their progress through :func:`progress`:

- on a terminal, a bar with the count, the elapsed time and an estimate of the time left;
- elsewhere (a log file, CI, a pipe), a plain line when the work starts, then one every
  ``ADVLAB_PROGRESS_INTERVAL`` seconds (default 10) with the share done and the time left,
  and one when it ends.

``ADVLAB_PROGRESS`` chooses: ``auto`` (default: a bar on a terminal, plain lines elsewhere),
``bar``, ``plain`` or ``off``.  Everything goes to standard error, so results on standard
output stay clean.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Advance", "progress", "progress_mode", "track", "format_seconds"]

Advance = Callable[[int], None]
MODES = ("auto", "bar", "plain", "off")


def progress_mode(stream: TextIO | None = None) -> str:
    """``bar``, ``plain`` or ``off``: what :func:`progress` shows here (``ADVLAB_PROGRESS``)."""
    mode = os.environ.get("ADVLAB_PROGRESS", "auto").strip().lower() or "auto"
    if mode in ("0", "false", "no", "none"):
        mode = "off"
    if mode not in MODES:
        mode = "auto"
    if mode == "auto":
        s = stream or sys.stderr
        return "bar" if hasattr(s, "isatty") and s.isatty() else "plain"
    return mode


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``"1 min 15 s"``; ``4.2`` -> ``"4.2 s"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 120:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@contextmanager
def progress(description: str, total: int, *, interval: float | None = None, stream: TextIO | None = None) -> Iterator[Advance]:
    """Show the progress of ``total`` units of work; yields ``advance(n)``.

    The same signature as the CLI's progress factories (``progress(description, total)`` ->
    a context manager yielding ``advance``), so it can be passed wherever one is expected.
    """
    out = stream or sys.stderr
    mode = progress_mode(out)
    if mode == "off" or total <= 0:
        yield lambda n: None
        return
    if mode == "bar":
        with _bar(description, total, out) as step:
            yield step
        return
    every = interval if interval is not None else float(os.environ.get("ADVLAB_PROGRESS_INTERVAL", "10"))
    state = {"done": 0, "last": time.perf_counter()}
    start = state["last"]

    def line(text: str) -> None:
        print(f"[advlab] {description}: {text}", file=out, flush=True)

    def advance(n: int) -> None:
        state["done"] += n
        now = time.perf_counter()
        if now - state["last"] >= every and state["done"] < total:
            state["last"] = now
            done, elapsed = state["done"], now - start
            left = elapsed / done * (total - done) if done else float("nan")
            eta = f", about {format_seconds(left)} left" if done else ""
            line(f"{done}/{total} ({100 * done / total:.0f}%), {format_seconds(elapsed)} elapsed{eta}")

    line(f"0/{total}, started")
    ok = False
    try:
        yield advance
        ok = True
    finally:
        elapsed = time.perf_counter() - start
        line(f"{state['done']}/{total} {'done' if ok else 'stopped'} in {format_seconds(elapsed)}")


@contextmanager
def _bar(description: str, total: int, out: TextIO) -> Iterator[Advance]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=out), transient=False) as p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


@contextmanager
def track(given: Advance | bool | None, description: str, total: int) -> Iterator[Advance]:
    """``given`` if it is a callback, nothing if ``False``, else :func:`progress` (the default
    of the library's long operations: they are never silent unless told to be)."""
    if callable(given):
        yield given
    elif given is False:
        yield lambda n: None
    else:
        with progress(description, total) as advance:
            yield advance


