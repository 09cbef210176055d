"""A graph convolutional network for node classification, in plain torch.

Kipf & Welling 2017, "Semi-supervised classification with graph convolutional networks"
(arXiv:1609.02907): ``Z = A_hat relu(A_hat X W1) W2`` with the renormalised adjacency
``A_hat = D^-1/2 (A + I) D^-1/2``.  The adjacency may be a dense ``(n, n)`` tensor (then
gradients flow to its entries, which is what topology attacks need) or a sparse COO tensor
(for large graphs).  Training and the graph attacks live in :mod:`advlab.graphs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.validation import InputError

__all__ = ["GCN", "normalize_adjacency"]


def normalize_adjacency(adj: Tensor) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` for a symmetric adjacency, dense or sparse (same layout back).

    Dense inputs may hold continuous weights in [0, 1] (relaxed edge flips) and stay
    differentiable.
    """
    n = adj.shape[0]
    if adj.dim() != 2 or adj.shape[1] != n:
        raise InputError(f"the adjacency must be square (n, n), got shape {tuple(adj.shape)}")
    if adj.is_sparse:
        a = adj.coalesce()
        idx = torch.arange(n, device=adj.device)
        loops = torch.sparse_coo_tensor(torch.stack([idx, idx]), torch.ones(n, device=adj.device, dtype=a.dtype), (n, n), check_invariants=False)
        a = (a + loops).coalesce()
        deg = torch.sparse.sum(a, dim=1).to_dense()
        inv = deg.clamp_min(1e-12).pow(-0.5)
        i, j = a.indices()
        return torch.sparse_coo_tensor(a.indices(), inv[i] * a.values() * inv[j], (n, n), check_invariants=False).coalesce()
    a = adj + torch.eye(n, device=adj.device, dtype=adj.dtype)
    inv = a.sum(dim=1).clamp_min(1e-12).pow(-0.5)
    return inv[:, None] * a * inv[None, :]


def _gc(a_hat: Tensor, h: Tensor, layer: nn.Linear) -> Tensor:
    """One graph convolution ``A_hat h W + b``."""
    hw = F.linear(h, layer.weight)
    return (torch.sparse.mm(a_hat, hw) if a_hat.is_sparse else a_hat @ hw) + layer.bias


class GCN(nn.Module):
    """Two-layer GCN: ``logits = A_hat relu(A_hat X W1 + b1) W2 + b2`` (one row per node).

    Parameters
    ----------
    in_features:
        Node feature width.
    num_classes:
        Node classes.
    hidden:
        Hidden units (Kipf & Welling use 16).
    dropout:
        Dropout on the input features and the hidden layer while training.

    Call it as ``model(x, adj)`` with node features ``x`` ``(n, in_features)`` and the raw
    adjacency ``adj`` (dense or sparse, without self-loops); it normalises ``adj`` itself
    (pass ``normalized=True`` with :func:`normalize_adjacency`'s output to skip that).
    """

    input_kind = "graph"  # advlab.evaluate runs graph attacks on it (advlab.graphs.evaluator)
    train_hint = "it is a graph model: train it with advlab.graphs.fit_gcn(graph) (see `advlab graph-attack`)"

    def __init__(self, in_features: int, num_classes: int, hidden: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2 or hidden < 1 or not 0.0 <= dropout < 1.0:
            raise InputError(
                f"bad GCN size: in_features={in_features}, num_classes={num_classes}, hidden={hidden}, dropout={dropout}"
            )
        self.in_features = in_features
        self.dropout = dropout
        self.layer1 = nn.Linear(in_features, hidden)
        self.layer2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, adj: Tensor, normalized: bool = False) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise InputError(f"node features must have shape (n, {self.in_features}), got {tuple(x.shape)}")
        if adj.shape[0] != x.shape[0]:
            raise InputError(f"adjacency of {adj.shape[0]} nodes for features of {x.shape[0]} nodes")
        a_hat = adj.to(x.dtype) if normalized else normalize_adjacency(adj.to(x.dtype))
        h = F.dropout(x, self.dropout, self.training)
        h = torch.relu(_gc(a_hat, h, self.layer1))
        h = F.dropout(h, self.dropout, self.training)
        return _gc(a_hat, h, self.layer2)
