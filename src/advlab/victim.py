"""The model as a white-box attack sees it: forward and backward passes counted per sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["Victim", "frozen", "run_model", "CPU_CHUNK", "time_limit", "AttackTimeout"]

# On a CPU, a convolutional network run on a few hundred images at once spills its activations
# out of the cache: measured on the 2-conv CNN (one thread), 500 images in chunks of 128 took
# 247 ms for forward+backward against 435 ms in one piece.  Passes on the CPU are therefore
# run in chunks of at most this many rows (on other devices, in one piece).  Per-row results
# are unchanged: every row is computed independently whatever the chunking.
CPU_CHUNK = 128


def run_model(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)``, in chunks of :data:`CPU_CHUNK` rows when ``x`` is on the CPU; the
    autograd graph (if any) spans the chunks."""
    if x.device.type != "cpu" or x.shape[0] <= CPU_CHUNK:
        return model(x)
    return torch.cat([model(x[i : i + CPU_CHUNK]) for i in range(0, x.shape[0], CPU_CHUNK)])


class AttackTimeout(RuntimeError):
    """An attack ran past the time limit of :func:`time_limit` and was stopped."""


_limits = threading.local()


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Stop any attack run in this thread once ``seconds`` have passed: the next model pass
    it asks a :class:`Victim` for raises :class:`AttackTimeout`.  The attack stops itself
    (cooperative cancellation), so what it held (a CPU, a lock) is free again at once."""
    previous = getattr(_limits, "deadline", None)
    deadline = time.monotonic() + seconds
    _limits.deadline = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _limits.deadline = previous


def _check_time() -> None:
    deadline = getattr(_limits, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise AttackTimeout("the attack ran past its time limit and was stopped")


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

    def _count(self, counter: Tensor, idx: Tensor | None, rows: int, amount: int = 1) -> None:
        _check_time()
        if idx is None:
            if rows != self.n:
                raise ValueError(f"pass idx= when calling the victim on {rows} of {self.n} rows")
            counter += amount
        elif idx.dtype == torch.bool:
            counter[idx] += amount
        else:
            # index_add_ counts repeated positions (several queries around one sample) once each
            idx = idx.to(counter.device).long().reshape(-1)
            counter.index_add_(0, idx, torch.full_like(idx, amount))

    def logits(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Logits without gradient (one query per row)."""
        self._count(self.forwards, idx, x.shape[0])
        with torch.no_grad():
            return run_model(self.model, x)

    def forward(self, x: Tensor, idx: Tensor | None = None, backward: bool = True) -> Tensor:
        """Logits with the autograd graph kept, for attacks that build their own objective.
        Counts one forward pass and (by default) one backward pass per row."""
        self._count(self.forwards, idx, x.shape[0])
        if backward:
            self._count(self.backwards, idx, x.shape[0])
        return run_model(self.model, x)

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

    def jacobian(self, outputs: Tensor, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Gradients of each column of ``outputs`` with respect to ``x``: shape ``(m, *x.shape)``.

        ``outputs`` (rows, m) must be computed from :meth:`forward` on ``x`` (which requires
        grad) with ``backward=False``; ``outputs`` may keep only some rows of that forward
        pass (those still worth differentiating), and ``idx`` names their positions in the
        batch.  Counts ``m`` backward passes per row (one vector-Jacobian product per
        column, which on CPU is faster than a vmapped batched gradient).
        """
        m = outputs.shape[1]
        self._count(self.backwards, idx, outputs.shape[0], amount=m)
        with torch.enable_grad():
            grads = [
                torch.autograd.grad(outputs[:, k].sum(), x, retain_graph=k < m - 1)[0]
                for k in range(m)
            ]
        return torch.stack(grads)
