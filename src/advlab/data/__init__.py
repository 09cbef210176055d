"""Datasets: the embedded MNIST sample, and MNIST / Fashion-MNIST from IDX files."""

from __future__ import annotations

from typing import Any

from advlab.data.dataset import Dataset
from advlab.data.sample import load_mnist_sample

__all__ = ["Dataset", "load_data", "DATASETS"]

DATASETS = ("mnist-sample",)


def load_data(name: str = "mnist-sample", **kwargs: Any) -> Dataset:
    """Load a dataset by name (``mnist-sample``)."""
    key = name.strip().lower().replace("_", "-")
    if key == "mnist-sample":
        return load_mnist_sample(**kwargs)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
