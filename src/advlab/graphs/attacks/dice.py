"""DICE: random edge flips that "delete internally, connect externally".

Waniek et al. 2018, "Hiding individuals and communities in a social network"
(arXiv:1608.00375).  The usual baseline for structure attacks on node classification: each
flip removes a random edge between two nodes of the same class or adds a random edge between
two nodes of different classes (with equal probability).  It knows the labels but not the
model, so a gradient attack at the same budget should do much better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advlab.graphs.attacks.base import GraphAttack, Perturbation
from advlab.graphs.data import Graph
from advlab.graphs.threat import GraphThreatModel

__all__ = ["DICE"]


@dataclass(frozen=True)
class DICE(GraphAttack):
    """Random flips: remove intra-class edges, add inter-class edges (Waniek et al. 2018).

    Parameters
    ----------
    seed:
        Random seed (the flips depend only on it, the graph and the budget).

    Example
    -------
    >>> result = DICE(seed=0)(model, graph, GraphThreatModel(edges=10))  # doctest: +SKIP
    """

    name = "dice"
    paper = "Waniek et al. 2018, Hiding individuals and communities in a social network, arXiv:1608.00375"

    def _perturb(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, nodes: Tensor) -> Perturbation:
        g = torch.Generator().manual_seed(self.seed)
        y, e = graph.y, graph.edges
        budget = threat.edges
        intra = e[:, y[e[0]] == y[e[1]]]
        removals = int(torch.binomial(torch.tensor(float(budget)), torch.tensor(0.5), generator=g))
        removals = min(removals, intra.shape[1])
        remove = intra[:, torch.randperm(intra.shape[1], generator=g)[:removals]].T
        add = _random_non_edges(graph, budget - removals, g, different_class=True)
        return Perturbation(flips=torch.cat([remove, add]))


def _random_non_edges(graph: Graph, count: int, g: torch.Generator, different_class: bool) -> Tensor:
    """``count`` distinct random node pairs that are not edges (optionally across classes)."""
    n, y = graph.num_nodes, graph.y
    taken = graph.edges[0] * n + graph.edges[1]
    chosen = torch.zeros(0, dtype=torch.long)
    for _ in range(100):
        if len(chosen) >= count:
            break
        draw = 4 * (count - len(chosen)) + 16
        i = torch.randint(n, (draw,), generator=g)
        j = torch.randint(n, (draw,), generator=g)
        lo, hi = torch.minimum(i, j), torch.maximum(i, j)
        ok = lo != hi
        if different_class:
            ok &= y[lo] != y[hi]
        key = (lo * n + hi)[ok]
        key = key[~torch.isin(key, taken) & ~torch.isin(key, chosen)]
        # keep the first occurrence of each new pair, in draw order
        uniq, inverse = torch.unique(key, return_inverse=True)
        first = torch.full((len(uniq),), len(key), dtype=torch.long).scatter_reduce(0, inverse, torch.arange(len(key)), "amin")
        chosen = torch.cat([chosen, key[first.sort().values]])
    chosen = chosen[:count]
    return torch.stack([chosen // n, chosen % n], dim=1)
