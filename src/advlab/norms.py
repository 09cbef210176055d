"""Lp geometry shared by every attack: distances, projections, steepest directions, sampling.

Every function works on a batch: the first dimension indexes samples and every other
dimension is flattened.  ``eps`` is always a per-sample tensor of shape ``(B,)`` so that
minimal-norm attacks can shrink or grow each sample's budget independently.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from advlab.rng import CounterRNG

__all__ = ["LpNorm", "LinfNorm", "L2Norm", "L1Norm", "L0Norm", "get_norm", "NORM_NAMES"]

_TINY = 1e-12


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _view(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector ``(B,)`` so that it broadcasts against ``like``."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


class LpNorm(ABC):
    """One lp geometry.  Subclasses are stateless singletons."""

    name: str = ""
    p: float = 0.0

    @abstractmethod
    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample norm of ``delta`` (shape ``(B,)``)."""

    @abstractmethod
    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        """Euclidean projection of each ``delta[i]`` onto the ball of radius ``eps[i]``."""

    @abstractmethod
    def steepest(self, grad: Tensor) -> Tensor:
        """Steepest-ascent direction of unit norm for a linear function with gradient ``grad``."""

    @abstractmethod
    def sample(self, rng: CounterRNG, index: Tensor, stream: int, like: Tensor, eps: Tensor) -> Tensor:
        """A random perturbation inside the ball (shape of ``like``), one per sample."""

    def normalize(self, delta: Tensor) -> Tensor:
        """``delta`` scaled to unit norm (zero rows stay zero)."""
        n = self.measure(delta)
        return delta / _view(n.clamp_min(_TINY), delta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinfNorm(LpNorm):
    name = "linf"
    p = math.inf

    def measure(self, delta: Tensor) -> Tensor:
        return _flat(delta).abs().amax(dim=1)

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        e = _view(eps.to(delta.dtype), delta)
        return torch.maximum(torch.minimum(delta, e), -e)

    def steepest(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def sample(self, rng: CounterRNG, index: Tensor, stream: int, like: Tensor, eps: Tensor) -> Tensor:
        u = rng.uniform(index, stream, like.shape[1:], device=like.device, dtype=like.dtype)
        return (2 * u - 1) * _view(eps.to(like.dtype), like)


class L2Norm(LpNorm):
    name = "l2"
    p = 2.0

    def measure(self, delta: Tensor) -> Tensor:
        return _flat(delta).norm(p=2, dim=1)

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        n = self.measure(delta)
        factor = torch.where(n > eps, eps.to(n.dtype) / n.clamp_min(_TINY), torch.ones_like(n))
        return delta * _view(factor, delta)

    def steepest(self, grad: Tensor) -> Tensor:
        return self.normalize(grad)

    def sample(self, rng: CounterRNG, index: Tensor, stream: int, like: Tensor, eps: Tensor) -> Tensor:
        d = like[0].numel()
        g = rng.normal(index, stream, like.shape[1:], device=like.device, dtype=like.dtype)
        r = rng.uniform(index, stream + 7919, (), device=like.device, dtype=like.dtype) ** (1.0 / d)
        return self.normalize(g) * _view(r * eps.to(like.dtype), like)


def project_l1_ball(v: Tensor, eps: Tensor) -> Tensor:
    """Exact projection of each row of ``v`` (B, D) onto the L1 ball of radius ``eps``.

    Sort-based algorithm of Duchi et al., "Efficient projections onto the l1-ball for learning
    in high dimensions", ICML 2008.
    """
    a = v.abs()
    inside = a.sum(dim=1) <= eps
    mu, _ = torch.sort(a, dim=1, descending=True)
    cs = mu.cumsum(dim=1)
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = mu - (cs - eps[:, None]) / k > 0
    rho = cond.sum(dim=1).clamp_min(1)
    theta = (cs.gather(1, (rho - 1)[:, None]).squeeze(1) - eps) / rho.to(v.dtype)
    w = v.sign() * (a - theta[:, None]).clamp_min(0)
    return torch.where(inside[:, None], v, w)


class L1Norm(LpNorm):
    """L1 geometry.  The steepest direction is sparse: only the ``sparsity`` quantile of the
    largest gradient coordinates move (Tramer & Boneh, "Adversarial training and robustness
    for multiple perturbations", NeurIPS 2019, arXiv:1904.13000)."""

    name = "l1"
    p = 1.0

    def __init__(self, sparsity: float = 0.99) -> None:
        self.sparsity = sparsity

    def measure(self, delta: Tensor) -> Tensor:
        return _flat(delta).abs().sum(dim=1)

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        flat = project_l1_ball(_flat(delta), eps.to(delta.dtype))
        return flat.reshape(delta.shape)

    def steepest(self, grad: Tensor) -> Tensor:
        g = _flat(grad)
        a = g.abs()
        k = max(1, int(round((1 - self.sparsity) * g.shape[1])))
        thresh = a.topk(k, dim=1).values[:, -1:]
        mask = (a >= thresh) & (a > 0)
        d = g.sign() * mask
        d = d / d.abs().sum(dim=1, keepdim=True).clamp_min(_TINY)
        return d.reshape(grad.shape)

    def sample(self, rng: CounterRNG, index: Tensor, stream: int, like: Tensor, eps: Tensor) -> Tensor:
        # Uniform in the L1 ball: d+1 exponentials, normalised, random signs.
        d = like[0].numel()
        u = rng.uniform(index, stream, (d + 1,), device=like.device, dtype=like.dtype)
        e = -torch.log(u.clamp_min(1e-12))
        s = rng.uniform(index, stream + 104729, (d,), device=like.device, dtype=like.dtype)
        sign = torch.where(s < 0.5, -1.0, 1.0).to(like.dtype)
        point = e[:, :d] / e.sum(dim=1, keepdim=True) * sign
        return point.reshape(like.shape) * _view(eps.to(like.dtype), like)


class L0Norm(LpNorm):
    """L0 geometry: the number of changed features (``eps`` is a count)."""

    name = "l0"
    p = 0.0

    def measure(self, delta: Tensor) -> Tensor:
        return (_flat(delta).abs() > 0).sum(dim=1).to(delta.dtype)

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        flat = _flat(delta)
        k = eps.round().long().clamp(0, flat.shape[1])
        order = flat.abs().argsort(dim=1, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(flat.shape[1], device=delta.device).expand_as(order))
        keep = ranks < k[:, None]
        return (flat * keep).reshape(delta.shape)

    def steepest(self, grad: Tensor) -> Tensor:
        g = _flat(grad)
        idx = g.abs().argmax(dim=1, keepdim=True)
        d = torch.zeros_like(g).scatter_(1, idx, g.gather(1, idx).sign())
        return d.reshape(grad.shape)

    def sample(self, rng: CounterRNG, index: Tensor, stream: int, like: Tensor, eps: Tensor) -> Tensor:
        u = rng.uniform(index, stream, like.shape[1:], device=like.device, dtype=like.dtype)
        values = 2 * rng.uniform(index, stream + 15485863, like.shape[1:], device=like.device, dtype=like.dtype) - 1
        return self.project(values * (u + 1e-3), eps)


NORM_NAMES = ("linf", "l2", "l1", "l0")
_ALIASES = {
    "linf": "linf", "inf": "linf", "l_inf": "linf", "l-inf": "linf", "li": "linf", "infinity": "linf",
    "l2": "l2", "2": "l2", "l_2": "l2", "euclidean": "l2",
    "l1": "l1", "1": "l1", "l_1": "l1",
    "l0": "l0", "0": "l0", "l_0": "l0",
}
_NORMS: dict[str, LpNorm] = {"linf": LinfNorm(), "l2": L2Norm(), "l1": L1Norm(), "l0": L0Norm()}


def canonical_norm(name: str | float) -> str:
    """Map user spellings (``'Linf'``, ``'inf'``, ``2``, ``'L2'``) to a canonical norm name."""
    key = str(name).strip().lower().replace(" ", "")
    if key in ("inf", "math.inf", "float('inf')"):
        key = "inf"
    if key.endswith(".0"):
        key = key[:-2]
    if key not in _ALIASES:
        raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORM_NAMES)}")
    return _ALIASES[key]


def get_norm(name: str | float) -> LpNorm:
    """The shared geometry object for a norm name."""
    return _NORMS[canonical_norm(name)]
