"""Square attack: random search over square-shaped updates (score-based, Linf and L2).

Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020, arXiv:1912.00049.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import AttackError, Batch
from advlab.attacks.blackbox.base import BlackBoxAttack, score_loss
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.blackbox import BlackBox
from advlab.losses import is_adversarial
from advlab.rng import CounterRNG, uniform_to_int
from advlab.threat import ThreatModel

__all__ = ["Square", "p_schedule"]


def p_schedule(p_init: float, it: int, max_queries: int) -> float:
    """The paper's piecewise-constant schedule of ``p`` (the fraction of pixels a square
    covers), halved at fixed fractions of the query budget (defined for 10,000 queries and
    rescaled to ``max_queries``)."""
    i = int(it / max_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256), (10000, 512)):
        if i <= bound:
            return p_init / div
    return p_init / 512


_SIGN_DRAWS = 8  # redraws of a square's signs that would not change the image


def _window_index(r0: Tensor, c0: Tensor, s: int, w: int) -> Tensor:
    """Flat pixel indices (B, s*s) of the s x s windows with top-left corners (r0, c0)."""
    ar = torch.arange(s, device=r0.device)
    rows = (r0[:, None] + ar[None, :])[:, :, None]
    cols = (c0[:, None] + ar[None, :])[:, None, :]
    return (rows * w + cols).reshape(r0.shape[0], s * s)


def _gather(t: Tensor, flat_idx: Tensor, s: int) -> Tensor:
    b, c = t.shape[:2]
    idx = flat_idx[:, None, :].expand(b, c, s * s)
    return t.reshape(b, c, -1).gather(2, idx).reshape(b, c, s, s)


def _scatter(t: Tensor, flat_idx: Tensor, values: Tensor) -> Tensor:
    b, c = t.shape[:2]
    idx = flat_idx[:, None, :].expand(b, c, flat_idx.shape[1])
    return t.reshape(b, c, -1).scatter(2, idx, values.reshape(b, c, -1)).reshape(t.shape)


def _bump(h: int, w: int) -> Tensor:
    """Square's pseudo-Gaussian rectangle: nested squares weighted 1/(k+1)^2, unit norm."""
    delta = torch.zeros(h, w, dtype=torch.float64)
    ch, cw = h // 2, w // 2
    for k in range(max(ch, cw) + 1):
        delta[max(ch - k, 0) : min(ch - k + 2 * k + 1, h), max(cw - k, 0) : min(cw - k + 2 * k + 1, w)] += 1.0 / (k + 1) ** 2
    return delta / delta.norm()


