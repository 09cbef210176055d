"""Decoupled Direction and Norm: the gradient picks the direction, a schedule picks the norm."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks._minimal import BestAdversarial, adversarial, cosine, per_sample, worst_norm
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import register
from advlab.losses import cross_entropy
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["DDN"]


@register
@dataclass(frozen=True)
class DDN(Attack):
    """Decoupled Direction and Norm attack (Rony et al., CVPR 2019, arXiv:1811.09600).

    Each step moves the perturbation along the L2-normalised gradient of the cross-entropy
    (step length cosine-annealed from ``step_size`` to ``step_size / 100``), then rescales
    it to the L2 norm ``eps_k``: ``eps_k`` shrinks by ``1 - gamma`` while the current point
    is adversarial and grows by ``1 + gamma`` while it is not.  The smallest adversarial
    point seen is kept per sample.

    Threat models: ``l2``, ``eps=None`` (the minimal perturbation found) or a bound (samples
    stop once their record is inside the ball); targeted and untargeted.  Cost per step:
    one forward and one backward pass per sample still running.

    Parameters
    ----------
    steps:
        Number of steps.
    step_size:
        Initial step length (L2).
    gamma:
        Relative change of the norm per step.
    init_norm:
        Starting norm ``eps_0``.

    Examples
    --------
    >>> attack = DDN(steps=100)
    >>> result = attack(model, x, y, ThreatModel("l2"))  # doctest: +SKIP
    """

    name: ClassVar[str] = "ddn"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    paper: ClassVar[str] = "Rony et al., Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses, CVPR 2019 (arXiv:1811.09600)"
    minimal: ClassVar[bool] = True
    family: ClassVar[str] = "minimal-norm"
    starts_at_clean: ClassVar[bool] = True

    steps: int = 100
    step_size: float = 1.0
    gamma: float = 0.05
    init_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise AttackError(f"steps must be >= 1, got {self.steps}")
        if self.step_size <= 0 or self.init_norm <= 0:
            raise AttackError(f"step_size and init_norm must be > 0, got {self.step_size} and {self.init_norm}")
        if not 0 < self.gamma < 1:
            raise AttackError(f"gamma must be in (0, 1), got {self.gamma}")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x, y = batch.x, batch.y
        lp = threat.lp
        worst = worst_norm(x, threat.box, lp)
        radius = torch.full_like(worst, self.init_norm)
        delta = torch.zeros_like(x)
        best = BestAdversarial(x, threat.eps)
        active = torch.arange(len(batch), device=x.device)

        for i in range(self.steps):
            alpha = cosine(i, self.steps, self.step_size, self.step_size / 100)
            x_adv = x[active] + delta[active]
            _, grad, logits = victim.value_and_grad(x_adv, partial(cross_entropy, y=y[active], targeted=threat.targeted), active)
            is_adv = adversarial(logits, y[active], threat.targeted)
            best.update(active, x_adv, lp.measure(delta[active]), is_adv)

            r = radius[active] * torch.where(is_adv, 1 - self.gamma, 1 + self.gamma)
            r = torch.minimum(r, worst[active])
            radius[active] = r

            g_norm = lp.measure(grad)
            flat = g_norm <= 1e-12
            if bool(flat.any()):  # no signal (saturated softmax): a seeded random direction
                grad[flat] = rng.normal(batch.index[active[flat]], 7919 + i, x.shape[1:], device=x.device, dtype=x.dtype)
                g_norm = lp.measure(grad)
            d = delta[active] + alpha * grad / per_sample(g_norm, grad)
            d = d * per_sample(r / lp.measure(d).clamp_min(1e-12), d)
            delta[active] = threat.clip(x[active] + d) - x[active]

            active = active[~best.good_enough(active)]
            if active.numel() == 0:
                break
        return best.x_best
