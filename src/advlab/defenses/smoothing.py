"""Randomized smoothing as a defense (Cohen et al. 2019, arXiv:1902.02918).

:class:`RandomizedSmoothing` wraps a base classifier: its forward pass is a Monte Carlo
estimate of the smoothed classifier (log vote frequencies over ``samples`` Gaussian draws),
:meth:`~RandomizedSmoothing.predict` is the paper's PREDICT with abstention and
:meth:`~RandomizedSmoothing.certify` its CERTIFY (an L2 radius per sample at confidence
``1 - alpha``; see :mod:`advlab.certify.smoothing`).

How it must be attacked: ``adaptive()`` is Salman et al.'s soft smoothed classifier
(2019, "Provably robust deep learning via adversarially trained smoothed classifiers",
arXiv:1906.04584): the log of the base model's softmax averaged over fresh noise draws, so
a gradient attack on the wrapper is EOT over the noise (SmoothAdv with PGD).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from advlab.certify.smoothing import (
    SmoothedCertificate,
    noise_votes,
    smoothed_certify,
    smoothed_predict,
)
from advlab.defenses.adaptive import Wrapper, adaptive_model

__all__ = ["RandomizedSmoothing", "SoftSmoothed"]


class SoftSmoothed(nn.Module):
    """``log E_noise softmax(model(x + noise))`` over ``samples`` fresh Gaussian draws per call
    (one batched pass of ``samples`` copies; the draws continue from call to call, from
    ``seed``).  ``smoothing_sigma`` tells attacks that this model adds its own noise."""

    def __init__(self, model: nn.Module, sigma: float, samples: int = 8, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        self.model = model
        self.smoothing_sigma = float(sigma)
        self.samples = samples
        self._gen = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        rep = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        noise = torch.randn(rep.shape, generator=self._gen).to(device=x.device, dtype=x.dtype)
        logp = torch.log_softmax(self.model(rep + self.smoothing_sigma * noise), dim=1)
        return torch.logsumexp(logp.reshape(self.samples, x.shape[0], -1), dim=0) - math.log(self.samples)


class RandomizedSmoothing(Wrapper):
    """The smoothed version of ``model`` under Gaussian noise of standard deviation ``sigma``.

    Parameters
    ----------
    sigma: the noise level (inputs in [0, 1]: Cohen et al. use 0.12 to 1.0).
    samples: noise draws of the forward pass (the Monte Carlo vote).
    eot_samples: noise draws per pass of the adaptive (soft, differentiable) model.
    seed: the noise of the forward pass (sample ``i`` of a batch always gets the same draws).

    >>> smoothed = RandomizedSmoothing(model, sigma=0.25)                # doctest: +SKIP
    >>> smoothed.certify(x, y, n=10_000).certified_accuracy(0.5)         # doctest: +SKIP
    """

    kind = "randomized-smoothing"

    def __init__(self, model: nn.Module, sigma: float = 0.25, samples: int = 100, eot_samples: int = 8, seed: int = 0) -> None:
        super().__init__(model)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        self.sigma = float(sigma)
        self.samples = samples
        self.eot_samples = eot_samples
        self.seed = seed

    def forward(self, x: Tensor) -> Tensor:
        counts = noise_votes(self.model, x, self.sigma, self.samples, seed=self.seed)
        return torch.log((counts.to(x.dtype) + 0.5) / (self.samples + 0.5 * counts.shape[1]))

    def adaptive(self) -> nn.Module:
        return SoftSmoothed(adaptive_model(self.model), self.sigma, self.eot_samples, self.seed)

    def predict(self, x: Any, n: int = 100, alpha: float = 0.001) -> Tensor:
        """Cohen et al.'s PREDICT: the smoothed class per sample, or -1 (abstain)."""
        return smoothed_predict(self.model, x, self.sigma, n, alpha, seed=self.seed)

    def certify(self, x: Any, y: Any, n0: int = 100, n: int = 10_000, alpha: float = 0.001) -> SmoothedCertificate:
        """Cohen et al.'s CERTIFY: prediction and certified L2 radius per sample."""
        return smoothed_certify(self.model, x, y, self.sigma, n0=n0, n=n, alpha=alpha, seed=self.seed)

    def wrapper_config(self) -> dict[str, Any]:
        return {"type": self.kind, "sigma": self.sigma, "samples": self.samples, "eot_samples": self.eot_samples, "seed": self.seed}

    @classmethod
    def from_config(cls, model: nn.Module, config: dict[str, Any]) -> RandomizedSmoothing:
        return cls(model, float(config["sigma"]), int(config["samples"]), int(config["eot_samples"]), int(config["seed"]))
