"""The threat model, the lp geometry and the counter RNG: properties that must always hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.norms import get_norm
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

NORMS = ["linf", "l2", "l1", "l0"]


def _batch(seed: int, b: int, d: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((b, d)).astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(
    norm=st.sampled_from(NORMS),
    eps=st.floats(0.0, 5.0),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.01, 10.0),
    b=st.integers(1, 6),
    d=st.integers(1, 40),
)
def test_projection_lands_in_ball_and_box_and_is_idempotent(norm, eps, seed, scale, b, d):
    tm = ThreatModel(norm, eps=eps if norm != "l0" else float(round(eps)))
    x = _batch(seed, b, d)
    x_adv = x + scale * (_batch(seed + 1, b, d) * 2 - 1)
    p = tm.project(x_adv, x)
    assert tm.contains(p, x).all()
    p2 = tm.project(p, x)
    assert torch.allclose(p, p2, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(norm=st.sampled_from(["linf", "l2", "l1"]), seed=st.integers(0, 10_000), d=st.integers(1, 30))
def test_projection_leaves_inside_points_unchanged(norm, seed, d):
    x = _batch(seed, 3, d) * 0.5 + 0.25
    delta = (_batch(seed + 7, 3, d) * 2 - 1) * 0.01
    tm = ThreatModel(norm, eps=10.0)
    assert torch.allclose(tm.project(x + delta, x), x + delta, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 50), eps=st.floats(0.01, 3.0))
def test_l1_projection_is_the_euclidean_projection(seed, d, eps):
    # The projection onto a convex set is the closest point: no feasible point is closer.
    v = (_batch(seed, 1, d) * 2 - 1) * 3
    p = get_norm("l1").project(v, torch.tensor([eps]))
    assert float(p.abs().sum()) <= eps * (1 + 1e-5) + 1e-6
    others = get_norm("l1").project((_batch(seed + 3, 64, d) * 2 - 1) * 3, torch.full((64,), eps))
    assert float((p - v).norm()) <= float((others - v).norm(dim=1).min()) + 1e-5


@pytest.mark.parametrize("norm", ["linf", "l2", "l1", "l0"])
def test_random_start_is_inside_and_batch_independent(norm):
    x = _batch(0, 10, 100)
    tm = ThreatModel(norm, eps=0.3 if norm == "linf" else 2.0)
    rng = CounterRNG(5)
    idx = torch.arange(10)
    full = tm.random_start(x, rng, idx)
    part = tm.random_start(x[4:7], rng, idx[4:7])
    assert tm.contains(full, x).all()
    assert torch.equal(full[4:7], part)
    assert not torch.equal(full, x)
    spread = tm.random_start(x, rng, idx, radius="uniform")
    assert tm.contains(spread, x).all()
    assert torch.equal(spread[4:7], tm.random_start(x[4:7], rng, idx[4:7], radius="uniform"))


def test_random_start_radius_uniform_spreads_over_the_ball():
    # A volume-uniform point of a 784-d L2 ball lies on its surface; radius="uniform" draws
    # the distance uniformly in [0, eps] (mean eps / 2).  The box is widened so that no
    # clipping shrinks the perturbations.
    x = torch.zeros(400, 784)
    tm = ThreatModel("l2", eps=2.0, box=(-10.0, 10.0))
    rng, idx = CounterRNG(0), torch.arange(400)
    volume = tm.distance(tm.random_start(x, rng, idx), x)
    uniform = tm.distance(tm.random_start(x, rng, idx, radius="uniform"), x)
    assert float(volume.min()) > 0.98 * 2.0
    assert abs(float(uniform.mean()) - 1.0) < 0.1 and float(uniform.min()) < 0.2
    with pytest.raises(ValueError, match="radius"):
        tm.random_start(x, rng, idx, radius="sphere")


def test_rng_is_uniform_and_normal_enough():
    rng = CounterRNG(1)
    u = rng.uniform(torch.arange(200), 3, (500,))
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    z = rng.normal(torch.arange(200), 3, (500,))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert not torch.equal(CounterRNG(2).uniform(torch.arange(3), 0, (4,)), rng.uniform(torch.arange(3), 0, (4,)))


def test_threat_model_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown norm"):
        ThreatModel("l3", eps=1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        ThreatModel("linf", eps=-0.1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        ThreatModel("linf", eps=math.nan)
    with pytest.raises(ValueError, match="box"):
        ThreatModel(box=(1, 0))
    with pytest.raises(ValueError, match="knowledge"):
        ThreatModel(knowledge="grey")
    assert ThreatModel("Linf", eps=math.inf).eps is None
    assert ThreatModel(2, eps=1).norm == "l2"
    tm = ThreatModel("l2", eps=0.5, targeted=True)
    assert ThreatModel.from_dict(tm.to_dict()) == tm
    assert "targeted" in tm.describe()
