"""SmoothAdv: PGD on a smoothed classifier (Salman et al. 2019, "Provably robust deep
learning via adversarially trained smoothed classifiers", arXiv:1906.04584)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import register
from advlab.losses import cross_entropy
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["SmoothAdv"]


@register
@dataclass(frozen=True)
class SmoothAdv(Attack):
    """SmoothAdv-PGD: L2 PGD on the cross-entropy of the soft smoothed classifier
    ``log mean_k softmax(f(x' + noise_k))`` over ``samples`` Gaussian draws of standard
    deviation ``sigma`` per step (fresh draws every step), which attacks the smoothed
    classifier of ``f`` rather than ``f`` itself.

    The victim may be the base classifier (this attack adds the noise) or a model that adds
    its own noise and says so with a ``smoothing_sigma`` attribute (the adaptive form of
    :class:`advlab.defenses.RandomizedSmoothing`; then each step is one pass of it).
    Success is judged on the model given to the attack.  Cost: ``steps * samples`` forward
    and backward passes per sample.

    >>> SmoothAdv(sigma=0.25, steps=20)(RandomizedSmoothing(model, 0.25), x, y, ThreatModel("l2", eps=0.5))  # doctest: +SKIP
    """

    name: ClassVar[str] = "smoothadv"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    paper: ClassVar[str] = (
        "Salman et al. 2019, Provably robust deep learning via adversarially trained smoothed classifiers, arXiv:1906.04584"
    )
    family: ClassVar[str] = "gradient"

    sigma: float = 0.25
    samples: int = 8
    steps: int = 20
    step_size: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and self.sigma > 0 and math.isfinite(self.sigma)):
            raise AttackError(f"smoothadv: sigma must be a positive number, got {self.sigma!r}")
        for key in ("samples", "steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise AttackError(f"smoothadv: {key} must be a positive int, got {value!r}")
        if self.step_size is not None and not self.step_size > 0:
            raise AttackError(f"smoothadv: step_size must be > 0, got {self.step_size!r}")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        assert threat.eps is not None
        self_noised = getattr(victim.model, "smoothing_sigma", None) is not None
        reps, sigma = (1, 0.0) if self_noised else (self.samples, float(self.sigma))
        step = self.step_size or 2.0 * threat.eps / self.steps
        n = len(batch)
        rows = torch.arange(n, device=batch.x.device).repeat(reps)
        x_adv = batch.x.clone()
        for k in range(self.steps):
            noise = rng.normal(batch.index, 1000 + k, (reps,) + tuple(batch.x.shape[1:]), device=batch.x.device, dtype=batch.x.dtype)
            noise = noise.transpose(0, 1).reshape((reps * n,) + tuple(batch.x.shape[1:]))
            x_var = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = victim.forward(x_var.repeat(reps, *([1] * (x_var.dim() - 1))) + sigma * noise, idx=rows)
                logp = torch.log_softmax(logits, dim=1).reshape(reps, n, -1)
                soft = torch.logsumexp(logp, dim=0) - math.log(reps)
                loss = cross_entropy(soft, batch.y, targeted=threat.targeted)
                (grad,) = torch.autograd.grad(loss.sum(), x_var)
            x_adv = threat.project(x_adv + step * threat.lp.steepest(grad), batch.x)
        return x_adv.detach()
