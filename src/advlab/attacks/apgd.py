"""Auto-PGD (Croce & Hein 2020, arXiv:2003.01690): PGD without a step size to tune.

APGD starts with step size ``2 eps`` and halves it, per sample, at checkpoints
``w_j = ceil(p_j * steps)`` (``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``)
when the loss rose in fewer than ``rho`` of the steps since the last checkpoint (condition 1)
or when neither the step size nor the best loss changed since then (condition 2); after a
halving it continues from the best point found. Each step mixes the projected gradient
step with the previous direction: ``x+ = P(x + alpha (z - x) + (1 - alpha)(x - x_prev))``.

Two attacks: ``apgd`` (any loss, untargeted or targeted threat models) and ``apgd-t``
(untargeted threat model; the targeted DLR loss towards each of the top ``n_target_classes``
classes in turn, on the samples not yet broken).

Its own loop, not :func:`advlab.attacks.iterative.gradient_ascent`: the per-sample step-size
schedule, the momentum between iterates and the return to the best point at checkpoints are
not settings of a fixed-step loop (passes still go through the counting ``Victim``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import Attack, Batch
from advlab.attacks.iterative import box_aware, check_loop_params
from advlab.attacks.metadata import Role
from advlab.attacks.registry import register
from advlab.losses import get_loss
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["APGD", "APGDTargeted", "apgd_ascent", "checkpoints", "targeted_dlr"]

Objective = Callable[..., Tensor]  # objective(logits, lab=labels (B, k)) -> per-sample loss


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_1 < w_2 < ...`` (all < ``steps``) where APGD may halve its step."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1:
            break
        p.append(nxt)
    return sorted({w for w in (math.ceil(q * steps) for q in p[1:]) if 0 < w < steps})


def targeted_dlr(logits: Tensor, y_true: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR loss with the true label known (Croce & Hein 2020, eq. 7), maximised:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y_true[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    c = logits.shape[1]
    scale = srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) if c >= 4 else srt[:, 0] - srt[:, -1]
    return -(z_y - z_t) / (scale + 1e-12)


def apgd_ascent(
    victim: Victim,
    batch: Batch,
    threat: ThreatModel,
    rng: CounterRNG,
    *,
    labels: Tensor,
    objective: Objective,
    success: Callable[[Tensor, Tensor], Tensor],
    steps: int,
    restarts: int = 1,
    rho: float = 0.75,
    alpha: float = 0.75,
    random_start: bool = True,
    early_stop: bool = True,
    stream: int = 0,
    found: Tensor | None = None,
    best: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run APGD on the rows of ``batch`` not yet ``found``; returns ``(best, found)``.

    ``labels`` (B, k) is per-row data for ``objective`` and ``success``. ``best``/``found``
    carry results between calls (``apgd-t`` chains one call per target class).
    Cost per step and active sample: one forward and one backward pass; a restart whose final
    point must be known checks it with one forward pass.
    """
    x0 = batch.x
    n = len(batch)
    best = x0.clone() if best is None else best
    found = torch.zeros(n, dtype=torch.bool, device=x0.device) if found is None else found
    lp = threat.lp
    linf = threat.norm == "linf"
    box_lo, box_hi = threat.box
    view = (-1,) + (1,) * (x0.dim() - 1)
    marks = set(checkpoints(steps))
    eps_all = threat.eps_tensor(n, x0.device, x0.dtype)

    def project(v: Tensor, st: dict[str, Tensor]) -> Tensor:
        if linf:
            return torch.clamp(v, st["lo"], st["hi"], out=v)
        return threat.project(v, st["xs"], st["eps"])

    for r in range(restarts):
        pos = (~found).nonzero().squeeze(1)
        if pos.numel() == 0:
            break
        st: dict[str, Tensor] = {"rows": pos, "xs": x0[pos], "labels": labels[pos], "eps": eps_all[pos]}
        if linf:
            e = st["eps"].view(view)
            st["lo"] = (st["xs"] - e).clamp_(min=box_lo)
            st["hi"] = (st["xs"] + e).clamp_(max=box_hi)
        # three rotating buffers (x, x_prev, spare) and x_max, all updated in place
        x = threat.random_start(st["xs"], rng, batch.index[pos], stream=stream + 13 * r, radius="volume" if threat.norm == "linf" else "uniform") if random_start else st["xs"].clone()
        m = pos.numel()
        st["eta"] = 2 * st["eps"]
        st["f_max"] = torch.full((m,), -math.inf, device=x0.device, dtype=x0.dtype)
        st["f_prev"] = torch.full((m,), -math.inf, device=x0.device, dtype=x0.dtype)
        st["f_mark"] = torch.full((m,), -math.inf, device=x0.device, dtype=x0.dtype)
        st["ups"] = torch.zeros(m, device=x0.device, dtype=x0.dtype)
        st["halved"] = torch.ones(m, dtype=torch.bool, device=x0.device)
        st["x_max"] = x.clone()
        st["x_prev"] = torch.empty_like(x)
        st["spare"] = torch.empty_like(x)
        last_mark = 0
        check_end = not early_stop or r < restarts - 1

        for k in range(steps):
            rows = st["rows"]
            idx = rows if rows.numel() < n else None
            lab = st["labels"]
            f, grad, logits = victim.value_and_grad(x, partial(objective, lab=lab), idx)
            hit = success(logits, lab)
            if early_stop and bool(hit.any()):
                best[rows[hit]] = x[hit]
                found[rows[hit]] = True
                keep = ~hit
                if not bool(keep.any()):
                    st["rows"] = rows[:0]
                    break
                st = {key: v[keep] for key, v in st.items()}
                x, f, grad = x[keep], f[keep], grad[keep]
            elif not early_stop:
                new = hit & ~found[rows]
                if bool(new.any()):
                    best[rows[new]] = x[new]
                    found[rows[new]] = True

            better = f > st["f_max"]
            st["ups"] += f > st["f_prev"]
            st["f_prev"] = f
            st["f_max"] = torch.maximum(f, st["f_max"])
            # lerp with a 0/1 weight is an exact per-row select, and far cheaper than torch.where
            st["x_max"].lerp_(x, better.to(x.dtype).view(view))

            restart_rows = None
            if k in marks:
                span = k - last_mark
                stalled = st["ups"] < rho * span
                flat = ~st["halved"] & (st["f_max"] <= st["f_mark"])
                restart_rows = stalled | flat
                st["eta"] = torch.where(restart_rows, st["eta"] / 2, st["eta"])
                st["halved"] = restart_rows
                st["f_mark"] = st["f_max"].clone()
                st["ups"] = torch.zeros_like(st["ups"])
                last_mark = k

            # z = P(x + eta * steepest); x+ = P(x + alpha (z - x) + (1 - alpha)(x - x_prev))
            if linf:
                nxt = project(torch.addcmul(x, st["eta"].view(view), grad.sign_(), out=st["spare"]), st)
            else:
                nxt = project(x + st["eta"].view(view) * lp.steepest(box_aware(grad, x, threat.box)), st)
            if k > 0:  # alpha z + (1 - alpha)(2x - x_prev), and lerp(x_prev, x, 2) = 2x - x_prev
                torch.lerp(torch.lerp(st["x_prev"], x, 2.0, out=st["x_prev"]), nxt, alpha, out=nxt)
                nxt = project(nxt, st)
            if restart_rows is not None and bool(restart_rows.any()):
                back = restart_rows.to(x.dtype).view(view)
                nxt.lerp_(st["x_max"], back)  # continue from the best point ...
                x.lerp_(st["x_max"], back)  # ... without momentum (x becomes x_prev)
            st["spare"], st["x_prev"], x = st["x_prev"], x, nxt

        rows = st["rows"]
        if rows.numel() == 0:
            continue
        if check_end:
            idx = rows if rows.numel() < n else None
            logits = victim.logits(x, idx)
            hit = success(logits, st["labels"]) & ~found[rows]
            best[rows[hit]] = x[hit]
            found[rows[hit]] = True
            if r == restarts - 1:
                miss = ~found[rows]
                best[rows[miss]] = x[miss]
        else:
            best[rows] = x  # unchecked: the base class verifies every output
    return best, found


