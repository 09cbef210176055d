"""The evaluation plan: what to attack with, under which threat models, on how many samples.

A plan is a small frozen object that can be written as TOML::

    samples = 100
    seed = 0
    batch_size = 50
    minimal = true          # run the minimal-norm distribution

    [[threat]]
    norm = "linf"
    eps = [0.1, 0.2, 0.3]
    attacks = "auto"        # or a list: ["pgd", {name = "fgsm"}]

The plan and its seed fully determine every number an evaluation reports (timings aside).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from advlab.norms import canonical_norm
from advlab.threat import KNOWLEDGE, ThreatModel

__all__ = ["ThreatSpec", "EvaluationPlan", "load_plan", "as_plan"]

AttackSpec = Any  # "auto", a name, {"name": ..., **params} or an Attack instance


@dataclass(frozen=True)
class ThreatSpec:
    """One threat model evaluated over a list of budgets.

    Parameters
    ----------
    norm:
        ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``.
    eps:
        Budgets, evaluated in increasing order; the largest is the *headline* budget at
        which the audit's costlier checks run.
    targeted:
        Targeted evaluation (targets drawn per sample from the plan's seed).
    knowledge:
        ``"white"`` (gradients allowed) or ``"black"`` (queries only).
    attacks:
        ``"auto"`` (the strongest ensemble the registry offers for this threat model and
        knowledge) or a list of attack names / ``{"name": ..., **params}`` / instances, run as
        a cascade: each attack only on the samples the previous ones left robust.
    box:
        The valid input range ``(low, high)``; every input must lie in it and every attack
        stays in it.
    """

    norm: str = "linf"
    eps: tuple[float, ...] = (0.3,)
    targeted: bool = False
    knowledge: str = "white"
    attacks: Any = "auto"
    box: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        eps = self.eps if isinstance(self.eps, (list, tuple)) else (self.eps,)
        try:
            values = tuple(sorted(float(e) for e in eps))
        except (TypeError, ValueError):
            raise ValueError(f"eps must be a number or a list of numbers, got {self.eps!r}") from None
        if not values or any(not (e > 0) or e != e or e == float("inf") for e in values):
            raise ValueError(f"eps must be positive finite numbers, got {self.eps!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"eps values must be distinct, got {self.eps!r}")
        object.__setattr__(self, "eps", values)
        if self.knowledge not in KNOWLEDGE or self.knowledge == "gray":
            raise ValueError(f"knowledge must be 'white' or 'black', got {self.knowledge!r}")
        if not isinstance(self.targeted, bool):
            raise ValueError(f"targeted must be true or false, got {self.targeted!r}")
        attacks = self.attacks
        if isinstance(attacks, list):
            attacks = tuple(attacks)
        if not (attacks == "auto" or isinstance(attacks, tuple) and attacks):
            raise ValueError(f"attacks must be 'auto' or a non-empty list, got {self.attacks!r}")
        object.__setattr__(self, "attacks", attacks)
        object.__setattr__(self, "box", ThreatModel(self.norm, box=tuple(self.box)).box)  # type: ignore[arg-type]

    def threat(self, eps: float | None) -> ThreatModel:
        return ThreatModel(self.norm, eps=eps, targeted=self.targeted, knowledge=self.knowledge, box=self.box)

    @property
    def headline(self) -> float:
        return self.eps[-1]

    @property
    def key(self) -> str:
        """A short stable name (``linf-untargeted-white``)."""
        return f"{self.norm}-{'targeted' if self.targeted else 'untargeted'}-{self.knowledge}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": self.norm,
            "eps": list(self.eps),
            "targeted": self.targeted,
            "knowledge": self.knowledge,
            "attacks": self.attacks if self.attacks == "auto" else [_attack_to_json(a) for a in self.attacks],
            "box": list(self.box),
        }


@dataclass(frozen=True)
class EvaluationPlan:
    """Everything that determines an evaluation's numbers.

    Parameters
    ----------
    threats:
        The threat models (:class:`ThreatSpec`); by default untargeted white-box Linf at
        0.1, 0.2 and 0.3 (the MNIST convention).
    samples:
        How many test samples (the first ``samples`` of the split, in order).
    seed:
        Seed of every attack (and of target choice).
    batch_size:
        Samples per unit of work.  A unit is what is persisted, sharded across processes and
        resumed; results do not depend on the number of processes.
    minimal:
        ``True`` (pick a registered minimal-norm attack), ``False``, or an attack name.
    adaptive:
        Attack defenses the way they declare (BPDA, EOT, logits); ``False`` attacks the
        deployed model naively (the audit then escalates to the adaptive form if it finds
        masking).
    audit:
        Run the gradient-masking checks (see ``docs/audit.md``).
    escalate:
        When a check fails, run stronger attacks on the samples still robust.
    examples:
        How many example images the report shows.
    certify:
        Certified bounds beside the attacks (:mod:`advlab.evaluation.bounds`): ``"auto"``
        (CROWN; over IBP's intermediate bounds for convolutional or large models, IBP for very
        large ones: :func:`advlab.evaluation.bounds.choose_method`), ``"crown"``, ``"ibp"`` or
        ``"off"``.  Models the bounds do not cover get the attacks alone.
    """

    threats: tuple[ThreatSpec, ...] = (ThreatSpec("linf", (0.1, 0.2, 0.3)),)
    samples: int = 100
    seed: int = 0
    batch_size: int = 50
    minimal: bool | str = True
    adaptive: bool = True
    audit: bool = True
    escalate: bool = True
    examples: int = 8
    certify: str = "auto"

    def __post_init__(self) -> None:
        threats = self.threats
        if isinstance(threats, ThreatSpec):
            threats = (threats,)
        threats = tuple(t if isinstance(t, ThreatSpec) else ThreatSpec(**t) for t in threats)
        if not threats:
            raise ValueError("a plan needs at least one threat model")
        keys = [t.key for t in threats]
        if len(set(keys)) != len(keys):
            raise ValueError(f"threat models must differ in norm, targeted or knowledge; got {keys}")
        object.__setattr__(self, "threats", threats)
        for name in ("samples", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.examples, int) or self.examples < 0:
            raise ValueError(f"examples must be a non-negative int, got {self.examples!r}")
        if self.certify not in ("auto", "crown", "ibp", "off"):
            raise ValueError(f"certify must be 'auto', 'crown', 'ibp' or 'off', got {self.certify!r}")
        for name in ("adaptive", "audit", "escalate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> EvaluationPlan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threats"] = [t.to_dict() for t in self.threats]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationPlan:
        values = dict(data)
        if "threat" in values:  # TOML's [[threat]] tables
            if "threats" in values:
                raise ValueError("give either [[threat]] tables or a 'threats' list, not both")
            values["threats"] = values.pop("threat")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown plan field(s): {sorted(unknown)}; known: {sorted(known)}")
        if "threats" in values:
            raw = values["threats"]
            if isinstance(raw, dict):
                raw = [raw]
            specs = []
            for t in raw:
                if isinstance(t, ThreatSpec):
                    specs.append(t)
                    continue
                unknown_t = set(t) - {"norm", "eps", "targeted", "knowledge", "attacks", "box"}
                if unknown_t:
                    raise ValueError(f"unknown threat field(s): {sorted(unknown_t)}")
                specs.append(ThreatSpec(**t))
            values["threats"] = tuple(specs)
        return cls(**values)

    def fingerprint(self) -> str:
        """Hash of everything that determines the numbers (identifies a run folder's plan)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _attack_to_json(spec: Any) -> Any:
    from advlab.attacks.base import Attack

    if isinstance(spec, Attack):
        return {"name": spec.name, **spec.params()}
    return spec


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # type: ignore[import-not-found]

    return tomli


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a plan file (errors name the file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"plan file {str(p)!r} does not exist")
    toml = _toml()
    try:
        return dict(toml.loads(p.read_text(encoding="utf-8")))
    except toml.TOMLDecodeError as exc:
        raise ValueError(f"plan file {str(p)!r} is not valid TOML: {exc}") from None


def load_plan(path: str | Path) -> EvaluationPlan:
    """Read a plan from a TOML file."""
    data = read_toml(path)
    if data.get("kind") == "graph":
        raise ValueError(f"plan file {str(path)!r} is a graph plan (kind = 'graph'); evaluate a graph victim with it")
    return EvaluationPlan.from_dict(data)


def as_plan(plan: EvaluationPlan | dict[str, Any] | str | Path | None, **overrides: Any) -> EvaluationPlan:
    """A plan from an object, a dict, a TOML path or ``None`` (the default plan), with overrides."""
    if plan is None:
        out = EvaluationPlan()
    elif isinstance(plan, EvaluationPlan):
        out = plan
    elif isinstance(plan, dict):
        out = EvaluationPlan.from_dict(plan)
    elif isinstance(plan, (str, Path)):
        out = load_plan(plan)
    else:
        raise TypeError(f"plan must be an EvaluationPlan, a dict or a TOML path, got {type(plan).__name__}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(EvaluationPlan.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown plan field(s): {sorted(unknown)}")
    return out.replace(**changes) if changes else out
