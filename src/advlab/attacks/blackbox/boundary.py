"""The Boundary attack: a random walk along the decision boundary towards the input.

Brendel, Rauber, Bethge, "Decision-Based Adversarial Attacks: Reliable Attacks Against
Black-Box Machine Learning Models", ICLR 2018, arXiv:1712.04248.
"""

from __future__ import annotations

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

__all__ = ["Boundary"]


class _Stats:
    """Per-sample ring buffers of recent successes (for the step-size adaptation)."""

    def __init__(self, n: int, size: int, device: torch.device) -> None:
        self.buf = torch.full((n, size), float("nan"), device=device)
        self.pos = torch.zeros(n, dtype=torch.long, device=device)
        self.size = size

    def add(self, rows: Tensor, values: Tensor) -> None:
        self.buf[rows, self.pos[rows] % self.size] = values.float()
        self.pos[rows] += 1

    def full(self, rows: Tensor) -> Tensor:
        return self.pos[rows] >= self.size

    def mean(self, rows: Tensor) -> Tensor:
        return self.buf[rows].nanmean(dim=1)

    def clear(self, rows: Tensor) -> None:
        self.buf[rows] = float("nan")
        self.pos[rows] = 0


@register
@dataclass(frozen=True)
class Boundary(BlackBoxAttack):
    """Boundary attack (decision-based, minimal L2 norm).

    Brendel et al. 2018, arXiv:1712.04248. From an adversarial starting point, each step
    draws a Gaussian direction orthogonal to the line to the input, moves on the sphere
    around the input by ``spherical_step`` (relative), then towards the input by
    ``source_step``, and keeps the candidate if it is still adversarial and closer. Both step
    sizes adapt to the recent success rates (every ``update_stats_every_k`` steps, as in
    Foolbox's implementation); a sample stops when ``source_step`` falls below
    ``source_step_convergence`` or its budget is spent.

    Cost: one query per step, plus one every ``update_stats_every_k`` steps for the
    spherical-candidate statistics, plus the starting point's search.

    Examples
    --------
    >>> res = Boundary(max_queries=5000)(model, x, y, ThreatModel("l2"))  # doctest: +SKIP
    """

    name = "boundary"
    roles: ClassVar[tuple[Role, ...]] = (Role("black-box", 40),)
    norms = ("l2",)
    paper = "Brendel et al. 2018, Decision-Based Adversarial Attacks: Reliable Attacks Against Black-Box Machine Learning Models, arXiv:1712.04248"
    family = "decision-based"
    output = "labels"
    minimal = True
    supports_targeted = False

    max_queries: int = 5000
    spherical_step: float = 0.01
    source_step: float = 0.01
    source_step_convergence: float = 1e-7
    step_adaptation: float = 1.5
    update_stats_every_k: int = 10
    init_tries: int = 60

    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x, y = batch.x, batch.y
        n = len(batch)
        every = torch.arange(n, device=x.device)
        best, found = starting_points(box, x, y, batch.index, rng, threat, tries=self.init_tries)
        sph = torch.full((n,), self.spherical_step, dtype=x.dtype, device=x.device)
        src = torch.full((n,), self.source_step, dtype=x.dtype, device=x.device)
        stats_sph = _Stats(n, 100, x.device)
        stats_step = _Stats(n, 30, x.device)
        view = (-1,) + (1,) * (x.dim() - 1)
        flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
        for step in range(1, self.max_queries + 1):
            check = step % self.update_stats_every_k == 0
            cost = 2 if check else 1
            if threat.eps is not None:
                found_close = threat.distance(best, x) <= threat.eps
            else:
                found_close = torch.zeros(n, dtype=torch.bool, device=x.device)
            active = found & ~found_close & (src >= self.source_step_convergence) & (box.remaining(every).to(x.device) >= cost)
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            xo, cur = x[rows], best[rows]
            direction = xo - cur
            norms = flat(direction).norm(dim=1).clamp_min(1e-12)
            unit = direction / norms.reshape(view)
            # orthogonal Gaussian step on the sphere around the input
            eta = bulk_noise(rng, batch.index[rows], step, tuple(x.shape[1:]), x)
            eta = eta - (flat(eta) * flat(unit)).sum(dim=1).reshape(view) * unit
            eta_norm = flat(eta).norm(dim=1).clamp_min(1e-12)
            eta = eta * (sph[rows] * norms / eta_norm).reshape(view)
            spherical = threat.clip(xo + (eta - direction) / torch.sqrt(sph[rows] ** 2 + 1).reshape(view))
            # then towards the input
            new_dir = xo - spherical
            new_norms = flat(new_dir).norm(dim=1).clamp_min(1e-12)
            length = ((src[rows] * norms + new_norms - norms).clamp_min(0) / new_norms).reshape(view)
            cand = threat.clip(spherical + length * new_dir)
            if check:
                both = decide(box, torch.cat([cand, spherical]), torch.cat([rows, rows]), torch.cat([y[rows], y[rows]]), False)
                is_adv, sph_adv = both[: rows.numel()], both[rows.numel() :]
                stats_sph.add(rows, sph_adv)
            else:
                is_adv = decide(box, cand, rows, y[rows], False)
            stats_step.add(rows, is_adv)
            closer = flat(xo - cand).norm(dim=1) < norms
            take = is_adv & closer
            best[rows[take]] = cand[take]
            if check:
                self._adapt(rows, sph, src, stats_sph, stats_step)
        return torch.where(found.reshape(view), best, x)

    def _adapt(self, rows: Tensor, sph: Tensor, src: Tensor, stats_sph: _Stats, stats_step: _Stats) -> None:
        a = self.step_adaptation
        full = stats_sph.full(rows)
        if bool(full.any()):
            p = stats_sph.mean(rows)
            up, down = full & (p > 0.5), full & (p < 0.2)
            sph[rows[up]] *= a
            src[rows[up]] *= a
            sph[rows[down]] /= a
            src[rows[down]] /= a
            stats_sph.clear(rows[up | down])
        full = stats_step.full(rows)
        if bool(full.any()):
            p = stats_step.mean(rows)
            up, down = full & (p > 0.25), full & (p < 0.1)
            src[rows[up]] *= a
            src[rows[down]] /= a
            stats_step.clear(rows[up | down])
