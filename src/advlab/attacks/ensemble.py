"""An attack cascade configured as data, AutoAttack-style (Croce & Hein 2020, arXiv:2003.01690).

Each member attack runs only on the samples every earlier member failed on, and each sample
keeps the first adversarial point found for it, so the ensemble is at least as strong as its
strongest member at a fraction of the cost of running them all.

>>> atk = Ensemble(attacks=[{"name": "apgd", "loss": "ce"}, {"name": "apgd-t", "n_target_classes": 9}])
>>> result = atk(model, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP

The same list from TOML (``[[attacks]]`` tables) or JSON works as is. Without a list, the
default for the threat model's norm comes from :data:`DEFAULT_ATTACKS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import attack_class, available_attacks, make_attack, register
from advlab.norms import NORM_NAMES
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["Ensemble", "DEFAULT_ATTACKS", "add_default_member", "default_members"]

log = logging.getLogger(__name__)

# The strongest cascade per norm, in running order. Members whose name is not registered
# are skipped, so attacks added later (e.g. black-box "square") join by being registered;
# ``"when": "targeted"`` / ``"untargeted"`` limits a member to one kind of threat model, and
# members that cannot run under the threat model (norm, targeted) are skipped.
DEFAULT_ATTACKS: dict[str, list[dict[str, Any]]] = {
    "linf": [
        {"name": "apgd", "loss": "ce"},
        {"name": "apgd-t", "n_target_classes": 9},
        {"name": "apgd", "loss": "dlr", "when": "targeted"},
        {"name": "square"},
    ],
    "l2": [
        {"name": "apgd", "loss": "ce"},
        {"name": "apgd-t", "n_target_classes": 9},
        {"name": "apgd", "loss": "dlr", "when": "targeted"},
        {"name": "square"},
    ],
    "l1": [
        {"name": "pgd", "steps": 100, "restarts": 3},
        {"name": "pgd", "steps": 100, "loss": "margin"},
    ],
    "l0": [],
}
_WHEN = ("targeted", "untargeted")


def add_default_member(norm: str, spec: dict[str, Any], position: int | None = None) -> None:
    """Add ``spec`` to the default cascade of ``norm`` (at the end, or at ``position``)."""
    members = DEFAULT_ATTACKS.setdefault(norm, [])
    if spec not in members:
        members.insert(len(members) if position is None else position, dict(spec))


def _split(spec: Any) -> tuple[Any, str | None]:
    """A member spec without its ``when`` key, and that key."""
    if isinstance(spec, dict) and "when" in spec:
        when = spec["when"]
        if when not in _WHEN:
            raise ValueError(f"ensemble member {spec!r}: 'when' must be one of {_WHEN}, got {when!r}")
        return {k: v for k, v in spec.items() if k != "when"}, when
    return spec, None


def _applies(atk: Attack, when: str | None, threat: ThreatModel) -> bool:
    if when is not None and (when == "targeted") != threat.targeted:
        return False
    try:
        atk.check_threat(threat)
    except AttackError:
        return False
    return True


def default_members(threat: ThreatModel, seed: int = 0) -> list[Attack]:
    """The registered attacks of :data:`DEFAULT_ATTACKS` that can run under ``threat``."""
    known = available_attacks()
    out = []
    for spec in DEFAULT_ATTACKS.get(threat.norm, []):
        spec, when = _split(spec)
        if spec.get("name") not in known:
            continue
        atk = make_attack({"seed": seed, **spec})
        if _applies(atk, when, threat):
            out.append(atk)
    return out


@register
@dataclass(frozen=True)
class Ensemble(Attack):
    """A cascade of attacks, each run only on the samples still robust; per sample the first
    adversarial point found is kept (AutoAttack, Croce & Hein 2020, arXiv:2003.01690).

    Parameters
    ----------
    attacks:
        Member specs in running order: names, ``{"name": ..., **params}`` dicts (from TOML or
        JSON) or attack instances. ``None`` = :data:`DEFAULT_ATTACKS` for the threat model's
        norm (APGD-CE, APGD-T with the targeted DLR loss over the top 9 classes, and any
        registered black-box member). Members without their own ``seed`` get the ensemble's.
        Members that cannot run under the threat model (its norm, or targeted when they are
        untargeted-only like ``apgd-t``) are skipped with a logged warning, so one list serves
        targeted and untargeted evaluations; a spec's ``"when": "targeted"`` (or
        ``"untargeted"``) limits a member to one of them silently.

    Cost: the sum of the members' costs on the samples that reach them, plus one forward pass
    per member and sample to check its output.
    """

    name: ClassVar[str] = "ensemble"
    norms: ClassVar[tuple[str, ...]] = NORM_NAMES
    paper: ClassVar[str] = "Croce & Hein 2020 (AutoAttack), arXiv:2003.01690"
    family: ClassVar[str] = "ensemble"

    attacks: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.attacks is None:
            return
        if isinstance(self.attacks, (str, dict)) or not hasattr(self.attacks, "__iter__"):
            raise ValueError(f"ensemble: attacks must be a list of attack specs, got {self.attacks!r}")
        if not list(self.attacks):
            raise ValueError("ensemble: attacks is empty; give at least one member (or None for the default)")
        for spec in self.attacks:
            spec, _ = _split(spec)
            name = spec.name if isinstance(spec, Attack) else spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, dict) else None
            if not isinstance(name, str):
                raise ValueError(f"ensemble member {spec!r} has no attack name")
            if attack_class(name) is Ensemble:
                raise ValueError("ensemble members cannot be ensembles")
            make_attack(self._seeded(spec))  # unknown names and bad parameters fail here

    def _seeded(self, spec: Any) -> Any:
        if isinstance(spec, str):
            return {"name": spec, "seed": self.seed}
        if isinstance(spec, dict):
            return {"seed": self.seed, **spec}
        return spec

    def members(self, threat: ThreatModel) -> list[Attack]:
        """The attacks that run under ``threat``, in order."""
        if self.attacks is None:
            return default_members(threat, self.seed)
        out = []
        for spec in self.attacks:
            spec, when = _split(spec)
            atk = make_attack(self._seeded(spec))
            if _applies(atk, when, threat):
                out.append(atk)
            elif when is None:
                log.warning("ensemble: skipping member %r, which cannot run under %s", atk, threat.describe())
        return out

    def check_threat(self, threat: ThreatModel) -> None:
        super().check_threat(threat)
        if not self.members(threat):
            raise AttackError(
                f"ensemble: no member can run under {threat.describe()}; give attacks=[...] "
                f"(see `advlab list attacks`)"
            )

    def params(self) -> dict[str, Any]:
        p = super().params()
        if p["attacks"] is not None:
            p["attacks"] = [s.params() | {"name": s.name} if isinstance(s, Attack) else s for s in p["attacks"]]
        return p

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        out = batch.x.clone()
        found = torch.zeros(len(batch), dtype=torch.bool, device=batch.x.device)
        for atk in self.members(threat):
            pos = (~found).nonzero().squeeze(1)
            if pos.numel() == 0:
                break
            sub = Batch(x=batch.x[pos], y=batch.y[pos], y_true=batch.y_true[pos], index=batch.index[pos], num_classes=batch.num_classes)
            child = Victim(victim.model, len(pos), batch.x.device)
            adv = atk._run(child, sub, threat, CounterRNG(atk.seed))
            adv = threat.project(torch.nan_to_num(adv.detach().to(sub.x.dtype), nan=0.0), sub.x)
            pred = child.logits(adv).argmax(dim=1)
            hit = pred == sub.y if threat.targeted else pred != sub.y
            victim.forwards[pos] += child.forwards
            victim.backwards[pos] += child.backwards
            out[pos] = adv  # the successful point, or this member's failed attempt
            found[pos[hit]] = True
            log.info("ensemble member %s broke %d of %d samples", atk.name, int(hit.sum()), len(pos))
        return out
