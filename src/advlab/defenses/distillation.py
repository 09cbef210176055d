"""Defensive distillation (Papernot et al. 2016, arXiv:1511.04508), and why it is not robust.

A teacher is trained with its softmax at temperature ``T``; a student of the same
architecture is trained, also at ``T``, on the teacher's soft labels; the student is deployed
at ``T = 1``.  Its logits are then about ``T`` times larger than a normal network's, the
softmax saturates (probability exactly 1.0 in float32) and the cross-entropy gradient is
exactly zero: gradient attacks with cross-entropy stall and report high robustness.  The
defense is only gradient masking (Carlini & Wagner 2016, arXiv:1607.04311): a loss on logits
(C&W margin, DLR) or cross-entropy at the training temperature breaks it.  :class:`Distilled`
declares both, so attacks on it are adaptive by default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.defenses.adaptive import Wrapper, adaptive_model

__all__ = ["Distilled", "TemperatureScaled", "distill"]


class TemperatureScaled(nn.Module):
    """``model(x) / temperature``: the logits the student was trained on."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature


class Distilled(Wrapper):
    """A distilled student deployed at ``T = 1`` (its forward pass is the student's logits).

    How it must be attacked: ``adaptive_loss = "margin"`` (a loss on logits, unaffected by the
    saturated softmax) and ``adaptive()`` divides the logits by the training temperature, so
    even cross-entropy gets a gradient.
    """

    kind = "distilled"
    adaptive_loss = "margin"  # type: ignore[assignment]

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__(model)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def adaptive(self) -> nn.Module:
        return TemperatureScaled(adaptive_model(self.model), self.temperature)

    def wrapper_config(self) -> dict[str, Any]:
        return {"type": self.kind, "temperature": self.temperature}

    @classmethod
    def from_config(cls, model: nn.Module, config: dict[str, Any]) -> Distilled:
        return cls(model, float(config["temperature"]))


def distill(
    architecture: str,
    x: Tensor,
    y: Tensor,
    temperature: float = 100.0,
    config: Any = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    progress: bool = False,
) -> tuple[Distilled, dict[str, Any]]:
    """Defensive distillation of ``architecture`` on ``(x, y)``.

    Parameters
    ----------
    architecture:
        Model name for :func:`advlab.models.build_model` (teacher and student).
    temperature:
        ``T``; Papernot et al. use 100 on MNIST.
    config:
        :class:`advlab.models.TrainConfig` for both trainings (its temperature is overridden).
    teacher:
        An already-trained teacher (trained at ``T``); trained here when omitted.

    Returns
    -------
    (Distilled student, history) where history holds both trainings' seconds and losses.

    Examples
    --------
    >>> student, hist = distill("cnn", data.x_train, data.y_train, temperature=100)  # doctest: +SKIP
    """
    import dataclasses

    from advlab.models import TrainConfig, build_model, train_model

    cfg = dataclasses.replace(config or TrainConfig(), temperature=float(temperature))
    kwargs = dict(model_kwargs or {})
    history: dict[str, Any] = {}
    if teacher is None:
        teacher = build_model(architecture, **kwargs)
        history["teacher"] = train_model(teacher, x, y, cfg, progress=progress, description=f"teacher at T={temperature:g}")
    teacher.eval()
    with torch.no_grad():
        soft = torch.cat([torch.softmax(teacher(x[i : i + 1000]) / temperature, dim=1) for i in range(0, len(x), 1000)])
    student = build_model(architecture, **kwargs)
    history["student"] = train_model(student, x, soft, cfg, progress=progress, description=f"student at T={temperature:g}")
    history["seconds"] = sum(h["seconds"] for h in (history.get("teacher"), history["student"]) if h)
    return Distilled(student, temperature), history
