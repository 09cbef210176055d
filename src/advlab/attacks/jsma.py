"""Jacobian-based Saliency Map Attack: saturate the pair of features the saliency map likes most."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks._minimal import adversarial
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["JSMA"]

# Elements of the (rows, D, D) pair-score tensor computed at once: bounds memory (~32 MB per
# temporary) whatever the input size; 784 features give 13 rows per chunk.
_PAIR_CHUNK = 1 << 23
# Features per round of the branch-and-bound pair search (see _best_pairs).
_SHORTLIST = 64


@register
@dataclass(frozen=True)
class JSMA(Attack):
    """Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016, arXiv:1511.07528).

    Each step computes the forward derivatives ``a = d z_t / dx`` (the target logit) and
    ``b = d sum_{j != t} z_j / dx`` (the other logits) and, over all pairs of features
    ``(p, q)`` still in the search domain, picks the one maximising
    ``(a_p + a_q) * |b_p + b_q|`` among pairs with ``a_p + a_q > 0`` and ``b_p + b_q < 0``
    (signs flipped for ``theta < 0``); both features move by ``theta`` times the box width
    (``theta=1``: set to the box maximum) and leave the domain.  It stops on success, when
    ``gamma`` of the features have changed, or when no pair qualifies.  The saliency map is
    built on logits (the JSMA-Z variant named by Carlini & Wagner).

    Targeted as in the paper; the untargeted variant targets, at each step, the most likely
    class other than the true one.  The pair search is vectorised per batch in chunks of
    bounded memory (``O(D^2)`` per sample, ~2.5 MB per row for 784 features).

    Threat model: ``l0``; ``eps=None`` (stop at ``gamma``) or a count of features (the
    tighter of the two).  Cost per step: one forward and two backward passes per sample
    still running; at most ``gamma * D / 2`` steps (or ``steps``).

    Parameters
    ----------
    theta:
        Change applied to a selected feature, as a fraction of the box width (sign =
        direction).
    gamma:
        Largest fraction of the features that may change (14.5% in the paper's MNIST runs).
    steps:
        Largest number of pairs changed (``None``: as many as ``gamma`` allows).

    Examples
    --------
    >>> attack = JSMA(gamma=0.1)
    >>> result = attack(model, x, y, ThreatModel("l0", targeted=True), targets="next")  # doctest: +SKIP
    """

    name: ClassVar[str] = "jsma"
    roles: ClassVar[tuple[Role, ...]] = (Role("playground", 120),)
    norms: ClassVar[tuple[str, ...]] = ("l0",)
    paper: ClassVar[str] = "Papernot et al., The Limitations of Deep Learning in Adversarial Settings, EuroS&P 2016 (arXiv:1511.07528)"
    minimal: ClassVar[bool] = True
    family: ClassVar[str] = "minimal-norm"

    theta: float = 1.0
    gamma: float = 0.145
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise AttackError(f"steps must be >= 1 or None, got {self.steps}")
        if self.theta == 0 or not math.isfinite(self.theta):
            raise AttackError(f"theta must be a non-zero number, got {self.theta}")
        if not 0 < self.gamma <= 1:
            raise AttackError(f"gamma must be in (0, 1], got {self.gamma}")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x = batch.x
        n, d = len(batch), x[0].numel()
        lo, hi = threat.box
        sign = 1.0 if self.theta > 0 else -1.0
        budget = math.floor(self.gamma * d)
        if threat.eps is not None:
            budget = min(budget, int(threat.eps))
        if self.steps is not None:
            budget = min(budget, 2 * self.steps)
        x_adv = x.clone().reshape(n, d)
        # Search domain: features not used yet that can still move in the direction of theta.
        domain = x_adv < hi if sign > 0 else x_adv > lo
        changed = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.arange(n, device=x.device)
        while active.numel():
            xa = x_adv[active].reshape((-1,) + x.shape[1:]).requires_grad_(True)
            with torch.enable_grad():
                logits = victim.forward(xa, active, backward=False)
                if threat.targeted:
                    target = batch.y[active]
                    done = adversarial(logits.detach(), target, True)
                else:
                    target = logits.detach().scatter(1, batch.y[active, None], float("-inf")).argmax(dim=1)
                    done = adversarial(logits.detach(), batch.y[active], False)
                still = ~done & (changed[active] + 2 <= budget) & (domain[active].sum(dim=1) >= 2)
                if not bool(still.any()):
                    break
                z_t = logits.gather(1, target[:, None]).squeeze(1)
                outputs = torch.stack([z_t, logits.sum(dim=1) - z_t], dim=1)[still]
                jac = victim.jacobian(outputs, xa, active[still])[:, still].reshape(2, -1, d)
            active = active[still]
            pairs, ok = _best_pairs(sign * jac[0], sign * jac[1], domain[active])
            active, pairs = active[ok], pairs[ok]
            if active.numel() == 0:
                break
            rows = active[:, None].expand_as(pairs)
            x_adv[rows, pairs] = (x_adv[rows, pairs] + self.theta * (hi - lo)).clamp(lo, hi)
            domain[rows, pairs] = False
            changed[active] += 2
        return x_adv.reshape(x.shape)


def _best_pairs(alpha: Tensor, beta: Tensor, domain: Tensor) -> tuple[Tensor, Tensor]:
    """For each row, the pair ``(p, q)`` (p != q, both in ``domain``) maximising
    ``relu(alpha_p + alpha_q) * relu(-(beta_p + beta_q))``; ``ok`` is False where no pair
    has a positive score.

    Exact, and fast by branch and bound, in three rounds, each only on the rows the previous
    one could not settle:

    1. pairs within the ``k`` features with the largest bound
       ``U_p = relu(alpha_p + max alpha) * relu(-(beta_p + min beta))`` (no pair containing
       ``p`` scores more): settled if the best beats the ``(k+1)``-th bound;
    2. pairs with one feature among the ``k`` largest ``alpha`` or ``k`` smallest ``beta``
       and the other anywhere (``2k x D``);
    3. pairs of the remaining features whose bound
       ``relu(alpha_p + alpha_(k+1)) * relu(-(beta_p + beta_(k+1)))`` (no pair of two
       remaining features scores more) beats round 2's best; at most ``D x D``.
    """
    b, d = alpha.shape
    a = alpha.masked_fill(~domain, float("-inf"))
    neg_b = (-beta).masked_fill(~domain, float("-inf"))
    k = min(d - 1, _SHORTLIST)
    bound = (a + a.amax(dim=1, keepdim=True)).clamp_min(0) * (neg_b + neg_b.amax(dim=1, keepdim=True)).clamp_min(0)
    top = bound.topk(k + 1, dim=1)
    pairs, value = _pair_search(a, beta, top.indices[:, :k], top.indices[:, :k])
    unsure = (value < top.values[:, -1]).nonzero().squeeze(1)
    if unsure.numel():
        a_u, b_u, nb_u = a[unsure], beta[unsure], neg_b[unsure]
        top_a, top_b = a_u.topk(k + 1, dim=1), nb_u.topk(k + 1, dim=1)
        everything = torch.arange(d, device=a.device).expand(unsure.numel(), d)
        first = torch.cat([top_a.indices[:, :k], top_b.indices[:, :k]], dim=1)
        p2, v2 = _pair_search(a_u, b_u, first, everything)
        # Round 3: a better pair has both features outside round 2's and both bounds above v2.
        outside = (a_u + top_a.values[:, -1:]).clamp_min(0) * (nb_u + top_b.values[:, -1:]).clamp_min(0)
        outside.scatter_(1, first, -1.0)
        contenders = (outside > v2[:, None]).sum(dim=1)
        still = (contenders > 1).nonzero().squeeze(1)
        if still.numel():
            pool = outside[still].topk(int(contenders[still].max()), dim=1).indices
            p3, v3 = _pair_search(a_u[still], b_u[still], pool, pool)
            better = v3 > v2[still]
            p2[still[better]], v2[still[better]] = p3[better], v3[better]
        pairs[unsure], value[unsure] = p2, v2
    return pairs, value > 0


def _pair_search(a: Tensor, beta: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Best pair per row with its first feature among ``first`` (rows, m) and its second
    among ``second`` (rows, n), exhaustively, in chunks of bounded memory: pairs and scores."""
    b = a.shape[0]
    m, n = first.shape[1], second.shape[1]
    pairs = torch.zeros(b, 2, dtype=torch.long, device=a.device)
    value = torch.zeros(b, dtype=a.dtype, device=a.device)
    chunk = max(1, _PAIR_CHUNK // (m * n))
    for s in range(0, b, chunk):
        f, g = first[s : s + chunk], second[s : s + chunk]
        a_c, b_c = a[s : s + chunk], beta[s : s + chunk]
        score = (a_c.gather(1, f)[:, :, None] + a_c.gather(1, g)[:, None, :]).clamp_min_(0)
        score.mul_((b_c.gather(1, f)[:, :, None] + b_c.gather(1, g)[:, None, :]).neg_().clamp_min_(0))
        score.masked_fill_(f[:, :, None] == g[:, None, :], 0.0)  # a feature does not pair with itself
        value[s : s + chunk], flat = score.reshape(score.shape[0], -1).max(dim=1)
        pairs[s : s + chunk, 0] = f.gather(1, (flat // n)[:, None]).squeeze(1)
        pairs[s : s + chunk, 1] = g.gather(1, (flat % n)[:, None]).squeeze(1)
    return pairs, value
