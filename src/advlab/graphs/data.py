"""Graphs for node classification: Zachary's karate club and contextual stochastic block models.

A :class:`Graph` keeps its undirected edges as a ``(2, m)`` list (``i < j``) and hands out
dense or sparse adjacency matrices on demand, so large synthetic graphs never need an
``n x n`` matrix unless an attack asks for one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from advlab.validation import InputError

__all__ = ["Graph", "karate_club", "csbm", "load_graph", "GRAPHS", "DENSE_LIMIT"]

GRAPHS = ("karate", "csbm")
# Above this many nodes `Graph.adjacency()` returns a sparse tensor by default.
DENSE_LIMIT = 4000


def _canonical_edges(edges: Tensor, n: int) -> Tensor:
    """Undirected edges as a sorted, duplicate-free ``(2, m)`` list with ``i < j``."""
    if edges.numel() == 0:
        return torch.zeros(2, 0, dtype=torch.long)
    e = edges.long()
    i, j = torch.minimum(e[0], e[1]), torch.maximum(e[0], e[1])
    keep = i != j
    key = torch.unique(i[keep] * n + j[keep])
    return torch.stack([key // n, key % n])


@dataclass
class Graph:
    """An undirected attributed graph with node labels and a train/validation/test split.

    Attributes
    ----------
    name: dataset name.
    x: node features ``(n, d)``, float32.
    edges: undirected edges ``(2, m)``, ``i < j``, no self-loops, no duplicates.
    y: node labels ``(n,)``, int64.
    train, val, test: node indices of each split.
    classes: class names.
    feature_box: the valid feature range ``(low, high)`` (feature attacks stay inside it).
    """

    name: str
    x: Tensor
    edges: Tensor
    y: Tensor
    train: Tensor
    val: Tensor
    test: Tensor
    classes: list[str]
    feature_box: tuple[float, float] = (0.0, 1.0)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 2:
            raise InputError(f"node features must be (n, d), got {tuple(self.x.shape)}")
        if self.y.shape != (n,):
            raise InputError(f"labels must be ({n},), got {tuple(self.y.shape)}")
        if self.edges.numel() and (int(self.edges.min()) < 0 or int(self.edges.max()) >= n):
            raise InputError(f"edge endpoints must be node indices in [0, {n})")
        self.edges = _canonical_edges(self.edges, n)

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ------------------------------------------------------------------ adjacency
    def dense_adjacency(self) -> Tensor:
        """The symmetric 0/1 adjacency as a dense float32 ``(n, n)`` tensor."""
        n = self.num_nodes
        a = torch.zeros(n, n)
        a[self.edges[0], self.edges[1]] = 1.0
        a[self.edges[1], self.edges[0]] = 1.0
        return a

    def sparse_adjacency(self) -> Tensor:
        """The symmetric adjacency as a sparse COO tensor."""
        n = self.num_nodes
        both = torch.cat([self.edges, self.edges.flip(0)], dim=1)
        return torch.sparse_coo_tensor(both, torch.ones(both.shape[1]), (n, n), check_invariants=False).coalesce()

    def adjacency(self, dense: bool | None = None) -> Tensor:
        """Dense below :data:`DENSE_LIMIT` nodes (or when ``dense=True``), else sparse."""
        if dense is None:
            dense = self.num_nodes <= DENSE_LIMIT
        return self.dense_adjacency() if dense else self.sparse_adjacency()

    def degrees(self) -> Tensor:
        return torch.bincount(self.edges.reshape(-1), minlength=self.num_nodes)

    # ------------------------------------------------------------------ perturbation
    def flip(self, flips: Tensor) -> Graph:
        """A copy with the undirected node pairs ``flips`` ``(k, 2)`` toggled (added or removed)."""
        n = self.num_nodes
        if flips.numel() == 0:
            return self.replace()
        f = _canonical_edges(flips.T, n)
        old = self.edges[0] * n + self.edges[1]
        new = f[0] * n + f[1]
        both = torch.cat([old, new])
        keys, counts = torch.unique(both, return_counts=True)
        keep = keys[counts == 1]
        return self.replace(edges=torch.stack([keep // n, keep % n]))

    def replace(self, **changes: object) -> Graph:
        """A copy with some fields changed (``graph.replace(x=x_adv)``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"Graph({self.name!r}, nodes={self.num_nodes}, edges={self.num_edges}, features={self.num_features}, "
            f"classes={self.num_classes}, train/val/test={len(self.train)}/{len(self.val)}/{len(self.test)})"
        )


