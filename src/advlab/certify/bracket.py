"""The bracket certified <= true <= attacked, per sample, in the form an evaluation needs.

An evaluation that has run attacks calls :func:`certified_flags` (fixed-budget threat
models) or :func:`certified_radii` (minimal-norm runs) and combines them with what the
attacks found through :func:`sample_status` and :func:`radius_bracket`.  A model or threat
model the bounds do not cover gets ``None`` and the sentence saying why, never an error,
so the attacks' results stand alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.certify.certificates import NORMS, certified_radius, certify
from advlab.certify.network import supports
from advlab.threat import ThreatModel

__all__ = ["applies", "certified_flags", "certified_radii", "sample_status", "radius_bracket", "STATUSES"]

STATUSES = ("certified", "broken", "unknown")


def applies(model: nn.Module, threat: ThreatModel) -> tuple[bool, str]:
    """Whether certified bounds exist for ``model`` under ``threat``, and if not why."""
    ok, reason = supports(model)
    if not ok:
        return False, reason
    if threat.norm not in NORMS:
        return False, f"the bounds cover Linf and L2 balls, not {threat.norm}"
    if threat.targeted:
        return False, "the bounds certify untargeted threat models only"
    return True, ""


def certified_flags(
    model: nn.Module, x: Any, y: Any, threat: ThreatModel, method: str = "crown", **options: Any
) -> tuple[Tensor | None, str]:
    """Per-sample certified flags ``(N,)`` under a fixed-budget ``threat``, or ``(None, why)``."""
    ok, reason = applies(model, threat)
    if not ok:
        return None, reason
    if threat.eps is None:
        return None, "a minimal-norm run has no radius to certify: use certified_radii"
    return certify(model, x, y, threat, method, **options).certified.cpu(), ""


def certified_radii(
    model: nn.Module, x: Any, y: Any, threat: ThreatModel, method: str = "crown", **options: Any
) -> tuple[Tensor | None, str]:
    """Per-sample certified radius ``(N,)`` in ``threat.norm``, or ``(None, why)``."""
    ok, reason = applies(model, threat)
    if not ok:
        return None, reason
    return certified_radius(model, x, y, threat.norm, method, box=threat.box, **options).cpu(), ""


def sample_status(certified: Tensor, broken: Tensor) -> list[str]:
    """Per sample ``"certified"`` (no input of the ball breaks it), ``"broken"`` (an attack did)
    or ``"unknown"`` (neither).  A sample both certified and broken is a soundness bug and
    raises."""
    certified, broken = certified.bool().cpu(), broken.bool().cpu()
    both = certified & broken
    if bool(both.any()):
        raise RuntimeError(f"{int(both.sum())} sample(s) certified and broken at once: a bound or an attack is wrong")
    return ["certified" if c else "broken" if b else "unknown" for c, b in zip(certified.tolist(), broken.tolist(), strict=True)]


def radius_bracket(radius: Tensor, found: Tensor, success: Tensor, tight: float = 0.1) -> dict[str, Any]:
    """Per-sample intervals ``[certified radius, smallest perturbation found]`` and their summary:
    how many samples have both ends, the median ratio found / certified, and the share of
    them whose interval is tight within ``tight`` (ratio <= 1 + tight)."""
    radius, found, success = radius.cpu().double(), found.cpu().double(), success.cpu().bool()
    upper = torch.where(success, found, torch.full_like(found, float("inf")))
    both = success & (radius > 0)
    ratio = upper[both] / radius[both]
    return {
        "intervals": torch.stack([radius, upper], dim=1),
        "samples_with_both": int(both.sum()),
        "median_ratio": float(ratio.median()) if ratio.numel() else float("nan"),
        "tight_share": float((ratio <= 1 + tight).double().mean()) if ratio.numel() else float("nan"),
        "violations": int((success & (found < radius * (1 - 1e-6))).sum()),
    }
