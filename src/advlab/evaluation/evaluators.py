"""The evaluator protocol: how other kinds of victims plug into ``advlab.evaluate``.

``advlab.evaluate`` evaluates models of inputs (images, sequences, feature vectors) itself.
Another kind of victim -- a graph network whose "inputs" are the edges and node features of
one graph -- brings its own :class:`Evaluator`, registered with :func:`register_evaluator` by
the package that owns the victim kind (:mod:`advlab.graphs.evaluator` for graphs), so that the
evaluation package holds no branch for it and never imports it.  ``evaluate`` asks each
registered evaluator whether it ``accepts`` the call; ``render_report`` asks the evaluator of a
results file's ``kind`` for its report ``sections``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Evaluator", "register_evaluator", "evaluator_for", "evaluator_of_kind", "PLUGINS"]

# Modules that register an evaluator when imported (looked up by name, so that this package
# does not depend on them).
PLUGINS = ("advlab.graphs.evaluator",)

_EVALUATORS: dict[str, Evaluator] = {}


@runtime_checkable
class Evaluator(Protocol):
    """An evaluation engine for one kind of victim."""

    kind: str

    def accepts(self, model: Any, data: Any, plan: Any = None) -> bool:
        """Whether ``evaluate(model, data, plan)`` is this evaluator's; a half match (a
        victim of this kind with other data) raises :class:`advlab.InputError`."""
        ...

    def evaluate(self, model: Any, data: Any, plan: Any, *, out: str | Path | None, progress: Any, report: bool, **overrides: Any) -> Any:
        """Run the evaluation; returns an :class:`~advlab.evaluation.EvaluationResult`."""
        ...

    def sections(self, results: dict[str, Any]) -> list[Any]:
        """The report's sections for a ``results.json`` of this kind."""
        ...


def register_evaluator(evaluator: Evaluator) -> Evaluator:
    """Add an evaluator (one per kind)."""
    if not isinstance(evaluator, Evaluator):
        raise TypeError(f"{type(evaluator).__name__} does not implement the Evaluator protocol")
    _EVALUATORS[evaluator.kind] = evaluator
    return evaluator


def _load() -> None:
    for name in PLUGINS:
        importlib.import_module(name)


def evaluator_for(model: Any, data: Any, plan: Any = None) -> Evaluator | None:
    """The registered evaluator that accepts the call (``None``: evaluate inputs)."""
    _load()
    for ev in _EVALUATORS.values():
        if ev.accepts(model, data, plan):
            return ev
    return None


def evaluator_of_kind(kind: str) -> Evaluator:
    """The evaluator that wrote results of ``kind``."""
    _load()
    if kind not in _EVALUATORS:
        raise ValueError(f"results of kind {kind!r} have no registered evaluator (known: {sorted(_EVALUATORS)})")
    return _EVALUATORS[kind]
