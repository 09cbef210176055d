"""Bounds on a chain of layers over a norm ball intersected with the input box.

Two methods, both sound (every bound holds for every input of the set; the tests check it
against sampled points, attacks and an exact mixed-integer solver):

- Interval bound propagation (IBP; Gowal et al. 2018, "On the effectiveness of interval
  bound propagation for training verifiably robust models", arXiv:1810.12715): a box per
  layer, pushed through each layer exactly (affine layers by centre and radius, monotone
  layers end to end).  The margins' specification is folded into the last linear layer, as
  in the paper.  Cheap enough to train with, and differentiable in the weights.
- CROWN (Zhang et al. 2018, "Efficient neural network robustness certification with general
  activation functions", arXiv:1811.00866): each activation is enclosed by two lines
  (:mod:`advlab.certify.relaxations`), and a linear function of the output is pushed back
  to the input through the transposed layers, choosing per neuron the line that keeps the
  bound valid; the input set then bounds the resulting linear function in closed form.
  Bounds of intermediate layers are computed the same way (for the ``max_neurons`` widest
  unstable neurons of each layer, the others keep their interval bounds) and intersected
  with the interval bounds, and the final bound is the larger of CROWN's and IBP's, so
  CROWN is never looser than IBP.

The input set is ``{x' : ||x' - x|| <= eps, box[0] <= x' <= box[1]}`` for Linf (then a box)
or L2; a linear function is bounded over it by the box it lies in and, for L2, by the ball
(Cauchy-Schwarz), taking the better of the two.

Max-pooling is relaxed with the lower line ``max >= x_k`` (``k`` the input of largest lower
bound) and the upper line ``x_k`` when that input dominates its window (its lower bound is
above every other upper bound), else the constant ``max(ub)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.certify.network import ACTIVATIONS
from advlab.certify.relaxations import RELAXATIONS

__all__ = ["InputSet", "interval_bounds", "margin_bounds", "margin_spec", "METHODS"]

METHODS = ("ibp", "crown")
# Largest number of floats a backward pass may hold at once (specifications are chunked to fit).
_BUDGET = 2**25
_RESHAPE = (nn.Flatten, nn.Identity, nn.Dropout)


@dataclass
class InputSet:
    """The ball of radius ``eps`` (per sample, shape ``(B,)``) around ``x`` in ``norm``
    (``"linf"`` or ``"l2"``), intersected with the box ``[lo, hi]``."""

    x: Tensor
    eps: Tensor
    norm: str
    box: tuple[float, float]

    def interval(self) -> tuple[Tensor, Tensor]:
        """The smallest box holding the set (for L2: the Linf ball of the same radius, clipped)."""
        e = self.eps.reshape((-1,) + (1,) * (self.x.dim() - 1)).to(self.x.dtype)
        return (self.x - e).clamp(min=self.box[0]), (self.x + e).clamp(max=self.box[1])

    def lower(self, a: Tensor, b: Tensor) -> Tensor:
        """Lower bound of ``<a[:, k], x'> + b[:, k]`` over the set; ``a`` is ``(B, K, *x.shape[1:])``."""
        n, k = a.shape[:2]
        af = a.reshape(n, k, -1)
        lo, hi = (t.reshape(n, 1, -1) for t in self.interval())
        low = (af.clamp_min(0) * lo + af.clamp_max(0) * hi).sum(dim=2)
        if self.norm == "l2":
            centre = (af * self.x.reshape(n, 1, -1)).sum(dim=2)
            ball = centre - self.eps.reshape(n, 1).to(af.dtype) * af.norm(dim=2)
            low = torch.maximum(low, ball)
        return low + b


