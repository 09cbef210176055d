"""The plan of a graph evaluation: which graph attacks, at which budgets, under which goal.

The graph counterpart of :class:`~advlab.evaluation.plan.EvaluationPlan`, written the same
way as TOML (top-level fields; ``kind = "graph"`` may mark the file)::

    kind = "graph"
    budgets = [0, "5%", "10%", "20%"]   # edge flips in total (global attacks): counts or shares of the edges
    target_budgets = [0, 1, 2, 3]       # edge flips per target node (Nettack)
    targets = 10                        # test nodes the targeted attack attacks
    feature_eps = [0.05, 0.1, 0.2]      # node-feature budgets (feature PGD)
    goals = ["evasion", "poisoning"]
    attacks = "auto"                    # or ["dice", "pgd-topology", {name = "nettack", candidates = 8}]

Every attack runs under a :class:`~advlab.graphs.GraphThreatModel`; the plan and its seed
fully determine the numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from advlab.norms import canonical_norm
from advlab.validation import InputError

__all__ = ["GraphPlan", "as_graph_plan", "DEFAULT_GRAPH_ATTACKS", "GOALS"]

DEFAULT_GRAPH_ATTACKS = ("dice", "pgd-topology", "nettack", "feature-pgd")
GOALS = ("evasion", "poisoning")


def _ints(name: str, values: Any) -> tuple[int, ...]:
    vals = values if isinstance(values, (list, tuple)) else (values,)
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be non-negative integers (edge flips), got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return tuple(sorted(set(out)))


def _budget(v: Any) -> int | str:
    """An edge budget: a count of flips (int) or a share of the graph's edges (``"5%"``)."""
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            share = float(v.strip()[:-1])
        except ValueError:
            share = float("nan")
        if not 0 <= share <= 100:
            raise ValueError(f"edge budget {v!r} is out of range: a share of the edges must lie between 0% and 100%")
        return f"{share:g}%"
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"edge budget {v!r} must be a number of edge flips (8) or a share of the edges ('5%')")
    if v < 0:
        raise ValueError(f"edge budget {v!r} is out of range: a number of edge flips must be >= 0")
    return int(v)


