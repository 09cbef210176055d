"""An attack cascade configured as data, AutoAttack-style (Croce & Hein 2020, arXiv:2003.01690).

Each member attack runs only on the samples every earlier member failed on, and each sample
keeps the first adversarial point found for it, so the ensemble is at least as strong as its
strongest member at a fraction of the cost of running them all.

>>> atk = Ensemble(attacks=[{"name": "apgd", "loss": "ce"}, {"name": "apgd-t", "n_target_classes": 9}])
>>> result = atk(model, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP

The same list from TOML (``[[attacks]]`` tables) or JSON works as is. Without a list, the
members are the registered attacks that declare a ``"cascade"`` role for the threat model
(:func:`advlab.attacks.cascade.members`): APGD-CE, APGD-T and Square for Linf and L2.  The
loop itself is :func:`advlab.attacks.cascade.run_cascade`, the one the evaluation uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.cascade import FOCUS_MARGIN, Member, run_cascade
from advlab.attacks.cascade import members as default_cascade
from advlab.attacks.metadata import FOCUS
from advlab.attacks.registry import attack_class, make_attack, register
from advlab.norms import NORM_NAMES
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

__all__ = ["Ensemble"]

log = logging.getLogger(__name__)

_WHEN = ("targeted", "untargeted")
_KEYS = ("when", "focus", "margin")


def _split(spec: Any) -> tuple[Any, str | None, str]:
    """A member spec without its ``when``, ``focus`` and ``margin`` keys, and the first two."""
    if not isinstance(spec, dict):
        return spec, None, "all"
    when, focus = spec.get("when"), spec.get("focus", "all")
    if when is not None and when not in _WHEN:
        raise ValueError(f"ensemble member {spec!r}: 'when' must be one of {_WHEN}, got {when!r}")
    if focus not in FOCUS:
        raise ValueError(f"ensemble member {spec!r}: 'focus' must be one of {FOCUS}, got {focus!r}")
    return {k: v for k, v in spec.items() if k not in _KEYS}, when, focus


def _applies(atk: Attack, when: str | None, threat: ThreatModel) -> bool:
    if when is not None and (when == "targeted") != threat.targeted:
        return False
    try:
        atk.check_threat(threat)
    except AttackError:
        return False
    return True


@register
@dataclass(frozen=True)
class Ensemble(Attack):
    """A cascade of attacks, each run only on the samples still robust; per sample the first
    adversarial point found is kept (AutoAttack, Croce & Hein 2020, arXiv:2003.01690).

    Parameters
    ----------
    attacks:
        Member specs in running order: names, ``{"name": ..., **params}`` dicts (from TOML or
        JSON) or attack instances. ``None`` = the registry's default cascade for the threat
        model (:func:`advlab.attacks.cascade.members`). Members without their own ``seed``
        get the ensemble's.
        Members that cannot run under the threat model (its norm, or targeted when they are
        untargeted-only like ``apgd-t``) are skipped with a logged warning, so one list serves
        targeted and untargeted evaluations; a spec's ``"when": "targeted"`` (or
        ``"untargeted"``) limits a member to one of them silently, and ``"focus":
        "uncertain"`` runs it only on the samples the earlier members left near the boundary.
    focus_margin:
        A sample is *uncertain* when the earlier members shrank its logit margin to at most
        this share of its clean margin.
    adaptive_loss:
        The loss members with ``loss="ce"`` use instead (set from a defense's declared
        ``adaptive_loss`` when it is attacked adaptively).
    knowledge:
        ``"black"`` keeps only black-box members in the default cascade.

    Cost: the sum of the members' costs on the samples that reach them, plus one forward pass
    per member and sample to check its output, and one clean pass per sample that reaches an
    ``"uncertain"`` member.  ``AttackResult.trace`` holds ``broken_by`` (member index, -1 for
    none), ``member_forwards``, ``member_backwards`` and ``member_seconds`` per sample and
    member, and ``margin`` (the relative margin left).
    """

    name: ClassVar[str] = "ensemble"
    norms: ClassVar[tuple[str, ...]] = NORM_NAMES
    paper: ClassVar[str] = "Croce & Hein 2020 (AutoAttack), arXiv:2003.01690"
    family: ClassVar[str] = "ensemble"

    attacks: list[Any] | None = None
    focus_margin: float = FOCUS_MARGIN
    adaptive_loss: str | None = None
    knowledge_limit: str = "white"

    def __post_init__(self) -> None:
        if not (isinstance(self.focus_margin, (int, float)) and self.focus_margin >= 0):
            raise ValueError(f"ensemble: focus_margin must be a non-negative number, got {self.focus_margin!r}")
        if self.knowledge_limit not in ("white", "black"):
            raise ValueError(f"ensemble: knowledge_limit must be 'white' or 'black', got {self.knowledge_limit!r}")
        if self.attacks is None:
            return
        if isinstance(self.attacks, (str, dict)) or not hasattr(self.attacks, "__iter__"):
            raise ValueError(f"ensemble: attacks must be a list of attack specs, got {self.attacks!r}")
        if not list(self.attacks):
            raise ValueError("ensemble: attacks is empty; give at least one member (or None for the default)")
        for spec in self.attacks:
            spec, _, _ = _split(spec)
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

    def cascade(self, threat: ThreatModel) -> list[Member]:
        """The members that run under ``threat``, in order, with their focus."""
        if self.attacks is None:
            return default_cascade(threat, self.seed, self.knowledge_limit)
        out = []
        for raw in self.attacks:
            spec, when, focus = _split(raw)
            atk = make_attack(self._seeded(spec))
            if _applies(atk, when, threat):
                out.append(Member(atk, focus, raw.get("margin") if isinstance(raw, dict) else None))
            elif when is None:
                log.warning("ensemble: skipping member %r, which cannot run under %s", atk, threat.describe())
        return out

    def members(self, threat: ThreatModel) -> list[Attack]:
        """The attacks that run under ``threat``, in order."""
        return [m.attack for m in self.cascade(threat)]

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
        out, trace = run_cascade(self.cascade(threat), victim, batch, threat, self.focus_margin, self.adaptive_loss)
        victim.record("broken_by", trace.broken_by)
        victim.record("member_forwards", trace.forwards)
        victim.record("member_backwards", trace.backwards)
        victim.record("member_seconds", trace.seconds)
        victim.record("margin", trace.margin)
        return out
