"""What every poisoning attack returns and how it is judged.

A poisoning attack changes the *training* set; :class:`PoisonedData` is that training set
(a :class:`~advlab.data.Dataset` whose train split is poisoned and whose test split is
clean) plus which rows were touched.  It feeds the ordinary training loop
(:func:`advlab.models.train_model`), and :func:`poison_report` judges the trained model:
clean accuracy, accuracy on the class under attack, and the attack's success rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from advlab.data.dataset import Dataset
from advlab.models.training import TrainConfig, accuracy, predict, train_model

__all__ = ["PoisonedData", "PoisonReport", "poison_report", "train_poisoned", "choose_rows"]


@dataclass
class PoisonedData:
    """A poisoned training set.

    Attributes
    ----------
    dataset:
        Train split poisoned (``x_train``, ``y_train``), test split untouched.
    poisoned:
        Boolean mask over the training rows that the attacker changed (or added).
    attack:
        Name of the poisoning attack.
    params:
        Its parameters.
    trigger:
        For backdoors, ``trigger(x) -> x`` that stamps the trigger on test inputs.
    target:
        The class the attack works for (backdoor target, flip target, base class), if any.
    source:
        The class under attack (a flip's source, a collision's target instance's class), if any.
    """

    dataset: Dataset
    poisoned: Tensor
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    trigger: Callable[[Tensor], Tensor] | None = None
    target: int | None = None
    source: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Share of the training set that is poisoned."""
        return float(self.poisoned.float().mean()) if len(self.poisoned) else 0.0

    def train(self, model: nn.Module, config: TrainConfig | None = None, **kw: Any) -> dict[str, Any]:
        """Train ``model`` on the poisoned training split with the ordinary training loop."""
        return train_model(model, self.dataset.x_train, self.dataset.y_train, config, **kw)


@dataclass
class PoisonReport:
    """How a model trained on poisoned data behaves.

    ``clean_accuracy``: accuracy on the clean test split; ``reference_accuracy``: the same for
    a model trained on clean data (if given); ``target_class_accuracy``: accuracy on the test
    inputs of the class under attack; ``attack_success``: the attack's success rate (trigger
    success for a backdoor, share of source inputs sent to the flip target, whether the
    target instance is misclassified as the base class for feature collision).
    """

    attack: str
    poison_rate: float
    clean_accuracy: float
    target_class_accuracy: float | None
    attack_success: float | None
    reference_accuracy: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "poison_rate": self.poison_rate,
            "clean_accuracy": self.clean_accuracy,
            "reference_accuracy": self.reference_accuracy,
            "target_class_accuracy": self.target_class_accuracy,
            "attack_success": self.attack_success,
            **self.details,
        }


def poison_report(model: nn.Module, data: PoisonedData, reference: nn.Module | None = None) -> PoisonReport:
    """Judge ``model`` (trained on ``data``) on the clean test split.

    The class under attack is ``data.source`` if set, else ``data.target``.  Trigger success
    is measured on test inputs whose true class is not the backdoor target.
    """
    ds = data.dataset
    x, y = ds.x_test, ds.y_test
    clean = accuracy(model, x, y)
    focus = data.source if data.source is not None else data.target
    class_acc = None
    if focus is not None and bool((y == focus).any()):
        class_acc = accuracy(model, x[y == focus], y[y == focus])
    success: float | None = None
    details: dict[str, Any] = {}
    if data.trigger is not None and data.target is not None:
        keep = y != data.target
        pred = predict(model, data.trigger(x[keep]))
        success = float((pred == data.target).float().mean())
    elif data.attack == "label-flip" and data.source is not None and data.target is not None:
        pred = predict(model, x[y == data.source])
        success = float((pred == data.target).float().mean())
    elif "target_x" in data.extra and data.target is not None:
        pred = predict(model, data.extra["target_x"])
        success = float((pred == int(data.target)).float().mean())
        details["target_predictions"] = pred.tolist()
    ref = accuracy(reference, x, y) if reference is not None else None
    return PoisonReport(data.attack, data.rate, clean, class_acc, success, ref, details)


def train_poisoned(
    data: PoisonedData,
    build: Callable[[], nn.Module],
    config: TrainConfig | None = None,
    *,
    reference: nn.Module | None = None,
    progress: bool = False,
) -> tuple[nn.Module, PoisonReport]:
    """Build a fresh model (its initialisation seeded by ``config.seed``), train it on the
    poisoned data and report on it."""
    torch.manual_seed((config or TrainConfig()).seed)
    model = build()
    data.train(model, config, progress=progress, description=f"training on {data.attack}-poisoned data")
    return model, poison_report(model, data, reference)


def choose_rows(candidates: Tensor, count: int, seed: int) -> Tensor:
    """``count`` rows drawn without replacement from the boolean mask ``candidates`` (seeded)."""
    idx = candidates.nonzero().squeeze(1)
    if count > len(idx):
        raise ValueError(f"cannot poison {count} rows: only {len(idx)} are eligible")
    g = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=g)[:count]]
