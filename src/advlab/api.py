"""Convenience functions over the registry."""

from __future__ import annotations

from typing import Any

from torch import nn

from advlab.attacks.base import Attack
from advlab.attacks.registry import get_attack
from advlab.result import AttackResult
from advlab.threat import ThreatModel

__all__ = ["attack"]


def attack(
    name: str | Attack,
    model: nn.Module,
    x: Any,
    y: Any,
    threat: ThreatModel | None = None,
    *,
    targets: Any = None,
    batch_size: int | None = 500,
    adaptive: bool = True,
    draws: int | None = None,
    **params: Any,
) -> AttackResult:
    """Run attack ``name`` (with hyperparameters ``params``) on ``model``.

    >>> result = advlab.attack("pgd", model, x, y, ThreatModel("linf", eps=0.3), steps=40)  # doctest: +SKIP

    A defended model is attacked the way it declares (BPDA, EOT, a loss on logits) unless
    ``adaptive=False``. A randomized model (``randomized = True``, or ``draws=k``) is judged
    by its expected prediction over ``k`` forward passes (:mod:`advlab.expectation`).
    """
    atk = name if isinstance(name, Attack) else get_attack(name, **params)
    if threat is None:
        raise ValueError("attack() needs a ThreatModel, e.g. ThreatModel('linf', eps=0.3)")
    return atk(model, x, y, threat, targets=targets, batch_size=batch_size, adaptive=adaptive, draws=draws)
