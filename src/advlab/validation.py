"""Input checks shared by attacks, defenses and evaluations.

Bad input gets an :class:`InputError` that names the problem; nothing is silently coerced
into a wrong answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["InputError", "as_input_tensor", "as_label_tensor", "check_logits", "to_like"]


class InputError(ValueError):
    """Raised for inputs of the wrong shape, dtype, range or content."""


def as_input_tensor(
    x: Any,
    box: tuple[float, float] = (0.0, 1.0),
    *,
    name: str = "x",
    min_dim: int = 2,
    device: torch.device | str | None = None,
    atol: float = 1e-6,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Check ``x`` (NumPy array or torch tensor, batch first) and return a float tensor.

    The result has ``dtype`` (float32 by default; float64 for a double-precision model).

    Checks: array type, floating dtype, at least ``min_dim`` dimensions, a non-empty batch,
    no NaN or infinity, values inside ``box``.  The input is never modified.
    """
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating)):
            raise InputError(_dtype_message(name, str(x.dtype), box))
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, Tensor):
        if not x.dtype.is_floating_point:
            raise InputError(_dtype_message(name, str(x.dtype).replace("torch.", ""), box))
        t = x
    else:
        raise InputError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")
    if t.dim() < min_dim:
        raise InputError(
            f"{name} has shape {tuple(t.shape)}; expected a batch with at least {min_dim} dimensions "
            f"(N, ...), e.g. (N, 1, 28, 28) for MNIST. Add a batch dimension with x[None]."
        )
    if t.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(t.shape)})")
    if t.dtype != dtype:
        t = t.to(dtype)
    t = t.detach()
    if device is not None:
        t = t.to(device)
    # one pass for the whole check: NaN and infinities show in the extremes
    tmin, tmax = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(tmin) and math.isfinite(tmax)):
        finite = torch.isfinite(t)
        bad = int((~finite).reshape(t.shape[0], -1).any(dim=1).sum())
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinite"
        raise InputError(f"{name} contains {kind} values in {bad} sample(s)")
    lo, hi = box
    if tmin < lo - atol or tmax > hi + atol:
        hint = " (it looks like 0-255 pixel values: divide by 255)" if tmax > 1.5 and hi == 1.0 else ""
        raise InputError(f"{name} has values in [{tmin:g}, {tmax:g}] outside the box [{lo:g}, {hi:g}]{hint}")
    return t


def _dtype_message(name: str, dtype: str, box: tuple[float, float]) -> str:
    return (
        f"{name} has dtype {dtype}; expected floating-point values in the box [{box[0]:g}, {box[1]:g}]"
        + (" (convert uint8 images with x.astype('float32') / 255)" if "int" in dtype else "")
    )


def as_label_tensor(
    y: Any, n: int, num_classes: int | None = None, *, name: str = "y", device: torch.device | str | None = None
) -> Tensor:
    """Check labels: integer dtype, shape ``(n,)``, values in ``[0, num_classes)``."""
    if isinstance(y, np.ndarray):
        if not np.issubdtype(y.dtype, np.integer):
            raise InputError(f"{name} has dtype {y.dtype}; expected integer class labels")
        t = torch.from_numpy(np.ascontiguousarray(y)).long()
    elif isinstance(y, Tensor):
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
            raise InputError(f"{name} has dtype {str(y.dtype).replace('torch.', '')}; expected integer class labels")
        t = y.long()
    elif isinstance(y, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in y):
        t = torch.tensor(list(y), dtype=torch.long)
    else:
        raise InputError(f"{name} must be integer labels (NumPy array or torch tensor), got {type(y).__name__}")
    if t.dim() != 1 or t.shape[0] != n:
        raise InputError(f"{name} has shape {tuple(t.shape)}; expected ({n},), one label per input")
    if num_classes is not None and n > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            raise InputError(f"{name} has labels in [{lo}, {hi}]; the model has {num_classes} classes (0..{num_classes - 1})")
    if device is not None:
        t = t.to(device)
    return t


def check_logits(
    out: Any,
    n: int,
    *,
    model: str = "the model",
    where: str = "its inputs",
    offset: int = 0,
    x_shape: tuple[int, ...] | None = None,
    finite: bool = True,
) -> Tensor:
    """Check that a model's output is a ``(n, C)`` tensor of finite logits.

    ``model`` names the model, ``where`` the inputs it ran on and ``offset`` the global index
    of the first row (for the message naming the first bad sample).
    """
    who = model if model == "the model" else f"model {model}"
    if not isinstance(out, Tensor):
        raise InputError(f"{who} returned {type(out).__name__}; expected a tensor of logits (N, C)")
    if out.dim() != 2 or out.shape[0] != n:
        got = f" for x of shape {tuple(x_shape)}" if x_shape is not None else ""
        raise InputError(
            f"{who} returned shape {tuple(out.shape)}{got}; expected logits of shape ({n}, C), one row "
            "per input (does the model add or drop a batch axis?)"
        )
    if out.shape[1] < 2:
        raise InputError(f"{who} returned {out.shape[1]} class score(s); a classifier needs at least 2")
    ok = torch.isfinite(out) if finite else None
    if ok is not None and not bool(ok.all()):
        bad_rows = (~ok).any(dim=1)
        kind = "NaN" if bool(torch.isnan(out).any()) else "infinite"
        first = offset + int(bad_rows.nonzero()[0, 0])
        raise InputError(
            f"{who} returned {kind} logits on {where}: {int(bad_rows.sum())} row(s) of {n}, "
            f"first at sample index {first}; a broken model cannot be evaluated (look for a division "
            "by zero, a log of 0 or an overflow in its forward pass)"
        )
    return out


def to_like(t: Tensor, like: Any) -> Any:
    """Return ``t`` as a NumPy array if ``like`` is one, else as a tensor."""
    if isinstance(like, np.ndarray):
        return t.detach().cpu().numpy()
    return t
