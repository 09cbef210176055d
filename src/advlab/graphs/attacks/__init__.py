"""Graph attacks and their registry: ``get_graph_attack("pgd-topology", steps=100)``."""

from __future__ import annotations

import difflib
from typing import Any

from advlab.graphs.attacks.base import (
    GraphAttack,
    GraphAttackError,
    Perturbation,
    project_budget,
    relaxed_adjacency,
)
from advlab.graphs.attacks.dice import DICE
from advlab.graphs.attacks.features import FeaturePGD
from advlab.graphs.attacks.nettack import Nettack
from advlab.graphs.attacks.topology import PGDTopology

__all__ = [
    "DICE",
    "FeaturePGD",
    "GraphAttack",
    "GraphAttackError",
    "Nettack",
    "PGDTopology",
    "Perturbation",
    "available_graph_attacks",
    "get_graph_attack",
    "project_budget",
    "relaxed_adjacency",
]

_GRAPH_ATTACKS: dict[str, type[GraphAttack]] = {cls.name: cls for cls in (DICE, PGDTopology, FeaturePGD, Nettack)}


def available_graph_attacks() -> dict[str, type[GraphAttack]]:
    """Every graph attack, by name."""
    return dict(sorted(_GRAPH_ATTACKS.items()))


def get_graph_attack(name: str, **params: Any) -> GraphAttack:
    """A graph attack by name with hyperparameters (``get_graph_attack("dice", seed=1)``)."""
    key = name.strip().lower().replace("_", "-")
    if key not in _GRAPH_ATTACKS:
        close = difflib.get_close_matches(key, list(_GRAPH_ATTACKS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown graph attack {name!r}{hint} (known: {', '.join(sorted(_GRAPH_ATTACKS))})")
    try:
        return _GRAPH_ATTACKS[key](**params)
    except TypeError as exc:
        import dataclasses

        fields = [f.name for f in dataclasses.fields(_GRAPH_ATTACKS[key])]
        raise ValueError(f"bad parameters for graph attack {name!r}: {exc}; its parameters are {fields}") from None