def _box_lower(a: Tensor, b: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    n, k = a.shape[:2]
    af = a.reshape(n, k, -1)
    return (af.clamp_min(0) * lo.reshape(n, 1, -1) + af.clamp_max(0) * hi.reshape(n, 1, -1)).sum(dim=2) + b


# ---------------------------------------------------------------------- interval propagation
def _abs_affine(layer: nn.Module, r: Tensor) -> Tensor:
    """``|M| r`` for the linear part ``M`` of an affine layer (``r >= 0``)."""
    if isinstance(layer, nn.Linear):
        return F.linear(r, layer.weight.abs())
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(r, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale, _ = _bn_affine(layer)
        return r * scale.abs().reshape((1, -1) + (1,) * (r.dim() - 2))
    raise TypeError(type(layer).__name__)  # pragma: no cover - callers only pass these


def _row_norms(layer: nn.Module, shape: Sequence[int], like: Tensor) -> Tensor | None:
    """L2 norms of the rows of a Linear or Conv2d layer's matrix (one per output), else None."""
    if isinstance(layer, nn.Linear):
        return layer.weight.norm(dim=1)[None]
    if isinstance(layer, nn.Conv2d):
        ones = torch.ones((1,) + tuple(shape), device=like.device, dtype=like.dtype)
        sq = F.conv2d(ones, layer.weight**2, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        return sq.clamp_min(0).sqrt()
    return None


def _interval(layer: nn.Module, lb: Tensor, ub: Tensor) -> tuple[Tensor, Tensor]:
    if isinstance(layer, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)):
        c, r = (ub + lb) / 2, (ub - lb) / 2
        c_out, r_out = layer(c), _abs_affine(layer, r)
        return c_out - r_out, c_out + r_out
    # every other supported layer is monotone nondecreasing in each input
    return layer(lb), layer(ub)


def _first_weight_layer(chain: Sequence[nn.Module]) -> int:
    """Index of the first layer that is not a reshape (its input is the input set, reshaped)."""
    for i, layer in enumerate(chain):
        if not isinstance(layer, _RESHAPE):
            return i
    return len(chain)


def interval_bounds(chain: Sequence[nn.Module], inputs: InputSet, upto: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """Interval bounds on the input of every layer (and the output): ``out[i]`` bounds the
    input of ``chain[i]``; computed up to index ``upto`` (default: the output)."""
    stop = len(chain) if upto is None else upto
    first = _first_weight_layer(chain)
    lb, ub = inputs.interval()
    out = [(lb, ub)]
    for i in range(stop):
        layer = chain[i]
        lo, hi = _interval(layer, lb, ub)
        if i == first and inputs.norm == "l2":
            rows = _row_norms(layer, lb.shape[1:], lb)
            if rows is not None:
                x_in = inputs.x
                for prev in chain[:i]:
                    x_in = prev(x_in)
                centre = layer(x_in)
                radius = inputs.eps.reshape((-1,) + (1,) * (centre.dim() - 1)).to(centre.dtype) * rows
                lo, hi = torch.maximum(lo, centre - radius), torch.minimum(hi, centre + radius)
        lb, ub = lo, hi
        out.append((lb, ub))
    return out


# ---------------------------------------------------------------------- margins
def margin_spec(y: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The specification of the margins ``z_y - z_j`` for every ``j != y``: ``(B, C - 1, C)``."""
    n = y.shape[0]
    eye = torch.eye(num_classes, device=y.device, dtype=dtype)
    others = torch.arange(num_classes, device=y.device).expand(n, num_classes)
    others = others[others != y[:, None]].reshape(n, num_classes - 1)
    return eye[y][:, None, :] - eye[others]


def _ibp_margins(chain: Sequence[nn.Module], inputs: InputSet, spec: Tensor, bounds: list[tuple[Tensor, Tensor]]) -> Tensor:
    last = chain[-1]
    m = len(chain) - 1
    if isinstance(last, nn.Linear):
        a = spec @ last.weight
        b = spec @ last.bias if last.bias is not None else spec.new_zeros(spec.shape[:2])
        if m <= _first_weight_layer(chain):  # a single linear layer on the input set
            return inputs.lower(a.reshape(a.shape[:2] + inputs.x.shape[1:]), b)
        lb, ub = bounds[m]
        return _box_lower(a, b, lb, ub)
    lb, ub = bounds[-1]
    return _box_lower(spec, spec.new_zeros(spec.shape[:2]), lb, ub)


# ---------------------------------------------------------------------- CROWN
def _bn_affine(layer: nn.Module) -> tuple[Tensor, Tensor]:
    assert isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d))
    assert layer.running_var is not None and layer.running_mean is not None
    scale = torch.rsqrt(layer.running_var + layer.eps)
    if layer.weight is not None:
        scale = scale * layer.weight
    shift = -layer.running_mean * scale
    if layer.bias is not None:
        shift = shift + layer.bias
    return scale, shift


def _back_affine(layer: nn.Module, a: Tensor, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(a M, a c)`` for the affine layer ``z -> M z + c``; ``a`` is ``(B, K, *out_shape)``."""
    n, k = a.shape[:2]
    out_shape = tuple(a.shape[2:])
    if isinstance(layer, _RESHAPE):
        return a.reshape((n, k) + in_shape), a.new_zeros(n, k)
    if isinstance(layer, nn.Linear):
        bias = a @ layer.bias if layer.bias is not None else a.new_zeros(n, k)
        return a @ layer.weight, bias
    if isinstance(layer, nn.Conv2d):
        flat = a.reshape((n * k,) + out_shape)
        grad = torch.nn.grad.conv2d_input(  # type: ignore[attr-defined]
            (n * k,) + in_shape, layer.weight, flat, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        bias = (a.sum(dim=(3, 4)) @ layer.bias) if layer.bias is not None else a.new_zeros(n, k)
        return grad.reshape((n, k) + in_shape), bias
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale, shift = _bn_affine(layer)
        view = (1, 1, -1) + (1,) * (a.dim() - 3)
        return a * scale.reshape(view), (a * shift.reshape(view)).reshape(n, k, -1).sum(dim=2)
    # any other affine layer (AvgPool2d): the transposed map by automatic differentiation
    z = torch.zeros((n * k,) + in_shape, device=a.device, dtype=a.dtype, requires_grad=True)
    with torch.enable_grad():
        out = layer(z)
        (grad,) = torch.autograd.grad(out, z, grad_outputs=a.reshape((n * k,) + out_shape))
    zero = torch.zeros((1,) + in_shape, device=a.device, dtype=a.dtype)
    bias = (a.reshape(n, k, -1) * layer(zero).reshape(1, 1, -1)).sum(dim=2)
    return grad.reshape((n, k) + in_shape), bias


def _maxpool_windows(layer: nn.MaxPool2d, lb: Tensor, ub: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per output of a max-pooling layer: the input position of largest lower bound (flat
    index), whether that input dominates its window, and the largest upper bound."""
    n, c, h, w = lb.shape
    kernel = nn.modules.utils._pair(layer.kernel_size)
    stride = nn.modules.utils._pair(layer.stride if layer.stride is not None else layer.kernel_size)
    pad = nn.modules.utils._pair(layer.padding)
    sides = (pad[1], pad[1], pad[0], pad[0])
    big = torch.finfo(lb.dtype).max

    def windows(t: Tensor, fill: float) -> Tensor:
        t = F.pad(t, sides, value=fill)
        return F.unfold(t.reshape(n * c, 1, t.shape[2], t.shape[3]), kernel, stride=stride).reshape(n, c, kernel[0] * kernel[1], -1)

    lw, uw = windows(lb, -big), windows(ub, -big)
    positions = torch.arange(h * w, device=lb.device, dtype=lb.dtype).reshape(1, 1, h, w)
    pw = F.unfold(F.pad(positions, sides, value=-1.0), kernel, stride=stride).reshape(1, 1, kernel[0] * kernel[1], -1)
    best = lw.argmax(dim=2, keepdim=True)
    l_best = lw.gather(2, best)
    others = uw.scatter(2, best, -big).amax(dim=2, keepdim=True)
    dominant = (l_best >= others).squeeze(2)
    where = pw.expand(n, c, -1, -1).gather(2, best).squeeze(2).long()
    return where, dominant, uw.amax(dim=2)


@dataclass
class _Relaxed:
    """The relaxation of one nonlinear layer, computed once from its input bounds."""

    kind: str
    lines: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    pool: tuple[Tensor, Tensor, Tensor] | None = None


def _relax(layer: nn.Module, lb: Tensor, ub: Tensor) -> _Relaxed:
    if isinstance(layer, nn.MaxPool2d):
        return _Relaxed("pool", pool=_maxpool_windows(layer, lb, ub))
    return _Relaxed("act", lines=RELAXATIONS[type(layer).__name__](lb, ub))


def _back_nonlinear(relaxed: _Relaxed, a: Tensor, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    n, k = a.shape[:2]
    pos, neg = a.clamp_min(0), a.clamp_max(0)
    if relaxed.lines is not None:
        a_low, b_low, a_up, b_up = (t[:, None] for t in relaxed.lines)
        bias = (pos * b_low + neg * b_up).reshape(n, k, -1).sum(dim=2)
        return pos * a_low + neg * a_up, bias
    assert relaxed.pool is not None
    where, dominant, u_max = (t.reshape(t.shape[0], 1, t.shape[1], -1) for t in relaxed.pool)
    c = in_shape[0]
    pos, neg = pos.reshape(n, k, c, -1), neg.reshape(n, k, c, -1)
    dom = dominant.to(a.dtype)
    coef = pos + neg * dom
    bias = (neg * (1 - dom) * u_max).reshape(n, k, -1).sum(dim=2)
    out = torch.zeros((n, k, c, in_shape[1] * in_shape[2]), device=a.device, dtype=a.dtype)
    out.scatter_add_(3, where.expand(n, k, -1, -1), coef)
    return out.reshape((n, k) + in_shape), bias


class _Crown:
    """Backward bound propagation over one chain and one input set (relaxations cached)."""

    def __init__(self, chain: Sequence[nn.Module], inputs: InputSet, max_neurons: int) -> None:
        self.chain = list(chain)
        self.inputs = inputs
        self.max_neurons = max_neurons
        self.shapes: list[tuple[int, ...]] = []
        z = inputs.x
        for layer in self.chain:
            self.shapes.append(tuple(z.shape[1:]))
            z = layer(z)
        self.shapes.append(tuple(z.shape[1:]))
        self.first = _first_weight_layer(self.chain)
        self.bounds = interval_bounds(self.chain, inputs)
        self.relaxed: dict[int, _Relaxed] = {}
        self._tighten()

    def _nonlinear(self, i: int) -> bool:
        return i < len(self.chain) and isinstance(self.chain[i], ACTIVATIONS + (nn.MaxPool2d,))

    def _tighten(self) -> None:
        """CROWN bounds on the inputs of the nonlinear layers that follow another one, in order;
        later layers' interval bounds are recomputed from the tightened ones."""
        seen_nonlinear = False
        for i in range(len(self.chain)):
            if not self._nonlinear(i):
                continue
            if seen_nonlinear and not self._nonlinear(i - 1):
                self._tighten_layer(i)
            lb, ub = self.bounds[i]
            self.relaxed[i] = _relax(self.chain[i], lb, ub)
            for j in range(i, len(self.chain)):  # interval bounds downstream of the new ones
                self.bounds[j + 1] = _meet(self.bounds[j + 1], _interval(self.chain[j], *self.bounds[j]))
            seen_nonlinear = True

    def _tighten_layer(self, i: int) -> None:
        lb, ub = self.bounds[i]
        n = lb.shape[0]
        lf, uf = lb.reshape(n, -1), ub.reshape(n, -1)
        width = (uf - lf).amax(dim=0)
        if isinstance(self.chain[i], nn.ReLU):  # only unstable neurons change a ReLU's relaxation
            width = torch.where(((lf < 0) & (uf > 0)).any(dim=0), width, torch.zeros_like(width))
        count = min(int((width > 0).sum()), self.max_neurons)
        if count == 0:
            return
        chosen = width.topk(count).indices
        largest = max(math.prod(s) for s in self.shapes[: i + 1])
        chunk = max(1, _BUDGET // (2 * n * largest))
        new_l, new_u = lf.clone(), uf.clone()
        for start in range(0, count, chunk):
            idx = chosen[start : start + chunk]
            k = idx.numel()
            spec = torch.zeros((n, 2 * k, lf.shape[1]), device=lb.device, dtype=lb.dtype)
            rows = torch.arange(k, device=lb.device)
            spec[:, rows, idx] = 1.0
            spec[:, rows + k, idx] = -1.0
            low = self.lower(i, spec.reshape((n, 2 * k) + self.shapes[i]))
            new_l[:, idx] = torch.maximum(new_l[:, idx], low[:, :k])
            new_u[:, idx] = torch.minimum(new_u[:, idx], -low[:, k:])
        self.bounds[i] = (new_l.reshape(lb.shape), new_u.reshape(ub.shape))

    def lower(self, i: int, spec: Tensor) -> Tensor:
        """Lower bound of ``<spec[:, k], input of chain[i]>`` over the input set (``i = len``:
        the output)."""
        a = spec
        bias = spec.new_zeros(spec.shape[:2])
        for j in range(i - 1, -1, -1):
            if j < self.first:  # only reshapes remain: the input set bounds it directly
                a = a.reshape(a.shape[:2] + self.shapes[0])
                break
            layer = self.chain[j]
            if j in self.relaxed:
                a, db = _back_nonlinear(self.relaxed[j], a, self.shapes[j])
            else:
                a, db = _back_affine(layer, a, self.shapes[j])
            bias = bias + db
        return self.inputs.lower(a, bias)


def _meet(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1])


def margin_bounds(
    chain: Sequence[nn.Module], inputs: InputSet, spec: Tensor, method: str = "crown", max_neurons: int = 64
) -> Tensor:
    """Lower bounds ``(B, K)`` of ``spec[b, k] . logits`` over the input set of each sample.

    ``method="ibp"`` is differentiable in the weights (certified training uses it);
    ``"crown"`` is at least as tight as ``"ibp"``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "ibp":
        return _ibp_margins(chain, inputs, spec, interval_bounds(chain, inputs))
    crown = _Crown(chain, inputs, max_neurons)
    ibp = _ibp_margins(chain, inputs, spec, crown.bounds)
    return torch.maximum(crown.lower(len(chain), spec), ibp)
