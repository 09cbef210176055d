"""Pieces shared by decision-based (label-only) attacks: the decision, a starting point."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.attacks.blackbox.base import bulk_noise
from advlab.blackbox import BlackBox
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

__all__ = ["decide", "starting_points"]


def decide(box: BlackBox, x_q: Tensor, rows: Tensor, y: Tensor, targeted: bool) -> Tensor:
    """Whether each row of ``x_q`` (belonging to samples ``rows``, goal labels ``y``) is
    adversarial, from one label query per row."""
    labels = box.labels(x_q, rows).to(y.device)
    return labels == y if targeted else labels != y


def _noise(rng: CounterRNG, index: Tensor, stream: int, like: Tensor, kind: int, threat: ThreatModel) -> Tensor:
    """Noise images of three kinds in turn: uniform, sparse (salt and pepper at a random
    density) and low-frequency (an upsampled 7x7 uniform grid, images only)."""
    lo, hi = threat.box
    shape = tuple(like.shape[1:])
    u = bulk_noise(rng, index, stream, shape, like, kind="uniform")
    if kind == 1:
        density = rng.uniform(index, stream + 1, (), device=like.device, dtype=like.dtype) * 0.5 + 0.02
        on = u < density.reshape((-1,) + (1,) * len(shape))
        return torch.where(on, hi, lo).to(like.dtype)
    if kind == 2 and like.dim() == 4:
        grid = rng.uniform(index, stream + 2, (shape[0], 7, 7), device=like.device, dtype=like.dtype)
        return lo + (hi - lo) * F.interpolate(grid, size=shape[1:], mode="bilinear", align_corners=False)
    return lo + (hi - lo) * u


def starting_points(
    box: BlackBox,
    x: Tensor,
    y: Tensor,
    index: Tensor,
    rng: CounterRNG,
    threat: ThreatModel,
    *,
    tries: int = 60,
    tolerance: float = 1e-3,
    stream: int = 900_001,
) -> tuple[Tensor, Tensor]:
    """An adversarial point for each sample: random noise images until one is adversarial
    (at most ``tries`` queries), then a binary search on the blend ``(1-a) x + a noise``
    down to ``tolerance`` (the initialisation of HopSkipJump and of the Boundary attack).

    Returns ``(x_start, found)``; rows without a starting point keep ``x``."""
    n = x.shape[0]
    every = torch.arange(n, device=x.device)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    noise = x.clone()
    for k in range(tries):
        rows = (~found & (box.remaining(every).to(x.device) > 0)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        cand = _noise(rng, index[rows], stream + 8 * k, x[rows], k % 3, threat)
        ok = decide(box, cand, rows, y[rows], threat.targeted)
        noise[rows[ok]] = cand[ok]
        found[rows[ok]] = True
    low = torch.zeros(n, dtype=x.dtype, device=x.device)
    high = torch.ones(n, dtype=x.dtype, device=x.device)
    view = (-1,) + (1,) * (x.dim() - 1)
    while True:
        rows = (found & (high - low > tolerance) & (box.remaining(every).to(x.device) > 0)).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        mid = (low[rows] + high[rows]) / 2
        blend = (1 - mid.reshape(view)) * x[rows] + mid.reshape(view) * noise[rows]
        ok = decide(box, blend, rows, y[rows], threat.targeted)
        high[rows] = torch.where(ok, mid, high[rows])
        low[rows] = torch.where(ok, low[rows], mid)
    start = (1 - high.reshape(view)) * x + high.reshape(view) * noise
    return torch.where(found.reshape(view), start, x), found
