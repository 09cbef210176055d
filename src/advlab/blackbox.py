"""The black box: a model as a prediction API exposes it, and nothing more.

A :class:`BlackBox` answers queries with class probabilities (``output="scores"``) or only
the top-1 label (``output="labels"``), counts the queries spent on every sample, refuses any
query that would exceed the per-sample budget (or the total budget), and offers no route to
the model's parameters or gradients: answers are detached tensors computed under
``torch.no_grad()``, inputs that require grad are refused, and asking for ``parameters``,
``gradient``, ``logits`` and the like raises :class:`GradientAccessError` with an
explanation.

Black-box attacks (:mod:`advlab.attacks.blackbox`) talk only to a ``BlackBox``. The guard is
against honest mistakes, not against a determined cheat: Python can always reach into
objects; advlab's own black-box attacks never do.

Examples
--------
>>> box = BlackBox(model, output="labels", budget=1000)        # doctest: +SKIP
>>> labels = box(x)            # one query per row, charged to samples 0..len(x)-1
>>> box.queries                # per-sample query counts
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from advlab.validation import InputError

__all__ = [
    "BlackBox",
    "BlackBoxError",
    "GradientAccessError",
    "QueryBudgetExceeded",
    "OUTPUTS",
    "as_module",
]

OUTPUTS = ("scores", "labels")
_RETURNS = ("logits", "scores", "labels")

# Names a white-box attack (or a curious user) might reach for; each gets an explanation.
_REFUSED = {
    "parameters", "named_parameters", "buffers", "named_buffers", "state_dict", "load_state_dict",
    "modules", "named_modules", "children", "model", "module", "net", "network", "weights",
    "forward", "backward", "grad", "grads", "gradient", "gradients", "value_and_grad",
    "logits", "jacobian", "hessian", "train", "eval", "requires_grad_", "zero_grad", "to",
}


class BlackBoxError(RuntimeError):
    """A black box was asked for something a query API does not give."""


class GradientAccessError(BlackBoxError):
    """Someone asked a black box for gradients, parameters or raw logits."""


class QueryBudgetExceeded(BlackBoxError):
    """A query would take a sample (or the whole box) past its query budget."""


def _check_budget(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be a non-negative int or None, got {value!r}")
    return int(value)


class BlackBox:
    """A classifier that only answers queries.

    Parameters
    ----------
    model:
        A ``torch.nn.Module`` mapping inputs to logits, or any callable ``x -> Tensor``
        (a remote API, say) returning what ``returns`` says.
    output:
        What the box answers: ``"scores"`` (class probabilities, float64 so that
        log-probabilities keep logit differences) or ``"labels"`` (top-1 label only).
    budget:
        Most queries any one sample may receive (``None``: unlimited). A query that would
        take any of its samples past the budget is refused as a whole with
        :class:`QueryBudgetExceeded`, before the model runs.
    total_budget:
        Most queries in all (``None``: unlimited), for attacks that query fresh inputs
        (substitute training).
    returns:
        What ``model`` returns: ``"logits"`` (default), ``"scores"`` or ``"labels"``. A box
        over a labels-only source cannot answer scores.

    Notes
    -----
    Queries are charged to *samples*: ``idx`` gives, for every row of ``x``, the sample it
    belongs to (rows may repeat a sample, e.g. the probes of a gradient estimate around it);
    ``idx=None`` means rows ``0..len(x)-1``. Counters grow as new sample ids appear.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        output: str = "scores",
        budget: int | None = None,
        *,
        total_budget: int | None = None,
        returns: str = "logits",
    ) -> None:
        if isinstance(model, BlackBox):
            raise InputError("model is already a BlackBox; use box.restricted(...) for a narrower view")
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
        if returns not in _RETURNS:
            raise InputError(f"returns must be one of {_RETURNS}, got {returns!r}")
        if returns == "labels" and output == "scores":
            raise InputError("a model that returns only labels cannot back a box that answers scores")
        if isinstance(model, nn.Module):
            module = model

            def answer(x: Tensor, idx: Tensor) -> Tensor:
                was = module.training
                module.eval()
                try:
                    return module(x)
                finally:
                    module.train(was)

            self.__source: Any = model
        elif callable(model):
            answer = lambda x, idx: model(x)  # noqa: E731
            self.__source = model
        else:
            raise InputError(f"model must be a torch.nn.Module or a callable, got {type(model).__name__}")
        self._setup(answer, output, returns, budget, total_budget, None)

    # ------------------------------------------------------------------ construction
    def _setup(
        self,
        answer: Callable[[Tensor, Tensor], Tensor],
        output: str,
        returns: str,
        budget: int | None,
        total_budget: int | None,
        n: int | None,
    ) -> None:
        self.__answer = answer
        self._returns = returns
        self._output = output
        self._budget = _check_budget(budget, "budget")
        self._total_budget = _check_budget(total_budget, "total_budget")
        self._queries = torch.zeros(n or 0, dtype=torch.long)
        self._fixed_n = n
        self._num_classes: int | None = None

    @classmethod
    def _for_victim(cls, victim: Any, output: str, budget: int | None) -> BlackBox:
        """The box an attack's ``_run`` sees: queries go through (and are counted by) the
        library's :class:`~advlab.victim.Victim` for one batch."""
        box = cls.__new__(cls)
        box.__source = None
        box._setup(lambda x, idx: victim.logits(x, idx), output, "logits", budget, None, victim.n)
        return box

    def restricted(self, output: str | None = None, budget: int | None = None) -> BlackBox:
        """A view of this box that answers ``output`` (labels can be had from scores, not the
        reverse) under an extra per-sample ``budget``; its queries are charged to both."""
        out = output or self._output
        if out not in OUTPUTS:
            raise InputError(f"output must be one of {OUTPUTS}, got {out!r}")
        if out == "scores" and self._output == "labels":
            raise BlackBoxError("this black box answers labels only; a view cannot add scores")
        child = BlackBox.__new__(BlackBox)
        child.__source = self
        child._setup(lambda x, idx: self.query(x, idx), out, self._output, budget, None, self._fixed_n)
        return child

    # ------------------------------------------------------------------ what it tells
    @property
    def output(self) -> str:
        """``"scores"`` or ``"labels"``."""
        return self._output

    @property
    def budget(self) -> int | None:
        """Per-sample query budget (``None``: unlimited)."""
        return self._budget

    @property
    def total_budget(self) -> int | None:
        return self._total_budget

    @property
    def num_classes(self) -> int | None:
        """Number of classes, known after the first scores query."""
        return self._num_classes

    @property
    def queries(self) -> Tensor:
        """Queries spent per sample (a copy)."""
        return self._queries.clone()

    @property
    def total_queries(self) -> int:
        return int(self._queries.sum())

    def remaining(self, idx: Tensor | None = None) -> Tensor:
        """Queries each sample in ``idx`` may still receive (a large number when unlimited)."""
        idx_t = self._rows(idx, None)
        self._grow(idx_t)
        spent = self._queries[idx_t.cpu()] if idx_t.numel() else torch.zeros(0, dtype=torch.long)
        left = torch.full_like(spent, 2**62) if self._budget is None else (self._budget - spent).clamp_min(0)
        if self._total_budget is not None:
            left = left.clamp_max(max(0, self._total_budget - self.total_queries))
        parent = self.__source
        if isinstance(parent, BlackBox):  # a view: the parent's budgets apply too
            left = torch.minimum(left, parent.remaining(idx_t).cpu())
        return left.to(idx_t.device)

    # ------------------------------------------------------------------ queries
    def query(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Answer ``x``: probabilities ``(B, C)`` (float64) or labels ``(B,)``.

        One query per row, charged to the samples in ``idx`` (see the class notes).
        """
        if not isinstance(x, Tensor):
            raise InputError(f"x must be a torch tensor, got {type(x).__name__}")
        if x.requires_grad:
            raise GradientAccessError(
                "x requires grad, but a black box answers no gradients: estimate what you need "
                "from queries (finite differences, random search), or use a white-box attack"
            )
        if x.dim() < 2 or x.shape[0] == 0:
            raise InputError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
        idx_t = self._rows(idx, x.shape[0])
        self._charge(idx_t)
        with torch.no_grad():
            raw = self.__answer(x.detach(), idx_t)
        if not isinstance(raw, Tensor):
            raise BlackBoxError(f"the wrapped model returned {type(raw).__name__}, not a tensor")
        raw = raw.detach()
        if self._returns == "labels":
            return raw.long().reshape(-1)
        if raw.dim() != 2 or raw.shape[0] != x.shape[0]:
            raise BlackBoxError(f"the wrapped model returned shape {tuple(raw.shape)} for {x.shape[0]} inputs")
        self._num_classes = int(raw.shape[1])
        if self._output == "labels":
            return raw.argmax(dim=1)
        if self._returns == "scores":
            return raw.to(torch.float64)
        return torch.softmax(raw.to(torch.float64), dim=1)

    __call__ = query

    def scores(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Class probabilities; only for a box with ``output="scores"``."""
        if self._output != "scores":
            raise BlackBoxError("this black box answers labels only (output='labels'); scores are not available")
        return self.query(x, idx)

    def labels(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """Top-1 labels (any box)."""
        out = self.query(x, idx)
        return out if out.dim() == 1 else out.argmax(dim=1)

    # ------------------------------------------------------------------ bookkeeping
    def _rows(self, idx: Tensor | None, rows: int | None) -> Tensor:
        if idx is None:
            if rows is None:
                return torch.arange(self._queries.numel())
            if self._fixed_n is not None and rows != self._fixed_n:
                raise InputError(f"pass idx= (the sample of each row) when querying {rows} rows of a box over {self._fixed_n} samples")
            return torch.arange(rows)
        idx_t = torch.as_tensor(idx)
        if idx_t.dtype == torch.bool:
            idx_t = idx_t.nonzero().reshape(-1)
        idx_t = idx_t.long().reshape(-1)
        if rows is not None and idx_t.numel() != rows:
            raise InputError(f"idx names {idx_t.numel()} samples for {rows} rows of x")
        if idx_t.numel() and int(idx_t.min()) < 0:
            raise InputError("idx must hold non-negative sample ids")
        if self._fixed_n is not None and idx_t.numel() and int(idx_t.max()) >= self._fixed_n:
            raise InputError(f"idx names sample {int(idx_t.max())} of a box over {self._fixed_n} samples")
        return idx_t

    def _grow(self, idx: Tensor) -> None:
        if idx.numel() and int(idx.max()) >= self._queries.numel():
            extra = int(idx.max()) + 1 - self._queries.numel()
            self._queries = torch.cat([self._queries, torch.zeros(extra, dtype=torch.long)])

    def _charge(self, idx: Tensor) -> None:
        self._grow(idx)
        cost = torch.bincount(idx.cpu(), minlength=self._queries.numel())
        after = self._queries + cost
        if self._budget is not None and bool((after > self._budget).any()):
            worst = int((after - self._budget).argmax())
            raise QueryBudgetExceeded(
                f"query refused: sample {worst} would receive {int(after[worst])} queries, over its budget of "
                f"{self._budget} (it has {int(self._queries[worst])}); check box.remaining(idx) before querying"
            )
        if self._total_budget is not None and int(after.sum()) > self._total_budget:
            raise QueryBudgetExceeded(
                f"query refused: {idx.numel()} more queries would exceed the total budget of {self._total_budget} "
                f"({self.total_queries} spent)"
            )
        self._queries = after

    # ------------------------------------------------------------------ refusals
    def __getattr__(self, name: str) -> Any:
        if name in _REFUSED:
            raise GradientAccessError(
                f"a BlackBox has no {name!r}: it only answers queries ({self._output}) and counts them; "
                "black-box attacks must estimate what they need from those answers"
            )
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __repr__(self) -> str:
        budget = "unlimited" if self._budget is None else str(self._budget)
        return f"BlackBox(output={self._output!r}, budget={budget}, queries={self.total_queries})"


class _CallableModule(nn.Module):
    """A plain callable as a module returning logit-like scores (argmax preserved)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], returns: str, num_classes: int | None) -> None:
        super().__init__()
        self.fn = fn
        self.returns = returns
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        if self.returns == "labels":
            c = self.num_classes or int(out.max()) + 1
            return torch.nn.functional.one_hot(out.long().reshape(-1), max(c, 2)).float()
        if self.returns == "scores":
            return torch.log(out.float().clamp_min(1e-30))
        return out


def as_module(box: BlackBox) -> nn.Module:
    """The model behind a user's box, as a module (for :meth:`Attack.__call__`, which wraps
    it again for the attack; the attack itself never sees it)."""
    source = box._BlackBox__source  # type: ignore[attr-defined]
    if isinstance(source, BlackBox):
        return as_module(source)
    if isinstance(source, nn.Module):
        return source
    if source is None:
        raise BlackBoxError("this box belongs to a running attack and cannot be re-wrapped")
    return _CallableModule(source, box._returns, box.num_classes)
