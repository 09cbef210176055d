"""Convenience functions over the registry."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack
from advlab.attacks.registry import get_attack
from advlab.progress import track
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
    device: Any = None,
    **params: Any,
) -> AttackResult:
    """Run attack ``name`` (with hyperparameters ``params``) on ``model``.

    >>> result = advlab.attack("pgd", model, x, y, ThreatModel("linf", eps=0.3), steps=40)  # doctest: +SKIP

    A defended model is attacked the way it declares (BPDA, EOT, a loss on logits) unless
    ``adaptive=False``. A randomized model (``randomized = True``, or ``draws=k``) is judged
    by its expected prediction over ``k`` forward passes (:mod:`advlab.expectation`).
    Query-based (black- and gray-box) attacks show their progress, counted in queries when
    the attack has a per-sample budget (:mod:`advlab.progress`; ``ADVLAB_PROGRESS=off``
    silences it).
    """
    atk = name if isinstance(name, Attack) else get_attack(name, **params)
    if threat is None:
        raise ValueError("attack() needs a ThreatModel, e.g. ThreatModel('linf', eps=0.3)")
    if atk.knowledge == "white":
        return atk(model, x, y, threat, targets=targets, batch_size=batch_size, adaptive=adaptive, draws=draws, device=device)
    # Query-based attacks run for minutes: show their progress.  With a per-sample query budget
    # the unit is the query (so the time left is known within a batch, as an upper bound: a
    # sample that succeeds early gives its unspent budget back when its batch ends).
    n = len(x) if hasattr(x, "__len__") else 0
    budget = getattr(atk, "max_queries", None)
    metered = isinstance(model, nn.Module) and isinstance(budget, int) and draws is None and not getattr(model, "randomized", False)
    if not metered:
        with track(None, f"{atk.name} on {n} inputs", n) as advance:
            return atk(model, x, y, threat, targets=targets, batch_size=batch_size, adaptive=adaptive, draws=draws, device=device, progress=advance)
    assert isinstance(budget, int)
    with track(None, f"{atk.name} on {n} inputs, up to {budget} queries each", n * budget) as advance:
        meter = _QueryMeter(advance, n * budget, budget)
        handle = model.register_forward_hook(meter.queried)
        try:
            return atk(model, x, y, threat, targets=targets, batch_size=batch_size, adaptive=adaptive, draws=draws, device=device, progress=meter.finished)
        finally:
            handle.remove()


class _QueryMeter:
    """Progress in queries: every row through the model's forward is one query; when the
    attack finishes ``k`` samples, their unspent budget is counted as done."""

    def __init__(self, advance: Any, total: int, budget: int) -> None:
        self.advance, self.total, self.budget = advance, total, budget
        self.shown = 0  # units reported so far (never above total)
        self.pending = 0  # queries since the last finished samples

    def __deepcopy__(self, memo: dict[int, Any]) -> _QueryMeter:
        return self  # a copied model (e.g. a meta-device probe) still reports to this meter

    def _add(self, k: int) -> None:
        k = max(0, min(k, self.total - self.shown))
        if k:
            self.shown += k
            self.advance(k)

    def queried(self, module: Any, inputs: Any, output: Any) -> None:
        x = inputs[0] if inputs else None
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.device.type == "meta":
            return  # not a query: a shape probe on the meta device
        rows = int(x.shape[0])
        self.pending += rows
        self._add(rows)

    def finished(self, k: int) -> None:
        self._add(k * self.budget - self.pending)
        self.pending = 0
