"""Randomized models judged by their expected answer, not one lucky draw.

A model that draws randomness at every forward pass (noise, random resizing, dropout left on)
answers a random label: one forward pass that happens to misclassify an adversarial input
says little about how the deployed model answers it. advlab judges such a model by its
*expected prediction*: the class of largest mean probability over ``draws`` independent
forward passes (the smoothed classifier of Cohen et al. 2019, arXiv:1902.02918; the
expectation Athalye et al. 2018, arXiv:1707.07397, attack through EOT). Attacks run against
:class:`Expected` optimise that expectation (the gradient of a loss of the mean probability
averages every draw's gradient) and stop on a sample only once the ``draws``-vote says it is
broken; the library's clean pass and verification use the same vote.

A model declares its randomness with a truthy ``randomized`` attribute (advlab's randomized
defenses do); the evaluation's randomness check finds the others. Robust accuracy of a
randomized model is itself random: :func:`rejudge` repeats the ``draws``-vote with fresh
randomness and reports its mean, a confidence interval and the worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Expected", "is_randomized", "DEFAULT_DRAWS", "VERIFY_FACTOR", "Rejudged", "rejudge"]

#: Draws of the vote when a model declares itself randomized and the caller names no number.
DEFAULT_DRAWS = 10
#: The final verification of an attack's output takes this many times the attack's draws: the
#: attack ends near the vote's boundary, where a vote of ``draws`` passes is close to a coin flip.
VERIFY_FACTOR = 4


def is_randomized(model: nn.Module) -> bool:
    """Whether ``model`` declares that its forward pass is random (``randomized`` attribute)."""
    return bool(getattr(model, "randomized", False))


class Expected(nn.Module):
    """``model`` as judged by its expected prediction over ``draws`` forward passes.

    ``forward`` runs ``draws`` copies of the batch in one pass and returns the log of the mean
    probability per class, so its argmax is the mean-probability vote and its gradient is the
    expectation of the per-draw gradients (EOT). Each row costs ``draws`` rows of ``model``.
    """

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"draws must be a positive int, got {draws!r}")
        self.model = model
        self.draws = draws

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        rep = x.repeat(self.draws, *([1] * (x.dim() - 1)))
        logp = torch.log_softmax(self.model(rep).reshape(self.draws, n, -1), dim=2)
        return torch.logsumexp(logp, dim=0) - math.log(self.draws)

    def extra_repr(self) -> str:
        return f"draws={self.draws}"


@dataclass(frozen=True)
class Rejudged:
    """Robust accuracy of a randomized model over ``repeats`` fresh ``draws``-vote judgments.

    ``accuracies`` holds each repeat's robust accuracy; ``mean`` their average; ``low`` and
    ``high`` a 95% interval of the expected robust accuracy (the mean's t-interval over the
    repeats, widened to at least the Wilson interval of one judgment of ``n`` samples);
    ``worst`` the lowest accuracy any repeat gave (an adversary who may resubmit).
    """

    accuracies: tuple[float, ...]
    draws: int
    n: int
    mean: float
    low: float
    high: float
    worst: float
    #: per sample: share of repeats in which the sample was judged robust
    robust_share: Tensor

    def to_dict(self) -> dict[str, object]:
        return {
            "draws": self.draws,
            "repeats": len(self.accuracies),
            "n": self.n,
            "expected": self.mean,
            "interval": [self.low, self.high],
            "worst": self.worst,
            "accuracies": list(self.accuracies),
        }


@torch.no_grad()
def rejudge(
    model: nn.Module,
    x_adv: Tensor,
    y: Tensor,
    *,
    draws: int = DEFAULT_DRAWS,
    repeats: int = 10,
    target: Tensor | None = None,
    batch_size: int = 500,
) -> Rejudged:
    """Judge ``x_adv`` ``repeats`` times by the ``draws``-vote of ``model`` with fresh
    randomness each time (the model's own; seed torch for a reproducible run).

    A sample counts as robust when the vote returns its true label (untargeted) or anything
    but ``target`` (targeted).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    judge = Expected(model, draws)
    was = model.training
    model.eval()
    try:
        robust = torch.zeros(repeats, x_adv.shape[0], dtype=torch.bool)
        for r in range(repeats):
            for i in range(0, x_adv.shape[0], batch_size):
                pred = judge(x_adv[i : i + batch_size]).argmax(dim=1).cpu()
                goal = (target if target is not None else y)[i : i + batch_size].cpu()
                robust[r, i : i + batch_size] = pred != goal if target is not None else pred == goal
    finally:
        model.train(was)
    acc = robust.float().mean(dim=1)
    n = x_adv.shape[0]
    mean = float(acc.mean())
    half = 0.0
    if repeats > 1:
        half = _t975(repeats - 1) * float(acc.std(unbiased=True)) / math.sqrt(repeats)
    w_low, w_high = _wilson(mean, n)
    low, high = min(mean - half, w_low), max(mean + half, w_high)
    return Rejudged(
        accuracies=tuple(float(a) for a in acc),
        draws=draws,
        n=n,
        mean=mean,
        low=max(0.0, low),
        high=min(1.0, high),
        worst=float(acc.min()),
        robust_share=robust.float().mean(dim=0),
    )


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` of ``n`` trials (Wilson 1927)."""
    if n == 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def _t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (two-sided 95%)."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))
