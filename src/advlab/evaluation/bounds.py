"""Certified bounds beside the attacks: the bracket certified <= true <= attacked.

An attack's robust accuracy is an upper bound on the true robust accuracy; a verifier's
certified accuracy is a lower bound.  For every threat model of a plan whose model the
bounds cover (:func:`advlab.certify.applies`), this module adds to ``results.json``:

* per budget, the certified accuracy (CROWN, Zhang et al. 2018, arXiv:1811.00866; or IBP,
  Gowal et al. 2018, arXiv:1810.12715) beside the attacks' robust accuracy, and per sample
  ``certified`` / ``broken`` / ``unknown``.  A sample both certified and broken means a bound
  or an attack is wrong: :class:`BoundContradiction` is raised, never hidden;
* for a minimal-norm run, per sample the interval [certified radius, smallest perturbation
  the attack found], the median ratio found / certified and the share tight within 10%.
  A found perturbation smaller than a certified radius also raises.

A model the bounds do not cover keeps the attacks alone and the sentence saying why.

Cost: the bounds propagate intervals and linear bounds through the model's layers; they run
no attack, and no forward or backward pass of the attacks' kind.  The model itself is called
only for the clean logits of the samples being certified and to check that its forward pass
is the chain of layers being bounded; those rows are counted separately
(``cost.certify.model_forwards``), not among the attacks' forward passes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.certify import applies, certified_flags, certified_radii, radius_bracket, sample_status
from advlab.certify.network import as_chain, supports
from advlab.evaluation import keys
from advlab.evaluation.aggregate import Folded
from advlab.evaluation.units import Job
from advlab.validation import InputError

__all__ = ["METHODS", "BoundContradiction", "choose_method", "add_bounds"]

METHODS = ("auto", "crown", "ibp", "off")
#: ``auto``: full CROWN up to this many parameters (no convolutions) ...
AUTO_CROWN_PARAMETERS = 2_000_000
#: ... CROWN on the last layer over IBP's intermediate bounds up to this many, IBP above
AUTO_LAST_LAYER_PARAMETERS = 20_000_000
#: CROWN's tightened neurons per layer when it runs in full (certify's default)
CROWN_NEURONS = 64
#: bisection steps of the certified radius (the radius is within box width / 2**steps of the method's)
RADIUS_STEPS = 14


class BoundContradiction(RuntimeError):
    """A sample is certified and broken at once, or an attack found a perturbation smaller
    than a certified radius: a bound or an attack is wrong."""


def choose_method(model: nn.Module, setting: str) -> tuple[str, int]:
    """The bound method for ``setting`` and CROWN's ``max_neurons`` (tightened unstable neurons per
    layer; 0: intermediate bounds by IBP, the margins by CROWN).

    ``"auto"``: full CROWN for models without convolutions and with at most
    :data:`AUTO_CROWN_PARAMETERS` parameters; CROWN over IBP's intermediate bounds for
    convolutional models up to :data:`AUTO_LAST_LAYER_PARAMETERS` (full CROWN back-substitutes
    densely through a convolution: about 0.6 s per MNIST CNN image, against 18 ms for this
    and 1-2 ms for IBP, which on that CNN certifies 2% at Linf 0.01 where it certifies 92%);
    IBP above."""
    if setting == "crown":
        return "crown", CROWN_NEURONS
    if setting != "auto":
        return setting, 0
    chain = as_chain(model)
    convolutional = any(isinstance(m, nn.Conv2d) for m in chain)
    size = sum(p.numel() for p in model.parameters())
    if not convolutional and size <= AUTO_CROWN_PARAMETERS:
        return "crown", CROWN_NEURONS
    return ("crown", 0) if size <= AUTO_LAST_LAYER_PARAMETERS else ("ibp", 0)


def describe(method: str, max_neurons: int) -> str:
    """``CROWN``, ``CROWN over IBP intermediate bounds`` or ``IBP``."""
    if method == "crown" and max_neurons == 0:
        return "CROWN over IBP intermediate bounds"
    return method.upper()


def _counting(model: nn.Module, rows: list[int]) -> Any:
    def hook(_m: nn.Module, inputs: Any, _o: Any) -> None:
        rows[0] += int(inputs[0].shape[0])

    return model.register_forward_hook(hook)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def add_bounds(results: dict[str, Any], job: Job, folds: dict[str, list[Folded]], units: dict[str, Any]) -> None:
    """Add the certified bounds to ``results`` (built by :func:`.results.build_results`):
    ``threats[i].certified``, ``samples.certified``, ``cost.certify`` and the summary's bracket.

    Raises :class:`BoundContradiction` when a bound and an attack disagree."""
    setting = job.plan.certify
    blocks: dict[str, dict[str, Any]] = {}
    per_sample: dict[str, Any] = {}
    rows = [0]
    start = time.perf_counter()
    method: tuple[str, int] | None = None
    if setting != "off":
        covered, _ = supports(job.model)
        method = choose_method(job.model, setting) if covered else None
        handle = _counting(job.model, rows)
        try:
            for spec, block in zip(job.plan.threats, results["threats"], strict=True):
                blocks[spec.key], per_sample[spec.key] = _threat_bounds(job, spec, folds[spec.key], block, units, method, setting)
        finally:
            handle.remove()
    for spec, block in zip(job.plan.threats, results["threats"], strict=True):
        block["certified"] = blocks.get(spec.key) or {"method": None, "available": False, "reason": "certified bounds are off in this plan (certify = 'off')"}
    results["samples"]["certified"] = per_sample
    results["cost"]["certify"] = {
        "method": describe(*method) if method else None,
        "seconds": time.perf_counter() - start,
        "model_forwards": rows[0],
        "note": "bound propagation through the layers; no attack passes. model_forwards counts the rows the model was "
        "called on for clean logits and the chain check; they are not among the attacks' forwards",
    }
    results["summary"] += " " + bracket_sentence(results["threats"][0])


def _threat_bounds(
    job: Job, spec: Any, folds: list[Folded], block: dict[str, Any], units: dict[str, Any], chosen: tuple[str, int] | None, setting: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    ok, why = applies(job.model, spec.threat(spec.headline))
    if not ok or chosen is None:
        return {"method": None, "available": False, "reason": why}, {}
    method, neurons = chosen
    x, y = job.x, job.y
    per_eps, statuses = [], {}
    for fold, agg in zip(folds, block["results"], strict=True):
        try:
            flags, why = certified_flags(job.model, x, y, spec.threat(fold.eps), method, max_neurons=neurons)
        except InputError as exc:  # e.g. a forward pass that is not the chain of its layers
            return {"method": None, "available": False, "reason": str(exc)}, {}
        if flags is None:
            return {"method": None, "available": False, "reason": why}, {}
        broken = torch.from_numpy(~fold.robust)
        try:
            status = sample_status(flags, broken)
        except RuntimeError as exc:
            both = np.flatnonzero(flags.numpy() & ~fold.robust)
            raise BoundContradiction(
                f"{spec.key} at eps {fold.eps:g}: {describe(method, neurons)} certifies sample(s) {both[:10].tolist()} that an attack "
                f"broke ({exc}); a bound or an attack is wrong"
            ) from None
        certified = float(flags.double().mean())
        per_eps.append(
            {
                "eps": fold.eps,
                "certified_accuracy": certified,
                "certified": int(flags.sum()),
                "n": int(flags.numel()),
                "robust_accuracy": agg["robust_accuracy"],
                "gap": agg["robust_accuracy"] - certified,
                "status": {s: status.count(s) for s in ("certified", "broken", "unknown")},
            }
        )
        statuses[repr(fold.eps)] = status
    out: dict[str, Any] = {"method": describe(method, neurons), "bound": method, "max_neurons": neurons, "setting": setting, "available": True, "reason": None, "per_eps": per_eps, "radius": None}
    samples: dict[str, Any] = {"status": statuses}
    minimal = block.get("minimal")
    if minimal is not None:
        radii, why = certified_radii(job.model, x, y, spec.threat(None), method, steps=RADIUS_STEPS, max_neurons=neurons)
        if radii is not None:
            batches = range(len(job.batches()))
            found = torch.from_numpy(np.concatenate([units[keys.minimal(spec.key, b)]["min_norm"] for b in batches])).double()
            success = torch.isfinite(found) & (radii > 0)
            summary = radius_bracket(radii, torch.where(torch.isfinite(found), found, torch.zeros_like(found)), success)
            if summary["violations"]:
                bad = np.flatnonzero((success & (found < radii.double() * (1 - 1e-6))).numpy())
                raise BoundContradiction(
                    f"{spec.key}: {minimal['attack']} found perturbations smaller than the certified radius on sample(s) "
                    f"{bad[:10].tolist()}; a bound or an attack is wrong"
                )
            out["radius"] = {
                "attack": minimal["attack"],
                "steps": RADIUS_STEPS,
                "samples_with_both": summary["samples_with_both"],
                "median_ratio": _finite(summary["median_ratio"]),
                "tight_share": _finite(summary["tight_share"]),
                "violations": summary["violations"],
                "median_radius": _finite(float(radii[radii > 0].median())) if bool((radii > 0).any()) else None,
                # certified accuracy at every eps of the minimal-norm curve's grid: the share certified beyond it
                "curve": [[float(e), float((radii > e).double().mean())] for e, _ in minimal["curve"]],
            }
            samples["radius"] = [float(r) for r in radii]
            samples["interval"] = [[float(lo), _finite(float(hi))] for lo, hi in summary["intervals"].tolist()]
    return out, samples


def _finite(v: float) -> float | None:
    return v if np.isfinite(v) else None


def bracket_sentence(block: dict[str, Any]) -> str:
    """The summary's statement of the bracket for one threat block (or why there is none)."""
    c = block.get("certified")
    if not c:
        return ""
    if not c["available"]:
        return f"No certified bound: {c['reason']}."
    head = c["per_eps"][-1]
    text = (
        f"Certified bounds ({c['method']}) at {block['norm']} {head['eps']:g}: certified accuracy ≤ true robust accuracy "
        f"≤ attacked robust accuracy: {_pct(head['certified_accuracy'])} ≤ … ≤ {_pct(head['robust_accuracy'])} "
        f"({head['status']['certified']} samples certified, {head['status']['broken']} broken, {head['status']['unknown']} unknown)."
    )
    r = c.get("radius")
    if r and r["samples_with_both"]:
        text += (
            f" Per sample, certified radius ≤ true minimal perturbation ≤ the one {r['attack']} found: median ratio found/certified "
            f"{r['median_ratio']:.2f}, {_pct(r['tight_share'])} of {r['samples_with_both']} samples tight within 10%."
        )
    return text
