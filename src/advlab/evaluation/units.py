"""The units of work of an evaluation, each computed on one batch of samples.

A unit is a pure function of the plan, the model, the batch and the units it depends on
(never of which process runs it or when), so it can be persisted, sharded and resumed.
Every unit returns a flat dict of NumPy arrays and JSON values (see :mod:`.store`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack, choose_targets
from advlab.attacks.cascade import FOCUS_MARGIN, Member
from advlab.evaluation.ensemble import cascade_attack, declares_adaptive, label
from advlab.evaluation.flags import batch_composition
from advlab.evaluation.plan import EvaluationPlan, ThreatSpec
from advlab.losses import cross_entropy, dlr, margin
from advlab.model_check import model_logits
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import frozen, run_model

__all__ = ["Job", "cascade_run", "probe_unit", "main_unit", "minimal_unit", "audit_unit", "unit_seed"]

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
    cascades: dict[str, list[Member]]
    minimal: dict[str, Attack | None]
    single_step: dict[str, Attack | None] = field(default_factory=dict)

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


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    with frozen(model):
        return model_logits(model, x, run_model).float()


def targets_for(job: Job, spec: ThreatSpec, logits: Tensor, y: Tensor, index: Tensor) -> Tensor | None:
    """Per-sample targets of a targeted threat model, from the plan's seed and the global index."""
    if not spec.targeted:
        return None
    return choose_targets("random", logits, y, index, job.plan.seed)


