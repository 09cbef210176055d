"""The PGD topology attack on graph neural networks (Xu et al. 2019, arXiv:1906.04214).

Edge flips are relaxed to ``s in [0, 1]^P`` over the node pairs (``A' = A + (1 - 2A) * S``);
projected gradient ascent on the attack loss keeps ``s`` in ``{0 <= s <= 1, sum(s) <= B}``
(bisection projection), and the final flips are drawn as Bernoulli samples of ``s``, keeping
the best sample within the budget.  With ``goal="poisoning"`` and ``inner_steps > 0`` the
model is trained on the relaxed graph between attack steps (Xu et al.'s min-max attack on a
re-trainable GCN); the base class then retrains a fresh model on the perturbed graph.
Cost: ``steps`` forward+backward passes on the dense ``n x n`` adjacency plus ``samples``
forward passes (memory O(n^2): meant for graphs up to a few thousand nodes).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.graphs.attacks.base import (
    GraphAttack,
    Perturbation,
    node_objective,
    project_budget,
    relaxed_adjacency,
)
from advlab.graphs.data import Graph
from advlab.graphs.threat import GraphThreatModel

__all__ = ["PGDTopology"]


@dataclass(frozen=True)
class PGDTopology(GraphAttack):
    """PGD topology attack (Xu et al. 2019), optionally with node features under the same PGD.

    Parameters
    ----------
    steps:
        Projected gradient steps on the relaxed flips.
    step_size:
        Step at iteration ``t`` is ``step_size / sqrt(t + 1)`` times the gradient scaled to a
        largest entry of 1 (a scale-free version of Xu et al.'s decaying step).
    loss:
        ``"tanh-margin"`` (default; clearly stronger than Xu et al.'s cross-entropy at the same
        budget, as Geisler et al. 2021, arXiv:2110.14038, observed), ``"ce"``, ``"cw"``
        (margin capped at ``kappa``) or ``"masked-ce"``.
    kappa:
        Cap of the margin loss.
    samples:
        Bernoulli samples drawn from the relaxed solution (the best one within budget is
        kept; the top-``budget`` rounding is always a candidate).
    inner_steps, inner_lr:
        Poisoning only: training steps (Adam) on the relaxed graph per attack step.
    seed:
        Seed of the random sampling.

    Example
    -------
    >>> result = PGDTopology()(model, graph, GraphThreatModel.edge_fraction(graph, 0.05))  # doctest: +SKIP
    """

    name = "pgd-topology"
    paper = "Xu et al. 2019, Topology attack and defense for graph neural networks, arXiv:1906.04214"
    perturbs = ("edges", "features")

    steps: int = 100
    step_size: float = 1.0
    loss: str = "tanh-margin"
    kappa: float = 0.1
    samples: int = 20
    inner_steps: int = 0
    inner_lr: float = 0.01
    seed: int = 0

    def _perturb(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, nodes: Tensor) -> Perturbation:
        n = graph.num_nodes
        adj, x = graph.dense_adjacency(), graph.x
        pairs = torch.triu_indices(n, n, offset=1)
        y = graph.y[nodes]
        s = torch.zeros(pairs.shape[1])
        feat = threat.features
        x_adv = x.clone()
        f_step = 2.5 * feat.eps / max(self.steps, 1) if feat is not None and feat.eps is not None else 0.0
        victim, opt = self._victim(model, threat)

        def objective(m: nn.Module, a: Tensor, xs: Tensor) -> Tensor:
            return node_objective(m(xs, a)[nodes], y, self.loss, self.kappa).mean()

        for t in range(self.steps if threat.edges or feat is not None else 0):
            if opt is not None:
                self._train_inner(victim, opt, graph, relaxed_adjacency(adj, s, pairs).detach(), x_adv)
            s_var = s.clone().requires_grad_(True)
            x_var = x_adv.clone().requires_grad_(feat is not None)
            with torch.enable_grad():
                value = objective(victim, relaxed_adjacency(adj, s_var, pairs), x_var)
                inputs = [s_var, x_var] if feat is not None else [s_var]
                grads = torch.autograd.grad(value, inputs)
            if threat.edges:
                g = grads[0]
                s = project_budget(s + self.step_size / math.sqrt(t + 1) * g / g.abs().max().clamp_min(1e-12), threat.edges)
            if feat is not None:
                x_adv = feat.project(x_adv + f_step * feat.lp.steepest(grads[1]), x)
        flips = self._sample(victim, objective, adj, x_adv, s, pairs, threat.edges)
        return Perturbation(flips=flips, x_adv=x_adv if feat is not None else None)

    def _victim(self, model: nn.Module, threat: GraphThreatModel) -> tuple[nn.Module, torch.optim.Optimizer | None]:
        if threat.goal != "poisoning" or self.inner_steps <= 0:
            return model, None
        torch.manual_seed(self.seed)
        inner = copy.deepcopy(model)
        for p in inner.parameters():
            p.requires_grad_(True)
        return inner, torch.optim.Adam(inner.parameters(), lr=self.inner_lr)

    def _train_inner(self, m: nn.Module, opt: torch.optim.Optimizer, graph: Graph, adj: Tensor, x: Tensor) -> None:
        m.train()
        with torch.enable_grad():
            for _ in range(self.inner_steps):
                loss = F.cross_entropy(m(x, adj)[graph.train], graph.y[graph.train])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        m.eval()

    @torch.no_grad()
    def _sample(self, m, objective, adj: Tensor, x: Tensor, s: Tensor, pairs: Tensor, budget: int) -> Tensor:  # type: ignore[no-untyped-def]
        """The best binary flip set among Bernoulli samples of ``s`` and its top-``budget`` rounding."""
        if budget == 0 or float(s.max()) <= 0:
            return torch.zeros(0, 2, dtype=torch.long)
        k = min(budget, int((s > 0).sum()))
        top = torch.zeros_like(s)
        top[s.topk(k).indices] = 1.0
        candidates = [top]
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.samples):
            u = torch.bernoulli(s, generator=g)
            if 0 < float(u.sum()) <= budget:
                candidates.append(u)
        scores = [float(objective(m, relaxed_adjacency(adj, u, pairs), x)) for u in candidates]
        best = candidates[max(range(len(scores)), key=scores.__getitem__)]
        return pairs[:, best.bool()].T
