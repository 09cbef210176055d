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
    from rich.markup import escape

    # escaped: a message may hold brackets ("pip install 'advlab[onnx]'") that are not markup
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
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
    """The library's progress display (:func:`advlab.progress.progress`): a bar with an ETA on
    a terminal, plain periodic lines elsewhere; yields ``advance(n)``."""
    from advlab.progress import progress

    with progress(description, total) as advance:
        yield advance


def console() -> Any:
    from rich.console import Console

    return Console()


def load_victim(spec: str, dataset: str = "mnist-sample") -> Any:
    """The model ``spec`` names (:func:`advlab.models.spec.resolve_model`): a saved folder, a
    zoo name (trained on ``dataset``, cached), ``module:factory`` or a ``.onnx`` file."""
    from advlab.models.spec import resolve_model

    return resolve_model(spec, dataset=dataset).module


# The options every command that takes a model and data shares (evaluate, attack, serve).
HELP = {
    "model": "A saved model folder, a zoo name (cnn, seed-mlp), package.module:factory or file.py:factory (with --weights), or a .onnx file.",
    "weights": "Weights for a module:factory model: a .safetensors state dict, loaded strictly (never a pickle).",
    "data": "A dataset name (mnist-sample, mnist, fashion-mnist), an IDX folder, data.npz (x, y), x.npy,y.npy, or an image folder with one subfolder per class.",
    "box": "LOW,HIGH: the value range of the model's raw inputs and of float arrays in --data (e.g. 0,255); attacks and budgets stay in [0, 1] pixel space.",
    "mean": "Per-channel mean the model normalises with, in --box units (e.g. 0.485,0.456,0.406); the normalisation runs inside the model.",
    "std": "Per-channel std the model normalises with (e.g. 0.229,0.224,0.225).",
}


def parse_box(text: str | None) -> tuple[float, float]:
    """``"0,255"`` -> ``(0.0, 255.0)``; ``None`` -> ``(0.0, 1.0)``."""
    from advlab.models.preprocessing import parse_floats
    from advlab.validation import InputError

    values = parse_floats(text, "--box")
    if values is None:
        return (0.0, 1.0)
    if len(values) != 2 or not values[0] < values[1]:
        raise InputError(f"--box must be LOW,HIGH with LOW < HIGH, e.g. 0,255; got {text!r}")
    return (values[0], values[1])


def load_inputs(
    model: str,
    data: str,
    *,
    weights: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    box: str | None = None,
) -> tuple[Any, Any]:
    """The resolved model (:class:`advlab.models.spec.ResolvedModel`) and the dataset that the
    command line names, checked against each other (shape, classes, finite logits) before any
    attack runs."""
    from advlab.data import DATASETS
    from advlab.data.files import load_data_spec
    from advlab.models.preprocessing import parse_floats
    from advlab.models.spec import check_model_inputs, resolve_model

    the_box = parse_box(box)
    dataset = load_data_spec(data, box=the_box)
    zoo_data = data if data.strip().lower().replace("_", "-") in DATASETS else "mnist-sample"
    resolved = resolve_model(
        model, weights=weights, dataset=zoo_data, mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"), box=the_box
    )
    check_model_inputs(resolved.module, dataset.x_test, dataset.num_classes, what=f"--data {data}")
    return resolved, dataset
