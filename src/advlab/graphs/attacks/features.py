"""PGD on node features: every node's feature vector moves inside its own ball.

Madry et al. 2018 (arXiv:1706.06083) applied to node classification: the objective is the
loss on the attacked nodes, the gradient flows to the features of every node (a node is
also fooled through its neighbours), and the step and projection are the feature threat
model's (``ThreatModel.lp.steepest`` and ``ThreatModel.project``, row by row).
Cost: ``steps`` forward+backward passes of the whole graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advlab.graphs.attacks.base import GraphAttack, Perturbation, node_objective
from advlab.graphs.data import Graph
from advlab.graphs.threat import GraphThreatModel
from advlab.rng import CounterRNG

__all__ = ["FeaturePGD"]


@dataclass(frozen=True)
class FeaturePGD(GraphAttack):
    """PGD on node features under ``threat.features`` (any lp norm).

    Parameters
    ----------
    steps:
        Gradient steps.
    step_size:
        Step length in the feature norm (default ``2.5 * eps / steps``).
    loss:
        ``"masked-ce"`` (default: cross-entropy of the nodes still correct; plain ``"ce"``
        tends to push every node into one class and stall), ``"ce"``, ``"cw"`` (margin capped
        at ``kappa``) or ``"tanh-margin"``.
    kappa:
        Cap of the margin loss.
    random_start:
        Start from a random point of each node's ball.
    seed:
        Seed of the random start.

    Example
    -------
    >>> tm = GraphThreatModel(features=ThreatModel("linf", eps=0.1, box=graph.feature_box))  # doctest: +SKIP
    >>> FeaturePGD()(model, graph, tm).robust_accuracy                                       # doctest: +SKIP
    """

    name = "feature-pgd"
    paper = "Madry et al. 2018, arXiv:1706.06083, on node features of a GCN (Kipf & Welling 2017, arXiv:1609.02907)"
    perturbs = ("features",)

    steps: int = 50
    step_size: float | None = None
    loss: str = "masked-ce"
    kappa: float = 0.1
    random_start: bool = False
    seed: int = 0

    def _perturb(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, nodes: Tensor) -> Perturbation:
        feat = threat.features
        assert feat is not None and feat.eps is not None  # checked by the base class
        x, adj, y = graph.x, graph.adjacency(), graph.y[nodes]
        step = self.step_size if self.step_size is not None else 2.5 * feat.eps / max(self.steps, 1)
        index = torch.arange(graph.num_nodes)
        x_adv = feat.random_start(x, CounterRNG(self.seed), index) if self.random_start else x.clone()
        best, best_key = x_adv.clone(), (-1, -float("inf"))
        for _ in range(self.steps):
            x_var = x_adv.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(x_var, adj)[nodes]
                value = node_objective(logits, y, self.loss, self.kappa).mean()
                (grad,) = torch.autograd.grad(value, x_var)
            key = (int((logits.argmax(dim=1) != y).sum()), float(value.detach()))
            if key > best_key:
                best, best_key = x_adv.clone(), key
            x_adv = feat.project(x_adv + step * feat.lp.steepest(grad), x)
        with torch.no_grad():
            logits = model(x_adv, adj)[nodes]
            key = (int((logits.argmax(dim=1) != y).sum()), float(node_objective(logits, y, self.loss, self.kappa).mean()))
        return Perturbation(flips=torch.zeros(0, 2, dtype=torch.long), x_adv=x_adv if key > best_key else best)
