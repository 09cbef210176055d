"""``results.json``: the versioned record of an evaluation, and :class:`EvaluationResult`.

Schema ``advlab.evaluation/1``: ``plan``, ``seeds``, ``environment`` (library versions,
device, git revision), ``model``, ``data``, ``clean_accuracy``, ``threats`` (robust accuracy
per budget, per stage of the cascade, per class; the minimal-norm distribution and its
curve; the escalation), ``audit`` (every check), ``cost``, ``samples`` (per-sample outcomes)
and ``examples`` (a few inputs with their adversarial versions, for the report).

Schema 3 adds the certified bounds (:mod:`.bounds`): ``threats[i].certified`` (certified
accuracy per budget beside the robust accuracy, the radius bracket of a minimal-norm run, or
the reason there is no bound), ``samples.certified`` (per-sample status and intervals) and
``cost.certify``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advlab.evaluation import keys
from advlab.evaluation.aggregate import Folded
from advlab.evaluation.audit import ACTIONS, Check
from advlab.evaluation.ensemble import label
from advlab.evaluation.records import BudgetAggregate
from advlab.evaluation.stats import clopper_pearson
from advlab.evaluation.units import Job
from advlab.models.kinds import input_kind, sequence_shape
from advlab.models.preprocessing import InputAdapter

__all__ = ["SCHEMA", "EvaluationResult", "build_results", "write_json", "comparable", "environment"]

SCHEMA = "advlab.evaluation/3"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
TIMING_KEYS = ("seconds", "wall_seconds", "attack_seconds", "report_seconds", "created", "environment", "images_per_second")


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device, world: int) -> dict[str, Any]:
    import advlab

    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {
        "advlab": advlab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": dev,
        "processes": world,
        "threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
    }


def _num(v: float) -> float | None:
    """JSON-safe float (``None`` for inf/nan)."""
    return None if v is None or not math.isfinite(v) else float(v)


def _threat_block(job: Job, spec: Any, folds: list[Folded], units: dict[str, Any], classes: list[str], escalated: list[str]) -> dict[str, Any]:
    y = job.y.numpy()
    results = [BudgetAggregate.from_fold(f, y, classes).to_dict() for f in folds]
    block: dict[str, Any] = {
        "key": spec.key,
        "threat_model": spec.threat(spec.headline).describe(),
        "norm": spec.norm,
        "targeted": spec.targeted,
        "knowledge": spec.knowledge,
        "eps": list(spec.eps),
        "attacks": [label(m.attack) for m in job.cascades[spec.key]],
        "attack_params": [{"name": m.attack.name, **m.attack.params(), "focus": m.focus} for m in job.cascades[spec.key]],
        "results": results,
        "minimal": None,
        "escalation": escalated,
    }
    batches = range(len(job.batches()))
    if job.minimal[spec.key] is not None:
        norms = np.concatenate([units[keys.minimal(spec.key, b)]["min_norm"] for b in batches])
        correct = np.concatenate([units[keys.probe(b)]["clean_pred"] for b in batches]) == y
        values = norms[correct]
        finite = values[np.isfinite(values)]
        top = max([*spec.eps, float(finite.max()) if finite.size else 0.0]) * 1.1
        grid = np.linspace(0.0, top, 41)
        block["minimal"] = {
            "attack": label(job.minimal[spec.key]),  # type: ignore[arg-type]
            "evaluated": int(correct.sum()),
            "found": int(np.isfinite(values).sum()),
            "median": _num(float(np.median(values))) if values.size else None,
            "quantiles": {str(q): _num(float(np.quantile(values, q))) for q in QUANTILES} if values.size else {},
            "curve": [[float(e), float((correct & (norms > e)).mean())] for e in grid],
            "at_eps": {str(e): float((correct & (norms > e)).mean()) for e in spec.eps},
        }
    return block


def _examples(job: Job, spec: Any, fold: Folded, units: dict[str, Any], count: int) -> list[dict[str, Any]]:
    if count == 0:
        return []
    y = job.y.numpy()
    batches = range(len(job.batches()))
    clean_logits = np.concatenate([units[keys.probe(b)]["clean_logits"] for b in batches])
    correct = clean_logits.argmax(1) == y
    broken = np.flatnonzero(correct & ~fold.robust)
    robust = np.flatnonzero(correct & fold.robust)
    chosen = sorted(list(broken[:count]) + list(robust[: max(0, count - len(broken))]))
    if not chosen:
        return []
    idx = np.asarray(chosen)
    x = job.x[idx]
    x_adv = torch.from_numpy(fold.x_adv[idx])
    adv_logits = torch.from_numpy(fold.adv_logits[idx]).float()  # kept from the run that found x_adv
    clean_p = torch.softmax(torch.from_numpy(clean_logits[idx]).float(), 1).numpy()
    adv_p = torch.softmax(adv_logits, 1).numpy()
    lp = spec.threat(fold.eps).lp
    shape = list(x.shape[1:])
    kind = input_kind(job.model, shape)
    layout: dict[str, Any] = {"input_kind": kind, "shape": shape}
    if kind == "sequence":
        layout["sequence_shape"] = list(sequence_shape(job.model, shape))
    out = []
    for j, i in enumerate(chosen):
        src = int(fold.source[i])
        out.append(
            {
                "index": int(i),
                "eps": fold.eps,
                "label": int(y[i]),
                "clean_pred": int(clean_p[j].argmax()),
                "adv_pred": int(adv_p[j].argmax()),
                "broken_by": fold.stages[src].label if src >= 0 else None,
                "perturbation": float(lp.measure(x_adv[j : j + 1] - x[j : j + 1])[0]),
                "clean_probabilities": [round(float(v), 5) for v in clean_p[j]],
                "adv_probabilities": [round(float(v), 5) for v in adv_p[j]],
                **layout,
                "x": [round(float(v), 4) for v in x[j].flatten()],
                "x_adv": [round(float(v), 4) for v in x_adv[j].flatten()],
            }
        )
    return out


def _samples(job: Job, units: dict[str, Any], folds: dict[str, list[Folded]]) -> dict[str, Any]:
    batches = range(len(job.batches()))
    clean_pred = np.concatenate([units[keys.probe(b)]["clean_pred"] for b in batches])
    outcomes: dict[str, Any] = {}
    minimal: dict[str, Any] = {}
    x = job.x.numpy()
    for spec in job.plan.threats:
        per_eps = {}
        for f in folds[spec.key]:
            lp = spec.threat(f.eps).lp
            norm = lp.measure(torch.from_numpy(f.x_adv - x)).numpy()
            adv_pred = f.adv_logits.argmax(1)  # kept from the runs: the model is not called again
            per_eps[repr(f.eps)] = {
                "robust": [bool(v) for v in f.robust],
                "broken_by": [f.stages[s].label if s >= 0 else None for s in f.source],
                "adv_pred": [int(v) for v in adv_pred],
                "perturbation": [float(v) for v in norm],
            }
        outcomes[spec.key] = per_eps
        if job.minimal[spec.key] is not None:
            norms = np.concatenate([units[keys.minimal(spec.key, b)]["min_norm"] for b in batches])
            minimal[spec.key] = [_num(float(v)) for v in norms]
    return {
        "index": list(range(job.n)),
        "label": [int(v) for v in job.y.numpy()],
        "clean_pred": [int(v) for v in clean_pred],
        "outcomes": outcomes,
        "minimal_norm": minimal,
    }


def _cost(folds: dict[str, list[Folded]], units: dict[str, Any], job: Job, wall: float) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for key, fl in folds.items():
        for f in fl:
            for st in f.stages:
                if st.kind == "clean" or st.kind == "carry":
                    continue
                name = f"{key} / {st.label}"
                r = rows.setdefault(name, {"stage": name, "kind": st.kind, "forwards": 0, "backwards": 0, "seconds": 0.0})
                r["forwards"] += st.forwards
                r["backwards"] += st.backwards
                r["seconds"] += st.seconds
    batches = range(len(job.batches()))
    probe_fw = sum(int(units[keys.probe(b)]["forwards"]) for b in batches)
    probe_bw = sum(int(units[keys.probe(b)]["backwards"]) for b in batches)
    # time of the probes; None for a run stored before probes were timed (shown as "-", not 0)
    probe_s = [units[keys.probe(b)].get("seconds") for b in batches]
    probe_seconds = None if any(s is None for s in probe_s) else float(sum(probe_s))
    rows["clean pass and audit probes"] = {"stage": "clean pass and audit probes", "kind": "audit", "forwards": probe_fw, "backwards": probe_bw, "seconds": probe_seconds}
    for spec in job.plan.threats:
        for b in batches:
            a = units.get(keys.audit(spec.key, b))
            if a is None:
                continue
            for name in ("unbounded", "naive", "binarization"):
                if name in a["runs"]:
                    r = rows.setdefault(f"{spec.key} / audit: {name}", {"stage": f"{spec.key} / audit: {name}", "kind": "audit", "forwards": 0, "backwards": 0, "seconds": 0.0})
                    for k in ("forwards", "backwards", "seconds"):
                        r[k] += a["runs"][name][k]
    table = list(rows.values())
    return {
        "wall_seconds": wall,
        "attack_seconds": sum(r["seconds"] or 0.0 for r in table),
        "forwards": sum(r["forwards"] for r in table),
        "backwards": sum(r["backwards"] for r in table),
        "queries": sum(r["forwards"] for r in table),
        "by_stage": table,
    }


def _summary(results: dict[str, Any]) -> str:
    first = results["threats"][0]
    head = first["results"][-1]
    n = results["data"]["samples"]
    failed = [c for c in results["audit"]["checks"] if c["verdict"] == "fail"]
    lo, hi = head["interval"]
    text = (
        f"On {n} {results['data']['name']} {results['data']['split']} samples the model is "
        f"{100 * results['clean_accuracy']:.1f}% accurate; against an adversary allowed {first['threat_model']}, "
        f"its robust accuracy is {100 * head['robust_accuracy']:.1f}% (95% interval {100 * lo:.1f}-{100 * hi:.1f}%, "
        f"n = {head['n']}; worst case per sample over {len(first['attacks'])} cascade attack{'s' if len(first['attacks']) != 1 else ''}"
        + (" and the audit's" if any(s["kind"] in ("audit", "minimal", "escalation") for s in head["stages"]) else "")
        + ")."
    )
    if not results["audit"]["checks"]:
        return text + " The audit was not run."
    if not failed:
        warns = [c["id"] for c in results["audit"]["checks"] if c["verdict"] == "warn"]
        return text + " The audit found no sign of gradient masking" + (f" (warnings: {', '.join(warns)})." if warns else ".")
    names = ", ".join(sorted({c["id"] for c in failed}))
    text += f" The audit found problems ({names})"
    if results["audit"]["escalation"]["actions"]:
        text += "; the evaluation escalated on its own (" + "; ".join(results["audit"]["escalation"]["descriptions"]) + ") and the numbers include it."
    else:
        text += "."
    return text


def build_results(
    *,
    job: Job,
    units: dict[str, Any],
    folds: dict[str, list[Folded]],
    checks: list[Check],
    actions: list[str],
    escalated: dict[str, list[str]],
    wanted: list[str] | None = None,
    model_name: str,
    data_name: str,
    split: str,
    classes: list[str],
    cluster: Any,
    wall_seconds: float,
) -> dict[str, Any]:
    from advlab.evaluation.units import ROBUST  # noqa: F401

    batches = range(len(job.batches()))
    clean_pred = np.concatenate([units[keys.probe(b)]["clean_pred"] for b in batches])
    # a class the model predicts but no label holds (few samples) still needs a name
    outputs = int(np.asarray(units[keys.probe(0)]["clean_logits"]).shape[1])
    classes = list(classes) + [str(i) for i in range(len(classes), outputs)]
    y = job.y.numpy()
    plan = job.plan
    first = plan.threats[0]
    before = {}
    for spec in plan.threats:
        # robust accuracy before the escalation: everything but the escalation stages
        before[spec.key] = {
            repr(f.eps): (int(f.robust.sum()) + sum(st.broken for st in f.stages if st.kind == "escalation")) / job.n for f in folds[spec.key]
        }
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan": plan.to_dict(),
        "seeds": {"plan": plan.seed, "attacks": {s.key: [m.attack.seed for m in job.cascades[s.key]] for s in plan.threats}},
        "environment": environment(job.device, cluster.world),
        "model": {
            "name": model_name,
            "class": type(job.model).__name__,
            "declares_adaptive": job.declares_adaptive,
            "input_kind": input_kind(job.model, list(job.x.shape[1:])),
            "preprocessing": job.model.describe() if isinstance(job.model, InputAdapter) else None,
        },
        "data": {"name": data_name, "split": split, "samples": job.n, "classes": classes},
        "clean_accuracy": float((clean_pred == y).mean()),
        "clean_interval": list(clopper_pearson(int((clean_pred == y).sum()), job.n)),
        "threats": [_threat_block(job, s, folds[s.key], units, classes, escalated.get(s.key, [])) for s in plan.threats],
        "audit": {
            "clean": not any(c.verdict == "fail" for c in checks),
            "checks": [c.to_dict() for c in checks],
            "escalation": {
                "actions": actions,
                "wanted": list(wanted if wanted is not None else actions),
                "descriptions": [ACTIONS[a] for a in actions],
                "attacks": escalated,
                "robust_accuracy_before": before,
                "robust_accuracy_after": {s.key: {repr(f.eps): float(f.robust.mean()) for f in folds[s.key]} for s in plan.threats},
            },
        },
        "cost": _cost(folds, units, job, wall_seconds),
        "samples": _samples(job, units, folds),
        "examples": _examples(job, first, folds[first.key][-1], units, plan.examples),
    }
    results["summary"] = _summary(results)
    return results


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed over the target)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """The results without timings and environment: what two runs of one plan share exactly."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(w) for k, w in v.items() if k not in TIMING_KEYS}
        if isinstance(v, list):
            return [strip(w) for w in v]
        return v

    return strip(results)


