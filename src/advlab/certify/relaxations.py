"""Linear relaxations of activations: two lines that enclose ``act(z)`` for ``z`` in ``[lb, ub]``.

Each function returns ``(a_low, b_low, a_up, b_up)`` (tensors shaped like ``lb``) with
``a_low * z + b_low <= act(z) <= a_up * z + b_up`` for every ``z`` in ``[lb, ub]``; the tests
check this on dense grids.  The choices are those of CROWN (Zhang et al. 2018,
"Efficient neural network robustness certification with general activation functions",
arXiv:1811.00866):

- ReLU: on an unstable neuron (``lb < 0 < ub``) the upper line is the chord, the lower line
  has slope 1 when ``ub >= -lb`` and 0 otherwise (the "adaptive" lower bound).
- Sigmoid and tanh (convex below 0, concave above): on the concave side a tangent at the
  midpoint bounds from above and the chord from below (mirrored on the convex side); across
  0 the upper line is the tangent at a point ``d >= 0`` that passes through ``(lb, act(lb))``
  (found by bisection) or, when even the tangent at ``ub`` passes below that point, the chord
  itself; the lower line is the mirror image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["relu_relaxation", "sigmoid_relaxation", "tanh_relaxation", "RELAXATIONS"]

Relaxation = tuple[Tensor, Tensor, Tensor, Tensor]

# Intervals narrower than this get the tangent at the midpoint shifted down and up by the
# largest deviation the curvature allows (|act''| <= K: K w^2 / 8 over a width w): a chord's
# slope loses its precision to cancellation there.
_NARROW = 1e-3
_BISECTION_STEPS = 30


def relu_relaxation(lb: Tensor, ub: Tensor) -> Relaxation:
    active = lb >= 0
    unstable = (lb < 0) & (ub > 0)
    width = (ub - lb).clamp_min(1e-12)
    a_up = torch.where(active, torch.ones_like(lb), torch.where(unstable, ub / width, torch.zeros_like(lb)))
    b_up = torch.where(unstable, -ub * lb / width, torch.zeros_like(lb))
    a_low = torch.where(active | (unstable & (ub >= -lb)), torch.ones_like(lb), torch.zeros_like(lb))
    return a_low, torch.zeros_like(lb), a_up, b_up


def _s_shaped(
    f: Callable[[Tensor], Tensor], df: Callable[[Tensor], Tensor], centre: float, curvature: float
) -> Callable[[Tensor, Tensor], Relaxation]:
    """The relaxation of an S-shaped activation ``f`` (convex below 0, concave above, and
    point-symmetric about ``(0, centre)``: ``f(-z) = 2 centre - f(z)``; ``|f''| <= curvature``)."""

    def tangent(d: Tensor) -> tuple[Tensor, Tensor]:
        slope = df(d)
        return slope, f(d) - slope * d

    def chord(lb: Tensor, ub: Tensor) -> tuple[Tensor, Tensor]:
        width = (ub - lb).clamp_min(1e-12)
        slope = (f(ub) - f(lb)) / width
        return slope, f(lb) - slope * lb

    def upper(lb: Tensor, ub: Tensor) -> tuple[Tensor, Tensor]:
        """An upper line on [lb, ub] (any signs)."""
        mid = (lb + ub) / 2
        # concave side (lb >= 0): the tangent at the midpoint
        a_cc, b_cc = tangent(mid)
        # convex side (ub <= 0): the chord
        a_cv, b_cv = chord(lb, ub)
        # across 0: the tangent at d in [0, ub] through (lb, f(lb)); bisection on d, keeping the
        # end whose tangent stays above f(lb) at lb (that is what makes it sound)
        fl = f(lb)
        lo = torch.zeros_like(ub)
        hi = ub.clamp_min(0)
        for _ in range(_BISECTION_STEPS):
            d = (lo + hi) / 2
            s, c = tangent(d)
            above = s * lb + c >= fl
            hi = torch.where(above, d, hi)
            lo = torch.where(above, lo, d)
        a_x, b_x = tangent(hi)
        s_u, c_u = tangent(ub)
        use_chord = s_u * lb + c_u < fl  # even the tangent at ub passes below (lb, f(lb))
        a_x = torch.where(use_chord, a_cv, a_x)
        b_x = torch.where(use_chord, b_cv, b_x)
        a = torch.where(lb >= 0, a_cc, torch.where(ub <= 0, a_cv, a_x))
        b = torch.where(lb >= 0, b_cc, torch.where(ub <= 0, b_cv, b_x))
        return a, b

    def relax(lb: Tensor, ub: Tensor) -> Relaxation:
        a_up, b_up = upper(lb, ub)
        # the lower line mirrors the upper line of [-ub, -lb]: f(z) = 2 centre - f(-z)
        a_m, b_m = upper(-ub, -lb)
        a_low, b_low = a_m, 2 * centre - b_m
        narrow = (ub - lb) < _NARROW
        a_t, b_t = tangent((lb + ub) / 2)
        slack = curvature * (ub - lb) ** 2 / 8
        return (
            torch.where(narrow, a_t, a_low),
            torch.where(narrow, b_t - slack, b_low),
            torch.where(narrow, a_t, a_up),
            torch.where(narrow, b_t + slack, b_up),
        )

    return relax


def _dsigmoid(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 - s)


def _dtanh(z: Tensor) -> Tensor:
    return 1 - torch.tanh(z) ** 2


# max |sigmoid''| = 0.0962 and max |tanh''| = 0.7698 (rounded up)
sigmoid_relaxation = _s_shaped(torch.sigmoid, _dsigmoid, 0.5, 0.0963)
tanh_relaxation = _s_shaped(torch.tanh, _dtanh, 0.0, 0.7699)

RELAXATIONS: dict[str, Callable[[Tensor, Tensor], Relaxation]] = {
    "ReLU": relu_relaxation,
    "Sigmoid": sigmoid_relaxation,
    "Tanh": tanh_relaxation,
}
