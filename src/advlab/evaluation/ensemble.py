"""Which attacks an evaluation runs: the ``auto`` ensemble, the minimal-norm attack, the
stronger attacks of an escalation, and the model wrappers an escalation attacks through.

``auto`` follows AutoAttack (Croce & Hein 2020, arXiv:2003.01690): a diverse cascade of
parameter-free attacks (APGD with cross-entropy, APGD with the DLR loss, FAB, the black-box
Square attack), each run only on the samples the previous ones left robust.  The cascade is
assembled from whatever the registry offers for the threat model, so it grows as attacks are
added; an ``ensemble`` attack that exposes ``members(threat)`` is used as is.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack
from advlab.attacks.registry import available_attacks, make_attack
from advlab.evaluation.plan import ThreatSpec

__all__ = [
    "auto_cascade",
    "build_cascade",
    "minimal_attack",
    "stronger",
    "blackbox_members",
    "label",
    "LogOutput",
    "declares_adaptive",
]

log = logging.getLogger(__name__)

# White-box members, strongest first: (registry name, parameters).  Names that are not
# registered (or refuse the parameters) are skipped.
WHITE_CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("apgd-ce", {}),
    ("apgd", {"loss": "ce"}),
    ("apgd-t", {}),
    ("apgd-dlr", {}),
    ("apgd", {"loss": "dlr"}),
    ("fab-t", {}),
    ("fab", {}),
    ("pgd", {"loss": "ce"}),
    ("pgd", {"loss": "margin"}),
)
BLACK_CANDIDATES: tuple[str, ...] = ("square", "simba", "nes", "spsa", "boundary", "hopskipjump")
MINIMAL_CANDIDATES: tuple[str, ...] = ("fmn", "ddn", "cw-l2", "deepfool")
# When the registry has APGD, plain PGD is redundant in the ensemble.
_REDUNDANT_WITH_APGD = {"pgd"}


def label(attack: Attack) -> str:
    """A readable name: the registry name and the parameters that differ from the defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(attack) if f.default is not dataclasses.MISSING}
    diff = {k: v for k, v in attack.params().items() if k != "seed" and defaults.get(k, object()) != v}
    inner = ", ".join(f"{k}={v}" for k, v in diff.items())
    return f"{attack.name}({inner})" if inner else attack.name


def _usable(attack: Attack, spec: ThreatSpec) -> bool:
    try:
        attack.check_threat(spec.threat(spec.headline))
    except ValueError:
        return False
    return spec.knowledge == "white" or attack.knowledge == "black"


def _seeded(attack: Attack, seed: int) -> Attack:
    return attack.replace(seed=seed)


def auto_cascade(spec: ThreatSpec, seed: int) -> list[Attack]:
    """The strongest cascade the registry offers for ``spec`` (white- or black-box)."""
    registry = available_attacks()
    ensemble = registry.get("ensemble")
    if ensemble is not None and spec.knowledge == "white" and hasattr(ensemble, "members"):
        try:
            members = list(ensemble(seed=seed).members(spec.threat(spec.headline)))  # type: ignore[attr-defined]
        except (ValueError, TypeError) as exc:
            log.info("ensemble has no members for %s (%s); assembling one", spec.key, exc)
        else:
            members = [_seeded(make_attack(m), seed) for m in members]
            if members:
                return members
    out: list[Attack] = []
    if spec.knowledge == "white":
        for name, params in WHITE_CANDIDATES:
            if name not in registry:
                continue
            if name in _REDUNDANT_WITH_APGD and any(a.name.startswith("apgd") for a in out):
                continue
            try:
                atk = registry[name](seed=seed, **params)
            except (TypeError, ValueError):
                continue
            if _usable(atk, spec) and all(a != atk for a in out):
                out.append(atk)
    out.extend(blackbox_members(spec, seed))
    if not out:
        known = ", ".join(sorted(registry)) or "none"
        raise ValueError(
            f"no registered attack can run the threat model {spec.key} at eps={spec.headline:g} "
            f"(registered: {known}); list attacks explicitly in the plan"
        )
    return out


def blackbox_members(spec: ThreatSpec, seed: int, limit: int | None = 1) -> list[Attack]:
    """Registered black-box attacks usable under ``spec`` (Square first); AutoAttack runs
    one, an escalation all of them (``limit=None``)."""
    registry = available_attacks()
    names = [n for n in BLACK_CANDIDATES if n in registry]
    names += sorted(n for n, c in registry.items() if c.knowledge == "black" and n not in names)
    out = []
    for name in names:
        try:
            atk = registry[name](seed=seed)
        except (TypeError, ValueError):
            continue
        if atk.knowledge == "black" and _usable(atk, spec):
            out.append(atk)
    return out if limit is None else out[:limit]


def build_cascade(spec: ThreatSpec, seed: int) -> list[Attack]:
    """The plan's cascade for ``spec``: ``auto`` or its list, each attack seeded by the plan."""
    if spec.attacks == "auto":
        return auto_cascade(spec, seed)
    out = []
    for entry in spec.attacks:
        atk = make_attack(entry)
        if not isinstance(entry, Attack):
            atk = _seeded(atk, seed)
        atk.check_threat(spec.threat(spec.headline))
        if spec.knowledge == "black" and atk.knowledge != "black":
            raise ValueError(f"attack {atk.name!r} needs {atk.knowledge}-box access, but the threat model is black-box")
        out.append(atk)
    return out


def minimal_attack(spec: ThreatSpec, choice: bool | str, seed: int) -> Attack | None:
    """The minimal-norm attack for ``spec`` (``None`` when none is registered or not wanted)."""
    if choice is False or spec.knowledge == "black":
        return None
    registry = available_attacks()
    names = [choice] if isinstance(choice, str) else [n for n in MINIMAL_CANDIDATES if n in registry]
    for name in names:
        if name not in registry:
            raise ValueError(f"minimal-norm attack {name!r} is not registered")
        atk = registry[name](seed=seed)
        if not atk.minimal:
            raise ValueError(f"attack {name!r} is not a minimal-norm attack")
        try:
            atk.check_threat(spec.threat(None))
        except ValueError:
            if isinstance(choice, str):
                raise
            continue
        return atk
    return None


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
