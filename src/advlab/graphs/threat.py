"""The graph threat model: how many edges the adversary may flip and how far it may move
node features (an ordinary :class:`~advlab.threat.ThreatModel` applied to each node's
feature vector)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advlab.graphs.data import Graph
from advlab.threat import GOALS, KNOWLEDGE, ThreatModel

__all__ = ["GraphThreatModel"]


@dataclass(frozen=True)
class GraphThreatModel:
    """What a graph adversary may change.

    Parameters
    ----------
    edges:
        Budget of undirected edge flips (an added or a removed edge counts one).  For
        targeted attacks on single nodes (Nettack) it is the budget per target node.
    features:
        A threat model for node features, applied row by row (each node's feature vector
        stays in its own ball and in the box), or ``None`` when features are fixed.
    goal:
        ``"evasion"`` (the trained model sees the perturbed graph) or ``"poisoning"`` (the
        model is retrained on the perturbed graph).
    knowledge:
        ``"white"`` (weights and gradients), ``"gray"`` or ``"black"``.

    Examples
    --------
    >>> GraphThreatModel(edges=5).describe()
    'evasion, white box, <= 5 edge flips'
    >>> GraphThreatModel(features=ThreatModel("linf", eps=0.1)).describe()
    'evasion, white box, node features Linf <= 0.1'
    """

    edges: int = 0
    features: ThreatModel | None = None
    goal: str = "evasion"
    knowledge: str = "white"

    def __post_init__(self) -> None:
        if isinstance(self.edges, bool) or not isinstance(self.edges, int) or self.edges < 0:
            raise ValueError(f"edges must be a non-negative int (a number of edge flips), got {self.edges!r}")
        if self.features is not None:
            if not isinstance(self.features, ThreatModel):
                raise TypeError(f"features must be a ThreatModel or None, got {type(self.features).__name__}")
            if self.features.eps is None:
                raise ValueError("the feature threat model needs an eps (a bounded ball per node)")
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {self.goal!r}")
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f"knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")

    @classmethod
    def edge_fraction(cls, graph: Graph, fraction: float, **kwargs: Any) -> GraphThreatModel:
        """A budget of ``round(fraction * graph.num_edges)`` flips (Xu et al. use 1% to 20%)."""
        if not 0 <= fraction:
            raise ValueError(f"fraction must be >= 0, got {fraction}")
        return cls(edges=int(round(fraction * graph.num_edges)), **kwargs)

    def replace(self, **changes: Any) -> GraphThreatModel:
        values: dict[str, Any] = {"edges": self.edges, "features": self.features, "goal": self.goal, "knowledge": self.knowledge}
        values.update(changes)
        return GraphThreatModel(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges,
            "features": self.features.to_dict() if self.features is not None else None,
            "goal": self.goal,
            "knowledge": self.knowledge,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphThreatModel:
        unknown = set(data) - {"edges", "features", "goal", "knowledge"}
        if unknown:
            raise ValueError(f"unknown graph threat model field(s): {sorted(unknown)}")
        values = dict(data)
        if values.get("features") is not None:
            values["features"] = ThreatModel.from_dict(values["features"])
        return cls(**values)

    def describe(self) -> str:
        parts = []
        if self.edges:
            parts.append(f"<= {self.edges} edge flips")
        if self.features is not None:
            names = {"linf": "Linf", "l2": "L2", "l1": "L1", "l0": "L0"}
            parts.append(f"node features {names[self.features.norm]} <= {self.features.eps:g}")
        return f"{self.goal}, {self.knowledge} box, " + (", ".join(parts) if parts else "no perturbation")
