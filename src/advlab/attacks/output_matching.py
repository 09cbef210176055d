"""The seed report's attacks (sections 5.1 and 5.2): gradient descent on the input so that the
network's softmax output matches a chosen one-hot vector.

The idea comes from Daniel Geng and Rishi Veerapaneni's blog post "Tricking Neural Networks:
Create your own Adversarial Examples" (ML@Berkeley, 2018), which the seed report reproduces on
a 784-20-10 MNIST network: treat the image as the only learnable parameter, freeze the weights,
and minimise

    C(x) = 1/2 ||y_goal - softmax(f(x))||^2                      (report section 5.1)
    C(x) = 1/2 ||y_goal - softmax(f(x))||^2 + lam ||x - x_0||^2   (report section 5.2)

The first, started from noise, produces "fooling images" that the network assigns to the goal
class with high confidence while looking like nothing to a human (the idea of Nguyen et al.
2015, "Deep neural networks are easily fooled", arXiv:1412.1897).  The second, started from a
real image ``x_0``, keeps the result close to it: a 2 that the network calls 5.  It is a
fixed-trade-off relative of Carlini & Wagner's attack (arXiv:1608.04644), with the squared
error on probabilities instead of a logit margin.

The optimiser
-------------
The report used plain gradient descent with a fixed step size (``optimizer="gd"``).  Its
weakness is softmax saturation: when the network is confident in another class, the goal
probability ``p_g`` is tiny and the gradient of the squared error is proportional to it, so
plain descent crawls.  On the seed MLP, plain descent from noise leaves 2-3 goal classes
unreached after 1,000 steps with the goal probability stuck near 1e-7; Adam (Kingma & Ba,
arXiv:1412.6980), which rescales each pixel's step by its gradient history, reaches every
goal class.  So ``optimizer="adam"`` with ``step_size=0.01`` is the default for both attacks;
the cost being minimised is exactly the report's.

Noise start
-----------
MNIST digits are mostly black.  Uniform noise over the whole box drives every sigmoid hidden
unit of the seed MLP into saturation (their gradients vanish), and some goal classes are then
never reached.  The noise start is therefore uniform in ``[low, low + noise * (high - low)]``
(``noise=0.1`` by default: a dark, speckled image); samples that miss their goal get up
to ``restarts`` fresh starts.

Stopping
--------
Each sample stops on its own once its cost has not decreased by more than ``tol`` for
``patience`` consecutive steps, or after ``steps`` steps.  The point returned is the iterate
with the lowest cost seen (a faithful minimiser of the report's objective), and every forward
and backward pass is counted through the :class:`~advlab.victim.Victim`.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import Attack, AttackError, Batch, model_device
from advlab.attacks.registry import register
from advlab.model_check import model_dtype, model_logits
from advlab.norms import NORM_NAMES, get_norm
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError
from advlab.victim import Victim, frozen, run_model

__all__ = ["OutputMatching", "OutputMatchingNoise", "fooling_images", "output_distance"]

OPTIMIZERS = ("adam", "gd")
PAPER = (
    "Geng & Veerapaneni 2018, 'Tricking Neural Networks: Create your own Adversarial Examples' "
    "(blog post, ML@Berkeley); seed report sections 5.1-5.2"
)


def output_distance(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample ``1/2 ||onehot(y) - softmax(logits)||^2`` (between 0 and 1)."""
    p = torch.softmax(logits, dim=1)
    return 0.5 * (F.one_hot(y, logits.shape[1]).to(p.dtype) - p).pow(2).sum(dim=1)


def _signed_distance(logits: Tensor, y: Tensor, sign: float) -> Tensor:
    return sign * output_distance(logits, y)


