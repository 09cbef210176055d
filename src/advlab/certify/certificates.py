"""Certificates: which samples no perturbation of the threat model can break, and how far.

:func:`certify` proves, per sample, that every input of the threat model's ball (intersected
with the box) keeps the true class on top: it bounds the logit margins ``z_y - z_j`` from
below with IBP or CROWN (:mod:`advlab.certify.bounds`) and certifies the sample when every
bound is positive.  :func:`certified_radius` finds, per sample, the largest radius that is
still certified, by bisection.  Both are lower bounds on robustness: an attack that breaks a
certified sample would be a bug (the tests look for one).

>>> result = certify(model, x, y, ThreatModel("linf", eps=0.1), method="crown")  # doctest: +SKIP
>>> result.accuracy                                                              # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advlab.certify.bounds import METHODS, InputSet, margin_bounds, margin_spec
from advlab.certify.network import as_chain, check_chain
from advlab.threat import ThreatModel
from advlab.validation import InputError, as_input_tensor, as_label_tensor, check_logits
from advlab.victim import frozen

__all__ = ["CertifiedResult", "certify", "certified_radius", "NORMS"]

NORMS = ("linf", "l2")


@dataclass
class CertifiedResult:
    """Per-sample certificates of one model under one threat model.

    Attributes
    ----------
    certified: bool ``(N,)``: correctly classified and no input of the ball can change that.
    margins: ``(N, C - 1)`` lower bounds of ``z_y - z_j`` over the ball, one per other class
        ``j`` in increasing order.
    lower: ``(N,)`` the smallest of them (certified iff positive and the sample is correct).
    clean_correct: bool ``(N,)``: the clean input is classified correctly.
    """

    certified: Tensor
    margins: Tensor
    lower: Tensor
    clean_correct: Tensor
    threat: ThreatModel
    method: str
    seconds: float

    @property
    def accuracy(self) -> float:
        """Certified accuracy: the share of samples certified."""
        return float(self.certified.float().mean())

    def __len__(self) -> int:
        return int(self.certified.shape[0])

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threat": self.threat.to_dict(),
            "samples": len(self),
            "clean_accuracy": float(self.clean_correct.float().mean()),
            "certified_accuracy": self.accuracy,
            "seconds": self.seconds,
        }


def _check_threat(threat: Any, method: str) -> ThreatModel:
    if not isinstance(threat, ThreatModel):
        raise InputError(f"threat must be a ThreatModel, got {type(threat).__name__}")
    if threat.norm not in NORMS:
        raise InputError(f"certification bounds Linf and L2 balls, not {threat.norm!r}; use ThreatModel('linf' or 'l2', eps=...)")
    if threat.eps is None:
        raise InputError("certification needs a radius: give the threat model an eps (or use certified_radius)")
    if threat.targeted:
        raise InputError("certification is for untargeted threat models (a certified sample resists every target)")
    _check_method(method)
    return threat


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"unknown certification method {method!r}; expected one of {', '.join(METHODS)}")


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _prepare(model: Any, x: Any, y: Any, box: tuple[float, float]) -> tuple[list[nn.Module], Tensor, Tensor]:
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    chain = as_chain(model)
    x_t = as_input_tensor(x, box, device=_device(model))
    with frozen(model):
        logits = check_logits(check_chain(model, chain, x_t[:2]), min(2, x_t.shape[0]))
    y_t = as_label_tensor(y, x_t.shape[0], logits.shape[1], device=x_t.device)
    return chain, x_t, y_t


def _margins(
    model: nn.Module, chain: list[nn.Module], x: Tensor, y: Tensor, eps: Tensor, norm: str, box: tuple[float, float],
    method: str, max_neurons: int,
) -> tuple[Tensor, Tensor]:
    """Margin lower bounds ``(B, C-1)`` and clean correctness of one batch."""
    with torch.no_grad():
        logits = model(x)
        spec = margin_spec(y, logits.shape[1], dtype=x.dtype)
        lower = margin_bounds(chain, InputSet(x, eps, norm, box), spec, method=method, max_neurons=max_neurons)
    return lower, logits.argmax(dim=1) == y


def certify(
    model: nn.Module,
    x: Any,
    y: Any,
    threat: ThreatModel,
    method: str = "crown",
    *,
    batch_size: int = 100,
    max_neurons: int = 64,
) -> CertifiedResult:
    """Certify each sample of ``(x, y)`` against ``threat`` (Linf or L2, untargeted).

    Parameters
    ----------
    model:
        A chain of supported layers (see :func:`advlab.certify.supports`).
    method:
        ``"crown"`` (tighter, default) or ``"ibp"`` (faster).
    batch_size:
        Samples bounded at once (results do not depend on it).
    max_neurons:
        CROWN: per layer, how many of the widest unstable neurons get CROWN bounds (the
        others keep interval bounds); more is tighter and slower.
    """
    threat = _check_threat(threat, method)
    chain, x_t, y_t = _prepare(model, x, y, threat.box)
    assert threat.eps is not None
    start = time.perf_counter()
    margins, correct = [], []
    with frozen(model):
        for i in range(0, x_t.shape[0], batch_size):
            xb, yb = x_t[i : i + batch_size], y_t[i : i + batch_size]
            eps = torch.full((xb.shape[0],), threat.eps, device=xb.device, dtype=xb.dtype)
            m, c = _margins(model, chain, xb, yb, eps, threat.norm, threat.box, method, max_neurons)
            margins.append(m)
            correct.append(c)
    m_all, c_all = torch.cat(margins), torch.cat(correct)
    lower = m_all.amin(dim=1)
    return CertifiedResult(
        certified=c_all & (lower > 0),
        margins=m_all,
        lower=lower,
        clean_correct=c_all,
        threat=threat,
        method=method,
        seconds=time.perf_counter() - start,
    )


def certified_radius(
    model: nn.Module,
    x: Any,
    y: Any,
    norm: str = "linf",
    method: str = "crown",
    *,
    box: tuple[float, float] = (0.0, 1.0),
    steps: int = 14,
    batch_size: int = 100,
    max_neurons: int = 64,
) -> Tensor:
    """Per-sample certified radius in ``norm``: the largest radius found by ``steps`` rounds of
    bisection at which the sample is still certified (0 for a misclassified sample).

    Every returned radius is certified (the bisection keeps the certified end); the true
    certified radius of the method lies within ``hi / 2**steps`` above it, where ``hi`` is
    the box's width (Linf) or the box's diagonal (L2).
    """
    threat = _check_threat(ThreatModel(norm, eps=0.0, box=box), method)
    chain, x_t, y_t = _prepare(model, x, y, threat.box)
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    width = threat.box[1] - threat.box[0]
    top = width if threat.norm == "linf" else width * math.sqrt(x_t[0].numel())
    radii = []
    with frozen(model):
        for i in range(0, x_t.shape[0], batch_size):
            xb, yb = x_t[i : i + batch_size], y_t[i : i + batch_size]
            n = xb.shape[0]
            lo = torch.zeros(n, device=xb.device, dtype=xb.dtype)
            hi = torch.full((n,), top, device=xb.device, dtype=xb.dtype)
            _, correct = _margins(model, chain, xb, yb, lo, threat.norm, threat.box, method, max_neurons)
            for _ in range(steps):
                mid = (lo + hi) / 2
                margins, _ = _margins(model, chain, xb, yb, mid, threat.norm, threat.box, method, max_neurons)
                ok = margins.amin(dim=1) > 0
                lo = torch.where(ok, mid, lo)
                hi = torch.where(ok, hi, mid)
            radii.append(torch.where(correct, lo, torch.zeros_like(lo)))
    return torch.cat(radii)
