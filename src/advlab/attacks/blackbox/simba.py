"""SimBA: simple black-box attack along random orthonormal directions (pixel or DCT basis).

Guo, Gardner, You, Wilson, Weinberger, "Simple Black-box Adversarial Attacks", ICML 2019,
arXiv:1905.07121.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import AttackError, Batch
from advlab.attacks.blackbox.base import BlackBoxAttack
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.blackbox import BlackBox
from advlab.losses import is_adversarial
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

__all__ = ["SimBA", "dct_matrix", "dct_order"]


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (rows are the basis vectors): ``D @ D.T = I``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def dct_order(c: int, h: int, w: int, freq_dims: int, stride: int, keys: Tensor) -> Tensor:
    """SimBA-DCT's coordinate order, per sample: the ``freq_dims`` x ``freq_dims`` lowest
    frequencies first, then bands of width ``stride`` of higher frequencies, each block in
    random order (``keys``, shape (B, c*h*w), uniform numbers that shuffle within blocks).
    Returns flat indices into (c, h, w), shape (B, c*h*w)."""
    rr = torch.arange(h)[:, None].expand(h, w)
    cc = torch.arange(w)[None, :].expand(h, w)
    band = torch.maximum(rr, cc)
    block = torch.where(band < freq_dims, torch.zeros_like(band), 1 + (band - freq_dims) // max(stride, 1))
    block = block[None].expand(c, h, w).reshape(-1).to(keys.device)
    return (block[None, :].to(keys.dtype) + keys).argsort(dim=1)


@register
@dataclass(frozen=True)
class SimBA(BlackBoxAttack):
    """SimBA, pixel or DCT basis (score-based).

    Guo et al. 2019, arXiv:1905.07121. Walks through random orthonormal directions ``q``
    (pixels, or low-frequency-first 2-D DCT basis images) without replacement; for each,
    tries ``x - step_size*q`` then ``x + step_size*q`` and keeps the first that lowers the
    probability of the true class (raises the target's, targeted). Each step is orthogonal
    to the earlier ones, so after ``T`` accepted steps the L2 norm is ``step_size*sqrt(T)``;
    steps are projected into the threat model's ball and box.

    Cost: 1-2 queries per direction and sample, until adversarial, out of directions, or out
    of ``max_queries``.

    Parameters
    ----------
    basis: ``"pixel"`` (SimBA) or ``"dct"`` (SimBA-DCT).
    step_size: length of each step along a unit direction (the paper: 0.2).
    freq_dims, stride: the DCT order: a ``freq_dims`` x ``freq_dims`` low-frequency block
        first, then bands of width ``stride`` (the paper: 28 and 7 on 224-pixel images; the
        defaults here are scaled for 28-pixel MNIST).

    Examples
    --------
    >>> res = SimBA(basis="dct")(model, x, y, ThreatModel("l2", eps=3.0))  # doctest: +SKIP
    """

    name = "simba"
    roles: ClassVar[tuple[Role, ...]] = (Role("black-box", 20), Role("playground", 150))
    norms = ("l2", "linf")
    paper = "Guo et al. 2019, Simple Black-box Adversarial Attacks, arXiv:1905.07121"
    family = "score-based"
    output = "scores"

    max_queries: int = 2000
    basis: str = "dct"
    step_size: float = 0.2
    freq_dims: int = 7
    stride: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.basis not in ("pixel", "dct"):
            raise ValueError(f"basis must be 'pixel' or 'dct', got {self.basis!r}")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size!r}")

    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x = batch.x
        if self.basis == "dct" and x.dim() != 4:
            raise AttackError(f"simba with basis='dct' needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
        n, dims = len(batch), x[0].numel()
        every = torch.arange(n, device=x.device)
        if self.basis == "pixel":
            order = rng.permutation(batch.index, 0, dims, device=x.device)
        else:
            keys = rng.uniform(batch.index, 0, (dims,), device=x.device, dtype=torch.float64)
            order = dct_order(x.shape[1], x.shape[2], x.shape[3], self.freq_dims, self.stride, keys)
            dh, dw = dct_matrix(x.shape[2], x.dtype, x.device), dct_matrix(x.shape[3], x.dtype, x.device)
        x_adv = x.clone()
        probs = box.scores(x_adv, every)
        y = batch.y.to(probs.device)
        p_y = probs.gather(1, y[:, None]).squeeze(1)
        adv = is_adversarial(probs, y, threat.targeted)
        sign = 1.0 if threat.targeted else -1.0  # direction in which p_y should move
        budget = min(self.max_queries, box.budget or self.max_queries)
        for t in range(min(dims, budget)):
            rows = (~adv & (box.remaining(every).to(x.device) > 0)).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            coord = order[rows, t]
            if self.basis == "pixel":
                q = torch.zeros(rows.numel(), dims, dtype=x.dtype, device=x.device)
                q[torch.arange(rows.numel()), coord] = 1.0
                q = q.reshape((-1,) + tuple(x.shape[1:]))
            else:
                hw = x.shape[2] * x.shape[3]
                ch, rest = coord // hw, coord % hw
                fi, fj = rest // x.shape[3], rest % x.shape[3]
                img = dh[fi][:, :, None] * dw[fj][:, None, :]
                q = torch.zeros((rows.numel(),) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
                q[torch.arange(rows.numel()), ch] = img
            undecided = torch.ones(rows.numel(), dtype=torch.bool, device=x.device)
            for direction in (-1.0, 1.0):
                live = undecided & (box.remaining(rows).to(x.device) > 0)
                if not bool(live.any()):
                    break
                r = rows[live]
                cand = threat.project(x_adv[r] + direction * self.step_size * q[live], x[r])
                pr = box.scores(cand, r)
                new_p = pr.gather(1, y[r][:, None]).squeeze(1)
                better = (new_p - p_y[r]) * sign > 0
                keep = r[better]
                x_adv[keep] = cand[better]
                p_y[keep] = new_p[better]
                adv[keep] = is_adversarial(pr[better], y[keep], threat.targeted)
                pos = live.nonzero().squeeze(1)
                undecided[pos[better]] = False
        return x_adv
