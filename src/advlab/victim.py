"""The model as a white-box attack sees it: forward and backward passes counted per sample."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["Victim", "frozen"]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode and no parameter gradients for the duration of an attack; the model's
    training flag and ``requires_grad`` flags are restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Victim:
    """Wraps a model for one batch of ``n`` samples and counts what the attack spends.

    ``idx`` arguments are positions inside the batch (a LongTensor or a boolean mask) of the
    rows passed in ``x``; by default every row of the batch, in order.
    """

    def __init__(self, model: nn.Module, n: int, device: torch.device | str) -> None:
        self.model = model
        self.n = n
        self.forwards = torch.zeros(n, dtype=torch.long, device=device)
        self.backwards = torch.zeros(n, dtype=torch.long, device=device)

    def _count(self, counter: Tensor, idx: Tensor | None, rows: int) -> None:
        if idx is None:
            if rows != self.n:
                raise ValueError(f"pass idx= when calling the victim on {rows} of {self.n} rows")
            counter += 1
        else:
            counter[idx] += 1

    def logits(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Logits without gradient (one query per row)."""
        self._count(self.forwards, idx, x.shape[0])
        with torch.no_grad():
            return self.model(x)

    def forward(self, x: Tensor, idx: Tensor | None = None, backward: bool = True) -> Tensor:
        """Logits with the autograd graph kept, for attacks that build their own objective.
        Counts one forward pass and (by default) one backward pass per row."""
        self._count(self.forwards, idx, x.shape[0])
        if backward:
            self._count(self.backwards, idx, x.shape[0])
        return self.model(x)

    def value_and_grad(
        self, x: Tensor, loss_fn: Callable[[Tensor], Tensor], idx: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss ``loss_fn(logits)``, its gradient with respect to ``x``, and the logits."""
        x_ = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.forward(x_, idx)
            loss = loss_fn(logits)
            if loss.requires_grad:
                (grad,) = torch.autograd.grad(loss.sum(), x_, allow_unused=True)
            else:
                grad = None
        if grad is None:  # the model cut the graph (e.g. a thresholding defense): no signal
            grad = torch.zeros_like(x_)
        return loss.detach(), grad.detach(), logits.detach()
