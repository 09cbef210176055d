"""Adversarial training: train on the attacks the model will face.

- ``pgd``: Madry et al. 2018, "Towards deep learning models resistant to adversarial
  attacks", arXiv:1706.06083: every batch is replaced by its PGD adversarial examples
  (random start, ``steps`` steps).
- ``fgsm``: Wong et al. 2020, "Fast is better than free", arXiv:2001.03994: one FGSM step of
  size 1.25 eps from a uniformly random start (the random start is what keeps it from
  catastrophic overfitting).
- ``trades``: Zhang et al. 2019, "Theoretically principled trade-off between robustness and
  accuracy", arXiv:1901.08573: loss ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'``
  maximising the KL term.

Training-time attacks are a short loop over the threat model's geometry (random start,
steepest step, projection) run on whole batches, without the per-sample bookkeeping of
:class:`advlab.attacks.base.Attack` (training needs every sample perturbed, every step).
Cost: about ``steps + 1`` times standard training (``steps + 2`` for TRADES).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.losses import get_loss
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["AdversarialTraining", "adversarial_train", "perturb", "METHODS"]

METHODS = ("pgd", "fgsm", "trades")


def perturb(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    loss: str | Callable[[Tensor, Tensor], Tensor] = "ce",
    random_start: bool = True,
    rng: CounterRNG | None = None,
    index: Tensor | None = None,
    stream: int = 0,
    start: Tensor | None = None,
    victim: Victim | None = None,
) -> Tensor:
    """Projected steepest ascent on ``loss(model(x'), y)`` inside the threat model's ball.

    ``loss`` is a name from :mod:`advlab.losses` (maximised) or a callable ``(logits, y)``
    returning per-sample values to maximise.  ``start`` overrides the starting point.  The model is put in evaluation mode while it is
    attacked and restored afterwards; parameter gradients are not touched.  Passes go
    through a :class:`~advlab.victim.Victim` (``victim=``, for ``x``'s rows, to read the
    counts: ``steps`` forward and backward passes per row).

    Not :func:`advlab.attacks.iterative.gradient_ascent`: training needs the final iterate of
    every sample (not its first adversarial point, nor a verification pass), and TRADES
    maximises a callable loss against the clean output.
    """
    if threat.eps is None:
        raise ValueError("adversarial training needs a bounded threat model (eps)")
    fn = (lambda z, t: get_loss(loss)(z, t)) if isinstance(loss, str) else loss
    lp = threat.lp
    idx = torch.arange(x.shape[0], device=x.device) if index is None else index
    if start is not None:
        x_adv = threat.project(start, x)
    else:
        x_adv = threat.random_start(x, rng or CounterRNG(0), idx, stream) if random_start else x.clone()
    was = model.training
    model.eval()
    counter = victim if victim is not None else Victim(model, x.shape[0], x.device)
    try:
        for _ in range(steps):
            _, grad, _ = counter.value_and_grad(x_adv, lambda z: fn(z, y))
            x_adv = threat.project(x_adv.detach() + step_size * lp.steepest(grad), x)
    finally:
        model.train(was)
    return x_adv.detach()


@dataclass(frozen=True)
class AdversarialTraining:
    """Settings of an adversarial training run.

    Parameters
    ----------
    method:
        ``"pgd"`` (Madry et al. 2018), ``"fgsm"`` (Wong et al. 2020) or ``"trades"`` (Zhang
        et al. 2019).
    eps, norm:
        The threat model trained against.
    steps:
        Attack steps per batch (``fgsm`` always uses 1).
    step_size:
        Attack step; default ``2.5 * eps / steps`` (pgd, trades) or ``1.25 * eps`` (fgsm).
    loss:
        Loss the pgd attack maximises (``ce``; TRADES maximises its KL term).
    beta:
        TRADES' weight of the robustness term.
    warmup:
        Epochs over which eps grows linearly from 0 (helps small models at large eps).
    seed:
        Seed of the random starts.

    Examples
    --------
    >>> at = AdversarialTraining("pgd", eps=0.3, steps=10)                     # doctest: +SKIP
    >>> history = adversarial_train(model, x, y, at, TrainConfig(epochs=20))    # doctest: +SKIP
    """

    method: str = "pgd"
    eps: float = 0.3
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    loss: str = "ce"
    beta: float = 6.0
    warmup: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown adversarial training method {self.method!r}; expected one of {', '.join(METHODS)}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 epochs, got {self.warmup!r}")
        get_loss(self.loss)

    @property
    def attack_steps(self) -> int:
        return 1 if self.method == "fgsm" else self.steps

    def threat(self, fraction: float = 1.0) -> ThreatModel:
        return ThreatModel(self.norm, eps=self.eps * fraction)

    def step_for(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size * eps / self.eps
        return 1.25 * eps if self.method == "fgsm" else 2.5 * eps / self.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def adversarial_train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: AdversarialTraining,
    config: Any = None,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` in place with ``settings`` through :func:`advlab.models.train_model`
    (pgd and fgsm through its batch ``transform`` hook, TRADES through its ``objective``).
    Returns the training history."""
    from advlab.models.training import TrainConfig, train_model

    cfg = config or TrainConfig()
    steps_per_epoch = max(1, (x.shape[0] + cfg.batch_size - 1) // cfg.batch_size)
    rng = CounterRNG(settings.seed)

    def fraction(step: int) -> float:
        if settings.warmup <= 0:
            return 1.0
        return min(1.0, (step + 1) / (settings.warmup * steps_per_epoch))

    def attack(model: nn.Module, xb: Tensor, yb: Tensor, step: int, loss: Any, start: Tensor | None = None) -> Tensor:
        f = fraction(step)
        index = step * cfg.batch_size + torch.arange(xb.shape[0], device=xb.device)
        return perturb(
            model, xb, yb, settings.threat(f), steps=settings.attack_steps, step_size=settings.step_for(settings.eps * f),
            loss=loss, rng=rng, index=index, start=start,
        )

    desc = f"{settings.method} adversarial training (eps {settings.eps:g})"
    if settings.method in ("pgd", "fgsm"):
        return train_model(
            model, x, y, cfg, progress=progress, description=desc,
            transform=lambda m, xb, yb, step: (attack(m, xb, yb, step, settings.loss), yb),
        )

    counter = {"step": 0}

    def trades_objective(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        step = counter["step"]
        counter["step"] += 1
        with torch.no_grad():
            m.eval()
            p_clean = F.softmax(m(xb), dim=1)

        def kl(logits: Tensor, _: Tensor) -> Tensor:
            return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="none").sum(dim=1)

        # TRADES starts from x + 0.001 N(0, 1) rather than a uniform point of the ball
        noise = rng.normal(step * cfg.batch_size + torch.arange(len(xb)), 7, xb.shape[1:], device=xb.device)
        x_adv = attack(m, xb, yb, step, kl, start=xb + 0.001 * noise)
        m.train()
        logits = m(xb)
        robust = F.kl_div(F.log_softmax(m(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, yb) + settings.beta * robust

    return train_model(model, x, y, cfg, progress=progress, description=desc, objective=trades_objective)
