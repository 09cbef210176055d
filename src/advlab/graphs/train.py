"""Full-batch GCN training and node predictions (Kipf & Welling 2017, arXiv:1609.02907)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.graphs.data import Graph
from advlab.models.graph import normalize_adjacency
from advlab.models.registry import build_model
from advlab.models.training import TrainConfig

__all__ = ["GCN_TRAINING", "train_gcn", "fit_gcn", "fresh_copy", "node_logits", "node_accuracy"]

log = logging.getLogger(__name__)

# Kipf & Welling's settings: Adam, lr 0.01, weight decay 5e-4, 200 epochs (full batch).
GCN_TRAINING = TrainConfig(epochs=200, lr=0.01, weight_decay=5e-4)


def _inputs(graph: Graph, x: Tensor | None, adj: Tensor | None) -> tuple[Tensor, Tensor]:
    """Features and the normalised adjacency, sparse when nothing needs its gradient."""
    a = graph.sparse_adjacency() if adj is None else adj
    if not a.is_sparse and not a.requires_grad:
        a = a.to_sparse()
    return (graph.x if x is None else x), normalize_adjacency(a)


def train_gcn(
    model: nn.Module,
    graph: Graph,
    config: TrainConfig | None = None,
    *,
    x: Tensor | None = None,
    adj: Tensor | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on the labelled nodes ``graph.train`` (full batch, seeded).

    ``x`` and ``adj`` replace the graph's features and adjacency (poisoning retrains on the
    perturbed graph this way).  Returns a history with the training loss per epoch.
    """
    cfg = config or GCN_TRAINING
    torch.manual_seed(cfg.seed)
    feats, a = _inputs(graph, x, adj)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict[str, Any] = {"loss": []}
    model.train()
    for _ in range(cfg.epochs):
        loss = F.cross_entropy(model(feats, a, normalized=True)[graph.train], graph.y[graph.train])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["loss"].append(float(loss.detach()))
    model.eval()
    log.info("GCN trained on %s: final loss %.4f", graph.name, history["loss"][-1])
    return history


def fresh_copy(model: nn.Module) -> nn.Module:
    """An untrained model of the same architecture (from its ``advlab_config``)."""
    cfg = getattr(model, "advlab_config", None)
    if not cfg:
        raise ValueError("the model was not built by advlab.build_model, so it cannot be retrained from scratch")
    return build_model(cfg["name"], **cfg.get("kwargs", {}))


def fit_gcn(graph: Graph, *, hidden: int = 16, dropout: float = 0.5, config: TrainConfig | None = None) -> nn.Module:
    """A GCN built for ``graph`` and trained on its training nodes."""
    torch.manual_seed((config or GCN_TRAINING).seed)
    model = build_model("gcn", in_features=graph.num_features, num_classes=graph.num_classes, hidden=hidden, dropout=dropout)
    train_gcn(model, graph, config)
    return model


@torch.no_grad()
def node_logits(model: nn.Module, graph: Graph, *, x: Tensor | None = None, adj: Tensor | None = None) -> Tensor:
    """Logits of every node, in evaluation mode."""
    was = model.training
    model.eval()
    out = model(*_inputs(graph, x, adj), normalized=True)
    model.train(was)
    return out


def node_accuracy(model: nn.Module, graph: Graph, nodes: Tensor | None = None) -> float:
    """Share of ``nodes`` (default: the test nodes) classified correctly."""
    idx = graph.test if nodes is None else nodes
    pred = node_logits(model, graph).argmax(dim=1)
    return float((pred[idx] == graph.y[idx]).float().mean())
