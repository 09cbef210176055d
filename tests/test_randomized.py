"""Randomized models are judged by their expected answer (advlab.expectation), not one draw.

The planted model adds Gaussian noise (sigma 0.3) to its input at every forward pass. One
forward pass that misclassifies an adversarial input says little about how it is answered:
judged by single draws, PGD "breaks" far more samples than a majority vote of fresh draws
confirms. Declared randomized, the model is attacked through the expectation and judged by
votes, and the result agrees with an independent majority vote and with a plain EOT-PGD
written here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advlab
from advlab import ThreatModel
from advlab.expectation import DEFAULT_DRAWS, VERIFY_FACTOR, Expected, rejudge

N = 400
EPS = 0.05


class NoisyInput(nn.Module):
    """``inner(x + sigma * noise)`` with fresh noise at every forward pass."""

    def __init__(self, inner: nn.Module, sigma: float = 0.3, declared: bool = True) -> None:
        super().__init__()
        self.inner, self.sigma, self.randomized = inner, sigma, declared
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.inner(x + self.sigma * torch.randn_like(x))


def majority_robust(model: nn.Module, x_adv, y, draws: int = 25) -> float:
    """Robust accuracy by the majority of ``draws`` fresh forward passes (independent of advlab)."""
    with torch.no_grad():
        votes = torch.stack([model(x_adv).argmax(dim=1) for _ in range(draws)])
    return float((votes.mode(dim=0).values == y).float().mean())


def eot_pgd(model: nn.Module, x, y, eps: float, steps: int = 40, draws: int = 10):
    """A plain EOT-PGD: margin of the logits averaged over ``draws`` passes, sign steps of eps/4."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        z = torch.stack([model(x_adv) for _ in range(draws)]).mean(dim=0)
        true = z.gather(1, y[:, None]).squeeze(1)
        other = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        (grad,) = torch.autograd.grad((other - true).sum(), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + eps / 4 * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.x_test[:N], mnist.y_test[:N]


@pytest.fixture(scope="module")
def judged(seed_mlp, data):
    torch.manual_seed(0)
    model = NoisyInput(seed_mlp)
    # the reference's loss and step (margin, eps/4); the expectation and the votes are advlab's
    res = advlab.attack("pgd", model, *data, ThreatModel("linf", eps=EPS), loss="margin", step_size=EPS / 4)
    return model, res, model.rows


def test_single_draw_judging_overstates_the_attack(seed_mlp, data):
    """The failure this module guards against: judged by one draw, PGD reports many more
    broken samples than a majority vote confirms."""
    torch.manual_seed(0)
    model = NoisyInput(seed_mlp, declared=False)
    x, y = data
    res = advlab.attack("pgd", model, x, y, ThreatModel("linf", eps=EPS))
    assert majority_robust(model, res.x_adv, y) - res.robust_accuracy > 0.10


def test_declared_randomized_model_is_judged_by_votes(judged, data):
    model, res, _ = judged
    x, y = data
    torch.manual_seed(1)
    independent = majority_robust(model, res.x_adv, y)
    assert abs(res.robust_accuracy - independent) <= 0.03, (res.robust_accuracy, independent)
    again = rejudge(model, res.x_adv, y, draws=DEFAULT_DRAWS, repeats=5)
    assert again.low <= independent + 0.03 and independent - 0.03 <= again.high
    assert again.worst <= again.mean <= max(again.accuracies)


def test_as_strong_as_a_plain_eot_pgd(judged, data, seed_mlp):
    model, res, _ = judged
    x, y = data
    torch.manual_seed(2)
    reference = eot_pgd(model, x, y, EPS)
    ours, theirs = majority_robust(model, res.x_adv, y), majority_robust(model, reference, y)
    assert ours <= theirs + 0.05, f"advlab {ours:.3f} vs plain EOT-PGD {theirs:.3f}"


def test_every_draw_is_counted(judged, data):
    _, res, rows = judged
    # every sample attacked (a noisy clean vote is no reason to skip one), 40 steps without
    # early stopping, the end-of-run check; clean vote and a verification of VERIFY_FACTOR x draws
    k = DEFAULT_DRAWS
    assert bool((res.checks == k + VERIFY_FACTOR * k).all())
    assert bool((res.forwards == k * 41).all()) and bool((res.backwards == k * 40).all())
    assert int(res.model_forwards.sum()) == rows


def test_draws_argument(seed_mlp, data):
    x, y = data
    model = NoisyInput(seed_mlp, declared=False)
    res = advlab.attack("fgsm", model, x[:20], y[:20], ThreatModel("linf", eps=EPS), draws=3)
    # FGSM's one step reuses the clean vote; the verification votes with VERIFY_FACTOR x 3 draws
    assert bool((res.forwards == 3).all()) and bool((res.checks == VERIFY_FACTOR * 3).all())
    assert int(res.model_forwards.sum()) == model.rows
    with pytest.raises(advlab.InputError, match="draws"):
        advlab.attack("fgsm", model, x[:4], y[:4], ThreatModel("linf", eps=EPS), draws=0)
    e = Expected(seed_mlp, 1)
    with torch.no_grad():
        assert torch.equal(e(x[:4]).argmax(1), seed_mlp(x[:4]).argmax(1))
