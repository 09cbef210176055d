"""The one iterative gradient loop behind FGSM, BIM, PGD, MI-FGSM and C&W-Linf.

Every fixed-budget first-order attack here is a *setting* of :func:`gradient_ascent`:

====================  =====  ============  ============  ========  ========
attack                steps  step size     random start  restarts  momentum
====================  =====  ============  ============  ========  ========
FGSM                  1      eps           no            1         0
BIM / I-FGSM          10     1.25 eps / k  no            1         0
PGD                   40     2.5 eps / k   yes           1         0
MI-FGSM               10     eps / k       no            1         1.0
C&W-Linf              PGD with the margin loss
====================  =====  ============  ============  ========  ========

The loop works per sample: each restart runs only on the samples not yet broken, samples
that become adversarial leave the batch at once (``early_stop=True``), and the geometry
(steepest direction, projection, random start) comes from the threat model's norm object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from advlab.attacks.base import Batch
from advlab.losses import LOSSES, get_loss
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["LoopSettings", "gradient_ascent", "check_loop_params", "box_aware"]

_TINY = 1e-12
_HUGE = 1e30
# Samples broken under early stopping leave the working set once they are this share of it:
# dropping rows costs a gather of every per-row tensor, keeping them costs their share of the
# next passes (which are not charged to them). Results do not depend on this choice.
_COMPACT = 1 / 16


def _take(keep: Tensor, *tensors: Tensor | None) -> tuple[Any, ...]:
    """The rows ``keep`` of every tensor (``None`` stays ``None``)."""
    return tuple(None if t is None else t[keep] for t in tensors)


@dataclass(frozen=True)
class LoopSettings:
    """One configuration of the shared loop (see the module docstring for the named attacks).

    Attributes
    ----------
    steps: gradient steps per restart.
    step_size: step length in the threat model's norm (absolute, not relative to eps).
    restarts: independent runs; each runs only on the samples not yet adversarial.
    random_start: start each restart at a uniform point of the ball (else at ``x``).
    momentum: decay of the accumulated L1-normalised gradient (MI-FGSM); 0 = plain steps.
    loss: ``"ce"``, ``"margin"`` (C&W) or ``"dlr"``; maximised.
    early_stop: drop a sample from the batch as soon as it is adversarial (its first
        adversarial point is returned). With ``False`` every sample runs all steps and the
        returned point is, per sample, the adversarial one of highest loss, else the one of
        highest loss.
    """

    steps: int
    step_size: float
    restarts: int = 1
    random_start: bool = False
    momentum: float = 0.0
    loss: str = "ce"
    early_stop: bool = True


def check_loop_params(name: str, **params: Any) -> None:
    """Validate the hyperparameters shared by the gradient attacks; errors name the parameter."""
    for key in ("steps", "restarts"):
        if key in params:
            v = params[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {v!r}")
    if params.get("step_size") is not None:
        v = params["step_size"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: step_size must be a positive number (or None for the default), got {v!r}")
    if "momentum" in params:
        v = params["momentum"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}: momentum must be a number >= 0, got {v!r}")
    if "loss" in params and params["loss"] not in LOSSES:
        raise ValueError(f"{name}: unknown loss {params['loss']!r}; expected one of {sorted(LOSSES)}")


def box_aware(grad: Tensor, x: Tensor, box: tuple[float, float]) -> Tensor:
    """Zero the gradient coordinates that point out of the box at a coordinate already on its
    face: moving them would only be clipped away, wasting L1/L2 budget."""
    lo, hi = box
    # one clamp against per-coordinate bounds that are 0 exactly on a face and huge elsewhere
    # (x lies in the box): fewer passes over the tensor than masks combined with & and |
    return torch.clamp(grad, (x - lo).mul_(-_HUGE), (hi - x).mul_(_HUGE))


def gradient_ascent(
    victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG, s: LoopSettings
) -> Tensor:
    """Maximise ``s.loss`` inside the threat model's ball and box by steepest ascent.

    Cost per step and active sample: one forward and one backward pass, plus a handful of
    elementwise operations (three for Linf: sign, add, clamp). A restart whose final point
    must be known (to decide the next restart, or with ``early_stop=False``) checks it with
    one extra forward pass.

    Returns the adversarial inputs for ``batch`` (the caller projects and verifies them):
    per sample the first adversarial point found (with ``early_stop=False``: the final
    iterate if adversarial, else the first adversarial point), else the final iterate.
    """
    x0 = batch.x
    n = len(batch)
    targeted = threat.targeted
    loss_of = get_loss(s.loss)
    lp = threat.lp
    linf = threat.norm == "linf"
    eps_all = threat.eps_tensor(n, x0.device, x0.dtype)
    view = (-1,) + (1,) * (x0.dim() - 1)
    box_lo, box_hi = threat.box
    # Without a random start and with steps * step_size <= eps, a Linf iterate cannot leave
    # the ball: clipping to the box is the whole projection.
    ball_free = linf and not s.random_start and s.steps * s.step_size <= float(eps_all[0]) * (1 + 1e-6) if n else False

    best: Tensor | None = None  # allocated on the first write
    found = torch.zeros(n, dtype=torch.bool, device=x0.device)

    def record(rows: Tensor, x: Tensor, mask: Tensor | None = None) -> None:
        nonlocal best
        if best is None:
            if mask is None and rows.numel() == n:
                best = x  # every row at once (no compaction happened): no copy needed
                return
            best = x0.clone()
        if mask is None:
            best[rows] = x
        else:
            best[rows[mask]] = x[mask]

    for r in range(s.restarts):
        pos = (~found).nonzero().squeeze(1)
        if pos.numel() == 0:
            break
        everyone = pos.numel() == n
        idx: Tensor | None = None if everyone else pos  # None: count every row, no gathers
        xs, ys, eps = (x0, batch.y, eps_all) if everyone else (x0[pos], batch.y[pos], eps_all[pos])
        rows = pos
        # x is owned by the loop and updated in place (no allocation per step)
        x = threat.random_start(xs, rng, batch.index[pos], stream=7 + r, radius="volume" if linf else "uniform") if s.random_start else xs.clone()
        lo = hi = None
        if linf and not ball_free:  # the Linf ball intersected with the box is a box
            lo = (xs - eps.view(view)).clamp_(min=box_lo)
            hi = (xs + eps.view(view)).clamp_(max=box_hi)
        # the centre and radius per row, for the L1/L2 projection (Linf needs only lo/hi)
        centre, radius = (None, None) if linf else (xs, eps)
        g_acc = torch.zeros_like(x) if s.momentum > 0 else None
        check_end = not s.early_stop or r < s.restarts - 1
        live: Tensor | None = None  # rows of the working set still attacked (None: all of them)

        for _ in range(s.steps):
            count = idx if live is None else rows[live]
            _, grad, logits = victim.value_and_grad(x, partial(loss_of, y=ys, targeted=targeted), count)
            pred = logits.argmax(dim=1)
            succ = pred == ys if targeted else pred != ys
            if live is not None:
                succ &= live
            hit = bool(succ.any())
            if hit:  # keep the adversarial points before the step moves them
                new = succ if s.early_stop else succ & ~found[rows]
                record(rows, x, new)
                found[rows[new]] = True
            if g_acc is not None:  # g <- mu g + grad / ||grad||_1
                l1 = torch.linalg.vector_norm(grad.flatten(1), ord=1, dim=1).clamp_min(_TINY)
                g_acc.mul_(s.momentum).addcdiv_(grad, l1.view(view))
                grad = g_acc.sign() if linf else g_acc.clone()
            if linf:
                x.add_(grad.sign_(), alpha=s.step_size)
                x.clamp_(box_lo, box_hi) if lo is None else torch.clamp(x, lo, hi, out=x)
            elif threat.norm == "l2":  # the same step and projection as below, in fewer passes
                assert centre is not None and radius is not None
                g = box_aware(grad, x, threat.box)
                x.addcmul_(g, (s.step_size / torch.linalg.vector_norm(g.flatten(1), dim=1).clamp_min(_TINY)).view(view))
                delta = x.sub_(centre)
                scale = (radius / torch.linalg.vector_norm(delta.flatten(1), dim=1).clamp_min(_TINY)).clamp_max_(1.0)
                x = torch.addcmul(centre, delta, scale.view(view)).clamp_(box_lo, box_hi)
            else:
                assert centre is not None
                x = threat.project(x + s.step_size * lp.steepest(box_aware(grad, x, threat.box)), centre, radius)
            if s.early_stop and hit:  # broken samples leave the batch (see _COMPACT)
                live = ~succ if live is None else live & ~succ
                n_live = int(live.sum())
                if n_live == 0:
                    rows, live = rows[:0], None
                    break
                if n_live <= (1 - _COMPACT) * rows.numel():
                    x, ys, rows, lo, hi, centre, radius, g_acc = _take(live, x, ys, rows, lo, hi, centre, radius, g_acc)
                    idx, live = rows, None

        if live is not None:
            x, ys, rows = _take(live, x, ys, rows)
            idx = rows
        if rows.numel() == 0:
            continue
        if check_end:
            pred = victim.logits(x, idx).argmax(dim=1)
            succ = pred == ys if targeted else pred != ys
            record(rows, x, succ)  # the final iterate, when adversarial, wins
            found[rows[succ]] = True
            if r == s.restarts - 1:
                record(rows, x, ~found[rows])
        else:
            record(rows, x)  # unchecked: the base class verifies every output
    return x0.clone() if best is None else best