@dataclass(frozen=True)
class GraphPlan:
    """Everything that determines a graph evaluation's numbers.

    Parameters
    ----------
    budgets:
        Edge-flip budgets of the global structure attacks (DICE, PGD topology): counts or
        shares of the graph's edges (``"5%"``).  Accuracy is measured on the test nodes.
    target_budgets:
        Edge flips per target node for targeted attacks (Nettack).
    targets:
        How many test nodes (the first ones) the targeted attack attacks, one at a time.
    feature_eps, feature_norm:
        Budgets and norm of the node-feature attacks (feature PGD): every node's feature
        vector moves inside its own ball, within the graph's feature box.
    goals:
        ``"evasion"`` (the trained model sees the perturbed graph) and/or ``"poisoning"``
        (a fresh model is retrained on the perturbed graph).
    knowledge:
        ``"white"``: the adversary knows the graph, the labels, the weights and gradients
        (DICE uses the labels only).
    attacks:
        ``"auto"`` (DICE, PGD topology, Nettack, feature PGD) or a list of graph attack names
        / ``{"name": ..., **params}`` / :class:`~advlab.graphs.GraphAttack` instances.
    steps:
        Steps of the attacks that take steps (unless an attack entry sets its own).
    epochs:
        Training epochs of a GCN trained by name (``model="gcn"``) and of every retraining
        under poisoning (Kipf & Welling's 200 by default).
    seed:
        Seed of the attacks, the training and the retraining.
    examples:
        How many attacked nodes' neighbourhoods the report draws.
    """

    budgets: tuple[int | str, ...] = (0, "5%", "10%", "20%")
    target_budgets: tuple[int, ...] = (0, 1, 2, 3)
    targets: int = 10
    feature_eps: tuple[float, ...] = (0.05, 0.1, 0.2)
    feature_norm: str = "linf"
    goals: tuple[str, ...] = ("evasion",)
    knowledge: str = "white"
    attacks: Any = "auto"
    steps: int = 100
    epochs: int = 200
    seed: int = 0
    examples: int = 3

    def __post_init__(self) -> None:
        raw = self.budgets if isinstance(self.budgets, (list, tuple)) else (self.budgets,)
        if not raw:
            raise ValueError("budgets must not be empty")
        object.__setattr__(self, "budgets", tuple(dict.fromkeys(_budget(b) for b in raw)))
        object.__setattr__(self, "target_budgets", _ints("target_budgets", self.target_budgets))
        eps = self.feature_eps if isinstance(self.feature_eps, (list, tuple)) else (self.feature_eps,)
        try:
            values = tuple(sorted({float(e) for e in eps}))
        except (TypeError, ValueError):
            raise ValueError(f"feature_eps must be numbers, got {self.feature_eps!r}") from None
        if any(not (e > 0) or not math.isfinite(e) for e in values):
            raise ValueError(f"feature_eps is out of range: budgets must be positive finite numbers, got {self.feature_eps!r}")
        object.__setattr__(self, "feature_eps", values)
        object.__setattr__(self, "feature_norm", canonical_norm(self.feature_norm))
        goals = (self.goals,) if isinstance(self.goals, str) else tuple(self.goals)
        if not goals or any(g not in GOALS for g in goals) or len(set(goals)) != len(goals):
            raise ValueError(f"goals must be distinct entries of {GOALS}, got {self.goals!r}")
        object.__setattr__(self, "goals", goals)
        if self.knowledge != "white":
            raise ValueError(
                f"knowledge must be 'white' for a graph evaluation (the graph attacks read the weights or the labels), got {self.knowledge!r}"
            )
        attacks = self.attacks
        if isinstance(attacks, list):
            attacks = tuple(attacks)
        if not (attacks == "auto" or isinstance(attacks, tuple) and attacks):
            raise ValueError(f"attacks must be 'auto' or a non-empty list of graph attacks, got {self.attacks!r}")
        object.__setattr__(self, "attacks", attacks)
        for name in ("targets", "steps", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("seed", "examples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        self.build_attacks()  # unknown names and bad parameters fail here, before any work

    # ------------------------------------------------------------------ attacks
    def build_attacks(self) -> list[Any]:
        """The graph attack objects, with the plan's seed and steps filled in."""
        from advlab.graphs.attacks import GraphAttack

        specs = DEFAULT_GRAPH_ATTACKS if self.attacks == "auto" else self.attacks
        out = []
        for spec in specs:
            if isinstance(spec, GraphAttack):
                out.append(spec)
                continue
            if isinstance(spec, str):
                name, params = spec, {}
            elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
                name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
            else:
                raise ValueError(f"a graph attack is a name, {{'name': ..., **params}} or a GraphAttack; got {spec!r}")
            out.append(_graph_attack(name, params, self.seed, self.steps))
        names = [a.name for a in out]
        if len(set(names)) != len(names):
            raise ValueError(f"each graph attack may appear once in a plan, got {names}")
        return out

    # ------------------------------------------------------------------ budgets
    def edge_budgets(self, num_nodes: int, num_edges: int) -> list[int]:
        """``budgets`` as flip counts for a graph, checked against its number of node pairs."""
        pairs = num_nodes * (num_nodes - 1) // 2
        out = set()
        for b in self.budgets:
            count = round(float(str(b)[:-1]) / 100 * num_edges) if isinstance(b, str) else b
            if count > pairs:
                raise InputError(f"edge budget {b!r} is out of range: the graph has only {pairs} node pairs to flip")
            out.add(int(count))
        return sorted(out)

    def per_target_budgets(self, num_nodes: int) -> list[int]:
        top = max(self.target_budgets)
        if top > num_nodes - 1:
            raise InputError(f"target budget {top} is out of range: a node of this graph has at most {num_nodes - 1} possible edges")
        return list(self.target_budgets)

    # ------------------------------------------------------------------ serialisation
    def replace(self, **changes: Any) -> GraphPlan:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = "graph"
        for k in ("budgets", "target_budgets", "feature_eps", "goals"):
            d[k] = list(d[k])
        d["attacks"] = "auto" if self.attacks == "auto" else [_attack_json(a) for a in self.attacks]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphPlan:
        values = dict(data)
        kind = values.pop("kind", "graph")
        if kind != "graph":
            raise ValueError(f"a graph plan has kind = 'graph', got {kind!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown graph plan field(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _graph_attack(name: str, params: dict[str, Any], seed: int, steps: int) -> Any:
    from advlab.graphs.attacks import available_graph_attacks, get_graph_attack

    known = available_graph_attacks()
    key = name.strip().lower().replace("_", "-")
    if key not in known:
        from advlab.attacks.registry import available_attacks

        if key in available_attacks():
            raise InputError(
                f"{name!r} attacks inputs (images, sequences, feature vectors), not graphs; a graph victim takes "
                f"graph attacks: {', '.join(known)}"
            )
    attack = get_graph_attack(name, **{"seed": seed, **params})
    if "steps" in attack.params() and "steps" not in params:
        attack = attack.replace(steps=steps)
    return attack


def _attack_json(spec: Any) -> Any:
    from advlab.graphs.attacks import GraphAttack

    if isinstance(spec, GraphAttack):
        return {"name": spec.name, **spec.params()}
    return spec


def as_graph_plan(plan: Any, **overrides: Any) -> GraphPlan:
    """A graph plan from a :class:`GraphPlan`, a dict, a TOML path or ``None``, with overrides.

    Fields of the image plan that mean nothing for a graph (``samples``, ``batch_size``,
    ``threats`` ...) are refused with the graph field to use instead.
    """
    from advlab.evaluation.plan import EvaluationPlan, read_toml

    if plan is None:
        out = GraphPlan()
    elif isinstance(plan, GraphPlan):
        out = plan
    elif isinstance(plan, EvaluationPlan):
        raise InputError(
            "this EvaluationPlan describes attacks on inputs (lp threat models); a graph victim needs a GraphPlan "
            "(edge budgets, graph attacks): advlab.evaluation.GraphPlan(...)"
        )
    elif isinstance(plan, dict):
        out = GraphPlan.from_dict(plan)
    elif isinstance(plan, (str, Path)):
        data = read_toml(plan)
        if "threat" in data or "threats" in data:
            raise InputError(f"plan file {str(plan)!r} has [[threat]] tables (attacks on inputs); a graph plan sets budgets and graph attacks")
        out = GraphPlan.from_dict(data)
    else:
        raise TypeError(f"plan must be a GraphPlan, a dict or a TOML path, got {type(plan).__name__}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    instead = {"samples": "targets (and budgets)", "batch_size": "nothing (a graph is attacked whole)", "threats": "budgets / feature_eps", "minimal": "nothing", "eps": "feature_eps", "norm": "feature_norm"}
    for k in changes:
        if k in instead and k not in GraphPlan.__dataclass_fields__:
            raise InputError(f"{k!r} does not apply to a graph evaluation; use {instead[k]}")
    unknown = set(changes) - set(GraphPlan.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown graph plan field(s): {sorted(unknown)}; known: {sorted(GraphPlan.__dataclass_fields__)}")
    return out.replace(**changes) if changes else out
