"""Fast Minimum-Norm attack: projected gradient steps inside a ball whose radius adapts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks._minimal import (
    DUAL,
    BestAdversarial,
    adversarial,
    cosine,
    feasible,
    per_sample,
    worst_norm,
)
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import register
from advlab.losses import margin
from advlab.norms import get_norm
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["FMN"]

# Initial step sizes (L2-normalised gradient steps, then projection), tuned on the MNIST
# MLP and CNN; the schedule anneals each to 1/100 of its start.
DEFAULT_STEP_SIZE = {"l0": 1.0, "l1": 1.0, "l2": 1.0, "linf": 10.0}


@register
@dataclass(frozen=True)
class FMN(Attack):
    """Fast Minimum-Norm attack (Pintor, Roli, Brendel & Biggio, NeurIPS 2021, arXiv:2102.12827).

    Gradient ascent on the logit margin, with steps of L2 length ``alpha``, projected onto an
    Lp ball of radius ``eps_k`` that adapts every step: it shrinks by ``1 - gamma`` (but not
    above the best norm found) while the point is adversarial, grows by ``1 + gamma`` when it
    is not, and, before the first success, jumps to the linearised distance to the boundary
    ``||delta|| + |margin| / ||grad||_q``.  ``alpha`` and ``gamma`` are cosine-annealed
    (``alpha`` to 1/100 of its start, ``gamma`` from 0.05 to 0.001).  For L0 the radius is a
    count of features and the projection keeps the largest ones.

    Threat models: ``l0``, ``l1``, ``l2``, ``linf``; ``eps=None`` (the minimal perturbation
    found) or a bound (samples stop once their record is inside the ball); targeted and
    untargeted.  Cost per step: one forward and one backward pass per sample still running.

    Parameters
    ----------
    steps:
        Number of steps.
    step_size:
        Initial step length ``alpha``; ``None`` picks a per-norm default
        (L0, L1, L2: 1; Linf: 10).
    gamma:
        Initial relative change of the radius (annealed to ``gamma_final``).
    gamma_final:
        Final relative change of the radius.

    Examples
    --------
    >>> attack = FMN(steps=100)
    >>> result = attack(model, x, y, ThreatModel("linf"))  # doctest: +SKIP
    """

    name: ClassVar[str] = "fmn"
    norms: ClassVar[tuple[str, ...]] = ("l0", "l1", "l2", "linf")
    paper: ClassVar[str] = "Pintor et al., Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints, NeurIPS 2021 (arXiv:2102.12827)"
    minimal: ClassVar[bool] = True
    family: ClassVar[str] = "minimal-norm"
    starts_at_clean: ClassVar[bool] = True

    steps: int = 100
    step_size: float | None = None
    gamma: float = 0.05
    gamma_final: float = 0.001

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise AttackError(f"steps must be >= 1, got {self.steps}")
        if self.step_size is not None and self.step_size <= 0:
            raise AttackError(f"step_size must be > 0 or None, got {self.step_size}")
        if not 0 < self.gamma_final <= self.gamma < 1:
            raise AttackError(f"need 0 < gamma_final <= gamma < 1, got {self.gamma_final} and {self.gamma}")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x, y = batch.x, batch.y
        n = len(batch)
        lp = threat.lp
        l0 = threat.norm == "l0"
        alpha0 = self.step_size if self.step_size is not None else DEFAULT_STEP_SIZE[threat.norm]
        worst = worst_norm(x, threat.box, lp)
        radius = torch.ones(n, device=x.device, dtype=x.dtype) if l0 else torch.full_like(worst, math.inf)
        delta = torch.zeros_like(x)
        best = BestAdversarial(x, threat.eps)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = torch.arange(n, device=x.device)

        for i in range(self.steps):
            alpha = cosine(i, self.steps, alpha0, alpha0 / 100)
            gamma = cosine(i, self.steps, self.gamma, self.gamma_final)
            x_adv = x[active] + delta[active]
            gap, grad, logits = victim.value_and_grad(x_adv, partial(margin, y=y[active], targeted=threat.targeted), active)
            grad = feasible(grad, x_adv, threat.box)
            d_norm = lp.measure(delta[active])
            is_adv = adversarial(logits, y[active], threat.targeted)
            best.update(active, x_adv, d_norm, is_adv)
            found[active] |= is_adv

            r = radius[active]
            if l0:
                grown = torch.maximum(r + 1, (r * (1 + gamma)).floor())
                shrunk = torch.minimum(torch.minimum(r - 1, (r * (1 - gamma)).floor()), best.norm[active])
                r = torch.where(is_adv, shrunk, grown).clamp_min(0)
            else:
                to_boundary = gap.abs() / get_norm(DUAL[threat.norm]).measure(grad).clamp_min(1e-12)
                # Before the first success: jump just past the linearised boundary.
                grown = torch.where(found[active], r, d_norm + to_boundary) * (1 + gamma)
                r = torch.where(is_adv, torch.minimum(r * (1 - gamma), best.norm[active]), grown)
            r = torch.minimum(r, worst[active])
            radius[active] = r

            step = grad / per_sample(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
            d = lp.project(delta[active] + alpha * step, r)
            delta[active] = threat.clip(x[active] + d) - x[active]

            active = active[~best.good_enough(active)]
            if active.numel() == 0:
                break
        return best.x_best
