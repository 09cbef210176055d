"""Pieces shared by the minimal-norm attacks (DeepFool, C&W, FMN, DDN, JSMA).

Each of these attacks keeps, per sample, the smallest adversarial point it has seen and stops
working on a sample as soon as nothing more can be gained: when its own schedule ends or,
under a bounded threat model, once that point is inside the ``eps`` ball (the base class only
checks success inside the ball, so a smaller perturbation buys nothing).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advlab.losses import margin
from advlab.norms import LpNorm
from advlab.victim import Victim

__all__ = ["SUCCESS_MARGIN", "BestAdversarial", "adversarial", "cosine", "per_sample", "worst_norm", "DUAL", "feasible", "shrink_towards"]

# A point counts as adversarial inside an attack only when the winning logit leads by this much,
# so that the base class's independent re-check (other batch sizes, other BLAS blocking) agrees.
SUCCESS_MARGIN = 1e-5

# Dual norm used to turn a logit gap into a distance to a linearised decision boundary.
DUAL = {"linf": "l1", "l1": "linf", "l2": "l2"}


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector ``(B,)`` to broadcast against ``like`` ``(B, ...)``."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def cosine(step: int, steps: int, start: float, end: float) -> float:
    """Cosine annealing from ``start`` (step 0) to ``end`` (step ``steps``)."""
    return end + (start - end) * (1 + math.cos(math.pi * step / max(steps, 1))) / 2


def adversarial(logits: Tensor, y: Tensor, targeted: bool, confidence: float = 0.0) -> Tensor:
    """Per-sample success with a safety margin (``confidence`` adds the C&W kappa)."""
    return margin(logits, y, targeted) > max(confidence, SUCCESS_MARGIN)


def worst_norm(x: Tensor, box: tuple[float, float], lp: LpNorm) -> Tensor:
    """Largest perturbation the box allows around each sample, in the norm ``lp``."""
    lo, hi = box
    return lp.measure(torch.maximum(x - lo, hi - x))


def feasible(grad: Tensor, x_adv: Tensor, box: tuple[float, float]) -> Tensor:
    """``grad`` without the components that push coordinates already on the box's faces
    outward: steps along it are not eaten by the clipping, and its dual norm gives a truer
    linearised distance to the boundary."""
    lo, hi = box
    out = ((x_adv <= lo) & (grad < 0)) | ((x_adv >= hi) & (grad > 0))
    return grad.masked_fill(out, 0.0)


class BestAdversarial:
    """Per-sample record of the smallest successful point found so far.

    ``x_best`` starts as the clean input (a failure), ``norm`` as infinity.
    """

    def __init__(self, x: Tensor, eps: float | None) -> None:
        self.x_best = x.clone()
        self.norm = torch.full((x.shape[0],), math.inf, device=x.device, dtype=x.dtype)
        self.eps = eps

    @property
    def found(self) -> Tensor:
        return torch.isfinite(self.norm)

    def update(self, idx: Tensor, x_cand: Tensor, norms: Tensor, is_adv: Tensor) -> None:
        """Keep ``x_cand`` (rows of the batch at positions ``idx``) where it succeeds with a
        smaller norm than the record."""
        better = is_adv & (norms < self.norm[idx])
        if bool(better.any()):
            rows = idx[better]
            self.norm[rows] = norms[better].to(self.norm.dtype)
            self.x_best[rows] = x_cand[better].to(self.x_best.dtype)

    def good_enough(self, idx: Tensor | None = None) -> Tensor:
        """Samples whose record already lies inside the threat model's ball (never when
        unbounded)."""
        norm = self.norm if idx is None else self.norm[idx]
        if self.eps is None:
            return torch.zeros_like(norm, dtype=torch.bool)
        return norm <= self.eps


def shrink_towards(victim: Victim, x: Tensor, x_adv: Tensor, y: Tensor, targeted: bool, steps: int, idx: Tensor | None = None) -> Tensor:
    """Pull each adversarial point back towards its clean input along the segment between
    them, keeping it adversarial: a bisection over ``t`` in ``x + t (x_adv - x)`` with
    ``steps`` forward passes per sample.  Every norm of the perturbation scales by ``t``, and
    the segment stays in the box (both ends are in it).  Rows of ``x_adv`` that are not
    adversarial are returned unchanged.  ``idx``: the rows' positions in the victim's batch
    (for the pass counts).
    """
    if steps <= 0 or len(x) == 0:
        return x_adv
    delta = x_adv - x
    lo = torch.zeros(len(x), device=x.device, dtype=x.dtype)  # known not adversarial (t = 0) ...
    hi = torch.ones_like(lo)  # ... and known adversarial, once checked (t = 1)
    ok = adversarial(victim.logits(x_adv, idx), y, targeted)
    for _ in range(steps):
        mid = (lo + hi) / 2
        adv = adversarial(victim.logits(x + per_sample(mid, delta) * delta, idx), y, targeted) & ok
        hi = torch.where(adv, mid, hi)
        lo = torch.where(adv | ~ok, lo, mid)
    return torch.where(per_sample(ok, delta), x + per_sample(hi, delta) * delta, x_adv)
