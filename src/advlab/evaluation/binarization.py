"""The binarization test: does the evaluation's attack find adversarial examples that are
known to exist?

Zimmermann, Brendel, Tramer & Carlini 2022, "Increasing Confidence in Adversarial Robustness
Evaluations" (NeurIPS 2022, arXiv:2206.13991).  For each tested sample the model keeps its
features (the input of its last linear layer) and gets a new binary head, fitted so that the
clean input and points drawn in a smaller ball around it are class 0 and one point planted on
the boundary of the eps-ball is class 1.  An adversarial example therefore exists inside the
ball for every tested sample; an attack that does not find it is too weak for this model,
and so, likely, for the original one.

Here the head is a threshold on one direction of the feature space (from the inner points'
mean to the planted point), nine tenths of the way from the highest inner score to the
planted point's (a small target region, so that a weak attack misses it), scaled so that
this gap is one logit (the feature scale must not saturate it); a sample where the direction
does not separate them is left out.  The binarized model serves every tested sample at
once: each input row is routed to the head of the tested sample whose clean input is
closest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advlab.threat import ThreatModel
from advlab.victim import frozen

__all__ = ["BINARIZATION_SAMPLES", "BINARIZATION_PASS", "THRESHOLD_AT", "feature_head", "Binarized", "binarize", "binarization_test"]

BINARIZATION_SAMPLES = 10  # tested samples per threat model (the first correctly classified ones)
BINARIZATION_PASS = 0.9  # fail below this share of planted adversarial examples found
INNER_POINTS = 32  # points of the inner ball, per sample
INNER_RADIUS = 0.5  # the inner ball's radius, a share of eps
THRESHOLD_AT = 0.9  # the head's threshold: this share of the way from the inner points to the planted one


def feature_head(model: nn.Module) -> nn.Linear | None:
    """The model's last ``nn.Linear`` (its classification head), or None."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1] if heads else None


class _Features:
    """A context that captures the input of ``head`` on every forward pass."""

    def __init__(self, head: nn.Linear) -> None:
        self.head = head
        self.value: Tensor | None = None

    def _hook(self, _m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.value = inputs[0].flatten(1)

    def __enter__(self) -> _Features:
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()


class Binarized(nn.Module):
    """The model's features followed by one binary linear head per tested sample; a row is
    scored by the head of the closest clean input (logits ``[0, score]``: class 1 = the
    planted side)."""

    def __init__(self, model: nn.Module, head: nn.Linear, anchors: Tensor, w: Tensor, b: Tensor) -> None:
        super().__init__()
        self.model, self.head = model, head
        self.anchors: Tensor = anchors.flatten(1)
        self.w: Tensor = w
        self.b: Tensor = b

    def forward(self, x: Tensor) -> Tensor:
        with _Features(self.head) as f:
            logits = self.model(x)
        assert f.value is not None
        which = torch.cdist(x.flatten(1).to(self.anchors.dtype), self.anchors).argmin(1)
        score = (f.value * self.w[which].to(f.value.dtype)).sum(1) + self.b[which].to(f.value.dtype)
        # the model's own output joins the graph with weight 0, so a backward pass runs through
        # the whole model as it does for every other attack (and hooks on it see it)
        score = score + 0 * logits.float().sum(1).to(score.dtype)
        return torch.stack([torch.zeros_like(score), score], 1)


@dataclass
class Planted:
    model: Binarized
    kept: Tensor  # which of the given samples got a separable head
    planted: Tensor  # the planted adversarial example per sample
    forwards: int


def binarize(model: nn.Module, x: Tensor, threat: ThreatModel, seed: int) -> Planted | None:
    """The binarized model for samples ``x`` (None when the model has no linear head)."""
    head = feature_head(model)
    if head is None or threat.eps is None:
        return None
    eps = float(threat.eps)
    n, k = x.shape[0], INNER_POINTS
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shape = (n, k, *x.shape[1:])
    # inner points: uniform in the Linf cube of radius INNER_RADIUS * eps, projected into the
    # threat's ball of that radius and into the box
    cube = (2 * torch.rand(shape, generator=gen) - 1).to(x) * eps
    inner = torch.stack([threat.project(x + INNER_RADIUS * cube[:, j], x, eps=INNER_RADIUS * eps) for j in range(k)], 1)
    direction = threat.lp.steepest((2 * torch.rand(x.shape, generator=gen) - 1).to(x))
    planted = threat.project(x + eps * direction, x)
    rows = torch.cat([x, inner.flatten(0, 1), planted])
    with frozen(model), torch.no_grad(), _Features(head) as f:
        model(rows)
    assert f.value is not None
    feats = f.value.float()
    f_clean, f_inner, f_planted = feats[:n], feats[n : n + n * k].view(n, k, -1), feats[n + n * k :]
    negatives = torch.cat([f_clean[:, None], f_inner], 1)
    w = f_planted - negatives.mean(1)
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    s_neg = (negatives * w[:, None]).sum(2).amax(1)
    s_pos = (f_planted * w).sum(1)
    kept = s_pos > s_neg + 1e-6 * s_pos.abs().clamp_min(1.0)
    # scaled so that the gap from the inner points to the planted one is one logit: the
    # feature scale (large after defensive distillation) must not saturate the binary head
    gap = (s_pos - s_neg).clamp_min(1e-12)
    b = -(s_neg + THRESHOLD_AT * (s_pos - s_neg)) / gap
    w = w / gap[:, None]
    return Planted(Binarized(model, head, x, w, b), kept, planted, forwards=int(rows.shape[0]))


AttackRun = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, int, int]]


def binarization_test(model: nn.Module, x: Tensor, threat: ThreatModel, seed: int, attack: AttackRun) -> dict[str, Any] | None:
    """Plant an adversarial example for each sample of ``x`` and run ``attack(binarized, x,
    y=zeros)`` -> ``(success, forwards, backwards)`` on the samples whose head separates.

    Returns ``found`` (share of planted examples found), ``found_mask`` (per kept sample),
    ``kept`` (per sample of ``x``: its head separates), ``tested`` and the forward/backward
    rows spent, or None when the model has no linear head."""
    planted = binarize(model, x, threat, seed)
    if planted is None:
        return None
    kept = planted.kept.clone()
    found, fw, bw = torch.zeros(0, dtype=torch.bool), 0, 0
    if kept.any():
        # the binarized model as the attack will see it: clean side at x, planted side at
        # the planted point (a random or batch-dependent model may not keep its construction)
        rows = kept.nonzero().squeeze(1)
        with torch.no_grad():
            check = planted.model(torch.cat([x[rows], planted.planted[rows]])).argmax(1)
        fw += 2 * len(rows)
        kept[rows] = (check[: len(rows)] == 0) & (check[len(rows) :] == 1)
    if kept.any():
        zeros = torch.zeros(int(kept.sum()), dtype=torch.long, device=x.device)
        found, a_fw, a_bw = attack(planted.model, x[kept], zeros)
        fw, bw = fw + a_fw, a_bw
    tested = int(kept.sum())
    return {
        "found": float(found.float().mean()) if tested else float("nan"),
        "found_count": int(found.sum()),
        "found_mask": found.cpu(),
        "kept": kept.cpu(),
        "tested": tested,
        "offered": int(x.shape[0]),
        "forwards": planted.forwards + fw,
        "backwards": bw,
    }
