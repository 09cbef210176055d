"""One place that turns what a user names on the command line into a model.

``advlab evaluate``, ``advlab attack`` and ``advlab serve`` all resolve their model argument
here, so the same spelling works everywhere:

- a saved advlab model folder (``config.json`` + ``model.safetensors``);
- a model-zoo name (``cnn``): the reference model, trained once and cached;
- ``package.module:factory`` or ``path/to/file.py:factory``: ``factory()`` builds an
  ``nn.Module``; ``--weights FILE.safetensors`` then loads its state dict strictly;
- ``model.onnx``: an ONNX export, converted by onnx2torch (``advlab[onnx]``).

Pickles (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, ``.bin``) are refused: loading one runs
arbitrary code.  ``mean``/``std``/``box`` wrap the result in
:class:`advlab.models.preprocessing.InputAdapter` so attacks and reports stay in pixel space.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from advlab.models.preprocessing import InputAdapter
from advlab.validation import InputError

__all__ = ["ResolvedModel", "resolve_model", "load_weights", "check_model_inputs", "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


@dataclass
class ResolvedModel:
    """A model ready to attack, the name it is reported under and how it was built."""

    module: nn.Module
    name: str
    source: str  # "folder", "zoo", "factory" or "onnx"
    preprocessing: str | None = None  # InputAdapter.describe(), when the model is wrapped


def resolve_model(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    dataset: str = "mnist-sample",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    box: tuple[float, float] = (0.0, 1.0),
    progress: bool = True,
) -> ResolvedModel:
    """The model that ``spec`` names (see the module docstring), in evaluation mode on the CPU.

    ``dataset`` is the named dataset a zoo model is trained on (``mnist-sample`` when the data
    is a file).  Raises :class:`InputError` naming the problem and the fix.
    """
    text = str(spec).strip()
    if not text:
        raise InputError("the model is empty; give a model folder, a zoo name, module:factory or a .onnx file")
    path = Path(text)
    if weights is not None and (":" not in text or path.exists()):
        raise InputError("--weights applies to a module:factory model; a model folder or .onnx file carries its own weights")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            f"{text}: advlab never loads pickled files (they can run arbitrary code). Save the weights with "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors') and pass module:factory --weights model.safetensors, "
            "or export the model to ONNX"
        )
    if path.is_dir():
        from advlab.models.io import load_model

        module, name, source = load_model(path), text, "folder"
    elif path.suffix.lower() == ".onnx":
        from advlab.models.onnx_import import load_onnx

        module, name, source = load_onnx(path), text, "onnx"
    elif path.exists():
        raise InputError(f"{text} is a file advlab cannot load as a model; give a saved model folder, a .onnx file, or module:factory --weights FILE.safetensors")
    elif ":" in text and not _looks_like_windows_path(text):
        module = _from_factory(text)
        if weights is not None:
            load_weights(module, weights)
        name, source = text, "factory"
    else:
        from advlab.models import available_models, trained_model

        if text not in available_models() and ("/" in text or "\\" in text or path.suffix):
            raise InputError(f"model {text!r}: no such folder or file (a saved model folder, a .onnx file, or module:factory)")
        if text not in available_models():
            raise InputError(
                f"model {text!r} is not a model folder, an .onnx file, module:factory, or a zoo model "
                f"({', '.join(available_models())})"
            )
        module, name, source = trained_model(text, dataset, progress=progress), text, "zoo"
    module = module.eval()  # its own precision: a float64 model is attacked in float64
    if mean is None and std is None and tuple(box) == (0.0, 1.0):
        module.advlab_name = name  # type: ignore[assignment]  # the name reports show
        return ResolvedModel(module, name, source)
    adapter = InputAdapter(module, box=(box[0], box[1]), mean=mean, std=std).eval()
    adapter.advlab_name = name  # type: ignore[assignment]
    return ResolvedModel(adapter, name, source, adapter.describe())


def _looks_like_windows_path(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[2] in "\\/"


def _from_factory(text: str) -> nn.Module:
    target, _, attr = text.rpartition(":")
    if not target or not attr.isidentifier():
        raise InputError(f"{text!r}: expected package.module:factory or file.py:factory")
    module = _import_target(target, text)
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{target} has no attribute {attr!r} (for {text})")
    if isinstance(factory, nn.Module):
        built = factory
    elif callable(factory):
        try:
            built = factory()
        except TypeError as exc:
            raise InputError(f"{text}: the factory must build the model without arguments ({exc})") from None
    else:
        raise InputError(f"{text}: {attr} is a {type(factory).__name__}, not a callable that builds an nn.Module")
    if not isinstance(built, nn.Module):
        raise InputError(f"{text} returned a {type(built).__name__}, not a torch.nn.Module")
    return built


def _import_target(target: str, text: str) -> Any:
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise InputError(f"{text}: no file {file}")
        name = f"advlab_user_model_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise InputError(f"{text}: cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:  # like `python -m`: the working folder imports
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise InputError(f"{text}: cannot import {target!r} ({exc}); run from the folder that holds it or install it") from None


def load_weights(model: nn.Module, weights: str | Path) -> nn.Module:
    """Load a safetensors state dict into ``model`` strictly: every key must match in name
    and shape, and the error names the missing, unexpected and mis-shaped keys."""
    p = Path(weights)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(f"--weights {p}: advlab loads .safetensors only, never a pickle; convert with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')")
    from safetensors.torch import load_file

    from advlab.models.io import weights_header

    header = weights_header(p)  # refuses pickles, truncated files and other formats by their bytes
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    shapes = [f"{k} {header[k]} vs {expected[k]}" for k in sorted(set(header) & set(expected)) if header[k] != expected[k]]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs model) {_few(shapes)}")
        raise InputError(f"--weights {p} does not fit the model {type(model).__name__}: " + "; ".join(parts))
    state = load_file(str(p))
    model.load_state_dict(state, strict=True)
    return model


def _few(items: list[str], k: int = 8) -> str:
    return ", ".join(items[:k]) + (f" and {len(items) - k} more" if len(items) > k else "")


def check_model_inputs(model: nn.Module, x: Tensor, num_classes: int | None = None, *, what: str = "the data") -> int:
    """Run ``model`` on two samples of ``x`` and check it returns logits for every class.

    Returns the number of classes the model predicts.  Raises :class:`InputError` when the
    model refuses the data's shape, returns something other than an ``(N, K)`` float tensor,
    or has fewer outputs than the labels need: before any attack runs.
    """
    from advlab.model_check import model_dtype, model_logits

    try:
        out = model_logits(model, x[:2].detach().to(model_dtype(model)), lambda m, xb: m(xb), where=what)
    except InputError as exc:
        raise InputError(f"{what} does not fit the model (values in [{float(x.min()):.3g}, {float(x.max()):.3g}]): {exc}") from None
    k = int(out.shape[1])
    if num_classes is not None and k < num_classes:
        raise InputError(f"{what} has {num_classes} classes but the model returns {k} logits")
    return k
