"""Which attacks an evaluation runs: the cascade, the minimal-norm attack, the audit's
single-step and black-box attacks, the stronger attacks of an escalation, and the model
wrappers an escalation attacks through.

``auto`` follows AutoAttack (Croce & Hein 2020, arXiv:2003.01690): a diverse cascade of
parameter-free attacks, each run only on the samples the previous ones left robust.  Every
choice here is a query of the registry (:mod:`advlab.attacks.cascade`): the attacks declare
their roles, so the cascade grows as attacks are registered and no attack name is listed here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack
from advlab.attacks.cascade import Member, members, role_attacks
from advlab.attacks.registry import make_attack
from advlab.evaluation.plan import ThreatSpec

__all__ = [
    "build_cascade",
    "cascade_attack",
    "minimal_attack",
    "single_step_attack",
    "stronger",
    "blackbox_members",
    "label",
    "LogOutput",
    "declares_adaptive",
]

log = logging.getLogger(__name__)


def label(attack: Attack) -> str:
    """A readable name: the registry name and the parameters that differ from the defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(attack) if f.default is not dataclasses.MISSING}
    diff = {k: v for k, v in attack.params().items() if k != "seed" and defaults.get(k, object()) != v}
    inner = ", ".join(f"{k}={v}" for k, v in diff.items())
    return f"{attack.name}({inner})" if inner else attack.name


def blackbox_members(spec: ThreatSpec, seed: int, limit: int | None = 1) -> list[Attack]:
    """Registered black-box attacks usable under ``spec``, in the order their ``"black-box"``
    roles declare (Square first); the audit runs one, an escalation all (``limit=None``)."""
    out = role_attacks("black-box", spec.threat(spec.headline), seed, "black")
    return out if limit is None else out[:limit]


def build_cascade(spec: ThreatSpec, seed: int) -> list[Member]:
    """The plan's cascade for ``spec``: ``auto`` (the registry's default cascade) or its list,
    each attack seeded by the plan (an instance keeps its own seed)."""
    threat = spec.threat(spec.headline)
    if spec.attacks == "auto":
        out = members(threat, seed, spec.knowledge)
        if not out:
            raise ValueError(
                f"no registered attack declares a cascade role for the threat model {spec.key} at eps={spec.headline:g}; "
                "list attacks explicitly in the plan"
            )
        return out
    chosen = []
    for entry in spec.attacks:
        focus = entry.get("focus", "all") if isinstance(entry, dict) else "all"
        margin = entry.get("margin") if isinstance(entry, dict) else None
        atk = make_attack({k: v for k, v in entry.items() if k not in ("focus", "margin")} if isinstance(entry, dict) else entry)
        if not isinstance(entry, Attack):
            atk = atk.replace(seed=seed)
        atk.check_threat(threat)
        if spec.knowledge == "black" and atk.knowledge != "black":
            raise ValueError(f"attack {atk.name!r} needs {atk.knowledge}-box access, but the threat model is black-box")
        chosen.append(Member(atk, focus, margin))
    return chosen


def cascade_attack(cascade: list[Member], seed: int) -> Attack:
    """The ``ensemble`` attack that runs ``cascade`` (the one cascade loop of the library)."""
    from advlab.attacks.ensemble import Ensemble

    specs = [{"name": m.attack.name, **m.attack.params(), "focus": m.focus, "margin": m.margin} for m in cascade]
    return Ensemble(seed=seed, attacks=specs)


def minimal_attack(spec: ThreatSpec, choice: bool | str, seed: int) -> Attack | None:
    """The minimal-norm attack for ``spec`` (``None`` when none is registered or not wanted)."""
    if choice is False or spec.knowledge == "black":
        return None
    threat = spec.threat(None)
    if isinstance(choice, str):
        atk = make_attack(choice).replace(seed=seed)
        if not atk.minimal:
            raise ValueError(f"attack {choice!r} is not a minimal-norm attack")
        atk.check_threat(threat)
        return atk
    found = role_attacks("minimal", threat, seed)
    return found[0] if found else None


def single_step_attack(spec: ThreatSpec, seed: int) -> Attack | None:
    """The audit's single-step attack for ``spec`` (FGSM when registered)."""
    found = role_attacks("single-step", spec.threat(spec.headline), seed)
    return found[0] if found else None


def stronger(attack: Attack, factor: int = 4) -> Attack:
    """The same attack with more effort: ``restarts`` times ``factor`` (or ``steps`` times
    ``factor`` when it has no restarts) and a different seed, so the new starts are new."""
    params = attack.params()
    changes: dict[str, Any] = {"seed": attack.seed + 1}
    if "restarts" in params and isinstance(params["restarts"], int):
        changes["restarts"] = max(2, params["restarts"] * factor)
    elif "steps" in params and isinstance(params["steps"], int):
        changes["steps"] = params["steps"] * factor
    else:
        for key in ("queries", "max_queries"):
            if isinstance(params.get(key), int):
                changes[key] = params[key] * factor
                break
    return attack.replace(**changes)


def declares_adaptive(model: nn.Module) -> bool:
    """Whether ``model`` says how it must be attacked (an ``adaptive()`` form or a loss)."""
    return callable(getattr(model, "adaptive", None)) or bool(getattr(model, "adaptive_loss", None))


class LogOutput(nn.Module):
    """``log(model(x))`` for a model that outputs probabilities: logits up to a constant, with
    the same predictions, so losses on logits (margin, DLR) and cross-entropy work again
    (Carlini & Wagner 2017, arXiv:1608.04644, on attacking softmax outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(self.model(x).clamp_min(1e-30))


def eot(model: nn.Module, samples: int = 10) -> nn.Module:
    """Expectation over Transformation of a randomized model (Athalye et al. 2018,
    arXiv:1707.07397), from :mod:`advlab.defenses` when it provides it."""
    try:
        from advlab.defenses.adaptive import EOT  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - until the defenses package provides it
        return _Average(model, samples)
    return EOT(model, samples)


class _Average(nn.Module):
    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)
