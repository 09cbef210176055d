"""The model as a white-box attack sees it: forward and backward passes counted per sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from advlab.chunking import chunk_rows, run_chunked

__all__ = ["Victim", "frozen", "run_model", "time_limit", "AttackTimeout"]


def run_model(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)``, on the CPU in chunks of the rows :func:`advlab.chunking.chunk_rows`
    chooses for this model and input shape; the autograd graph (if any) spans the chunks."""
    return run_chunked(model, x, chunk_rows(model, x))


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


class _CleanPass:
    """A forward pass already run on the clean inputs with its autograd graph kept: ``leaf``
    (the inputs, requiring grad, possibly more rows than the batch), ``logits`` computed from
    it, and ``rows``, the batch's positions among the leaf's rows."""

    def __init__(self, x: Tensor, leaf: Tensor, logits: Tensor, rows: Tensor | None) -> None:
        self.x, self.leaf, self.logits, self.rows = x, leaf, logits, rows

    def input_grad(self, grad_logits: Tensor) -> Tensor:
        full = grad_logits if self.rows is None else torch.zeros(
            (self.leaf.shape[0],) + grad_logits.shape[1:], dtype=grad_logits.dtype, device=grad_logits.device
        ).index_copy_(0, self.rows, grad_logits)
        (grad,) = torch.autograd.grad(self.logits, self.leaf, full, retain_graph=True)
        return grad if self.rows is None else grad[self.rows]


class _Reuse(torch.autograd.Function):
    """Logits of a :class:`_CleanPass` grafted onto the attack's own input tensor, so that
    gradients with respect to that tensor flow through the graph the clean pass kept."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, shared: _CleanPass) -> Tensor:
        ctx.shared = shared
        out = shared.logits.detach()
        return (out if shared.rows is None else out[shared.rows]).clone()

    @staticmethod
    def backward(ctx: Any, grad_logits: Tensor) -> tuple[Tensor, None]:
        return ctx.shared.input_grad(grad_logits), None


class Victim:
    """Wraps a model for one batch of ``n`` samples and counts what the attack spends.

    ``idx`` arguments are positions inside the batch (a LongTensor or a boolean mask) of the
    rows passed in ``x``; by default every row of the batch, in order.

    The base class may hand over the clean forward pass it ran anyway (:meth:`share_clean_pass`):
    the attack's first :meth:`forward` (or :meth:`value_and_grad`), if it is on exactly the clean
    inputs of every row, then reuses that pass's logits and graph instead of running the model
    again.  It is counted exactly as a fresh pass would be (one forward, and the backward
    passes taken through it); any other first call discards the shared pass.
    """

    def __init__(self, model: nn.Module, n: int, device: torch.device | str, rows_per_row: int = 1) -> None:
        self.model = model
        self.n = n
        # rows of the underlying model one row of ``model`` costs (an expectation over draws)
        self.rows_per_row = rows_per_row
        self.forwards = torch.zeros(n, dtype=torch.long, device=device)
        self.backwards = torch.zeros(n, dtype=torch.long, device=device)
        self._shared: _CleanPass | None = None
        self.reused_clean_pass = False

    def share_clean_pass(self, x: Tensor, leaf: Tensor, logits: Tensor, rows: Tensor | None = None) -> None:
        """Offer the clean pass ``logits = model(leaf)`` (graph kept; ``leaf[rows]`` equals the
        batch's inputs ``x``) to the attack's first forward pass."""
        self._shared = _CleanPass(x, leaf, logits, rows)

    def _reuse(self, x: Tensor, idx: Tensor | None) -> _CleanPass | None:
        """The shared clean pass if this first call is on the clean inputs of every row."""
        shared, self._shared = self._shared, None
        if shared is None or x.shape != shared.x.shape:
            return None
        if idx is not None and not (idx.dtype != torch.bool and torch.equal(idx.to(x.device), torch.arange(self.n, device=x.device))):
            return None
        return shared if torch.equal(x.detach(), shared.x) else None

    def _count(self, counter: Tensor, idx: Tensor | None, rows: int, amount: int = 1) -> None:
        _check_time()
        amount *= self.rows_per_row
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
        self._shared = None
        with torch.no_grad():
            return run_model(self.model, x)

    def forward(self, x: Tensor, idx: Tensor | None = None, backward: bool = True) -> Tensor:
        """Logits with the autograd graph kept, for attacks that build their own objective.
        Counts one forward pass and (by default) one backward pass per row."""
        self._count(self.forwards, idx, x.shape[0])
        if backward:
            self._count(self.backwards, idx, x.shape[0])
        shared = self._reuse(x, idx) if self._shared is not None else None
        if shared is not None:
            self.reused_clean_pass = True
            if x.requires_grad and torch.is_grad_enabled():
                out: Tensor = _Reuse.apply(x, shared)
                return out
            return shared.logits.detach() if shared.rows is None else shared.logits.detach()[shared.rows]
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