def _check_apgd(name: str, rho: float, alpha: float) -> None:
    if not (0 < rho <= 1):
        raise ValueError(f"{name}: rho must be in (0, 1], got {rho!r}")
    if not (0 < alpha <= 1):
        raise ValueError(f"{name}: alpha must be in (0, 1], got {alpha!r}")


@register
@dataclass(frozen=True)
class APGD(Attack):
    """Auto-PGD with the cross-entropy (``loss="ce"``, APGD-CE) or DLR (``loss="dlr"``,
    APGD-DLR) loss (Croce & Hein 2020, arXiv:2003.01690), Linf and L2.

    Untargeted threat models maximise the loss of the true class; targeted ones the targeted
    loss of the given target. ``alpha`` is the paper's momentum weight (0.75), ``rho`` its
    checkpoint threshold (0.75). Restarts run from new random starts on the samples not yet
    broken. Cost: at most ``restarts * steps`` forward and backward passes per sample.

    >>> result = APGD(loss="dlr", steps=100)(model, x, y, ThreatModel("linf", eps=8 / 255))  # doctest: +SKIP
    """

    name: ClassVar[str] = "apgd"
    roles: ClassVar[tuple[Role, ...]] = (
        Role("cascade", 10, {"loss": "ce"}),
        Role("cascade", 30, {"loss": "dlr"}, when="targeted"),
        Role("playground", 50),
    )
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    paper: ClassVar[str] = "Croce & Hein 2020, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, arXiv:2003.01690"
    family: ClassVar[str] = "gradient"

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    random_start: bool = True
    early_stop: bool = True
    rho: float = 0.75
    alpha: float = 0.75

    def __post_init__(self) -> None:
        check_loop_params(self.name, steps=self.steps, restarts=self.restarts, loss=self.loss)
        _check_apgd(self.name, self.rho, self.alpha)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        loss_of = get_loss(self.loss)
        targeted = threat.targeted

        def objective(logits: Tensor, lab: Tensor) -> Tensor:
            return loss_of(logits, lab[:, 0], targeted)

        def success(logits: Tensor, lab: Tensor) -> Tensor:
            pred = logits.argmax(dim=1)
            return pred == lab[:, 0] if targeted else pred != lab[:, 0]

        best, _ = apgd_ascent(
            victim, batch, threat, rng, labels=batch.y[:, None], objective=objective, success=success,
            steps=self.steps, restarts=self.restarts, rho=self.rho, alpha=self.alpha,
            random_start=self.random_start, early_stop=self.early_stop,
        )
        return best


