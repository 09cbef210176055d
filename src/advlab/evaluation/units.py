"""The units of work of an evaluation, each computed on one batch of samples.

A unit is a pure function of the plan, the model, the batch and the units it depends on
(never of which process runs it or when), so it can be persisted, sharded and resumed.
Every unit returns a flat dict of NumPy arrays and JSON values (see :mod:`.store`).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack, choose_targets
from advlab.evaluation.ensemble import declares_adaptive, label
from advlab.evaluation.plan import EvaluationPlan, ThreatSpec
from advlab.losses import cross_entropy, margin
from advlab.model_check import model_logits
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import frozen, run_model

__all__ = ["Job", "call_attack", "run_cascade", "probe_unit", "main_unit", "minimal_unit", "audit_unit", "unit_seed"]

ROBUST = -2  # broken_by code: still robust
CLEAN = -1  # broken_by code: misclassified without attack


@dataclass
class Job:
    """Everything the units of one evaluation share."""

    model: nn.Module
    x: Tensor
    y: Tensor
    plan: EvaluationPlan
    device: torch.device
    cascades: dict[str, list[Attack]]
    minimal: dict[str, Attack | None]
    fgsm: Attack | None = None
    blackbox: dict[str, list[Attack]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def batches(self) -> list[tuple[int, int]]:
        bs = self.plan.batch_size
        return [(s, min(s + bs, self.n)) for s in range(0, self.n, bs)]

    def batch(self, b: int) -> tuple[Tensor, Tensor, Tensor]:
        start, stop = self.batches()[b]
        idx = torch.arange(start, stop)
        return self.x[start:stop].to(self.device), self.y[start:stop].to(self.device), idx.to(self.device)

    @property
    def declares_adaptive(self) -> bool:
        return declares_adaptive(self.model)


def unit_seed(plan_seed: int, key: str) -> int:
    """A seed for one unit, for models with their own randomness (reseeded per unit so that
    a resumed or sharded run draws exactly what an uninterrupted one draws)."""
    digest = hashlib.sha256(f"{plan_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def reseed(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in model.modules():
        fn = getattr(m, "reseed", None)
        if callable(fn):
            fn(seed)


def _supports_adaptive(atk: Attack) -> bool:
    return "adaptive" in inspect.signature(type(atk).__call__).parameters


def call_attack(
    atk: Attack,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    targets: Tensor | None,
    adaptive: bool,
    device: torch.device,
) -> AttackResult:
    """Run one attack on one (sub)batch, adaptive or naive when the library supports both."""
    kwargs: dict[str, Any] = {}
    if _supports_adaptive(atk):
        kwargs["adaptive"] = adaptive
    return atk(model, x, y, threat, targets=targets if threat.targeted else None, batch_size=None, device=device, **kwargs)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    with frozen(model):
        return model_logits(model, x, run_model).float()


def targets_for(job: Job, spec: ThreatSpec, logits: Tensor, y: Tensor, index: Tensor) -> Tensor | None:
    """Per-sample targets of a targeted threat model, from the plan's seed and the global index."""
    if not spec.targeted:
        return None
    return choose_targets("random", logits, y, index, job.plan.seed)


