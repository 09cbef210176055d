"""The in-memory dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Dataset"]


@dataclass
class Dataset:
    """A labelled train/test split held in memory.

    ``x_*`` are float32 tensors in [0, 1] of shape (N, C, H, W) (or (N, D) for tabular data),
    ``y_*`` int64 labels, ``classes`` the class names in label order.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: list[str]
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train``/``n_test`` samples of each split (splits are pre-shuffled)."""
        return Dataset(
            name=self.name,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
            classes=list(self.classes),
            info=dict(self.info),
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"classes={self.num_classes})"
        )


def stratified_split(y: Tensor, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic stratified split: indices (train, test), each shuffled by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per_class = n_test / len(y)
    train_idx, test_idx = [], []
    for c in classes.tolist():
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(per_class * len(idx)))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr = torch.cat(train_idx)
    te = torch.cat(test_idx)
    tr = tr[torch.randperm(len(tr), generator=g)]
    te = te[torch.randperm(len(te), generator=g)]
    return tr, te
