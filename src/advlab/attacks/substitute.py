"""A substitute model trained only from the victim's label answers (Papernot et al. 2017).

Papernot, McDaniel, Goodfellow, Jha, Celik, Swami, "Practical Black-Box Attacks against
Machine Learning", AsiaCCS 2017, arXiv:1602.02697.

The attacker owns a few unlabelled inputs, asks the victim (a label-only
:class:`~advlab.blackbox.BlackBox`) for their labels, trains a substitute, and grows the set
with Jacobian-based dataset augmentation: each input is pushed by
``lambda * sign(d F_label(x) / dx)`` along the substitute's own gradient, where the
substitute is least sure of the victim's decision boundary. Adversarial examples crafted
on the substitute (white box) then transfer to the victim
(:func:`advlab.attacks.transfer.transfer_rate`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from advlab.blackbox import BlackBox
from advlab.models.registry import build_model
from advlab.models.training import TrainConfig, train_model
from advlab.validation import InputError, as_input_tensor

__all__ = ["SubstituteResult", "train_substitute", "jacobian_augmentation"]

log = logging.getLogger(__name__)


@dataclass
class SubstituteResult:
    """A trained substitute and what it cost.

    Attributes
    ----------
    model: the substitute (built with :func:`advlab.models.build_model`, so it can be saved).
    queries: label queries spent on the victim (one per synthetic input).
    history: per round: training-set size, queries so far, step ``lambda``, seconds.
    """

    model: nn.Module
    queries: int
    history: list[dict[str, Any]] = field(default_factory=list)


def jacobian_augmentation(model: nn.Module, x: Tensor, labels: Tensor, lam: float, box: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """New inputs ``clip(x + lam * sign(d F_label(x) / dx))``: one step along the gradient
    of the substitute's output for the victim's label (Papernot et al. 2017, Eq. 4)."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, x.shape[0], 500):
        xb = x[i : i + 500].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xb)
            sel = logits.gather(1, labels[i : i + 500, None].to(logits.device)).sum()
            (g,) = torch.autograd.grad(sel, xb)
        out.append((xb.detach() + lam * g.sign()).clamp(box[0], box[1]))
    model.train(was)
    return torch.cat(out)


def train_substitute(
    victim: nn.Module | BlackBox,
    x_seed: Any,
    *,
    architecture: str = "cnn",
    model_kwargs: dict[str, Any] | None = None,
    rounds: int = 6,
    epochs: int = 10,
    lam: float = 0.1,
    tau: int = 3,
    batch_size: int = 32,
    lr: float = 1e-3,
    max_queries: int | None = None,
    box: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    progress: bool = True,
) -> SubstituteResult:
    """Train a substitute from label queries with Jacobian-based dataset augmentation.

    Papernot et al. 2017, arXiv:1602.02697, Algorithm 1: ``rounds`` substitute epochs; each
    labels the new inputs through the victim (label-only), trains the substitute for
    ``epochs`` on everything labelled so far, then doubles the set with
    :func:`jacobian_augmentation` using ``lambda_rho = lam * (-1)^floor(rho / tau)`` (the
    paper's periodic step size: 0.1, tau = 3). ``len(x_seed) * 2^(rounds-1)`` queries in
    all (the paper: 150 seed images, 6 rounds on MNIST).

    Parameters
    ----------
    victim: a model (wrapped in a label-only :class:`BlackBox` here) or a ``BlackBox``.
    x_seed: the attacker's initial inputs (unlabelled; the victim labels them).
    architecture, model_kwargs: the substitute's architecture (``advlab.models`` registry).
    max_queries: total label budget (the augmentation stops when the next round would pass it).
    progress: show each round's training progress (:mod:`advlab.progress`).
    """
    x0 = as_input_tensor(x_seed, box, name="x_seed")
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds!r}")
    if isinstance(victim, BlackBox):
        oracle = victim.restricted(output="labels")
    elif isinstance(victim, nn.Module) or callable(victim):
        oracle = BlackBox(victim, output="labels", total_budget=max_queries)
    else:
        raise InputError(f"victim must be a model or a BlackBox, got {type(victim).__name__}")
    torch.manual_seed(seed)
    kwargs = dict(model_kwargs or {})
    if architecture == "cnn" and x0.dim() == 4:
        kwargs.setdefault("in_channels", x0.shape[1])
        kwargs.setdefault("image_size", x0.shape[2])
    substitute = build_model(architecture, **kwargs)
    device = x0.device
    substitute = substitute.to(device)

    def ask(xs: Tensor, start: int) -> Tensor:
        ids = torch.arange(start, start + xs.shape[0])
        return torch.cat([oracle.labels(xs[i : i + 1000], ids[i : i + 1000]) for i in range(0, xs.shape[0], 1000)])

    xs, ys = x0, ask(x0, 0)
    history: list[dict[str, Any]] = []
    for rho in range(rounds):
        start = time.perf_counter()
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + rho)
        train_model(substitute, xs, ys.to(device), cfg, progress=progress, description=f"substitute round {rho + 1}/{rounds}")
        lam_rho = lam * (-1) ** (rho // tau)
        history.append({"round": rho + 1, "train_size": int(xs.shape[0]), "queries": oracle.total_queries, "lambda": lam_rho})
        if rho == rounds - 1:
            history[-1]["seconds"] = time.perf_counter() - start
            break
        left = int(oracle.remaining(torch.tensor([xs.shape[0]]))[0])
        if max_queries is not None:
            left = min(left, max_queries - oracle.total_queries)
        if left < xs.shape[0]:
            log.info("substitute: stopping after round %d, the next round would exceed the query budget", rho + 1)
            history[-1]["seconds"] = time.perf_counter() - start
            break
        new = jacobian_augmentation(substitute, xs, ys, lam_rho, box)
        ys = torch.cat([ys, ask(new, xs.shape[0])])
        xs = torch.cat([xs, new])
        history[-1]["seconds"] = time.perf_counter() - start
    substitute.eval()
    return SubstituteResult(model=substitute, queries=oracle.total_queries, history=history)
