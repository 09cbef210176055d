"""Helpers shared by CLI commands: errors as clean messages, progress bars, console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print an error in red and exit with ``code`` (no traceback)."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors into one-line CLI errors."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, TypeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(str(msg))


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False) as p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


def console() -> Any:
    from rich.console import Console

    return Console()


def load_victim(spec: str, dataset: str = "mnist-sample") -> Any:
    """A model from a saved folder (``model.safetensors`` + ``config.json``) or, given an
    architecture name, the reference model trained on ``dataset`` (cached)."""
    from pathlib import Path

    from advlab.models import available_models, load_model, trained_model

    if Path(spec).is_dir():
        return load_model(spec)
    if spec in available_models():
        return trained_model(spec, dataset, progress=True)
    raise ValueError(f"--model {spec!r} is neither a saved model folder nor an architecture ({', '.join(available_models())})")
