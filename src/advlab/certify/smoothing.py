"""Randomized smoothing for L2 (Cohen, Rosenfeld and Kolter 2019, "Certified adversarial
robustness via randomized smoothing", arXiv:1902.02918).

The smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`` of a base
classifier ``f`` is robust within the L2 radius ``sigma * Phi^-1(p_A)`` when its top class
has probability ``p_A > 1/2``.  The probabilities are estimated by Monte Carlo, so every
statement holds with a stated confidence ``1 - alpha``:

- :func:`smoothed_predict` (the paper's PREDICT): the top class of ``n`` noisy votes, or an
  abstention (``-1``) when a two-sided binomial test cannot tell the top two apart at level
  ``alpha``.
- :func:`smoothed_certify` (CERTIFY): the top class guessed from ``n0`` votes, then a
  one-sided Clopper-Pearson lower bound on its probability from ``n`` fresh votes; radius
  ``sigma * Phi^-1(lower)``, or an abstention when the lower bound is not above 1/2.

The noise of sample ``i`` comes from a generator seeded by ``(seed, i)``: results do not
depend on the batch size, and a run is reproducible.  The smoothed classifier ignores the
input box (the noise leaves it): its certificate is for the whole L2 ball.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advlab.validation import InputError, as_input_tensor, as_label_tensor
from advlab.victim import run_model

__all__ = [
    "SmoothedCertificate",
    "clopper_pearson_lower",
    "noise_votes",
    "smoothed_certify",
    "smoothed_predict",
    "ABSTAIN",
]

ABSTAIN = -1


def clopper_pearson_lower(successes: Tensor | int, trials: int, alpha: float) -> Tensor:
    """One-sided ``1 - alpha`` Clopper-Pearson lower confidence bound on a binomial
    probability: the ``alpha`` quantile of ``Beta(k, n - k + 1)`` (0 when ``k = 0``)."""
    from scipy.stats import beta

    k = torch.as_tensor(successes).double().cpu()
    values = beta.ppf(alpha, k.clamp_min(1).numpy(), (trials - k + 1).numpy())
    return torch.where(k > 0, torch.as_tensor(values, dtype=torch.float64), torch.zeros_like(k))


def _check(sigma: float, n: int, alpha: float) -> None:
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise InputError(f"sigma must be a positive number, got {sigma!r}")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the number of noise samples must be a positive int, got {n!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), got {alpha!r}")


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def noise_votes(
    model: nn.Module, x: Tensor, sigma: float, n: int, *, seed: int = 0, stream: int = 0, chunk: int = 1000,
    index: Tensor | None = None,
) -> Tensor:
    """Votes ``(B, C)``: how often ``model`` predicts each class on ``n`` noisy copies of each
    input (noise ``N(0, sigma^2 I)``; ``stream`` separates independent draws of one seed;
    ``index`` the samples' global indices, by default their positions)."""
    idx = torch.arange(x.shape[0]) if index is None else index.cpu()
    num_classes = int(model(x[:1]).shape[1])
    counts = torch.zeros((x.shape[0], num_classes), dtype=torch.long, device=x.device)
    for i in range(x.shape[0]):
        g = torch.Generator(device=x.device).manual_seed((seed * 1_000_003 + int(idx[i])) * 7919 + stream)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            noise = torch.randn((m,) + tuple(x.shape[1:]), generator=g, device=x.device, dtype=x.dtype)
            pred = run_model(model, x[i : i + 1] + sigma * noise).argmax(dim=1)
            counts[i] += torch.bincount(pred, minlength=num_classes)
    return counts


def smoothed_predict(
    model: nn.Module, x: Any, sigma: float, n: int = 100, alpha: float = 0.001, *, seed: int = 0, batch: int = 1000,
    box: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Cohen et al.'s PREDICT: per sample the smoothed class, or :data:`ABSTAIN` (-1) when the
    top two vote counts are not different at level ``alpha`` (two-sided binomial test).
    A returned class is wrong with probability at most ``alpha``."""
    from scipy.stats import binomtest

    _check(sigma, n, alpha)
    x_t = as_input_tensor(x, box, device=_device(model))
    was = model.training
    model.eval()
    try:
        counts = noise_votes(model, x_t, sigma, n, seed=seed, stream=0, chunk=batch)
    finally:
        model.train(was)
    top2 = counts.topk(2, dim=1)
    out = top2.indices[:, 0].clone()
    for i in range(x_t.shape[0]):
        a, b = int(top2.values[i, 0]), int(top2.values[i, 1])
        if binomtest(a, a + b, 0.5).pvalue > alpha:
            out[i] = ABSTAIN
    return out.cpu()


@dataclass
class SmoothedCertificate:
    """Cohen et al.'s CERTIFY on each sample.

    Attributes
    ----------
    prediction: ``(N,)`` the smoothed class, or :data:`ABSTAIN` (-1).
    radius: ``(N,)`` the certified L2 radius (0 when abstaining).
    p_lower: ``(N,)`` the Clopper-Pearson lower bound on the top class's probability.
    correct: ``(N,)`` the prediction equals the label.
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor
    correct: Tensor
    sigma: float
    n: int
    alpha: float
    seconds: float

    def certified_accuracy(self, radius: float) -> float:
        """Share of samples predicted correctly with a certified radius of at least ``radius``."""
        return float((self.correct & (self.radius >= radius)).float().mean())

    def summary(self, radii: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "n": self.n,
            "alpha": self.alpha,
            "abstained": float((self.prediction == ABSTAIN).float().mean()),
            "certified_accuracy": {f"{r:g}": self.certified_accuracy(r) for r in radii},
            "seconds_per_sample": self.seconds / max(1, len(self.radius)),
        }


def smoothed_certify(
    model: nn.Module, x: Any, y: Any, sigma: float, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
    seed: int = 0, batch: int = 1000, box: tuple[float, float] = (0.0, 1.0),
) -> SmoothedCertificate:
    """Cohen et al.'s CERTIFY: per sample the class guessed from ``n0`` noisy votes and the L2
    radius ``sigma * Phi^-1(p_lower)`` within which the smoothed classifier keeps it, where
    ``p_lower`` is the ``1 - alpha`` Clopper-Pearson bound from ``n`` fresh votes.  With
    probability at least ``1 - alpha`` per sample, the certificate is true."""
    _check(sigma, n, alpha)
    _check(sigma, n0, alpha)
    x_t = as_input_tensor(x, box, device=_device(model))
    start = time.perf_counter()
    was = model.training
    model.eval()
    try:
        guess = noise_votes(model, x_t, sigma, n0, seed=seed, stream=1, chunk=batch).argmax(dim=1)
        counts = noise_votes(model, x_t, sigma, n, seed=seed, stream=2, chunk=batch)
    finally:
        model.train(was)
    y_t = as_label_tensor(y, x_t.shape[0], counts.shape[1], device=counts.device)
    k = counts.gather(1, guess[:, None]).squeeze(1)
    p_lower = clopper_pearson_lower(k.cpu(), n, alpha)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    certified = p_lower > 0.5
    radius = torch.where(certified, sigma * normal.icdf(p_lower.clamp(1e-12, 1 - 1e-12)), torch.zeros_like(p_lower))
    prediction = torch.where(certified, guess.cpu(), torch.full_like(guess.cpu(), ABSTAIN))
    return SmoothedCertificate(
        prediction=prediction,
        radius=radius.float(),
        p_lower=p_lower.float(),
        correct=prediction == y_t.cpu(),
        sigma=float(sigma),
        n=n,
        alpha=alpha,
        seconds=time.perf_counter() - start,
    )
