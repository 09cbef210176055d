"""Graph victims and graph attacks: GCN node classification under edge-flip and feature budgets.

>>> graph = load_graph("karate")                                    # doctest: +SKIP
>>> model = fit_gcn(graph)                                          # doctest: +SKIP
>>> curve = accuracy_vs_budget(model, graph, [DICE(), PGDTopology()], [0, 4, 8])  # doctest: +SKIP
"""

from advlab.graphs.attacks import (
    DICE,
    FeaturePGD,
    GraphAttack,
    GraphAttackError,
    Nettack,
    PGDTopology,
    available_graph_attacks,
    get_graph_attack,
)
from advlab.graphs.data import GRAPHS, Graph, csbm, karate_club, load_graph
from advlab.graphs.evaluate import BudgetCurve, accuracy_vs_budget
from advlab.graphs.result import GraphAttackResult
from advlab.graphs.threat import GraphThreatModel
from advlab.graphs.train import GCN_TRAINING, fit_gcn, node_accuracy, node_logits, train_gcn
from advlab.models.graph import GCN, normalize_adjacency

__all__ = [
    "BudgetCurve",
    "DICE",
    "FeaturePGD",
    "GCN",
    "GCN_TRAINING",
    "GRAPHS",
    "Graph",
    "GraphAttack",
    "GraphAttackError",
    "GraphAttackResult",
    "GraphThreatModel",
    "Nettack",
    "PGDTopology",
    "accuracy_vs_budget",
    "available_graph_attacks",
    "csbm",
    "fit_gcn",
    "get_graph_attack",
    "karate_club",
    "load_graph",
    "node_accuracy",
    "node_logits",
    "normalize_adjacency",
    "train_gcn",
]
