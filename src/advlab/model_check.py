"""Checks of a model against its input, before any attack work runs.

Two things go wrong with a user's model more often than anything else: inputs of a shape it
was not built for (flattened images given to a CNN, a missing batch or channel axis), and
outputs that are not finite logits (NaN or infinity from a division by zero, a log of 0, an
overflow). Both would otherwise surface as a torch traceback deep inside an attack, or worse,
as a silent wrong answer (``argmax`` of a NaN row is class 0, so every NaN row would count as a
"prediction"). :func:`model_logits` runs the model on the clean inputs and turns both into an
:class:`~advlab.validation.InputError` that names the model, the shapes and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from advlab.validation import InputError, check_logits

__all__ = ["model_logits", "model_name", "model_dtype", "explain_shape_failure"]


def model_name(model: nn.Module) -> str:
    """The model's class name, as error messages show it."""
    return type(model).__name__


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter or buffer (float32 if none):
    inputs are attacked in that precision."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dtype.is_floating_point:
            return t.dtype
    return torch.float32


def _first_layer(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return m
    return None


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def explain_shape_failure(model: nn.Module, shape: tuple[int, ...]) -> str:
    """What the model's first layer expects and how to turn inputs of ``shape`` into that."""
    layer = _first_layer(model)
    per_sample = math.prod(shape[1:]) if len(shape) > 1 else 1
    if isinstance(layer, nn.Conv2d):
        c = layer.in_channels
        want = f"images of shape (N, {c}, H, W) (its first layer is Conv2d with {c} input channel(s))"
        if len(shape) == 2:
            side = math.isqrt(shape[1] // c) if shape[1] % c == 0 else 0
            if side * side * c == shape[1] and side > 1:
                return f"it expects {want}; x looks like flattened images: use x.reshape(-1, {c}, {side}, {side})"
            return f"it expects {want}; x looks like one image without batch or channel axis: use x[None, None]"
        if len(shape) == 3:
            if c == 1 and shape[0] != 1:
                return f"it expects {want}; x looks like (N, H, W) images without a channel axis: use x[:, None]"
            if c == 1:
                return (
                    f"it expects {want}; x looks like (N, H, W) images without a channel axis (use x[:, None]) "
                    "or one (C, H, W) image without a batch axis (use x[None])"
                )
            if shape[0] == c:
                return f"it expects {want}; x looks like one image without a batch axis: use x[None]"
        if len(shape) == 4 and shape[1] != c:
            if shape[3] == c:
                return f"it expects {want}; x looks channels-last (N, H, W, C): use x.permute(0, 3, 1, 2)"
            return f"it expects {want}; x has {shape[1]} channel(s)"
        return f"it expects {want}"
    if isinstance(layer, nn.Linear):
        f = layer.in_features
        want = f"{f} values per sample (its first layer is Linear({f}, ...))"
        if per_sample != f and math.prod(shape) == f:
            return f"it expects {want}; x holds {f} values in all, like one sample without a batch axis: use x[None]"
        if per_sample != f:
            return f"it expects {want}; each sample of x has {per_sample}"
        return f"it expects {want}"
    if isinstance(layer, (nn.Conv1d, nn.Conv3d)):
        return f"its first layer is {type(layer).__name__} with {layer.in_channels} input channel(s)"
    return "check the input shape the model was built for"


def model_logits(
    model: nn.Module,
    x: Tensor,
    run: Callable[[nn.Module, Tensor], Tensor],
    *,
    batch_size: int | None = None,
    where: str = "the clean inputs",
    grad: bool = False,
    offset: int = 0,
) -> Tensor:
    """Logits of ``model`` on ``x`` (no gradient), in batches of ``batch_size`` rows, computed
    with ``run(model, x_batch)``; every batch checked to be finite ``(rows, C)`` logits.

    A model that raises on ``x`` (a shape it was not built for) or returns anything else
    gets an :class:`InputError` naming the model, the shapes and the fix; non-finite logits
    name the number of rows and the first bad sample index.  ``grad``: keep the autograd
    graph (for a pass an attack goes on to differentiate); ``offset``: the global index of
    ``x``'s first row, for the messages.
    """
    n = x.shape[0]
    bs = n if batch_size is None else batch_size
    out: list[Tensor] = []
    with torch.set_grad_enabled(grad):
        for i in range(0, n, bs):
            xb = x[i : i + bs]
            try:
                logits = run(model, xb)
            except (RuntimeError, ValueError, IndexError, TypeError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise InputError(
                    f"model {model_name(model)} cannot take x of shape {_shape(tuple(x.shape))}: "
                    f"{explain_shape_failure(model, tuple(x.shape))} (the model raised: {first})"
                ) from None
            out.append(check_logits(logits, xb.shape[0], model=model_name(model), x_shape=tuple(x.shape), finite=False))
    return check_logits(torch.cat(out), n, model=model_name(model), where=where, offset=offset)