def run_cascade(
    attacks: Sequence[Attack],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor | None,
    threat: ThreatModel,
    robust: Tensor,
    adaptive: bool,
    device: torch.device,
    verify: nn.Module | None = None,
) -> dict[str, Any]:
    """Each attack only on the samples the previous ones left robust (AutoAttack's cascade).

    ``verify`` (default ``model``) is the model that judges success; it differs from ``model``
    when the attack differentiates a wrapper (EOT, log-probabilities).
    """
    robust = robust.clone()
    b = x.shape[0]
    broken_by = np.full(b, ROBUST, dtype=np.int64)
    x_adv = x.clone()
    fw = np.zeros(len(attacks), dtype=np.int64)
    bw = np.zeros(len(attacks), dtype=np.int64)
    sec = np.zeros(len(attacks), dtype=np.float64)
    judge = verify if verify is not None else model
    for k, atk in enumerate(attacks):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        tg = targets[idx] if targets is not None else None
        res = call_attack(atk, model, x[idx], y[idx], threat, tg, adaptive, device)
        ok = res.success
        if verify is not None:
            pred = _logits(judge, res.x_adv).argmax(1)
            ok = ok & ((pred == tg) if tg is not None else (pred != y[idx]))
        hit = idx[ok]
        broken_by[hit.cpu().numpy()] = k
        x_adv[hit] = res.x_adv[ok].to(x_adv.dtype)
        robust[hit] = False
        fw[k] = int(res.forwards.sum())
        bw[k] = int(res.backwards.sum())
        sec[k] = res.seconds
    return {"broken_by": broken_by, "x_adv": x_adv, "forwards": fw, "backwards": bw, "seconds": sec}


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def probe_unit(job: Job, b: int) -> dict[str, Any]:
    """Clean predictions and the cheap audit probes of the deployed model on one batch:
    randomness, probabilities at the output, zero or non-finite gradients, shattered
    (piecewise-constant) gradients.  The model is probed as deployed, never adapted."""
    x, y, index = job.batch(b)
    model = job.model
    spec = job.plan.threats[0]
    first = _logits(model, x)
    second = _logits(model, x)
    scale = first.abs().amax(1).clamp_min(1.0)
    random_output = ((first - second).abs().amax(1) > 1e-5 * scale) | (first.argmax(1) != second.argmax(1))
    probs = (first >= -1e-6).all(1) & (first <= 1 + 1e-6).all(1) & ((first.sum(1) - 1).abs() < 1e-3)

    def grad(point: Tensor, loss: Any) -> tuple[Tensor, Tensor]:
        with frozen(model), torch.enable_grad():
            p = point.detach().clone().requires_grad_(True)
            out = model(p)
            value = loss(out.float(), y)
            if value.requires_grad:
                (g,) = torch.autograd.grad(value.sum(), p, allow_unused=True)
            else:
                g = None
        g = torch.zeros_like(p) if g is None else g
        return value.detach(), g.detach().flatten(1)

    _, g_ce = grad(x, cross_entropy)
    threat = spec.threat(spec.headline)
    rng = CounterRNG(job.plan.seed)
    start = threat.random_start(x, rng, index, stream=424_242)
    _, g_ce_random = grad(start, cross_entropy)
    m0, g_margin = grad(x, margin)
    with torch.no_grad():
        m1 = margin(_logits(model, start), y)
    changes = (m1 - m0).abs() > 1e-6 * m0.abs().clamp_min(1.0)
    g_margin_zero = g_margin.abs().amax(1) == 0
    return {
        "clean_logits": _np(first),
        "clean_pred": _np(first.argmax(1)),
        "random_output": _np(random_output),
        "probabilities": _np(probs),
        "grad_zero": _np(g_ce.abs().amax(1) == 0),
        "grad_nonfinite": _np(~torch.isfinite(g_ce).all(1)),
        "grad_zero_random": _np(g_ce_random.abs().amax(1) == 0),
        "margin_grad_zero": _np(g_margin_zero),
        "shattered": _np(g_margin_zero & changes),
        "forwards": 5 * int(x.shape[0]),
        "backwards": 3 * int(x.shape[0]),
    }


