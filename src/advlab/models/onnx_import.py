"""ONNX models as PyTorch modules, through onnx2torch (the optional extra ``advlab[onnx]``).

The graph is converted op by op into an ``fx.GraphModule``, so attacks get exact gradients of
the exported network; nothing is pickled or executed besides the ONNX operators themselves.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

from torch import nn

from advlab.validation import InputError

__all__ = ["load_onnx", "onnx_available"]

INSTALL = "pip install 'advlab[onnx]' (onnx and onnx2torch)"


def onnx_available() -> bool:
    """Whether :func:`load_onnx` can run here (onnx and onnx2torch import)."""
    try:
        _converter()
    except InputError:
        return False
    return True


def _converter() -> Any:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InputError(f"loading an .onnx model needs the onnx packages: {INSTALL}") from None
    if "onnx2torch" not in sys.modules:
        _import_without_torchvision()
    try:
        return importlib.import_module("onnx2torch").convert
    except ImportError as exc:
        raise InputError(f"loading an .onnx model needs onnx2torch ({exc}): {INSTALL}") from None


def _import_without_torchvision() -> None:
    """Import onnx2torch even where torchvision is absent or does not load beside this torch.

    onnx2torch imports torchvision at import time for two detection operators only
    (NonMaxSuppression, RoiAlign).  When torchvision cannot be imported, a placeholder stands in
    while onnx2torch loads and is removed again afterwards; a graph that uses those operators
    then fails with a message that names them instead of at import.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError, or a RuntimeError from a torchvision built for another torch
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
    else:
        _import("onnx2torch")
        return

    def missing(name: str) -> Any:
        if name.startswith("__"):  # module protocol lookups (__file__, __path__...) must fail normally
            raise AttributeError(name)

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise InputError(f"this ONNX graph uses torchvision.ops.{name} (NonMaxSuppression/RoiAlign), which needs a torchvision matching torch")

        return fail

    stub = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.__getattr__ = missing  # type: ignore[method-assign]
    stub.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    try:
        _import("onnx2torch")
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise InputError(f"loading an .onnx model needs onnx2torch ({exc}): {INSTALL}") from None


def load_onnx(path: str | Path) -> nn.Module:
    """The ONNX model at ``path`` as an evaluation-mode ``nn.Module`` (via onnx2torch).

    The file must be a plain ONNX ``ModelProto``; it is checked with ``onnx.checker`` first so
    that a corrupt or truncated file gets a message rather than a converter traceback.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no ONNX file at {p}")
    convert = _converter()
    import onnx

    try:
        proto = onnx.load(str(p))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise InputError(f"{p} is not a valid ONNX model: {exc}") from None
    try:
        module = convert(proto)
    except Exception as exc:
        raise InputError(f"onnx2torch cannot convert {p}: {exc}") from None
    return module.eval()
