"""FGSM, BIM, PGD, MI-FGSM and C&W-Linf: settings of the shared loop in
:mod:`advlab.attacks.iterative`, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from advlab.attacks.base import Attack, Batch
from advlab.attacks.iterative import LoopSettings, check_loop_params, gradient_ascent
from advlab.attacks.registry import register
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["FGSM", "BIM", "PGD", "MIFGSM", "CWLinf"]

_GRADIENT_NORMS = ("linf", "l2", "l1")


def _eps(threat: ThreatModel) -> float:
    assert threat.eps is not None  # check_threat guarantees a budget for fixed-budget attacks
    return float(threat.eps)


@register
@dataclass(frozen=True)
class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow et al. 2014, arXiv:1412.6572).

    One step of length ``eps`` along the steepest direction of the loss: the sign of the
    gradient for Linf, the normalised gradient for L2 (the "fast gradient method"), the
    sparse steepest direction for L1. Cost: one forward and one backward pass per sample.

    >>> atk = FGSM()
    >>> result = atk(model, x, y, ThreatModel("linf", eps=0.1))  # doctest: +SKIP
    """

    name: ClassVar[str] = "fgsm"
    norms: ClassVar[tuple[str, ...]] = _GRADIENT_NORMS
    paper: ClassVar[str] = "Goodfellow et al. 2014, Explaining and harnessing adversarial examples, arXiv:1412.6572"
    family: ClassVar[str] = "gradient"
    starts_at_clean: ClassVar[bool] = True

    loss: str = "ce"

    def __post_init__(self) -> None:
        check_loop_params(self.name, loss=self.loss)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        return gradient_ascent(victim, batch, threat, rng, LoopSettings(steps=1, step_size=_eps(threat), loss=self.loss))


@register
@dataclass(frozen=True)
class BIM(Attack):
    """Basic Iterative Method / I-FGSM (Kurakin et al. 2016, arXiv:1607.02533).

    ``steps`` FGSM steps of ``step_size`` (default ``1.25 * eps / steps``, the paper's
    ``alpha * N`` budget), projected after each step, starting at the clean input.
    Cost: ``steps`` forward and backward passes per sample (fewer with ``early_stop``).

    >>> result = BIM(steps=10)(model, x, y, ThreatModel("linf", eps=0.1))  # doctest: +SKIP
    """

    name: ClassVar[str] = "bim"
    norms: ClassVar[tuple[str, ...]] = _GRADIENT_NORMS
    paper: ClassVar[str] = "Kurakin et al. 2016, Adversarial examples in the physical world, arXiv:1607.02533"
    family: ClassVar[str] = "gradient"
    starts_at_clean: ClassVar[bool] = True

    steps: int = 10
    step_size: float | None = None
    loss: str = "ce"
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_loop_params(self.name, steps=self.steps, step_size=self.step_size, loss=self.loss)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        step = self.step_size or 1.25 * _eps(threat) / self.steps
        s = LoopSettings(steps=self.steps, step_size=step, loss=self.loss, early_stop=self.early_stop)
        return gradient_ascent(victim, batch, threat, rng, s)


@register
@dataclass(frozen=True)
class PGD(Attack):
    """Projected Gradient Descent with random start and restarts (Madry et al. 2017,
    arXiv:1706.06083).

    Each restart starts at a random point of the ball (Linf: uniform over the ball; L1/L2: a
    uniform direction at a distance uniform in ``[0, eps]``, since a volume-uniform point of
    a high-dimensional L2 ball sits on its surface and measurably weakened the attack) and
    takes ``steps`` steepest-ascent
    steps of ``step_size`` (default ``2.5 * eps / steps``, as in the paper), projecting onto
    the ball and box after each. Linf uses the gradient's sign, L2 the normalised gradient,
    L1 the sparse steepest direction of :class:`advlab.norms.L1Norm` (gradient coordinates
    pushing against the box are dropped first). Restarts run only on samples not yet broken.
    Cost: at most ``restarts * steps`` forward and backward passes per sample.

    >>> result = PGD(steps=40, restarts=2)(model, x, y, ThreatModel("l2", eps=2.0))  # doctest: +SKIP
    """

    name: ClassVar[str] = "pgd"
    norms: ClassVar[tuple[str, ...]] = _GRADIENT_NORMS
    paper: ClassVar[str] = "Madry et al. 2017, Towards deep learning models resistant to adversarial attacks, arXiv:1706.06083"
    family: ClassVar[str] = "gradient"

    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    loss: str = "ce"
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_loop_params(self.name, steps=self.steps, step_size=self.step_size, restarts=self.restarts, loss=self.loss)

    def opens_at_clean(self, threat: ThreatModel) -> bool:
        return not self.random_start

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        step = self.step_size or 2.5 * _eps(threat) / self.steps
        s = LoopSettings(
            steps=self.steps,
            step_size=step,
            restarts=self.restarts,
            random_start=self.random_start,
            loss=self.loss,
            early_stop=self.early_stop,
        )
        return gradient_ascent(victim, batch, threat, rng, s)


@register
@dataclass(frozen=True)
class MIFGSM(Attack):
    """Momentum Iterative FGSM (Dong et al. 2018, arXiv:1710.06081).

    BIM whose step follows an accumulated gradient ``g <- momentum * g + grad / ||grad||_1``
    (``momentum`` is the paper's decay factor mu, 1.0 by default; ``step_size`` defaults to
    ``eps / steps``). Designed for transfer to other models. Cost: ``steps`` forward and
    backward passes per sample.

    >>> result = MIFGSM(steps=10, momentum=1.0)(model, x, y, ThreatModel("linf", eps=0.1))  # doctest: +SKIP
    """

    name: ClassVar[str] = "mi-fgsm"
    norms: ClassVar[tuple[str, ...]] = _GRADIENT_NORMS
    paper: ClassVar[str] = "Dong et al. 2018, Boosting adversarial attacks with momentum, arXiv:1710.06081"
    family: ClassVar[str] = "gradient"
    starts_at_clean: ClassVar[bool] = True

    steps: int = 10
    step_size: float | None = None
    momentum: float = 1.0
    loss: str = "ce"
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_loop_params(self.name, steps=self.steps, step_size=self.step_size, momentum=self.momentum, loss=self.loss)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        step = self.step_size or _eps(threat) / self.steps
        s = LoopSettings(steps=self.steps, step_size=step, momentum=self.momentum, loss=self.loss, early_stop=self.early_stop)
        return gradient_ascent(victim, batch, threat, rng, s)


@register
@dataclass(frozen=True)
class CWLinf(PGD):
    """C&W-style Linf attack: PGD on the Carlini-Wagner margin loss ``max_{j!=y} z_j - z_y``
    (Carlini & Wagner 2017, arXiv:1608.04644; used under PGD as in Madry et al. 2017).

    Same parameters and cost as :class:`PGD`, with ``loss="margin"``.

    >>> result = CWLinf(steps=100)(model, x, y, ThreatModel("linf", eps=0.1))  # doctest: +SKIP
    """

    name: ClassVar[str] = "cw-linf"
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    paper: ClassVar[str] = "Carlini & Wagner 2017, Towards evaluating the robustness of neural networks, arXiv:1608.04644"

    steps: int = 100
    loss: str = "margin"