def clean_state(job: Job, probe: dict[str, Any], b: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, y, index = job.batch(b)
    clean_pred = torch.as_tensor(probe["clean_pred"], device=job.device)
    return x, y, index, clean_pred == y


def main_unit(job: Job, spec: ThreatSpec, eps: float, b: int, probe: dict[str, Any]) -> dict[str, Any]:
    """The plan's cascade at one budget on one batch (independently of other budgets)."""
    x, y, index, correct = clean_state(job, probe, b)
    logits = torch.as_tensor(probe["clean_logits"], device=job.device)
    targets = targets_for(job, spec, logits, y, index)
    out = run_cascade(job.cascades[spec.key], job.model, x, y, targets, spec.threat(eps), correct, job.plan.adaptive, job.device)
    out["broken_by"][~probe_correct(probe, y)] = CLEAN
    out["x_adv"] = _np(out["x_adv"]).astype(np.float32)
    return out


def probe_correct(probe: dict[str, Any], y: Tensor) -> np.ndarray:
    return np.asarray(probe["clean_pred"]) == _np(y)


def minimal_unit(job: Job, spec: ThreatSpec, b: int, probe: dict[str, Any]) -> dict[str, Any]:
    """The smallest adversarial perturbation per sample (``inf`` where none was found,
    ``0`` for samples misclassified without attack)."""
    atk = job.minimal[spec.key]
    assert atk is not None
    x, y, index, correct = clean_state(job, probe, b)
    logits = torch.as_tensor(probe["clean_logits"], device=job.device)
    targets = targets_for(job, spec, logits, y, index)
    res = call_attack(atk, job.model, x, y, spec.threat(None), targets, job.plan.adaptive, job.device)
    norm = res.norms[spec.norm].float()
    value = torch.where(res.success, norm, torch.full_like(norm, math.inf))
    value = torch.where(correct, value, torch.zeros_like(value))
    return {
        "min_norm": _np(value).astype(np.float64),
        "x_adv": _np(res.x_adv).astype(np.float32),
        "forwards": int(res.forwards.sum()),
        "backwards": int(res.backwards.sum()),
        "seconds": res.seconds,
        "attack": label(atk),
    }


def unbounded_eps(threat: ThreatModel, x: Tensor) -> float:
    """A budget that contains the whole box: the attack is then only limited by the box."""
    width = threat.box[1] - threat.box[0]
    d = int(x[0].numel())
    return {"linf": width, "l2": width * math.sqrt(d), "l1": width * d, "l0": float(d)}[threat.norm]


def audit_unit(job: Job, spec: ThreatSpec, b: int, probe: dict[str, Any], mains: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit's attacks on one batch: single-step at every budget, an unbounded attack,
    a black-box attack and a stronger run on the samples the cascade left robust, and a
    naive (non-adaptive) attack on a model that declares an adaptive form."""
    x, y, index, correct = clean_state(job, probe, b)
    logits = torch.as_tensor(probe["clean_logits"], device=job.device)
    targets = targets_for(job, spec, logits, y, index)
    cascade = job.cascades[spec.key]
    adaptive = job.plan.adaptive
    out: dict[str, Any] = {"runs": {}}

    def record(name: str, res: dict[str, Any]) -> None:
        out["runs"][name] = {"forwards": int(res["forwards"].sum()), "backwards": int(res["backwards"].sum()), "seconds": float(res["seconds"].sum())}

    # robust after the cascade, with smaller budgets' successes carried over
    robust_main = correct.clone()
    robust_by_eps = []
    for m in mains:
        robust_main &= torch.as_tensor(m["broken_by"] == ROBUST, device=job.device)
        robust_by_eps.append(robust_main.clone())

    if job.fgsm is not None and spec.knowledge == "white":
        broken = np.zeros((len(x), len(spec.eps)), dtype=bool)
        xs = []
        for k, eps in enumerate(spec.eps):
            res = run_cascade([job.fgsm], job.model, x, y, targets, spec.threat(eps), correct, adaptive, job.device)
            broken[:, k] = res["broken_by"] == 0
            xs.append(_np(res["x_adv"]).astype(np.float32))
            record(f"fgsm@{eps:g}", res)
        out["fgsm_broken"] = broken
        out["fgsm_x_adv"] = np.stack(xs, axis=1)
        out["fgsm_attack"] = label(job.fgsm)

    white = [a for a in cascade if a.knowledge != "black" and a.uses_gradients] if spec.knowledge == "white" else []
    first = white[0] if white else cascade[0]
    headline = spec.threat(spec.headline)
    unb = spec.threat(unbounded_eps(headline, x))
    res = run_cascade([first], job.model, x, y, targets, unb, correct, adaptive, job.device)
    out["unbounded_success"] = (res["broken_by"] == 0) | ~_np(correct)
    out["unbounded_eps"] = unb.eps
    record("unbounded", res)

    robust_head = robust_by_eps[-1]
    if spec.knowledge == "white":
        bb = job.blackbox.get(spec.key, [])
        bb = [a for a in bb if all(a != c for c in cascade)]
        if bb:
            res = run_cascade(bb[:1], job.model, x, y, targets, headline, robust_head, adaptive, job.device)
            out["blackbox_broken"] = res["broken_by"] == 0
            out["blackbox_x_adv"] = _np(res["x_adv"]).astype(np.float32)
            out["blackbox_attack"] = label(bb[0])
            record("blackbox", res)

    from advlab.evaluation.ensemble import stronger

    strong = stronger(first)
    res = run_cascade([strong], job.model, x, y, targets, headline, robust_head, adaptive, job.device)
    out["convergence_broken"] = res["broken_by"] == 0
    out["convergence_x_adv"] = _np(res["x_adv"]).astype(np.float32)
    out["convergence_attack"] = label(strong)
    record("convergence", res)

    if adaptive and job.declares_adaptive and white and _supports_adaptive(first):
        res = run_cascade([first], job.model, x, y, targets, headline, correct, False, job.device)
        out["naive_robust"] = (res["broken_by"] == ROBUST) & _np(correct)
        out["naive_attack"] = label(first)
        record("naive", res)
    return out


def escalation_plan(job: Job, spec: ThreatSpec, actions: Sequence[str]) -> tuple[list[Attack], nn.Module | None, bool]:
    """The attacks, the model wrapper and the adaptive flag an escalation runs with."""
    from advlab.evaluation.ensemble import LogOutput, blackbox_members, eot, stronger

    cascade = job.cascades[spec.key]
    white = [a for a in cascade if a.knowledge != "black"] if spec.knowledge == "white" else []
    attacks: list[Attack] = []
    if white and any(a in actions for a in ("adaptive", "logits", "eot")):
        attacks += white
    if white and "restarts" in actions:
        attacks += [stronger(a) for a in white]
    if "blackbox" in actions or spec.knowledge == "black" and "restarts" in actions:
        attacks += blackbox_members(spec, job.plan.seed, limit=1)
    wrapper: nn.Module | None = None
    if "logits" in actions:
        wrapper = LogOutput(job.model)
    if "eot" in actions:
        wrapper = eot(wrapper if wrapper is not None else job.model)
    return attacks, wrapper, job.plan.adaptive or "adaptive" in actions


def escalation_unit(job: Job, spec: ThreatSpec, b: int, probe: dict[str, Any], robust_before: list[np.ndarray], actions: Sequence[str]) -> dict[str, Any]:
    """The escalation's cascade at every budget on the samples still robust (successes at a
    smaller budget carried over), judged on the deployed model."""
    x, y, index, _ = clean_state(job, probe, b)
    logits = torch.as_tensor(probe["clean_logits"], device=job.device)
    targets = targets_for(job, spec, logits, y, index)
    attacks, wrapper, adaptive = escalation_plan(job, spec, actions)
    e, m = len(spec.eps), len(attacks)
    broken_by = np.full((len(x), e), ROBUST, dtype=np.int64)
    x_adv = np.repeat(_np(x).astype(np.float32)[:, None], e, axis=1)
    fw = np.zeros((e, m), dtype=np.int64)
    bw = np.zeros((e, m), dtype=np.int64)
    sec = np.zeros((e, m), dtype=np.float64)
    carried = np.zeros(len(x), dtype=bool)
    for k, eps in enumerate(spec.eps):
        mask = torch.as_tensor(robust_before[k] & ~carried, device=job.device)
        model = wrapper if wrapper is not None else job.model
        res = run_cascade(attacks, model, x, y, targets, spec.threat(eps), mask, adaptive, job.device, verify=job.model if wrapper is not None else None)
        broken_by[:, k] = res["broken_by"]
        x_adv[:, k] = _np(res["x_adv"]).astype(np.float32)
        fw[k], bw[k], sec[k] = res["forwards"], res["backwards"], res["seconds"]
        carried |= res["broken_by"] != ROBUST
    return {"broken_by": broken_by, "x_adv": x_adv, "forwards": fw, "backwards": bw, "seconds": sec, "labels": [label(a) for a in attacks], "actions": list(actions)}