def cascade_run(
    job: Job,
    cascade: Sequence[Member | Attack],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor | None,
    threat: ThreatModel,
    active: Tensor,
    adaptive: bool,
    clean_logits: Tensor,
    verify: nn.Module | None = None,
) -> dict[str, Any]:
    """One cascade (the ``ensemble`` attack, :func:`advlab.attacks.cascade.run_cascade`) on the
    ``active`` samples of a batch, as a unit payload over the whole batch.

    ``broken_by`` holds the member that broke each sample (``ROBUST`` for none); ``forwards``,
    ``backwards`` and ``seconds`` the members' costs, the first member's including the
    library's own passes (``AttackResult.checks``: the verification, and the clean pass unless
    the probe's clean logits are handed over; plus one row per sample when ``verify`` -- the
    deployed model, when the attack differentiates a wrapper -- judges success).  ``adv_logits`` are the deployed model's logits at ``x_adv`` (the clean
    logits where nothing was found), so no later step needs to run the model again.
    """
    chain = [c if isinstance(c, Member) else Member(c) for c in cascade]
    m = len(chain)
    n = x.shape[0]
    broken_by = np.full(n, ROBUST, dtype=np.int64)
    x_adv = x.clone()
    adv_logits = clean_logits.clone().float()
    margin = np.full(n, np.inf)
    fw = np.zeros(m, dtype=np.int64)
    bw = np.zeros(m, dtype=np.int64)
    sec = np.zeros(m, dtype=np.float64)
    idx = active.nonzero().squeeze(1)
    if idx.numel() and m:
        single = m == 1 and chain[0].focus == "all"
        atk = chain[0].attack if single else cascade_attack(chain, job.plan.seed)
        tg = targets[idx] if targets is not None and threat.targeted else None
        given = clean_logits[idx] if verify is None else None  # a wrapper's logits differ from the deployed model's
        res = atk(model, x[idx], y[idx], threat, targets=tg, batch_size=None, device=job.device, adaptive=adaptive, clean_logits=given)
        ok = res.success
        logits = res.adv_logits if res.adv_logits is not None else _logits(model, res.x_adv)
        overhead = int(res.checks.sum()) if res.checks is not None else 2 * int(idx.numel())
        if verify is not None:
            logits = _logits(verify, res.x_adv)
            overhead += int(idx.numel())
            pred = logits.argmax(1)
            ok = ok & ((pred == tg) if tg is not None else (pred != y[idx]))
        if single:
            member = torch.zeros(len(idx), dtype=torch.long, device=ok.device)
            fw[0], bw[0], sec[0] = int(res.forwards.sum()), int(res.backwards.sum()), res.seconds
        else:
            tr = res.trace
            ran = tr["member_forwards"] > 0
            last = (ran * torch.arange(1, m + 1, device=ran.device)).amax(1) - 1
            member = torch.where(tr["broken_by"] >= 0, tr["broken_by"], last.clamp_min(0))
            fw[:] = _np(tr["member_forwards"].sum(0))
            bw[:] = _np(tr["member_backwards"].sum(0))
            sec[:] = _np(tr["member_seconds"].sum(0))
            margin[_np(idx)] = _np(tr["margin"].float())
        fw[0] += overhead
        hit = idx[ok]
        broken_by[_np(hit)] = _np(member[ok])
        x_adv[hit] = res.x_adv[ok].to(x_adv.dtype)
        adv_logits[hit] = logits[ok].float()
    return {
        "broken_by": broken_by,
        "x_adv": x_adv,
        "adv_logits": _np(adv_logits).astype(np.float32),
        "margin": margin,
        "forwards": fw,
        "backwards": bw,
        "seconds": sec,
    }


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def probe_unit(job: Job, b: int) -> dict[str, Any]:
    """Clean predictions and the cheap audit probes of the deployed model on one batch:
    randomness, probabilities at the output, zero or non-finite gradients, shattered
    (piecewise-constant) gradients.  The model is probed as deployed, never adapted.

    AutoAttack's flags (fra31/auto-attack ``flags_doc.md``) are probed here too: the DLR
    gradient at the clean input (with at least 3 classes), autograd called inside a forward
    pass run without gradients, and -- with it -- the batch composition the logits depend on
    (:mod:`advlab.evaluation.flags`).

    Cost, exactly: five forward passes per sample (the clean input without and with the
    autograd graph -- their difference reveals randomness --, a random point of the ball, and
    the batch-composition probe's two rows) and three or four backward passes (cross-entropy,
    margin and DLR at the clean input, cross-entropy at the random point)."""
    began = time.perf_counter()
    x, y, index = job.batch(b)
    model = job.model
    spec = job.plan.threats[0]
    first = _logits(model, x)
    threat = spec.threat(spec.headline)
    start = threat.random_start(x, CounterRNG(job.plan.seed), index, stream=424_242)
    with frozen(model), torch.enable_grad():
        p = x.detach().clone().requires_grad_(True)
        second = model(p).float()
        ce, m0 = cross_entropy(second, y), margin(second, y)
        classes = int(second.shape[1])
        g_ce = _grad(ce, p, retain=True)
        g_margin = _grad(m0, p, retain=classes >= 3)
        g_dlr = _grad(dlr(second, y), p, retain=False) if classes >= 3 else None
        q = start.detach().clone().requires_grad_(True)
        at_start = model(q).float()
        g_ce_random = _grad(cross_entropy(at_start, y), q, retain=False)
    second, at_start = second.detach(), at_start.detach()
    with frozen(model):
        composed = batch_composition(model, x, first, threat.box, unit_seed(job.plan.seed, f"batch-composition/{b}"))
    scale = first.abs().amax(1).clamp_min(1.0)
    random_output = ((first - second).abs().amax(1) > 1e-5 * scale) | (first.argmax(1) != second.argmax(1))
    probs = (first >= -1e-6).all(1) & (first <= 1 + 1e-6).all(1) & ((first.sum(1) - 1).abs() < 1e-3)
    m0 = m0.detach()
    m1 = margin(at_start, y)
    changes = (m1 - m0).abs() > 1e-6 * m0.abs().clamp_min(1.0)
    g_margin_zero = g_margin.abs().amax(1) == 0
    rows = int(x.shape[0])
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
        "dlr_grad_zero": _np(g_dlr.abs().amax(1) == 0) if g_dlr is not None else np.zeros(rows, dtype=bool),
        "dlr_probed": g_dlr is not None,
        "batch_difference": _np(composed["difference"]).astype(np.float64),
        "batch_affected": _np(composed["affected"]),
        "autograd_in_forward": np.full(rows, composed["autograd"] is not None),
        "autograd_call": composed["autograd"] or "",
        "seconds": time.perf_counter() - began,
        "forwards": 5 * rows,
        "backwards": (4 if g_dlr is not None else 3) * rows,
    }


def _grad(value: Tensor, point: Tensor, retain: bool) -> Tensor:
    """The gradient of ``value.sum()`` at ``point``, flattened per sample (zeros where the
    model cut the graph)."""
    g = None
    if value.requires_grad:
        (g,) = torch.autograd.grad(value.sum(), point, retain_graph=retain, allow_unused=True)
    return (torch.zeros_like(point) if g is None else g).detach().flatten(1)


