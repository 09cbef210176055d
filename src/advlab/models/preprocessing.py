"""A model's input convention made explicit: value range and mean/std normalisation.

Attacks, budgets and reports in advlab live in pixel space, inputs in [0, 1].  Many models
instead expect normalised inputs ``(x - mean) / std`` (the ImageNet convention) or raw values
in another range such as [0, 255].  Attacking such a model on normalised tensors silently
rescales every budget by ``1/std``, a frequent source of wrong robustness numbers (Croce et al.
2020, RobustBench, arXiv:2010.09670).  :class:`InputAdapter` puts the conversion inside the
model, so everything outside it stays in pixel space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from advlab.validation import InputError

__all__ = ["InputAdapter", "parse_floats"]


class InputAdapter(nn.Module):
    """``model((lo + x * (hi - lo) - mean) / std)`` for pixel-space ``x`` in [0, 1].

    Parameters
    ----------
    model:
        The wrapped classifier (returns logits).
    box:
        The value range ``(lo, hi)`` the model's pixels are in before normalisation
        (``(0, 1)``, or ``(0, 255)`` for a model trained on raw bytes).
    mean, std:
        Per-channel (one value each, or one for every channel) normalisation in the box's
        units, e.g. ``(0.485, 0.456, 0.406)`` and ``(0.229, 0.224, 0.225)``.
    """

    def __init__(
        self,
        model: nn.Module,
        box: tuple[float, float] = (0.0, 1.0),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        lo, hi = float(box[0]), float(box[1])
        if not lo < hi:
            raise InputError(f"--box must be LOW,HIGH with LOW < HIGH, got {box!r}")
        mean = tuple(float(m) for m in (mean if mean is not None else (0.0,)))
        std = tuple(float(s) for s in (std if std is not None else (1.0,)))
        if any(s <= 0 for s in std):
            raise InputError(f"--std values must be positive, got {std}")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise InputError(f"--mean has {len(mean)} values and --std {len(std)}; give one per channel (or one for all)")
        self.model = model
        self.box = (lo, hi)
        self.mean_values, self.std_values = mean, std
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def _per_channel(self, v: Tensor, x: Tensor) -> Tensor:
        if v.numel() == 1:
            return v.reshape(())
        if x.dim() < 2 or x.shape[1] != v.numel():
            raise InputError(f"--mean/--std have {v.numel()} values but the inputs have shape {tuple(x.shape[1:])} ({x.shape[1] if x.dim() > 1 else 0} channels)")
        return v.reshape(1, -1, *([1] * (x.dim() - 2)))

    def prepare(self, x: Tensor) -> Tensor:
        """What the wrapped model receives for pixel-space ``x``."""
        lo, hi = self.box
        raw = x * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else x
        mean_t, std_t = self.get_buffer("_mean"), self.get_buffer("_std")
        mean, std = self._per_channel(mean_t.to(x), x), self._per_channel(std_t.to(x), x)
        return (raw - mean) / std

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.prepare(x))

    @property
    def activations(self) -> Any:
        """The wrapped model's ``activations(x)`` (hidden layer, logits...) on pixel-space ``x``,
        when it has one (the playground draws them); otherwise no such attribute."""
        inner = getattr(self.model, "activations", None)
        if inner is None:
            raise AttributeError("activations")
        return lambda x: inner(self.prepare(x))

    def describe(self) -> str:
        """One line for reports: what the model sees."""
        parts = []
        if self.box != (0.0, 1.0):
            parts.append(f"them scaled to [{self.box[0]:g}, {self.box[1]:g}]")
        if self.mean_values != (0.0,) or self.std_values != (1.0,):
            fmt = lambda v: "(" + ", ".join(f"{a:g}" for a in v) + ")"  # noqa: E731
            parts.append(f"(x - mean) / std with mean {fmt(self.mean_values)}, std {fmt(self.std_values)}")
        seen = ", then ".join(parts) if parts else "them unchanged"
        return f"inputs in [0, 1] pixel space (budgets in those units); the model receives {seen}"

    def extra_repr(self) -> str:
        return f"box={self.box}, mean={self.mean_values}, std={self.std_values}"


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.485,0.456,0.406"`` -> a tuple of floats (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(abs(v) != float("inf") and v == v for v in values):
        raise InputError(f"{option} must be comma-separated finite numbers, got {text!r}")
    return values
