"""A targeted greedy structure attack on one node, in the spirit of Nettack.

Zügner et al. 2018, "Adversarial attacks on neural networks for graph data"
(arXiv:1805.07984): flip, one at a time, the edge incident to the target that most
increases the target's classification margin ``max_{c != y} z_c - z_y``.  Nettack scores
candidates exactly on a linearised surrogate; here every candidate (u, target) is ranked by
the gradient of the margin with respect to the adjacency (one backward pass), and the
``candidates`` best are evaluated exactly on the attacked model itself, which picks the flip.
Differences from the paper: structure only (no feature flips), direct attacks only, and no
degree-distribution (power-law) unnoticeability test; removals that would leave a node
without neighbours are skipped, as in Nettack.  The edge budget is per target node; the
attack stops early once the target is misclassified.
Cost per flip: one forward+backward pass and ``candidates`` forward passes (dense adjacency).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.graphs.attacks.base import GraphAttack, Perturbation
from advlab.graphs.data import Graph
from advlab.graphs.threat import GraphThreatModel
from advlab.losses import margin

__all__ = ["Nettack"]


@dataclass(frozen=True)
class Nettack(GraphAttack):
    """Greedy targeted edge flips around each target node (Zügner et al. 2018, structure part).

    Parameters
    ----------
    candidates:
        Flips per step evaluated exactly (the best ones by the gradient score).
    allow_singletons:
        Whether a removal may leave a node without neighbours.
    seed:
        Unused (the attack is deterministic); kept for a uniform interface.

    Example
    -------
    >>> result = Nettack()(model, graph, GraphThreatModel(edges=3), nodes=graph.test[:10])  # doctest: +SKIP
    """

    name = "nettack"
    paper = "Zügner et al. 2018, Adversarial attacks on neural networks for graph data, arXiv:1805.07984"
    per_node = True

    candidates: int = 16
    allow_singletons: bool = False
    seed: int = 0

    def _perturb_node(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, node: int) -> Perturbation:
        adj, x = graph.dense_adjacency(), graph.x
        y = graph.y[node : node + 1]
        flips: list[tuple[int, int]] = []
        for _ in range(threat.edges):
            a_var = adj.clone().requires_grad_(True)
            with torch.enable_grad():
                m = margin(model(x, a_var)[node : node + 1], y).sum()
                (g,) = torch.autograd.grad(m, a_var)
            if float(m.detach()) > 0:  # already misclassified
                break
            score = (g[node] + g[:, node]) * (1 - 2 * adj[node])
            score[node] = -float("inf")
            for u, _ in flips:
                score[u] = -float("inf")
            if not self.allow_singletons:
                deg = adj.sum(dim=1)
                lonely = (adj[node] > 0) & ((deg == 1) | (deg[node] == 1))
                score[lonely] = -float("inf")
            k = min(self.candidates, int(torch.isfinite(score).sum()))
            if k == 0:
                break
            best_u, best_m = -1, -float("inf")
            for u in score.topk(k).indices.tolist():
                trial = adj.clone()
                trial[node, u] = trial[u, node] = 1 - trial[node, u]
                with torch.no_grad():
                    value = float(margin(model(x, trial)[node : node + 1], y))
                if value > best_m:
                    best_u, best_m = u, value
            adj[node, best_u] = adj[best_u, node] = 1 - adj[node, best_u]
            flips.append((best_u, node))
        if not flips:
            return Perturbation(flips=torch.zeros(0, 2, dtype=torch.long))
        return Perturbation(flips=torch.tensor(flips, dtype=torch.long))
