"""NES: gradients estimated from scores by natural evolution strategies, then PGD.

Ilyas, Engstrom, Athalye, Lin, "Black-box Adversarial Attacks with Limited Queries and
Information", ICML 2018, arXiv:1804.08598.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import Batch
from advlab.attacks.blackbox.base import BlackBoxAttack, bulk_noise, score_loss
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.blackbox import BlackBox
from advlab.losses import is_adversarial
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

__all__ = ["NES", "nes_gradient"]


def nes_gradient(
    box: BlackBox,
    x: Tensor,
    y: Tensor,
    rows: Tensor,
    rng: CounterRNG,
    index: Tensor,
    stream: int,
    *,
    samples: int,
    sigma: float,
    targeted: bool,
    loss: str,
) -> Tensor:
    """NES estimate of the gradient of ``loss`` at each row of ``x`` from ``samples`` queries
    (``samples/2`` antithetic Gaussian pairs ``x +- sigma*u``), charged to samples ``rows``.

    ``E[(L(x+su) - L(x-su)) u] / (2s)`` (Ilyas et al. 2018, Algorithm 1)."""
    b = x.shape[0]
    half = samples // 2
    u = bulk_noise(rng, index, stream, (half,) + tuple(x.shape[1:]), x)
    probes = torch.cat([x[:, None] + sigma * u, x[:, None] - sigma * u], dim=1)  # (B, 2h, ...)
    flat = probes.reshape((b * 2 * half,) + tuple(x.shape[1:]))
    owners = rows.repeat_interleave(2 * half)
    scores = box.scores(flat, owners)
    values = score_loss(scores, y.repeat_interleave(2 * half).to(scores.device), targeted, loss).to(x.dtype).reshape(b, 2 * half)
    diff = (values[:, :half] - values[:, half:]).reshape((b, half) + (1,) * (x.dim() - 1))
    return (diff * u).sum(dim=1) / (2 * half * sigma)


@register
@dataclass(frozen=True)
class NES(BlackBoxAttack):
    """NES gradient estimation + projected gradient ascent (score-based), Linf and L2.

    Ilyas et al. 2018, arXiv:1804.08598. Each step estimates the gradient of ``loss`` with
    ``samples`` antithetic Gaussian queries of width ``sigma``, then takes a PGD step
    (sign step for Linf, normalised step for L2) with momentum, projected onto the ball.

    Cost: ``samples + 1`` queries per step and sample (the estimate, then a check of the new
    point), until adversarial or out of ``max_queries``.

    Parameters
    ----------
    samples: queries per gradient estimate (even; the paper: 50... 100).
    sigma: search width (the paper: 0.001).
    step_size: PGD step; ``None``: ``eps / 10``.
    momentum: averaging of successive estimates (the authors' code: 0.9; 0 disables).
    loss: ``"margin"`` or ``"ce"``, on log-probabilities.

    Examples
    --------
    >>> res = NES(max_queries=5000)(model, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP
    """

    name = "nes"
    roles: ClassVar[tuple[Role, ...]] = (Role("black-box", 30),)
    norms = ("linf", "l2")
    paper = "Ilyas et al. 2018, Black-box Adversarial Attacks with Limited Queries and Information, arXiv:1804.08598"
    family = "score-based"
    output = "scores"

    max_queries: int = 5000
    samples: int = 50
    sigma: float = 0.001
    step_size: float | None = None
    momentum: float = 0.9
    loss: str = "margin"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 2 or self.samples % 2:
            raise ValueError(f"samples must be an even number >= 2 (antithetic pairs), got {self.samples!r}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma!r}")

    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        x = batch.x
        n = len(batch)
        every = torch.arange(n, device=x.device)
        eps = float(threat.eps)  # type: ignore[arg-type]
        step = self.step_size if self.step_size is not None else eps / 10
        x_adv = x.clone()
        grad_avg = torch.zeros_like(x)
        scores = box.scores(x_adv, every)
        adv = is_adversarial(scores, batch.y.to(scores.device), threat.targeted).to(x.device)
        cost = self.samples + 1
        budget = min(self.max_queries, box.budget or self.max_queries)
        for it in range(budget // cost + 1):
            rows = (~adv & (box.remaining(every).to(x.device) >= cost)).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            g = nes_gradient(
                box, x_adv[rows], batch.y[rows], rows, rng, batch.index[rows], it,
                samples=self.samples, sigma=self.sigma, targeted=threat.targeted, loss=self.loss,
            )
            grad_avg[rows] = self.momentum * grad_avg[rows] + (1 - self.momentum) * g
            moved = x_adv[rows] + step * threat.lp.steepest(grad_avg[rows])
            x_adv[rows] = threat.project(moved, x[rows])
            scores = box.scores(x_adv[rows], rows)
            adv[rows] = is_adversarial(scores, batch.y[rows].to(scores.device), threat.targeted).to(x.device)
        return x_adv