def _split(y: Tensor, train: float, val: float, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stratified node split: at least one training node per class."""
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise InputError(f"split fractions must satisfy 0 < train, 0 <= val, train + val < 1; got {train}, {val}")
    g = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[], [], []]
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k_tr = max(1, int(round(train * len(idx))))
        k_va = int(round(val * len(idx)))
        parts[0].append(idx[:k_tr])
        parts[1].append(idx[k_tr : k_tr + k_va])
        parts[2].append(idx[k_tr + k_va :])
    return tuple(torch.cat(p).sort().values for p in parts)  # type: ignore[return-value]


def karate_club(train: float = 0.3, val: float = 0.0, seed: int = 0) -> Graph:
    """Zachary's karate club (34 members, 78 friendships), labelled by the club each member
    joined after the split ("Mr. Hi" or "Officer"); one-hot identity features, as in Kipf &
    Welling's karate-club example.  Ships with networkx, so it works offline."""
    try:
        import networkx as nx
    except ImportError as exc:  # pragma: no cover - networkx is a dependency
        raise ImportError("the karate club graph needs networkx: pip install networkx") from exc
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    clubs = sorted({g.nodes[i]["club"] for i in g.nodes})
    y = torch.tensor([clubs.index(g.nodes[i]["club"]) for i in range(n)])
    edges = torch.tensor(list(g.edges()), dtype=torch.long).T
    tr, va, te = _split(y, train, val, seed)
    return Graph(
        name="karate",
        x=torch.eye(n),
        edges=edges,
        y=y,
        train=tr,
        val=va,
        test=te,
        classes=clubs,
        feature_box=(0.0, 1.0),
        info={"source": "networkx.karate_club_graph (Zachary 1977)", "split_seed": seed},
    )


def csbm(
    nodes: int = 1000,
    classes: int = 2,
    features: int = 16,
    degree: float = 8.0,
    homophily: float = 0.8,
    separation: float = 1.0,
    train: float = 0.1,
    val: float = 0.1,
    seed: int = 0,
) -> Graph:
    """A contextual stochastic block model graph (Deshpande et al. 2018, arXiv:1807.09596).

    Balanced classes; an edge joins two nodes of the same class with probability ``p`` and of
    different classes with probability ``q``, chosen so that the expected degree is
    ``degree`` and a share ``homophily`` of it stays inside the class.  Features are Gaussian:
    ``x_i = mu_{y_i} + N(0, I)`` with class means ``separation`` apart (orthogonal directions),
    so features alone give a weak classifier and the graph makes it strong.

    Edges are sampled block by block (a binomial count, then uniform pairs), so the cost is
    proportional to the number of edges: graphs of 10^5 nodes take well under a second.
    """
    if nodes < 2 * classes or classes < 2 or features < classes:
        raise InputError(f"csbm needs classes >= 2, nodes >= 2 * classes and features >= classes; got {nodes}, {classes}, {features}")
    if degree <= 0 or not 0 <= homophily <= 1 or separation < 0:
        raise InputError(f"csbm needs degree > 0, 0 <= homophily <= 1, separation >= 0; got {degree}, {homophily}, {separation}")
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(nodes) % classes)[torch.randperm(nodes, generator=g)]
    members = [(y == c).nonzero().squeeze(1) for c in range(classes)]
    size = nodes / classes
    p = min(1.0, homophily * degree / max(size - 1, 1))
    q = min(1.0, (1 - homophily) * degree / max(nodes - size, 1))
    chunks = []
    for a in range(classes):
        for b in range(a, classes):
            ia, ib = members[a], members[b]
            pairs = len(ia) * (len(ia) - 1) // 2 if a == b else len(ia) * len(ib)
            prob = p if a == b else q
            count = int(torch.binomial(torch.tensor(float(pairs)), torch.tensor(prob), generator=g)) if pairs else 0
            if count == 0:
                continue
            u = ia[torch.randint(len(ia), (count,), generator=g)]
            v = ib[torch.randint(len(ib), (count,), generator=g)]
            chunks.append(torch.stack([u, v]))
    edges = torch.cat(chunks, dim=1) if chunks else torch.zeros(2, 0, dtype=torch.long)
    basis, _ = torch.linalg.qr(torch.randn(features, classes, generator=g))
    means = basis.T * (separation / math.sqrt(2.0))
    x = means[y] + torch.randn(nodes, features, generator=g)
    tr, va, te = _split(y, train, val, seed)
    lo, hi = float(x.min()), float(x.max())
    return Graph(
        name="csbm",
        x=x,
        edges=edges,
        y=y,
        train=tr,
        val=va,
        test=te,
        classes=[str(c) for c in range(classes)],
        feature_box=(math.floor(lo), math.ceil(hi)),
        info={
            "p": p,
            "q": q,
            "degree": degree,
            "homophily": homophily,
            "separation": separation,
            "seed": seed,
        },
    )


def load_graph(name: str, **kwargs: object) -> Graph:
    """A graph by name: ``karate`` or ``csbm`` (keyword arguments go to the builder)."""
    key = name.strip().lower().replace("_", "-")
    if key in ("karate", "karate-club"):
        return karate_club(**kwargs)  # type: ignore[arg-type]
    if key == "csbm":
        return csbm(**kwargs)  # type: ignore[arg-type]
    raise InputError(f"unknown graph {name!r}; expected one of {', '.join(GRAPHS)}")
