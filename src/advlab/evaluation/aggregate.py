"""Folding units into per-sample outcomes: the worst case over every attack, per budget.

For each threat model and budget, a sample is robust only if it is classified correctly and
*no* source broke it, in this order: the cascade's attacks, a success at a smaller budget
(its perturbation also fits the larger ball), the audit's attacks, the minimal-norm attack
(when its perturbation fits the budget), the escalation's attacks.  The order only decides
which source a sample is credited to; the robust set is the same in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advlab.evaluation.ensemble import label
from advlab.evaluation.plan import ThreatSpec
from advlab.evaluation.units import ROBUST, Job

__all__ = ["Stage", "Folded", "fold_batch", "fold_all", "concat_units"]


@dataclass
class Stage:
    """One source of adversarial examples at one budget, with what it broke and cost."""

    label: str
    kind: str  # clean | attack | carry | audit | minimal | escalation
    broken: int = 0
    forwards: int = 0
    backwards: int = 0
    seconds: float = 0.0

    def add(self, other: Stage) -> None:
        self.broken += other.broken
        self.forwards += other.forwards
        self.backwards += other.backwards
        self.seconds += other.seconds


@dataclass
class Folded:
    """Outcomes at one budget: per sample robust flag, crediting stage and adversarial input."""

    eps: float
    robust: np.ndarray
    source: np.ndarray  # index into stages; -1 for samples that stay robust
    x_adv: np.ndarray
    adv_logits: np.ndarray  # the deployed model's logits at x_adv (from the run that found it)
    stages: list[Stage] = field(default_factory=list)
    raw_robust: np.ndarray | None = None  # after the cascade alone (no carry, no audit)


def _cost(unit: dict[str, Any] | None, k: int | None = None) -> tuple[int, int, float]:
    if unit is None:
        return 0, 0, 0.0
    if k is None:
        return int(unit.get("forwards", 0)), int(unit.get("backwards", 0)), float(unit.get("seconds", 0.0))
    return int(unit["forwards"][k]), int(unit["backwards"][k]), float(unit["seconds"][k])


@dataclass
class _Tally:
    """Per-sample state while folding one budget: each stage is credited with the samples it
    breaks among those still robust."""

    robust: np.ndarray
    source: np.ndarray
    x_adv: np.ndarray
    adv_logits: np.ndarray
    stages: list[Stage] = field(default_factory=list)

    def credit(self, stage: Stage, hit: np.ndarray, adv: np.ndarray | None, logits: np.ndarray | None = None) -> None:
        hit = hit & self.robust
        stage.broken = int(hit.sum())
        self.source[hit] = len(self.stages)
        if adv is not None:
            self.x_adv[hit] = adv[hit]
        if logits is not None:
            self.adv_logits[hit] = logits[hit]
        self.robust[hit] = False
        self.stages.append(stage)


def fold_batch(
    job: Job,
    spec: ThreatSpec,
    b: int,
    probe: dict[str, Any],
    mains: list[dict[str, Any]],
    minimal: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    escalation: dict[str, Any] | None = None,
) -> list[Folded]:
    """The worst case per sample at every budget of ``spec`` for batch ``b``."""
    x, y, _ = job.batch(b)
    x_np = x.detach().cpu().numpy().astype(np.float32)
    y_np = y.detach().cpu().numpy()
    correct = np.asarray(probe["clean_pred"]) == y_np
    clean_logits = np.asarray(probe["clean_logits"], dtype=np.float32)
    cascade = [m.attack for m in job.cascades[spec.key]]
    out: list[Folded] = []
    previous: Folded | None = None
    for k, eps in enumerate(spec.eps):
        tally = _Tally(correct.copy(), np.full(len(y_np), -1, dtype=np.int64), x_np.copy(), clean_logits.copy())
        credit = tally.credit
        robust, source, stages = tally.robust, tally.source, tally.stages

        clean = Stage("clean", "clean", forwards=len(y_np))
        clean.broken = int((~correct).sum())
        source[~correct] = 0
        stages.append(clean)
        main = mains[k]
        for m, atk in enumerate(cascade):
            fw, bw, sec = _cost(main, m)
            credit(Stage(label(atk), "attack", forwards=fw, backwards=bw, seconds=sec), main["broken_by"] == m, main["x_adv"], main["adv_logits"])
        raw = robust.copy()
        if previous is not None:
            credit(Stage(f"smaller eps ({previous.eps:g})", "carry"), ~previous.robust, previous.x_adv, previous.adv_logits)
        if audit is not None:
            runs = audit.get("runs", {})
            if "fgsm_broken" in audit:
                r = runs.get(f"fgsm@{eps:g}", {})
                st = Stage(f"audit: {audit['fgsm_attack']}", "audit", 0, r.get("forwards", 0), r.get("backwards", 0), r.get("seconds", 0.0))
                credit(st, audit["fgsm_broken"][:, k], audit["fgsm_x_adv"][:, k], audit["fgsm_adv_logits"][:, k])
            if k == len(spec.eps) - 1:
                for name, key in (("blackbox", "blackbox"), ("convergence", "convergence")):
                    if f"{key}_broken" in audit:
                        r = runs.get(name, {})
                        st = Stage(f"audit: {audit[f'{key}_attack']}", "audit", 0, r.get("forwards", 0), r.get("backwards", 0), r.get("seconds", 0.0))
                        credit(st, audit[f"{key}_broken"], audit[f"{key}_x_adv"], audit[f"{key}_adv_logits"])
        if minimal is not None:
            fw, bw, sec = _cost(minimal) if k == 0 else (0, 0, 0.0)
            st = Stage(f"minimal: {minimal['attack']}", "minimal", 0, fw, bw, sec)
            credit(st, np.asarray(minimal["min_norm"]) <= eps, minimal["x_adv"], minimal["adv_logits"])
        if escalation is not None:
            for m, name in enumerate(escalation["labels"]):
                fw, bw, sec = int(escalation["forwards"][k, m]), int(escalation["backwards"][k, m]), float(escalation["seconds"][k, m])
                st = Stage(f"escalation: {name}", "escalation", 0, fw, bw, sec)
                credit(st, escalation["broken_by"][:, k] == m, escalation["x_adv"][:, k], escalation["adv_logits"][:, k])
        folded = Folded(eps, robust, source, tally.x_adv, tally.adv_logits, stages, raw)
        out.append(folded)
        previous = folded
    return out


def fold_all(batches: list[list[Folded]]) -> list[Folded]:
    """Join the per-batch folds of one threat model (stages line up across batches)."""
    out = []
    for k in range(len(batches[0])):
        parts = [fb[k] for fb in batches]
        stages = [Stage(s.label, s.kind) for s in parts[0].stages]
        for p in parts:
            if [s.label for s in p.stages] != [s.label for s in stages]:
                raise RuntimeError("batches disagree on the stages of the evaluation")
            for total, s in zip(stages, p.stages, strict=True):
                total.add(s)
        out.append(
            Folded(
                parts[0].eps,
                np.concatenate([p.robust for p in parts]),
                np.concatenate([p.source for p in parts]),
                np.concatenate([p.x_adv for p in parts]),
                np.concatenate([p.adv_logits for p in parts]),
                stages,
                np.concatenate([p.raw_robust for p in parts if p.raw_robust is not None]),
            )
        )
    return out


def concat_units(units: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch units joined along the sample axis (scalars summed, other JSON from the first)."""
    out: dict[str, Any] = {}
    for key, value in units[0].items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and key not in ("forwards", "backwards", "seconds"):
            out[key] = np.concatenate([u[key] for u in units])
        elif key in ("forwards", "backwards", "seconds"):
            out[key] = sum(u[key] for u in units)
        else:
            out[key] = value
    return out


def robust_rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


__all__ += ["robust_rate", "ROBUST"]
