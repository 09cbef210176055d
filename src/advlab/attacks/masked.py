"""Region-confined attacks: adversarial glasses, stickers and frames.

The perturbation may take any value in the box but only on the pixels of a mask
(Sharif et al. 2016, "Accessorize to a crime", doi:10.1145/2976749.2978392; Eykholt et al.
2018, "Robust physical-world attacks on deep learning models", arXiv:1707.08945).  With
``eot=`` the objective is averaged over random transformations so that the painted region
survives being printed and photographed (Athalye et al. 2018, arXiv:1707.07397).

Its own loop, not :func:`advlab.attacks.iterative.gradient_ascent`: the step is confined to a
mask, the objective is averaged over transformations (EOT), and the point kept is the one
adversarial in most views, none of which the shared loop does (passes go through ``Victim``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advlab.attacks.base import Attack, Batch
from advlab.attacks.masks import describe_mask, make_mask
from advlab.attacks.registry import register
from advlab.attacks.transforms import Transformations, as_transformations
from advlab.losses import get_loss, is_adversarial
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["MaskedAttack"]


@register
@dataclass(frozen=True)
class MaskedAttack(Attack):
    """Projected gradient ascent confined to a mask; unbounded inside it.

    The threat model's ``eps`` may be ``None``: the mask is the constraint and the pixels in it
    may take any value in the box.  With an ``eps`` the perturbation must also lie in that
    ball.  Pixels outside the mask are never changed.

    Parameters
    ----------
    mask:
        Where the attacker may paint: a spec string (``"frame:3"``, ``"rect:0,0,6,28"``,
        ``"glasses"``, ``"stickers"``, unions with ``+``), a ``.npy``/``.png`` file, or an
        array ``(H, W)``, ``(C, H, W)`` or one per input ``(N, C, H, W)``
        (see :mod:`advlab.attacks.masks`).
    steps:
        Gradient steps per restart (each costs one forward and one backward pass, times
        ``eot_samples`` with EOT).
    step_size:
        Length of each step in the threat model's norm (sign steps for ``linf``).
    loss:
        ``"ce"``, ``"margin"`` or ``"dlr"``.
    restarts:
        Restarts from a random painting of the mask, for the samples not yet adversarial.
    eot:
        ``None``, or the transformations (preset name, dict or
        :class:`~advlab.attacks.transforms.Transformations`) to optimise through.
    eot_samples:
        Transformations averaged per step with ``eot``.

    Example
    -------
    >>> attack = get_attack("masked", mask="glasses", steps=200)
    >>> result = attack(model, x, y, ThreatModel("linf", eps=None))
    """

    name = "masked"
    paper = "Sharif et al. 2016 (doi:10.1145/2976749.2978392); Eykholt et al. 2018 (arXiv:1707.08945)"
    family = "physical"
    norms = ("linf", "l2", "l1")

    mask: Any = "frame:3"
    steps: int = 100
    step_size: float = 0.05
    loss: str = "ce"
    restarts: int = 1
    eot: Any = None
    eot_samples: int = 8

    def __post_init__(self) -> None:
        get_loss(self.loss)
        if self.steps < 1 or self.restarts < 1 or self.eot_samples < 1:
            raise ValueError("steps, restarts and eot_samples must be positive")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size!r}")
        as_transformations(self.eot)

    def check_threat(self, threat: ThreatModel) -> None:
        # The mask is the constraint: eps=None (unbounded inside the mask) is allowed.
        super().check_threat(threat if not isinstance(threat, ThreatModel) or threat.eps is not None else threat.replace(eps=1.0))

    def params(self) -> dict[str, Any]:
        p = super().params()
        p["mask"] = describe_mask(self.mask)
        if isinstance(self.eot, Transformations):
            p["eot"] = self.eot.to_dict()
        return p

    def batch_mask(self, batch: Batch) -> Tensor:
        """The mask for this batch, shape of ``batch.x``."""
        m = make_mask(self.mask, tuple(batch.x.shape[1:])).to(batch.x.device, batch.x.dtype)
        if m.dim() == 4:
            if int(batch.index.max()) >= m.shape[0]:
                raise ValueError(f"one mask per input was given ({m.shape[0]}), but input {int(batch.index.max())} was attacked")
            return m[batch.index]
        return m.expand_as(batch.x)

    # ------------------------------------------------------------------ the attack
    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x, y = batch.x, batch.y
        m = self.batch_mask(batch)
        loss_fn = get_loss(self.loss)
        transforms = as_transformations(self.eot)
        lo, hi = threat.box
        best = x.clone()
        best_score = torch.full((len(batch),), -1.0, device=x.device)
        for restart in range(self.restarts):
            todo = (best_score < 1).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            xs = x[todo]
            if restart == 0:
                x_adv = xs.clone()
            else:
                paint = lo + (hi - lo) * rng.uniform(batch.index[todo], 7 + restart, xs.shape[1:], device=xs.device, dtype=xs.dtype)
                x_adv = self._confine(xs + m[todo] * (paint - xs), xs, m[todo], threat)
            active = torch.ones(len(todo), dtype=torch.bool, device=x.device)
            for step in range(self.steps + 1):
                idx = active.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                rows = todo[idx]
                stream = (restart * 100_003 + step) * self.eot_samples
                grad, score = self._grad_and_score(victim, x_adv[idx], y[rows], rows, threat.targeted, loss_fn, transforms, rng, batch.index[rows], stream)
                better = score >= best_score[rows]
                best[rows[better]] = x_adv[idx[better]]
                best_score[rows[better]] = score[better]
                if transforms is None:
                    active[idx[score >= 1]] = False  # early stop: already adversarial
                if step == self.steps:
                    break
                direction = threat.lp.steepest(grad * m[rows])
                moved = x_adv[idx] + self.step_size * direction
                x_adv[idx] = self._confine(moved, xs[idx], m[rows], threat)
        return best

    def _confine(self, x_adv: Tensor, x: Tensor, m: Tensor, threat: ThreatModel) -> Tensor:
        """Keep the change inside the mask, the ball (if any) and the box."""
        return threat.project(x + m * (x_adv - x), x)

    def _grad_and_score(
        self,
        victim: Victim,
        x_adv: Tensor,
        y: Tensor,
        rows: Tensor,
        targeted: bool,
        loss_fn: Any,
        transforms: Transformations | None,
        rng: CounterRNG,
        index: Tensor,
        stream: int,
    ) -> tuple[Tensor, Tensor]:
        """Gradient of the (expected) loss and the share of views that are adversarial."""
        if transforms is None:
            _, grad, logits = victim.value_and_grad(x_adv, lambda z: loss_fn(z, y, targeted=targeted), rows)
            return grad, is_adversarial(logits, y, targeted).float()
        xa = x_adv.detach().requires_grad_(True)
        score = torch.zeros(x_adv.shape[0], device=x_adv.device)
        with torch.enable_grad():
            total = torch.zeros((), device=x_adv.device)
            for j in range(self.eot_samples):
                logits = victim.forward(transforms(xa, rng, index, stream + j), rows)
                total = total + loss_fn(logits, y, targeted=targeted).sum()
                score += is_adversarial(logits.detach(), y, targeted).float()
            (grad,) = torch.autograd.grad(total, xa)
        return grad.detach(), score / self.eot_samples
