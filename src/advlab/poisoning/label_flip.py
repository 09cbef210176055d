"""Label flipping: the attacker relabels part of the training set.

Random flipping gives a share of all training rows a random wrong label; targeted flipping
relabels a share of one class (``source``) as another (``target``), the simplest poisoning
attack on a classifier's decision for one class (e.g. Biggio et al. 2011, "Support vector
machines under adversarial label noise", ACML).

Example
-------
>>> data = LabelFlip(rate=0.3, source=7, target=1).poison(load_data("mnist-sample"))
>>> model, report = train_poisoned(data, lambda: build_model("cnn"))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from advlab.data.dataset import Dataset
from advlab.poisoning.base import PoisonedData, choose_rows

__all__ = ["LabelFlip"]


@dataclass(frozen=True)
class LabelFlip:
    """Flip the labels of a share ``rate`` of the training rows.

    Parameters
    ----------
    rate:
        Share of the eligible rows to flip, in [0, 1]: all rows (random flipping), the rows of
        ``source`` (targeted), or every row not of ``target`` (only ``target`` given).
    source, target:
        Flip ``source`` rows to ``target``; both ``None`` for random flipping to a uniformly
        chosen wrong class.
    seed:
        Seeds the choice of rows and of the random labels.
    """

    rate: float = 0.1
    source: int | None = None
    target: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {self.rate!r}")
        if self.source is not None and self.target is None:
            raise ValueError("a source class needs a target class to flip to")
        if self.source is not None and self.source == self.target:
            raise ValueError("source and target must differ")

    def poison(self, dataset: Dataset) -> PoisonedData:
        y = dataset.y_train.clone()
        c = dataset.num_classes
        for name, value in (("source", self.source), ("target", self.target)):
            if value is not None and not 0 <= value < c:
                raise ValueError(f"{name} must be a class in 0..{c - 1}, got {value!r}")
        if self.source is not None:
            eligible = y == self.source
        elif self.target is not None:
            eligible = y != self.target
        else:
            eligible = torch.ones_like(y, dtype=torch.bool)
        rows = choose_rows(eligible, int(round(self.rate * int(eligible.sum()))), self.seed)
        if self.target is not None:
            y[rows] = self.target
        else:
            g = torch.Generator().manual_seed(self.seed + 1)
            y[rows] = (y[rows] + 1 + torch.randint(0, c - 1, (len(rows),), generator=g)) % c
        poisoned = torch.zeros(len(y), dtype=torch.bool)
        poisoned[rows] = True
        ds = dataclasses.replace(dataset, y_train=y, info=dict(dataset.info, poisoning="label-flip"))
        return PoisonedData(ds, poisoned, "label-flip", dataclasses.asdict(self), target=self.target, source=self.source)
