"""A seeded training loop with a progress bar, shared by every model and defense."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.progress import Advance, track

__all__ = ["TrainConfig", "train_model", "accuracy", "predict"]

log = logging.getLogger(__name__)

# A hook that turns a clean batch into the batch actually trained on (adversarial training,
# poisoning, augmentation): (model, x, y, step) -> (x, y) or (x, soft_targets).
BatchTransform = Callable[[nn.Module, Tensor, Tensor, int], tuple[Tensor, Tensor]]
# A training objective replacing the (soft-label) cross-entropy: (model, x, y) -> scalar loss
# (TRADES needs the clean and the adversarial batch in one loss).
Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    seed: int = 0
    temperature: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def train_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig | None = None,
    *,
    transform: BatchTransform | None = None,
    objective: Objective | None = None,
    progress: bool | Advance = False,
    description: str = "training",
) -> dict[str, Any]:
    """Train ``model`` in place on ``(x, y)``; deterministic given ``config.seed``.

    ``y`` may hold integer labels or soft targets (N, C) (defensive distillation).  Logits are
    divided by ``config.temperature`` before the softmax.  ``transform`` turns each clean batch
    into the batch trained on; ``objective(model, x, y)`` replaces the loss.  ``progress=True``
shows the progress (:mod:`advlab.progress`); a callable is called with 1 per step.  Returns a history dict.
    """
    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    device = next(model.parameters()).device
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected 'adam' or 'sgd'")
    n = x.shape[0]
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    history: dict[str, Any] = {"loss": [], "seconds": 0.0}
    start = time.perf_counter()
    step = 0
    with track(progress if callable(progress) else (None if progress else False), description, cfg.epochs * steps_per_epoch) as advance:
        for _epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=g)
            total = 0.0
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                if transform is not None:
                    xb, yb = transform(model, xb, yb, step)
                    model.train()
                if objective is not None:
                    loss = objective(model, xb, yb)
                elif yb.dtype.is_floating_point:
                    loss = -(yb * F.log_softmax(model(xb) / cfg.temperature, dim=1)).sum(dim=1).mean()
                else:
                    loss = F.cross_entropy(model(xb) / cfg.temperature, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                step += 1
                advance(1)
            history["loss"].append(total / n)
            log.info("%s epoch %d loss %.4f", description, _epoch + 1, total / n)
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels, in evaluation mode, batched."""
    was = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    out = torch.cat([model(x[i : i + batch_size].to(device)).argmax(dim=1).cpu() for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Share of ``x`` classified as ``y``."""
    return float((predict(model, x, batch_size) == y.cpu()).float().mean())
