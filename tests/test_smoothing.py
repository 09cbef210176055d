"""Randomized smoothing: the Clopper-Pearson bound, the certificate against a base classifier
whose smoothed version is known in closed form, abstention, and the attack on it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import advlab
from advlab.certify.smoothing import (
    ABSTAIN,
    clopper_pearson_lower,
    smoothed_certify,
    smoothed_predict,
)
from advlab.defenses import RandomizedSmoothing, SoftSmoothed
from advlab.threat import ThreatModel
from advlab.validation import InputError


def test_clopper_pearson_bound():
    n, alpha = 200, 0.01
    assert math.isclose(float(clopper_pearson_lower(n, n, alpha)), alpha ** (1 / n), rel_tol=1e-9)
    assert float(clopper_pearson_lower(0, n, alpha)) == 0.0
    ks = torch.arange(0, n + 1)
    bounds = clopper_pearson_lower(ks, n, alpha)
    assert bool((bounds[1:] > bounds[:-1]).all()) and bool((bounds <= ks / n).all())
    # coverage: the bound exceeds the true probability in at most alpha of the experiments
    g = torch.Generator().manual_seed(0)
    for p in (0.55, 0.9, 0.99):
        draws = torch.binomial(torch.full((2000,), float(n)), torch.full((2000,), p), generator=g)
        miss = float((clopper_pearson_lower(draws.long(), n, alpha) > p).float().mean())
        assert miss <= alpha + 0.01


def _linear(dim: int = 10, seed: int = 0) -> tuple[nn.Linear, torch.Tensor, float]:
    """A two-class linear classifier: logit 1 minus logit 0 is ``w.x + b``.  Its smoothed
    classifier is known: P(class 1) = Phi((w.x + b) / (sigma ||w||)), and its exact robust
    radius is the distance |w.x + b| / ||w|| to the hyperplane."""
    torch.manual_seed(seed)
    w = torch.randn(dim)
    net = nn.Linear(dim, 2)
    with torch.no_grad():
        net.weight.copy_(torch.stack([torch.zeros(dim), w]))
        net.bias.copy_(torch.tensor([0.0, -float(w.sum()) / 2]))
    return net.eval(), w, -float(w.sum()) / 2


def test_the_certified_radius_is_below_the_exact_one_and_close_to_it():
    net, w, b = _linear()
    x = torch.rand(24, 10, generator=torch.Generator().manual_seed(1))
    score = x @ w + b
    y = (score > 0).long()
    sigma = 0.25
    cert = smoothed_certify(net, x, y, sigma, n0=100, n=4000, alpha=0.001)
    distance = score.abs() / w.norm()
    assert bool((cert.radius <= distance + 1e-6).all()), "certified beyond the decision boundary"
    exact_p = torch.distributions.Normal(0.0, 1.0).cdf(distance / sigma)
    assert bool((cert.p_lower <= exact_p + 1e-6).all())
    # tight where the Monte Carlo budget allows (p_A well below the bound's ceiling)
    far = (distance > 0.1) & (exact_p < 0.99)
    assert int(far.sum()) >= 5
    assert bool((cert.radius[far] >= 0.6 * distance[far]).all())
    assert bool(((cert.prediction == y) | (cert.prediction == ABSTAIN)).all())
    assert cert.certified_accuracy(0.0) >= cert.certified_accuracy(0.2)
    assert cert.summary()["sigma"] == sigma


def test_predict_abstains_on_the_boundary():
    net, w, b = _linear()
    on = torch.full((1, 10), 0.5)  # w.x + b = 0 exactly
    far = (0.5 + 0.5 * w.sign() / w.abs().max()).clamp(0, 1)[None]
    out = smoothed_predict(net, torch.cat([on, far]), sigma=0.25, n=500, alpha=0.001)
    assert int(out[0]) == ABSTAIN and int(out[1]) == 1
    with pytest.raises(InputError, match="sigma"):
        smoothed_predict(net, on, sigma=-1.0)
    with pytest.raises(InputError, match="alpha"):
        smoothed_certify(net, on, torch.tensor([0]), 0.25, alpha=1.5)


def test_the_attack_on_the_smoothed_classifier():
    net, w, b = _linear()
    x = torch.rand(40, 10, generator=torch.Generator().manual_seed(2))
    score = x @ w + b
    y = (score > 0).long()
    distance = score.abs() / w.norm()
    smoothed = RandomizedSmoothing(net, sigma=0.25, samples=200)
    assert isinstance(smoothed.adaptive(), SoftSmoothed)
    keep = (distance > 0.3) & (distance < 0.8)
    xk, yk, dk = x[keep], y[keep], distance[keep]
    assert xk.shape[0] >= 5
    # the box cuts some directions: attack inside a big box so that the hyperplane is reachable
    tm = ThreatModel("l2", eps=float(dk.max()) * 2.0, box=(-10.0, 10.0))
    broken = advlab.attack("smoothadv", smoothed, xk, yk, tm, steps=10)
    assert float(broken.success.float().mean()) >= 0.9
    assert broken.forwards.sum() > 0
    # within half the distance to the boundary the smoothed vote holds
    tm_small = ThreatModel("l2", eps=float(dk.min()) * 0.3, box=(-10.0, 10.0))
    held = advlab.attack("smoothadv", smoothed, xk, yk, tm_small, steps=10)
    assert not bool(held.success.any())
    # on the base classifier directly the attack adds its own noise
    base = advlab.attack("smoothadv", net, xk, yk, tm, sigma=0.25, samples=4, steps=10)
    assert float(base.success.float().mean()) >= 0.9
    assert bool((base.forwards == 10 * 4).all()) and bool((base.backwards == 10 * 4).all())


def test_the_smoothed_model_saves_and_loads(tmp_path):
    from advlab.models import build_model, load_model, save_model

    smoothed = RandomizedSmoothing(build_model("seed-mlp"), sigma=0.5, samples=20)
    save_model(smoothed, tmp_path / "rs")
    again = load_model(tmp_path / "rs")
    assert isinstance(again, RandomizedSmoothing) and again.sigma == 0.5 and again.samples == 20
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(smoothed(x).argmax(1), again(x).argmax(1))
