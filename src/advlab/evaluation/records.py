"""Typed aggregates: what an evaluation concludes per threat model and budget.

The per-sample outcomes of one threat model at one budget are a
:class:`~advlab.evaluation.aggregate.Folded` (robust flag, the stage credited with breaking
each sample, its adversarial input and the model's logits there, all built from the attacks'
:class:`~advlab.result.AttackResult`); :class:`BudgetAggregate` sums them up -- the robust
accuracy with its exact 95% interval and sample count, per stage and per class --; a threat
model's block in ``results.json`` lists one per budget, written from the type (``to_dict``),
so the file and the objects cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from advlab.evaluation.aggregate import Folded
from advlab.evaluation.stats import clopper_pearson

__all__ = ["StageRow", "BudgetAggregate"]


@dataclass(frozen=True)
class StageRow:
    """One source of adversarial examples at one budget: what it broke, what it cost."""

    label: str
    kind: str
    broken: int
    robust_accuracy_after: float
    forwards: int
    backwards: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BudgetAggregate:
    """Robust accuracy at one budget: ``robust`` of ``n`` samples, its 95% Clopper-Pearson
    interval, the accuracy after the cascade alone, per stage and per class."""

    eps: float
    n: int
    robust: int
    raw_robust: int | None
    stages: tuple[StageRow, ...]
    per_class: tuple[tuple[str, int, float], ...]

    @property
    def robust_accuracy(self) -> float:
        return self.robust / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.robust, self.n)

    @classmethod
    def from_fold(cls, fold: Folded, y: np.ndarray, classes: list[str]) -> BudgetAggregate:
        n = len(y)
        remaining, rows = n, []
        for st in fold.stages:
            remaining -= st.broken
            rows.append(StageRow(st.label, st.kind, st.broken, remaining / n if n else 0.0, st.forwards, st.backwards, st.seconds))
        per_class = tuple(
            (classes[c], int((y == c).sum()), float(fold.robust[y == c].mean())) for c in range(len(classes)) if (y == c).any()
        )
        raw = int(fold.raw_robust.sum()) if fold.raw_robust is not None else None
        return cls(fold.eps, n, int(fold.robust.sum()), raw, tuple(rows), per_class)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "robust_accuracy": self.robust_accuracy,
            "robust": self.robust,
            "n": self.n,
            "interval": list(self.interval),
            "raw_robust_accuracy": self.raw_robust / self.n if self.raw_robust is not None and self.n else None,
            "stages": [s.to_dict() for s in self.stages],
            "per_class": [{"class": c, "n": k, "robust_accuracy": a} for c, k, a in self.per_class],
        }