class EvaluationResult:
    """The results of an evaluation (the ``results.json`` dict) with a few helpers.

    >>> result.robust_accuracy(0.3)  # doctest: +SKIP
    0.0
    """

    def __init__(self, data: dict[str, Any], folder: str | Path | None = None) -> None:
        self.data = data
        self.folder = Path(folder) if folder is not None else None

    @classmethod
    def load(cls, folder: str | Path) -> EvaluationResult:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist (is {str(folder)!r} an evaluation run folder?)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{str(path)!r} has schema {data.get('schema')!r}; this advlab reads {SCHEMA!r}")
        return cls(data, folder)

    def threat(self, key: str | None = None) -> dict[str, Any]:
        threats = self.data["threats"]
        if key is None:
            return threats[0]
        for t in threats:
            if t["key"] == key or t["norm"] == key:
                return t
        raise KeyError(f"no threat model {key!r} in this evaluation; it has {[t['key'] for t in threats]}")

    def robust_accuracy(self, eps: float | None = None, threat: str | None = None) -> float:
        """Robust accuracy at ``eps`` (default: the largest budget) of a threat model."""
        t = self.threat(threat)
        for r in t["results"]:
            if eps is None and r is t["results"][-1] or eps is not None and math.isclose(r["eps"], eps):
                return float(r["robust_accuracy"])
        raise KeyError(f"eps {eps!r} was not evaluated for {t['key']}; budgets: {t['eps']}")

    def per_attack(self, threat: str | None = None) -> dict[str, dict[Any, float]]:
        """Accuracy per attack and budget, ``{attack: {budget: accuracy}}``, of a graph
        evaluation's threat block (image evaluations run a cascade instead: see ``stages``)."""
        t = self.threat(threat)
        if not t["results"] or "per_attack" not in t["results"][0]:
            raise KeyError(f"{t['key']} has no per-attack accuracies (only graph evaluations record them; image cascades record 'stages')")
        out: dict[str, dict[Any, float]] = {}
        for r in t["results"]:
            for e in r["per_attack"]:
                out.setdefault(e["attack"], {})[r["budget"]] = float(e["accuracy"])
        return out

    @property
    def kind(self) -> str:
        """``"graph"`` for a graph evaluation, ``"inputs"`` for images, sequences and vectors."""
        return str(self.data.get("kind", "inputs"))

    @property
    def clean_accuracy(self) -> float:
        return float(self.data["clean_accuracy"])

    @property
    def audit_clean(self) -> bool:
        return bool(self.data["audit"]["clean"])

    @property
    def checks(self) -> list[dict[str, Any]]:
        return list(self.data["audit"]["checks"])

    def check(self, check_id: str, threat: str | None = None) -> dict[str, Any]:
        for c in self.checks:
            if c["id"] == check_id and (threat is None or c["threat"] in (threat, None)):
                return c
        raise KeyError(f"no audit check {check_id!r}")

    @property
    def summary(self) -> str:
        return str(self.data["summary"])

    def __repr__(self) -> str:
        return f"EvaluationResult({self.summary!r})"
