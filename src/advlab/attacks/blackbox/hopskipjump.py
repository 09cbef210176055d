"""HopSkipJump: a decision-based (label-only) minimal-norm attack, L2 and Linf.

Chen, Jordan, Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack",
IEEE S&P 2020, arXiv:1904.02144.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import Batch
from advlab.attacks.blackbox._decision import decide, starting_points
from advlab.attacks.blackbox.base import BlackBoxAttack, bulk_noise
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.blackbox import BlackBox
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

__all__ = ["HopSkipJump"]


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


@register
@dataclass(frozen=True)
class HopSkipJump(BlackBoxAttack):
    """HopSkipJump (decision-based, minimal norm), L2 and Linf.

    Chen et al. 2020, arXiv:1904.02144. From an adversarial starting point (random noise,
    then a binary search towards the input), each iteration (1) estimates the direction of
    the decision boundary's normal by Monte-Carlo sampling of ``init_num_evals*sqrt(t)``
    label queries around the current boundary point, (2) steps along it with a geometrically
    shrinking step size until the point is adversarial, and (3) binary-searches back to the
    boundary towards the input. Every point it keeps is adversarial; it returns the closest.

    With an unbounded threat model (``eps=None``) it runs until ``max_queries`` per sample;
    with ``eps`` a sample stops as soon as it is within ``eps``.

    Parameters
    ----------
    max_queries: per-sample budget (label queries).
    init_num_evals, max_num_evals: probes for the gradient direction (the paper: 100, 10^4).
    gamma: binary-search tolerance ``theta = gamma / d^(3/2)`` (L2) or ``gamma / d^2`` (Linf).
    init_tries: noise images tried to find a starting point.

    Examples
    --------
    >>> res = HopSkipJump(max_queries=5000)(model, x, y, ThreatModel("l2"))  # doctest: +SKIP
    >>> res.median_norm()                                                      # doctest: +SKIP
    """

    name = "hopskipjump"
    roles: ClassVar[tuple[Role, ...]] = (Role("black-box", 50), Role("playground", 160))
    norms = ("l2", "linf")
    paper = "Chen et al. 2020, HopSkipJumpAttack: A Query-Efficient Decision-Based Attack, arXiv:1904.02144"
    family = "decision-based"
    output = "labels"
    minimal = True
    supports_targeted = False

    max_queries: int = 5000
    init_num_evals: int = 100
    max_num_evals: int = 10_000
    gamma: float = 1.0
    init_tries: int = 60
    max_halvings: int = 30

    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x, y = batch.x, batch.y
        n = len(batch)
        every = torch.arange(n, device=x.device)
        lo, hi = threat.box
        d = x[0].numel()
        l2 = threat.norm == "l2"
        theta = self.gamma / (math.sqrt(d) * d) if l2 else self.gamma / d**2
        eps = threat.eps

        def remaining() -> Tensor:
            return box.remaining(every).to(x.device)

        start, found = starting_points(box, x, y, batch.index, rng, threat, tries=self.init_tries)
        pert, dist_post = start.clone(), torch.zeros(n, dtype=x.dtype, device=x.device)
        rows = found.nonzero().squeeze(1)
        if rows.numel():
            pert[rows], dist_post[rows] = self._binary_search(box, x[rows], start[rows], y[rows], rows, theta, threat, remaining)
        dist = threat.distance(pert, x)
        best, best_dist = pert.clone(), torch.where(found, dist, torch.full_like(dist, math.inf))
        done = ~found
        for t in range(1, self.max_queries + 1):
            if eps is not None:
                done |= best_dist <= eps
            rows = (~done & (remaining() > 0)).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            # (1) direction of the boundary's normal, from label queries.
            if t == 1:
                delta = torch.full((rows.numel(),), 0.1 * (hi - lo), dtype=x.dtype, device=x.device)
            else:
                delta = (math.sqrt(d) * theta if l2 else d * theta) * dist_post[rows]
            num_evals = min(int(self.init_num_evals * math.sqrt(t)), self.max_num_evals)
            reserve = self._search_steps(theta, l2) + 2
            evals = torch.clamp(remaining()[rows] - reserve, max=num_evals)
            enough = evals >= min(10, num_evals)
            done[rows[~enough]] = True
            rows, delta, evals = rows[enough], delta[enough], evals[enough]
            if rows.numel() == 0:
                continue
            grad = torch.zeros_like(x[rows])
            for v in torch.unique(evals).tolist():
                part = (evals == v).nonzero().squeeze(1)
                grad[part] = self._direction(box, pert[rows[part]], rows[part], y[rows[part]], delta[part], int(v), rng, batch.index[rows[part]], t, threat)
            update = grad.sign() if not l2 else grad
            # (2) geometric step-size search: halve until the step lands on the adversarial side.
            step = dist[rows] / math.sqrt(t)
            moved = pert[rows].clone()
            ok = torch.zeros(rows.numel(), dtype=torch.bool, device=x.device)
            for _ in range(self.max_halvings):
                live = (~ok & (remaining()[rows] > 0)).nonzero().squeeze(1)
                if live.numel() == 0:
                    break
                trial = threat.clip(pert[rows[live]] + _view(step[live], x) * update[live])
                hit = decide(box, trial, rows[live], y[rows[live]], False)
                moved[live[hit]] = trial[hit]
                ok[live[hit]] = True
                step[live[~hit]] = step[live[~hit]] / 2
            rows, moved = rows[ok], moved[ok]
            if rows.numel() == 0:
                continue
            # (3) back to the boundary.
            new, new_post = self._binary_search(box, x[rows], moved, y[rows], rows, theta, threat, remaining)
            pert[rows] = new
            dist_post[rows] = new_post
            dist[rows] = threat.distance(new, x[rows])
            better = dist[rows] < best_dist[rows]
            best[rows[better]] = new[better]
            best_dist[rows[better]] = dist[rows][better]
        return torch.where(_view(found, x), best, x)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _search_steps(theta: float, l2: bool) -> int:
        return int(math.ceil(math.log2(1 / theta))) + 1

    def _direction(
        self, box: BlackBox, pert: Tensor, rows: Tensor, y: Tensor, delta: Tensor, num_evals: int,
        rng: CounterRNG, index: Tensor, t: int, threat: ThreatModel,
    ) -> Tensor:
        """Monte-Carlo estimate of the boundary normal at ``pert`` (HSJ's gradient estimate
        with baseline subtraction), unit L2 norm."""
        b = pert.shape[0]
        shape = (num_evals,) + tuple(pert.shape[1:])
        if threat.norm == "l2":
            rv = bulk_noise(rng, index, 1000 + t, shape, pert)
        else:
            rv = 2 * bulk_noise(rng, index, 1000 + t, shape, pert, kind="uniform") - 1
        rv = rv / rv.reshape(b, num_evals, -1).norm(dim=2).clamp_min(1e-12).reshape((b, num_evals) + (1,) * (pert.dim() - 1))
        dv = delta.reshape((b, 1) + (1,) * (pert.dim() - 1))
        probes = threat.clip(pert[:, None] + dv * rv)
        rv = (probes - pert[:, None]) / dv
        flat = probes.reshape((b * num_evals,) + tuple(pert.shape[1:]))
        decisions = decide(box, flat, rows.repeat_interleave(num_evals), y.repeat_interleave(num_evals), False)
        fval = 2 * decisions.to(pert.dtype).reshape(b, num_evals) - 1
        mean = fval.mean(dim=1, keepdim=True)
        centred = torch.where(mean.abs() == 1, torch.ones_like(fval) * mean, fval - mean)
        grad = (centred.reshape((b, num_evals) + (1,) * (pert.dim() - 1)) * rv).mean(dim=1)
        return grad / grad.reshape(b, -1).norm(dim=1).clamp_min(1e-12).reshape((b,) + (1,) * (pert.dim() - 1))

    @staticmethod
    def _project(x: Tensor, pert: Tensor, alpha: Tensor, l2: bool) -> Tensor:
        a = _view(alpha, x)
        if l2:
            return (1 - a) * x + a * pert
        return torch.minimum(torch.maximum(pert, x - a), x + a)

    def _binary_search(
        self, box: BlackBox, x: Tensor, pert: Tensor, y: Tensor, rows: Tensor, theta: float,
        threat: ThreatModel, remaining: Callable[[], Tensor],
    ) -> tuple[Tensor, Tensor]:
        """Binary search between ``x`` and adversarial ``pert`` (rows of samples ``rows``), as
        HSJ's ``binary_search_batch``: blend (L2) or shrink the Linf box (Linf) down to the
        boundary; returns the boundary points and the distances before the search."""
        l2 = threat.norm == "l2"
        dist_before = threat.distance(pert, x)
        if l2:
            high = torch.ones_like(dist_before)
            thresholds = torch.full_like(dist_before, theta)
        else:
            high = dist_before.clone()
            thresholds = torch.clamp(dist_before * theta, max=theta)
        low = torch.zeros_like(dist_before)
        while True:
            pos = (((high - low) / thresholds > 1) & (remaining()[rows] > 0)).nonzero().squeeze(1)
            if pos.numel() == 0:
                break
            mid = (high[pos] + low[pos]) / 2
            ok = decide(box, self._project(x[pos], pert[pos], mid, l2), rows[pos], y[pos], False)
            high[pos] = torch.where(ok, mid, high[pos])
            low[pos] = torch.where(ok, low[pos], mid)
        return self._project(x, pert, high, l2), dist_before