@dataclass(frozen=True)
class _Descent(Attack):
    """Shared loop: per-sample gradient descent on the input with convergence-based stopping."""

    family: ClassVar[str] = "report"
    minimal: ClassVar[bool] = True
    paper: ClassVar[str] = PAPER

    steps: int = 2000
    step_size: float = 0.01
    optimizer: str = "adam"
    tol: float = 1e-6
    patience: int = 200

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_int("patience", self.patience, 1)
        _check_positive("step_size", self.step_size)
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def _descend(
        self,
        victim: Victim,
        batch: Batch,
        threat: ThreatModel,
        start: Tensor,
        rows: Tensor,
        lam: float,
        sign: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Minimise ``sign * output_distance(f(x), batch.y) + lam * ||x - batch.x||^2`` from
        ``start`` for the batch positions ``rows``.  Returns, per row, the iterate with the
        lowest cost, that cost and the model's prediction there.

        The optimiser state is kept only for the rows still running (compacted whenever some
        stop), so late steps cost what the few slow samples need."""
        n = len(rows)
        out_x, out_cost = start.clone(), torch.full((n,), math.inf, device=start.device, dtype=start.dtype)
        out_pred = torch.zeros(n, dtype=torch.long, device=start.device)
        pos = torch.arange(n, device=start.device)  # positions (in rows) of the running samples
        x, x0, goal = start.clone(), batch.x[rows], batch.y[rows]
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        best_x, best_cost, best_pred = x.clone(), out_cost.clone(), out_pred.clone()
        anchor, stale = out_cost.clone(), torch.zeros(n, dtype=torch.long, device=x.device)
        shape = (-1,) + (1,) * (x.dim() - 1)
        for t in range(1, self.steps + 1):
            loss, grad, logits = victim.value_and_grad(x, partial(_signed_distance, y=goal, sign=sign), rows[pos])
            diff = x - x0
            cost = loss + lam * diff.flatten(1).pow(2).sum(dim=1)
            better = cost < best_cost
            best_cost = torch.where(better, cost, best_cost)
            best_x = torch.where(better.view(shape), x, best_x)
            best_pred = torch.where(better, logits.argmax(dim=1), best_pred)
            progressed = cost < anchor - self.tol
            anchor = torch.where(progressed, cost, anchor)
            stale = torch.where(progressed, 0, stale + 1)
            grad = grad + 2.0 * lam * diff
            if self.optimizer == "adam":
                m = 0.9 * m + 0.1 * grad
                v = 0.999 * v + 0.001 * grad * grad
                step = (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
            else:
                step = grad
            x = threat.project(x - self.step_size * step, x0)
            done = stale >= self.patience
            if t == self.steps:
                done = torch.ones_like(done)
            if bool(done.any()):
                finished = pos[done]
                out_x[finished], out_cost[finished], out_pred[finished] = best_x[done], best_cost[done], best_pred[done]
                keep = ~done
                pos, x, x0, goal, m, v = pos[keep], x[keep], x0[keep], goal[keep], m[keep], v[keep]
                best_x, best_cost, best_pred = best_x[keep], best_cost[keep], best_pred[keep]
                anchor, stale = anchor[keep], stale[keep]
                if pos.numel() == 0:
                    break
        return out_x, out_cost, out_pred


@register
@dataclass(frozen=True)
class OutputMatchingNoise(_Descent):
    """Fooling images from noise (seed report section 5.1).

    Starting from seeded noise, gradient descent on the input minimises
    ``1/2 ||y_goal - softmax(f(x))||^2`` with the weights frozen, where ``y_goal`` is the
    one-hot target class.  The result is an image the network assigns to the goal class
    though it resembles nothing; the original input ``x`` is used only for its shape and to
    measure distances (and an input the model already assigns to its target is left as is).
    Idea: Geng & Veerapaneni 2018 (blog post "Tricking Neural Networks"); fooling images:
    Nguyen et al. 2015, arXiv:1412.1897.

    Threat model: targeted only, unbounded (``eps=None``), any norm (used for reporting).
    Cost: at most ``restarts * steps`` forward and backward passes per sample; restarts run
    only on samples whose goal was not reached.

    Parameters
    ----------
    steps, step_size, optimizer, tol, patience:
        Descent settings (see the module docstring for why Adam is the default).
    noise:
        The start is uniform in ``[low, low + noise * (high - low)]`` of the box.
    restarts:
        Fresh noise starts for samples whose goal class was not reached.

    Examples
    --------
    >>> atk = OutputMatchingNoise(seed=0)
    >>> res = atk(model, x, y, ThreatModel("l2", targeted=True), targets="next")  # doctest: +SKIP
    """

    name: ClassVar[str] = "output-matching-noise"
    supports_untargeted: ClassVar[bool] = False

    noise: float = 0.1
    restarts: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("restarts", self.restarts, 1)
        if not (isinstance(self.noise, (int, float)) and 0.0 < self.noise <= 1.0):
            raise ValueError(f"noise must lie in (0, 1], got {self.noise!r}")

    def check_threat(self, threat: ThreatModel) -> None:
        super().check_threat(threat)
        if threat.eps is not None:
            raise AttackError(
                f"attack {self.name!r} starts from noise, not from x: use an unbounded threat model (eps=None)"
            )

    def start(self, index: Tensor, shape: tuple[int, ...], box: tuple[float, float], restart: int = 0,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """The seeded noise image of sample ``index`` for restart ``restart``."""
        lo, hi = box
        u = CounterRNG(self.seed).uniform(index, 7919 + restart, shape, device=device, dtype=dtype)
        return lo + self.noise * (hi - lo) * u

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        n = len(batch)
        out = batch.x.clone()
        best = torch.full((n,), math.inf, device=batch.x.device, dtype=batch.x.dtype)
        reached = torch.zeros(n, dtype=torch.bool, device=batch.x.device)
        for r in range(self.restarts):
            rows = (~reached).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            start = self.start(batch.index[rows], tuple(batch.x.shape[1:]), threat.box, r, batch.x.device, batch.x.dtype)
            x, cost, pred = self._descend(victim, batch, threat, start, rows, 0.0, 1.0)
            ok = pred == batch.y[rows]
            take = (ok & ~reached[rows]) | ((ok == reached[rows]) & (cost < best[rows]))
            out[rows[take]], best[rows[take]] = x[take], cost[take]
            reached[rows[take]] = ok[take]
        return out


@register
@dataclass(frozen=True)
class OutputMatching(_Descent):
    """Output matching with a prior (seed report section 5.2): a real image that the network
    assigns to another class.

    Targeted: minimise ``1/2 ||y_goal - softmax(f(x))||^2 + lam ||x - x_0||^2`` from ``x_0``,
    the original image, so the result keeps looking like it (a 2 the network calls 5).
    Untargeted: minimise ``-1/2 ||y_true - softmax(f(x))||^2 + lam ||x - x_0||^2`` (push the
    output away from the one-hot true label) with the same prior.  ``lam`` trades success
    against distance: the report found 0.05 "a good number"; smaller values reach the goal
    more often with larger perturbations.  Idea: Geng & Veerapaneni 2018 (blog post "Tricking
    Neural Networks"), the trade-off form of Carlini & Wagner 2017 (arXiv:1608.04644).

    Threat model: targeted or untargeted; unbounded (``eps=None``) as in the report, or with an
    ``eps`` ball (every step is projected onto it).  Cost: at most ``steps`` forward and
    backward passes per sample.

    Parameters
    ----------
    lam:
        Weight of the squared L2 prior ``||x - x_0||^2`` (>= 0).
    steps, step_size, optimizer, tol, patience:
        Descent settings (see the module docstring for why Adam is the default).

    Examples
    --------
    >>> atk = OutputMatching(lam=0.05)
    >>> res = atk(model, x, y, ThreatModel("l2", targeted=True), targets=goals)  # doctest: +SKIP
    """

    name: ClassVar[str] = "output-matching"

    lam: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not self.lam >= 0 or math.isinf(self.lam):
            raise ValueError(f"lam must be a finite number >= 0 (the weight of ||x - x0||^2), got {self.lam!r}")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        rows = torch.arange(len(batch), device=batch.x.device)
        sign = 1.0 if threat.targeted else -1.0
        x, _, _ = self._descend(victim, batch, threat, batch.x, rows, float(self.lam), sign)
        return x


def fooling_images(
    model: nn.Module,
    goal_classes: Any,
    shape: tuple[int, ...] = (1, 28, 28),
    *,
    box: tuple[float, float] = (0.0, 1.0),
    device: torch.device | str | None = None,
    **params: Any,
) -> AttackResult:
    """One image per goal class, generated from noise (seed report section 5.1, figure 5.1).

    Runs :class:`OutputMatchingNoise` (``params`` are its hyperparameters) from the attack's
    own seeded noise.  In the returned :class:`~advlab.result.AttackResult`, ``target`` holds the
    goal classes, ``y`` and ``clean_pred`` the network's label for the starting noise (noise has
    no true label), ``success`` whether the image is classified as its goal, and ``norms`` the
    distance travelled from the starting noise.

    Examples
    --------
    >>> res = fooling_images(model, range(10))  # doctest: +SKIP
    >>> res.adv_pred.tolist()  # doctest: +SKIP
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    attack = OutputMatchingNoise(**params)
    threat = ThreatModel("l2", eps=None, targeted=True, box=box)
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"shape must be the positive shape of one input, e.g. (1, 28, 28); got {shape}")
    dev = torch.device(device) if device is not None else model_device(model)
    with frozen(model):
        n = _goal_count(goal_classes)
        index = torch.arange(n, device=dev)
        x0 = attack.start(index, shape, threat.box, 0, dev, model_dtype(model))
        start_logits = model_logits(model, x0, run_model, where="the starting noise")
        num_classes = start_logits.shape[1]
        goals = _goal_tensor(goal_classes, num_classes, dev)
        clean_pred = start_logits.argmax(dim=1)
        batch = Batch(x=x0, y=goals, y_true=clean_pred, index=index, num_classes=num_classes)
        victim = Victim(model, n, dev)
        begin = time.perf_counter()
        x_adv = threat.clip(attack._run(victim, batch, threat, CounterRNG(attack.seed)).detach())
        seconds = time.perf_counter() - begin
        logits = model_logits(model, x_adv, run_model, where="the generated images")
    probs = torch.softmax(logits, dim=1)
    adv_pred = logits.argmax(dim=1)
    return AttackResult(
        x_adv=x_adv,
        y=clean_pred,
        success=adv_pred == goals,
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        norms={k: get_norm(k).measure(x_adv - x0) for k in NORM_NAMES},
        forwards=victim.forwards,
        backwards=victim.backwards,
        checks=torch.full_like(victim.forwards, 2),
        seconds=seconds,
        attack=attack.name,
        threat=threat,
        params=attack.params(),
        target=goals,
        adv_confidence=probs.gather(1, adv_pred[:, None]).squeeze(1),
    )


def _goal_count(goal_classes: Any) -> int:
    if isinstance(goal_classes, Tensor):
        return int(goal_classes.numel())
    if isinstance(goal_classes, numbers.Integral):
        return 1
    try:
        return max(1, len(list(goal_classes)))
    except TypeError:
        raise InputError(f"goal_classes must be class labels (ints), got {type(goal_classes).__name__}") from None


def _goal_tensor(goal_classes: Any, num_classes: int, device: torch.device) -> Tensor:
    if isinstance(goal_classes, Tensor):
        values: list[Any] = goal_classes.reshape(-1).tolist()
    elif isinstance(goal_classes, numbers.Integral):
        values = [goal_classes]
    else:
        try:
            values = list(goal_classes)
        except TypeError:
            raise InputError(f"goal_classes must be class labels (ints), got {type(goal_classes).__name__}") from None
    if not values:
        raise InputError("goal_classes is empty: give at least one class label")
    for g in values:
        if isinstance(g, bool) or not isinstance(g, numbers.Integral) or not 0 <= int(g) < num_classes:
            raise InputError(f"goal class {g!r} is not a class of the model: it has {num_classes} classes (0..{num_classes - 1})")
    return torch.tensor([int(g) for g in values], dtype=torch.long, device=device)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