@register
@dataclass(frozen=True)
class APGDTargeted(Attack):
    """APGD-T: targeted DLR towards each of the ``n_target_classes`` most likely wrong classes
    in turn, each run only on the samples still classified correctly (Croce & Hein 2020,
    arXiv:2003.01690). An untargeted attack: any misclassification counts.

    Cost: one forward pass to rank the classes, then at most
    ``n_target_classes * restarts * steps`` forward and backward passes per sample.

    >>> result = APGDTargeted(n_target_classes=9)(model, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP
    """

    name: ClassVar[str] = "apgd-t"
    roles: ClassVar[tuple[Role, ...]] = (Role("cascade", 20, {"n_target_classes": 3}, focus="uncertain"), Role("playground", 60))
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    paper: ClassVar[str] = APGD.paper
    family: ClassVar[str] = "gradient"
    supports_targeted: ClassVar[bool] = False

    steps: int = 100
    restarts: int = 1
    n_target_classes: int = 9
    random_start: bool = True
    early_stop: bool = True
    rho: float = 0.75
    alpha: float = 0.75

    def __post_init__(self) -> None:
        check_loop_params(self.name, steps=self.steps, restarts=self.restarts)
        if isinstance(self.n_target_classes, bool) or not isinstance(self.n_target_classes, int) or self.n_target_classes < 1:
            raise ValueError(f"{self.name}: n_target_classes must be a positive integer, got {self.n_target_classes!r}")
        _check_apgd(self.name, self.rho, self.alpha)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        order = victim.logits(batch.x).argsort(dim=1, descending=True)
        y = batch.y_true

        def objective(logits: Tensor, lab: Tensor) -> Tensor:
            return targeted_dlr(logits, lab[:, 0], lab[:, 1])

        def success(logits: Tensor, lab: Tensor) -> Tensor:
            return logits.argmax(dim=1) != lab[:, 0]

        best, found = None, None
        for rank in range(1, min(self.n_target_classes, batch.num_classes - 1) + 1):
            # the rank-th most likely class other than the true one
            others = order[order != y[:, None]].view(len(batch), -1)
            target = others[:, rank - 1]
            best, found = apgd_ascent(
                victim, batch, threat, rng, labels=torch.stack([y, target], dim=1), objective=objective,
                success=success, steps=self.steps, restarts=self.restarts, rho=self.rho, alpha=self.alpha,
                random_start=self.random_start, early_stop=self.early_stop, stream=1000 * rank,
                found=found, best=best,
            )
            if bool(found.all()):
                break
        assert best is not None
        return best
