"""Shared fixtures: the embedded MNIST sample and small models trained once per machine.

Models are trained with the library's default settings and cached in pytest's cache folder,
so the first test session trains them (about 15 s on 2 cores) and later ones load them.
"""

from __future__ import annotations

import pytest
import torch

# One intra-op thread: the models are small, so a second thread buys little, and on a busy
# machine oversubscribed threads slow attacks down by an order of magnitude.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist():
    from advlab.data import load_data

    return load_data("mnist-sample")


@pytest.fixture(scope="session")
def model_cache(request):
    return request.config.cache.mkdir("advlab-models")


@pytest.fixture(scope="session")
def seed_mlp(model_cache):
    from advlab.models import trained_model

    return trained_model("seed-mlp", cache_dir=model_cache)


@pytest.fixture(scope="session")
def cnn(model_cache):
    from advlab.models import trained_model

    return trained_model("cnn", cache_dir=model_cache)


@pytest.fixture(scope="session")
def lstm(model_cache):
    """The row-by-row LSTM (sequential MNIST) trained with its default settings (about 6 s once)."""
    from advlab.models import trained_model

    return trained_model("lstm", cache_dir=model_cache)