def clean_state(job: Job, probe: dict[str, Any], b: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A batch's inputs, labels, global indices, clean-correct mask and clean logits."""
    x, y, index = job.batch(b)
    logits = torch.as_tensor(probe["clean_logits"], device=job.device)
    return x, y, index, logits.argmax(1) == y, logits


def main_unit(job: Job, spec: ThreatSpec, eps: float, b: int, probe: dict[str, Any]) -> dict[str, Any]:
    """The plan's cascade at one budget on one batch (independently of other budgets)."""
    x, y, index, correct, logits = clean_state(job, probe, b)
    targets = targets_for(job, spec, logits, y, index)
    out = cascade_run(job, job.cascades[spec.key], job.model, x, y, targets, spec.threat(eps), correct, job.plan.adaptive, logits)
    out["broken_by"][~_np(correct)] = CLEAN
    out["x_adv"] = _np(out["x_adv"]).astype(np.float32)
    return out


def minimal_unit(job: Job, spec: ThreatSpec, b: int, probe: dict[str, Any]) -> dict[str, Any]:
    """The smallest adversarial perturbation per sample (``inf`` where none was found,
    ``0`` for samples misclassified without attack)."""
    atk = job.minimal[spec.key]
    assert atk is not None
    x, y, index, correct, logits = clean_state(job, probe, b)
    targets = targets_for(job, spec, logits, y, index)
    res = atk(job.model, x, y, spec.threat(None), targets=targets, batch_size=None, device=job.device, adaptive=job.plan.adaptive, clean_logits=logits)
    norm = res.norms[spec.norm].float()
    value = torch.where(res.success, norm, torch.full_like(norm, math.inf))
    value = torch.where(correct, value, torch.zeros_like(value))
    assert res.adv_logits is not None
    return {
        "min_norm": _np(value).astype(np.float64),
        "x_adv": _np(res.x_adv).astype(np.float32),
        "adv_logits": _np(torch.where(res.success[:, None], res.adv_logits, logits.float())).astype(np.float32),
        "forwards": int(res.forwards.sum()) + int(res.checks.sum() if res.checks is not None else 2 * x.shape[0]),
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
    a black-box attack (unless the cascade has one) and a run with more restarts on the
    samples the cascade left robust *and* near the boundary (the others kept most of their
    clean margin: more effort is spent where it can change the verdict), and a naive
    (non-adaptive) attack on a model that declares an adaptive form."""
    x, y, index, correct, logits = clean_state(job, probe, b)
    targets = targets_for(job, spec, logits, y, index)
    cascade = [m.attack for m in job.cascades[spec.key]]
    adaptive = job.plan.adaptive
    out: dict[str, Any] = {"runs": {}}

    def run(attacks: Sequence[Attack], threat: ThreatModel, active: Tensor, adapt: bool = adaptive) -> dict[str, Any]:
        return cascade_run(job, attacks, job.model, x, y, targets, threat, active, adapt, logits)

    def record(name: str, res: dict[str, Any]) -> None:
        out["runs"][name] = {"forwards": int(res["forwards"].sum()), "backwards": int(res["backwards"].sum()), "seconds": float(res["seconds"].sum())}

    # robust after the cascade, with smaller budgets' successes carried over
    robust_main = correct.clone()
    for m in mains:
        robust_main &= torch.as_tensor(m["broken_by"] == ROBUST, device=job.device)
    robust_head = robust_main

    single = job.single_step.get(spec.key)
    if single is not None and spec.knowledge == "white":
        broken = np.zeros((len(x), len(spec.eps)), dtype=bool)
        xs, ls = [], []
        for k, eps in enumerate(spec.eps):
            res = run([single], spec.threat(eps), correct)
            broken[:, k] = res["broken_by"] == 0
            xs.append(_np(res["x_adv"]).astype(np.float32))
            ls.append(res["adv_logits"])
            record(f"fgsm@{eps:g}", res)
        out["fgsm_broken"] = broken
        out["fgsm_x_adv"] = np.stack(xs, axis=1)
        out["fgsm_adv_logits"] = np.stack(ls, axis=1)
        out["fgsm_attack"] = label(single)

    white = [a for a in cascade if a.knowledge != "black" and a.uses_gradients] if spec.knowledge == "white" else []
    first = white[0] if white else cascade[0]
    headline = spec.threat(spec.headline)
    unb = spec.threat(unbounded_eps(headline, x))
    res = run([first], unb, correct)
    out["unbounded_success"] = (res["broken_by"] == 0) | ~_np(correct)
    out["unbounded_eps"] = unb.eps
    record("unbounded", res)

    def keep(name: str, atk: Attack, res: dict[str, Any]) -> None:
        out[f"{name}_broken"] = res["broken_by"] == 0
        out[f"{name}_x_adv"] = _np(res["x_adv"]).astype(np.float32)
        out[f"{name}_adv_logits"] = res["adv_logits"]
        out[f"{name}_attack"] = label(atk)
        record(name, res)

    if spec.knowledge == "white" and not any(a.knowledge == "black" for a in cascade):
        from advlab.evaluation.ensemble import blackbox_members

        bb = blackbox_members(spec, job.plan.seed)
        if bb:
            keep("blackbox", bb[0], run(bb[:1], headline, robust_head))

    from advlab.evaluation.ensemble import stronger

    strong = stronger(first)
    near = robust_head & torch.as_tensor(mains[-1]["margin"] <= FOCUS_MARGIN, device=job.device)
    keep("convergence", strong, run([strong], headline, near))
    out["convergence_tried"] = _np(near)

    binarization_run(job, spec, x, index, correct, out)

    if adaptive and job.declares_adaptive and white and first.supports_adaptive:
        res = run([first], headline, correct, False)
        out["naive_robust"] = (res["broken_by"] == ROBUST) & _np(correct)
        out["naive_attack"] = label(first)
        record("naive", res)
    return out


def binarization_run(job: Job, spec: ThreatSpec, x: Tensor, index: Tensor, correct: Tensor, out: dict[str, Any]) -> None:
    """The binarization test (:mod:`.binarization`, arXiv:2206.13991) of the plan's own
    cascade at the headline budget, on the correctly classified samples among the first
    ``BINARIZATION_SAMPLES`` of the evaluated set (untargeted: the planted class is the only
    other one).  Adds ``binarization_tested`` / ``binarization_found`` per sample to ``out``
    and the passes it spent to ``out["runs"]``."""
    import dataclasses

    from advlab.evaluation.binarization import BINARIZATION_SAMPLES, binarization_test

    chosen = correct & (index < BINARIZATION_SAMPLES)
    tested = np.zeros(len(x), dtype=bool)
    found = np.zeros(len(x), dtype=bool)
    # every batch carries the arrays (all False outside the tested samples): batches are joined
    out["binarization_tested"] = tested
    out["binarization_found"] = found
    if not bool(chosen.any()):
        return
    threat = dataclasses.replace(spec.threat(spec.headline), targeted=False)

    def attack(model: nn.Module, xs: Tensor, ys: Tensor) -> tuple[Tensor, int, int]:
        clean = _logits(model, xs)
        res = cascade_run(job, job.cascades[spec.key], model, xs, ys, None, threat, torch.ones_like(ys, dtype=torch.bool), False, clean)
        return torch.as_tensor(res["broken_by"] != ROBUST), int(res["forwards"].sum()) + len(xs), int(res["backwards"].sum())

    t0 = time.perf_counter()
    rows = chosen.nonzero().squeeze(1)
    got = binarization_test(job.model, x[rows], threat, unit_seed(job.plan.seed, f"binarization/{spec.key}/{int(index[0])}"), attack)
    if got is None:
        return
    kept = _np(rows)[_np(got["kept"])]
    tested[kept] = True
    found[kept] = _np(got["found_mask"])
    out["runs"]["binarization"] = {"forwards": got["forwards"], "backwards": got["backwards"], "seconds": time.perf_counter() - t0}


def escalation_plan(job: Job, spec: ThreatSpec, actions: Sequence[str]) -> tuple[list[Member], nn.Module | None, bool]:
    """The cascade, the model wrapper and the adaptive flag an escalation runs with."""
    from advlab.evaluation.ensemble import LogOutput, blackbox_members, eot, stronger

    cascade = [m.attack for m in job.cascades[spec.key]]
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
    return [Member(a) for a in attacks], wrapper, job.plan.adaptive or "adaptive" in actions


def escalation_unit(job: Job, spec: ThreatSpec, b: int, probe: dict[str, Any], robust_before: list[np.ndarray], actions: Sequence[str]) -> dict[str, Any]:
    """The escalation's cascade at every budget on the samples still robust (successes at a
    smaller budget carried over), judged on the deployed model."""
    x, y, index, _, logits = clean_state(job, probe, b)
    targets = targets_for(job, spec, logits, y, index)
    attacks, wrapper, adaptive = escalation_plan(job, spec, actions)
    e, m = len(spec.eps), len(attacks)
    broken_by = np.full((len(x), e), ROBUST, dtype=np.int64)
    x_adv = np.repeat(_np(x).astype(np.float32)[:, None], e, axis=1)
    adv_logits = np.repeat(_np(logits).astype(np.float32)[:, None], e, axis=1)
    fw = np.zeros((e, m), dtype=np.int64)
    bw = np.zeros((e, m), dtype=np.int64)
    sec = np.zeros((e, m), dtype=np.float64)
    carried = np.zeros(len(x), dtype=bool)
    for k, eps in enumerate(spec.eps):
        mask = torch.as_tensor(robust_before[k] & ~carried, device=job.device)
        model = wrapper if wrapper is not None else job.model
        res = cascade_run(job, attacks, model, x, y, targets, spec.threat(eps), mask, adaptive, logits, verify=job.model if wrapper is not None else None)
        broken_by[:, k] = res["broken_by"]
        x_adv[:, k] = _np(res["x_adv"]).astype(np.float32)
        adv_logits[:, k] = res["adv_logits"]
        fw[k], bw[k], sec[k] = res["forwards"], res["backwards"], res["seconds"]
        carried |= res["broken_by"] != ROBUST
    return {
        "broken_by": broken_by, "x_adv": x_adv, "adv_logits": adv_logits, "forwards": fw, "backwards": bw, "seconds": sec,
        "labels": [label(a.attack) for a in attacks], "actions": list(actions),
    }