def _meta_bump(s: int) -> Tensor:
    """Two opposite bumps stacked vertically (the paper's L2 update shape), unit norm."""
    top = _bump(s // 2, s) if s // 2 > 0 else torch.zeros(0, s, dtype=torch.float64)
    delta = torch.cat([top, -_bump(s - s // 2, s)])
    return delta / delta.norm()


@register
@dataclass(frozen=True)
class Square(BlackBoxAttack):
    """Square attack (score-based random search), Linf and L2.

    Andriushchenko et al. 2020, arXiv:1912.00049. Each step proposes one square-shaped
    update at a random position whose side follows the paper's schedule of ``p`` (the
    fraction of pixels changed, from ``p_init``, halved at fixed fractions of the budget),
    and keeps it if the loss improves. Linf: the square is set to ``+-eps`` per channel
    (vertical-stripe initialisation); L2: the paper's pair of opposite pseudo-Gaussian
    bumps, with the perturbation's norm kept at ``eps`` (grid-of-bumps initialisation).

    Cost: one query per step and sample, until the sample is adversarial or its
    ``max_queries`` budget is spent. Needs image inputs ``(N, C, H, W)``.

    Parameters
    ----------
    max_queries: per-sample query budget (the schedule of ``p`` is scaled to it).
    p_init: initial fraction of pixels per square (the paper: 0.05 Linf / 0.1 L2 on
        ImageNet, 0.3-0.8 on MNIST; 0.8 here, the value used for MNIST).
    loss: ``"margin"`` (the paper's untargeted loss) or ``"ce"`` (its targeted loss),
        computed on log-probabilities.

    Examples
    --------
    >>> res = Square(max_queries=1000)(model, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP
    >>> res.summary()["median_forwards_successful"]                               # doctest: +SKIP
    """

    name = "square"
    # in the cascade: 500 queries on the samples the white-box members left near the boundary
    # (on a few samples a query costs a whole Python iteration: AutoAttack's 5,000 on the two
    # samples of the standard CNN within 2% of the boundary took longer than APGD-CE on 100)
    roles: ClassVar[tuple[Role, ...]] = (
        Role("cascade", 40, {"max_queries": 500}, focus="uncertain"),
        Role("black-box", 10),
        Role("playground", 140),
    )
    norms = ("linf", "l2")
    paper = "Andriushchenko et al. 2020, Square Attack: a query-efficient black-box adversarial attack via random search, arXiv:1912.00049"
    family = "score-based"
    output = "scores"

    max_queries: int = 5000
    p_init: float = 0.8
    loss: str = "margin"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init!r}")

    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x = batch.x
        if x.dim() != 4:
            raise AttackError(f"square needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[2:]) < 2:
            raise AttackError("square needs images at least 2 pixels on a side")
        eps = float(threat.eps)  # type: ignore[arg-type]
        if threat.norm == "linf":
            x_best = threat.clip(x + eps * self._signs(rng, batch.index, 0, (x.shape[1], 1, x.shape[3]), x))
        else:
            x_best = threat.clip(x + self._l2_init(rng, batch.index, x, eps))
        loss, adv = self._evaluate(box, x_best, batch, threat, torch.arange(len(batch), device=x.device))
        budget = min(self.max_queries, box.budget or self.max_queries)
        for it in range(1, budget):
            active = ~adv & (box.remaining(torch.arange(len(batch))).to(x.device) > 0)
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            p = p_schedule(self.p_init, it - 1, budget)
            if threat.norm == "linf":
                cand = self._linf_step(rng, batch.index[rows], it, x[rows], x_best[rows], eps, p, threat)
            else:
                cand = self._l2_step(rng, batch.index[rows], it, x[rows], x_best[rows], eps, p, threat)
            new_loss, new_adv = self._evaluate(box, cand, batch, threat, rows)
            better = new_loss > loss[rows]
            keep = rows[better]
            x_best[keep] = cand[better]
            loss[keep] = new_loss[better]
            adv[keep] = new_adv[better]
        return x_best

    # ------------------------------------------------------------------ helpers
    def _evaluate(self, box: BlackBox, x_q: Tensor, batch: Batch, threat: ThreatModel, rows: Tensor) -> tuple[Tensor, Tensor]:
        scores = box.scores(x_q, rows)
        y = batch.y[rows].to(scores.device)
        return score_loss(scores, y, threat.targeted, self.loss), is_adversarial(scores, y, threat.targeted)

    @staticmethod
    def _signs(rng: CounterRNG, index: Tensor, stream: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        u = rng.uniform(index, stream, shape, device=like.device, dtype=like.dtype)
        return torch.where(u < 0.5, -1.0, 1.0).to(like.dtype)

    def _linf_step(
        self, rng: CounterRNG, index: Tensor, it: int, x: Tensor, x_best: Tensor, eps: float, p: float, threat: ThreatModel
    ) -> Tensor:
        b, c, h, w = x.shape
        s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1, w - 1)
        base = 16 * it
        # one draw per step (the hash costs more than the arithmetic on a few samples): the
        # square's corner and its signs (with the redraws)
        u = rng.uniform(index, base + 1, (2 + _SIGN_DRAWS * c,), device=x.device, dtype=torch.float64)
        flat = _window_index(uniform_to_int(u[:, 0], h - s + 1), uniform_to_int(u[:, 1], w - s + 1), s, w)
        sign_draws = torch.where(u[:, 2:] < 0.5, -1.0, 1.0).to(x.dtype).reshape(b, _SIGN_DRAWS, c, 1, 1)
        delta = x_best - x
        cand = x_best
        todo = torch.ones(b, dtype=torch.bool, device=x.device)
        # A new sign per channel over the square; redraw if it would not change the image.
        for attempt in range(_SIGN_DRAWS):
            signs = sign_draws[:, attempt].expand(b, c, s, s)
            trial = threat.clip(x + _scatter(delta, flat, eps * signs))
            cand = torch.where(todo[:, None, None, None], trial, cand)
            changed = (cand - x_best).abs().reshape(b, -1).amax(dim=1) > 1e-7
            todo = todo & ~changed
            if not bool(todo.any()):
                break
        return cand

    def _l2_init(self, rng: CounterRNG, index: Tensor, x: Tensor, eps: float) -> Tensor:
        b, c, h, w = x.shape
        s = max(min(h, w) // 5, 1)
        pattern = _meta_bump(s).to(x.dtype).to(x.device)
        delta = torch.zeros_like(x)
        top = (h - 5 * s) // 2 if h >= 5 * s else 0
        left = (w - 5 * s) // 2 if w >= 5 * s else 0
        cell = 0
        for r in range(top, h - s + 1, s):
            for col in range(left, w - s + 1, s):
                flip = rng.uniform(index, 10_000 + 2 * cell, (), device=x.device) < 0.5
                pat = torch.where(flip[:, None, None], pattern.t()[None], pattern[None])
                signs = self._signs(rng, index, 10_001 + 2 * cell, (c, 1, 1), x)
                delta[:, :, r : r + s, col : col + s] += pat[:, None] * signs
                cell += 1
        norm = delta.reshape(b, -1).norm(dim=1).clamp_min(1e-12)
        return delta / norm[:, None, None, None] * eps

    def _l2_step(
        self, rng: CounterRNG, index: Tensor, it: int, x: Tensor, x_best: Tensor, eps: float, p: float, threat: ThreatModel
    ) -> Tensor:
        b, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        if s % 2 == 0:
            s += 1
        s = min(s, min(h, w) - 1 if (min(h, w) - 1) % 2 else min(h, w) - 2)
        s = max(s, 1)
        base = 16 * it
        # one draw per step: two squares' corners, the pattern's orientation and its signs
        u = rng.uniform(index, base + 1, (5 + c,), device=x.device, dtype=torch.float64)
        flat1 = _window_index(uniform_to_int(u[:, 0], h - s + 1), uniform_to_int(u[:, 1], w - s + 1), s, w)
        flat2 = _window_index(uniform_to_int(u[:, 2], h - s + 1), uniform_to_int(u[:, 3], w - s + 1), s, w)
        delta = x_best - x
        mask1 = _scatter(torch.zeros_like(x), flat1, torch.ones(b, c, s, s, dtype=x.dtype, device=x.device))
        mask2 = _scatter(torch.zeros_like(x), flat2, torch.ones(b, c, s, s, dtype=x.dtype, device=x.device))
        norm_window1 = (delta * mask1).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        norm_image = delta.reshape(b, -1).norm(dim=1)[:, None, None, None]
        norm_windows = (delta * torch.maximum(mask1, mask2)).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        pattern = _meta_bump(s).to(x.dtype).to(x.device)
        flip = u[:, 4] < 0.5
        pat = torch.where(flip[:, None, None], pattern.t()[None], pattern[None])[:, None]
        new = pat * torch.where(u[:, 5:] < 0.5, -1.0, 1.0).to(x.dtype).reshape(b, c, 1, 1)
        new = new + _gather(delta, flat1, s) / (1e-10 + norm_window1)
        room = ((eps**2 - norm_image**2).clamp_min(0) / c + norm_windows**2).sqrt()
        new = new / new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * room
        delta = delta * (1 - mask2)
        delta = _scatter(delta, flat1, new)
        norm = delta.reshape(b, -1).norm(dim=1).clamp_min(1e-12)
        return threat.clip(x + delta / norm[:, None, None, None] * eps)
