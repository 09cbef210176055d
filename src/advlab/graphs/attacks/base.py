"""The graph attack base class: one entry point that checks the budget and evaluates.

Subclasses implement :meth:`GraphAttack._perturb` (global attacks: one perturbation for all
attacked nodes) or :meth:`GraphAttack._perturb_node` (targeted attacks: one perturbation
per target node).  :meth:`GraphAttack.__call__` is never overridden: it checks that the
flips are valid node pairs within the edge budget, projects perturbed features into the
feature threat model, and computes the predictions itself, on the perturbed graph with the
same model (evasion) or with a model retrained from scratch on it (poisoning).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.graphs.data import Graph
from advlab.graphs.result import GraphAttackResult
from advlab.graphs.threat import GraphThreatModel
from advlab.graphs.train import GCN_TRAINING, fresh_copy, node_logits, train_gcn
from advlab.losses import cross_entropy, margin
from advlab.models.training import TrainConfig
from advlab.validation import InputError
from advlab.victim import frozen

__all__ = ["GraphAttack", "Perturbation", "GraphAttackError", "relaxed_adjacency", "project_budget", "node_objective"]


class GraphAttackError(ValueError):
    """A graph attack was asked for something its threat model or design does not allow."""


@dataclass
class Perturbation:
    """What ``_perturb`` returns: node pairs to toggle ``(k, 2)`` and optionally new features."""

    flips: Tensor
    x_adv: Tensor | None = None


NODE_LOSSES = ("ce", "cw", "margin", "tanh-margin", "masked-ce")


def node_objective(logits: Tensor, y: Tensor, loss: str, kappa: float = 0.1) -> Tensor:
    """Per-node attack objective to maximise.

    ``ce`` (cross-entropy), ``cw``/``margin`` (Carlini-Wagner margin capped at ``kappa``),
    ``tanh-margin`` (``tanh`` of the margin) and ``masked-ce`` (cross-entropy of the nodes
    still classified correctly); the last two spend a budget on the nodes near the decision
    boundary instead of pushing confident ones (Geisler et al. 2021, arXiv:2110.14038).
    """
    if loss in ("cw", "margin"):
        return margin(logits, y, kappa=kappa)
    if loss == "tanh-margin":
        return torch.tanh(margin(logits, y))
    if loss == "masked-ce":
        correct = (logits.argmax(dim=1) == y).to(logits.dtype)
        return cross_entropy(logits, y) * correct
    if loss == "ce":
        return cross_entropy(logits, y)
    raise ValueError(f"unknown node loss {loss!r}; expected one of {NODE_LOSSES}")


def relaxed_adjacency(adj: Tensor, s: Tensor, pairs: Tensor) -> Tensor:
    """``A + (1 - 2A) * S`` where ``S`` is symmetric with ``s`` on the node pairs ``pairs``
    ``(2, P)``: ``s = 1`` toggles a pair, fractional values interpolate (Xu et al. 2019)."""
    n = adj.shape[0]
    m = torch.zeros(n, n, dtype=adj.dtype, device=adj.device).index_put((pairs[0], pairs[1]), s)
    m = m + m.T
    return adj + (1 - 2 * adj) * m


def project_budget(s: Tensor, budget: float, iters: int = 60) -> Tensor:
    """Euclidean projection onto ``{s in [0, 1]^P, sum(s) <= budget}`` by bisection on the
    shift ``mu`` in ``clip(s - mu, 0, 1)`` (Xu et al. 2019, arXiv:1906.04214, Prop. 1)."""
    clipped = s.clamp(0, 1)
    if float(clipped.sum()) <= budget:
        return clipped
    lo, hi = float(s.min()) - 1.0, float(s.max())
    for _ in range(iters):
        mu = 0.5 * (lo + hi)
        if float((s - mu).clamp(0, 1).sum()) > budget:
            lo = mu
        else:
            hi = mu
    return (s - hi).clamp(0, 1)


@dataclass(frozen=True)
class GraphAttack:
    """Base class of graph attacks: a frozen dataclass of hyperparameters.

    Class attributes: ``name`` (registry key), ``paper`` (citation), ``perturbs`` (what it
    changes: ``"edges"``, ``"features"``), ``per_node`` (a targeted attack run separately on
    each target node; the edge budget is then per target).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    perturbs: ClassVar[tuple[str, ...]] = ("edges",)
    per_node: ClassVar[bool] = False

    seed: int = 0

    # ------------------------------------------------------------------ to implement
    def _perturb(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, nodes: Tensor) -> Perturbation:
        raise NotImplementedError

    def _perturb_node(self, model: nn.Module, graph: Graph, threat: GraphThreatModel, node: int) -> Perturbation:
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> GraphAttack:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------ the entry point
    def __call__(
        self,
        model: nn.Module,
        graph: Graph,
        threat: GraphThreatModel,
        nodes: Tensor | None = None,
        *,
        train: TrainConfig | None = None,
    ) -> GraphAttackResult:
        """Attack ``model`` (a node classifier ``model(x, adj)``) on ``graph`` under ``threat``.

        Parameters
        ----------
        nodes:
            The nodes to misclassify and evaluate (default: the test nodes).
        train:
            Training settings for the retrained model under ``goal="poisoning"`` (default
            :data:`~advlab.graphs.train.GCN_TRAINING`).
        """
        if not isinstance(threat, GraphThreatModel):
            raise GraphAttackError(f"threat must be a GraphThreatModel, got {type(threat).__name__}")
        if not isinstance(graph, Graph):
            raise InputError(f"graph must be an advlab.graphs.Graph, got {type(graph).__name__}")
        if "features" not in self.perturbs and threat.features is not None:
            raise GraphAttackError(f"attack {self.name!r} does not change node features; drop features= from the threat model")
        if self.perturbs == ("features",) and threat.features is None:
            raise GraphAttackError(f"attack {self.name!r} changes node features: give the threat model features=ThreatModel(...)")
        if threat.features is not None:
            lo, hi = threat.features.box
            if float(graph.x.min()) < lo or float(graph.x.max()) > hi:
                raise InputError(
                    f"the node features of {graph.name!r} lie in [{float(graph.x.min()):g}, {float(graph.x.max()):g}], "
                    f"outside the feature threat model's box [{lo:g}, {hi:g}]; use ThreatModel(..., box=graph.feature_box)"
                )
        idx = graph.test if nodes is None else torch.as_tensor(nodes, dtype=torch.long).reshape(-1)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= graph.num_nodes:
            raise InputError(f"nodes must be a non-empty set of node indices in [0, {graph.num_nodes})")
        with frozen(model):
            clean_pred = node_logits(model, graph).argmax(dim=1)[idx]
            start = time.perf_counter()
            if self.per_node:
                perts = [self._perturb_node(model, graph, threat, int(v)) for v in idx.tolist()]
            else:
                perts = [self._perturb(model, graph, threat, idx)]
            seconds = time.perf_counter() - start
            checked = [self._check(p, graph, threat) for p in perts]
            adv_pred = torch.empty_like(clean_pred)
            for k, (flips, x_adv) in enumerate(checked):
                pred = self._evaluate(model, graph.flip(flips).replace(x=x_adv if x_adv is not None else graph.x), threat, train)
                if self.per_node:
                    adv_pred[k] = pred[idx[k]]
                else:
                    adv_pred = pred[idx]
        all_flips = torch.cat([f for f, _ in checked]) if checked else torch.zeros(0, 2, dtype=torch.long)
        owner = (
            torch.cat([torch.full((len(f),), k, dtype=torch.long) for k, (f, _) in enumerate(checked)])
            if self.per_node
            else torch.full((len(all_flips),), -1, dtype=torch.long)
        )
        x_adv = checked[0][1] if not self.per_node else None
        norms = threat.features.distance(x_adv, graph.x) if (x_adv is not None and threat.features is not None) else None
        return GraphAttackResult(
            attack=self.name,
            params=self.params(),
            threat=threat,
            nodes=idx,
            y=graph.y[idx],
            clean_pred=clean_pred,
            adv_pred=adv_pred,
            flips=all_flips,
            flip_owner=owner,
            x_adv=x_adv,
            feature_norms=norms,
            seconds=seconds,
            retrained=threat.goal == "poisoning",
        )

    # ------------------------------------------------------------------ checks
    def _check(self, p: Perturbation, graph: Graph, threat: GraphThreatModel) -> tuple[Tensor, Tensor | None]:
        n = graph.num_nodes
        f = p.flips.reshape(-1, 2).long() if p.flips.numel() else torch.zeros(0, 2, dtype=torch.long)
        if f.numel():
            if int(f.min()) < 0 or int(f.max()) >= n or bool((f[:, 0] == f[:, 1]).any()):
                raise GraphAttackError(f"attack {self.name!r} returned flips that are not pairs of distinct nodes")
            lo, hi = f.min(dim=1).values, f.max(dim=1).values
            if torch.unique(lo * n + hi).numel() != len(f):
                raise GraphAttackError(f"attack {self.name!r} flipped the same node pair twice")
            f = torch.stack([lo, hi], dim=1)
        if len(f) > threat.edges:
            raise GraphAttackError(f"attack {self.name!r} made {len(f)} edge flips; the budget is {threat.edges}")
        x_adv = None
        if p.x_adv is not None:
            if threat.features is None:
                raise GraphAttackError(f"attack {self.name!r} changed features, which the threat model does not allow")
            if p.x_adv.shape != graph.x.shape:
                raise GraphAttackError(f"attack {self.name!r} returned features of shape {tuple(p.x_adv.shape)}")
            x_adv = threat.features.project(torch.nan_to_num(p.x_adv.detach()), graph.x)
        return f, x_adv

    def _evaluate(self, model: nn.Module, perturbed: Graph, threat: GraphThreatModel, train: TrainConfig | None) -> Tensor:
        """Predictions of every node of the perturbed graph (retraining first for poisoning)."""
        if threat.goal == "poisoning":
            torch.manual_seed((train or GCN_TRAINING).seed)
            fresh = fresh_copy(model)
            train_gcn(fresh, perturbed, train or GCN_TRAINING)
            return node_logits(fresh, perturbed).argmax(dim=1)
        return node_logits(model, perturbed).argmax(dim=1)
