"""Soundness of the certified bounds: they must never claim more than is true.

Every test here can fail: a bound above a margin some input of the ball reaches (found by
sampling, by PGD, or by an exact mixed-integer program) is a soundness bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import advlab
from advlab.certify import (
    InputSet,
    as_chain,
    certified_radius,
    certify,
    interval_bounds,
    margin_bounds,
    margin_spec,
    supports,
)
from advlab.certify.relaxations import RELAXATIONS
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError

ACTS = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}
TOL = 1e-4


# ---------------------------------------------------------------------- relaxations
@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(ACTS)),
    lo=st.floats(-8, 8),
    width=st.one_of(st.floats(1e-7, 2e-3), st.floats(1e-3, 12)),
)
def test_relaxation_lines_enclose_the_activation(name, lo, width):
    lb = torch.tensor([lo], dtype=torch.float64)
    ub = lb + width
    a_low, b_low, a_up, b_up = RELAXATIONS[name](lb, ub)
    z = torch.linspace(lo, lo + width, 2001, dtype=torch.float64)
    f = ACTS[name]()(z)
    assert bool((a_low * z + b_low <= f + 1e-9).all()), "lower line above the activation"
    assert bool((a_up * z + b_up >= f - 1e-9).all()), "upper line below the activation"


def test_relaxations_are_tight_where_they_can_be():
    # stable ReLU neurons are exact; a narrow sigmoid interval has lines within its range
    lb, ub = torch.tensor([0.5, -3.0]), torch.tensor([2.0, -1.0])
    a_low, b_low, a_up, b_up = RELAXATIONS["ReLU"](lb, ub)
    assert a_low.tolist() == [1.0, 0.0] and a_up.tolist() == [1.0, 0.0] and float(b_up.abs().sum()) == 0
    lb, ub = torch.tensor([-0.1]), torch.tensor([0.1])
    a_low, b_low, a_up, b_up = RELAXATIONS["Sigmoid"](lb, ub)
    gap = (a_up * ub + b_up) - (a_low * ub + b_low)
    assert float(gap) < 1e-3


@settings(max_examples=40, deadline=None)
@given(
    layer=st.sampled_from(["ReLU", "Sigmoid", "Tanh", "pool2", "pool3"]),
    spread=st.floats(0.01, 3.0),
    width=st.floats(0.001, 2.0),
    seed=st.integers(0, 10_000),
)
def test_backward_relaxation_bounds_every_point(layer, spread, width, seed):
    """One nonlinear layer, random interval bounds and a random linear function of its output:
    the relaxed function pushed back to the input is below it at every point of the box."""
    from advlab.certify.bounds import _back_nonlinear, _relax

    g = torch.Generator().manual_seed(seed)
    module = {"pool2": nn.MaxPool2d(2), "pool3": nn.MaxPool2d(3, stride=1, padding=1)}.get(layer) or ACTS[layer]()
    centre = spread * torch.randn(3, 2, 4, 4, generator=g)
    lb = centre - width * torch.rand(3, 2, 4, 4, generator=g)
    ub = centre + width * torch.rand(3, 2, 4, 4, generator=g)
    out_shape = module(lb).shape[1:]
    a = torch.randn((3, 5) + tuple(out_shape), generator=g)
    a_in, bias = _back_nonlinear(_relax(module, lb, ub), a, (2, 4, 4))
    t = torch.rand((300, 3, 2, 4, 4), generator=g)
    t = torch.cat([t, (t > 0.5).float()])  # corners too
    z = lb + t * (ub - lb)
    exact = (a[None] * module(z.reshape(-1, 2, 4, 4)).reshape((-1, 3, 1) + tuple(out_shape))).flatten(3).sum(3)
    relaxed = (a_in[None] * z[:, :, None]).flatten(3).sum(3) + bias
    assert bool((relaxed <= exact + 1e-4).all())


@pytest.mark.parametrize("act", ["ReLU", "Sigmoid"])
def test_crown_is_exact_where_the_network_is_linear(act):
    """At a tiny radius around a generic input every ReLU is stable and every max-pool window
    has a winner: the network is affine on the ball, and CROWN's bound is the exact minimum
    of that affine function over the ball (a sigmoid network is within O(eps^2) of it)."""
    torch.manual_seed(3)
    a = ACTS[act]
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), a(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, padding=1), a(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 6), a(), nn.Linear(6, 4),
    ).double().eval()
    net[1].running_mean.uniform_(-0.2, 0.2)
    x = 0.2 + 0.6 * torch.rand(5, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    eps = 1e-7
    spec = margin_spec(y, 4, dtype=torch.float64)
    inputs = InputSet(x, torch.full((5,), eps, dtype=torch.float64), "linf", (0.0, 1.0))
    with torch.no_grad():
        crown = margin_bounds(as_chain(net), inputs, spec, method="crown")
    xg = x.clone().requires_grad_(True)
    margins = (spec @ net(xg)[:, :, None]).squeeze(2)
    for k in range(3):
        (grad,) = torch.autograd.grad(margins[:, k].sum(), xg, retain_graph=True)
        first_order = eps * grad.flatten(1).abs().sum(1)  # min of the affine function: f(x) - eps ||grad||_1
        gap = margins[:, k].detach() - crown[:, k]
        assert torch.allclose(gap, first_order, rtol=1e-3, atol=1e-12), (gap, first_order)


# ---------------------------------------------------------------------- random networks
def _network(kind: str, act: str, extra: str, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    a = ACTS[act]
    if kind == "mlp":
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(12, 7), a()]
        if extra == "batchnorm":
            layers.append(nn.BatchNorm1d(7))
        layers += [nn.Linear(7, 6), a(), nn.Linear(6, 4)]
        shape: tuple[int, ...] = (12,)
    else:
        layers = [nn.Conv2d(2, 3, 3, padding=1, stride=1 if extra != "stride" else 2)]
        if extra == "batchnorm":
            layers.append(nn.BatchNorm2d(3))
        layers.append(a())
        if extra == "maxpool":
            layers.append(nn.MaxPool2d(2))
        elif extra == "avgpool":
            layers.append(nn.AvgPool2d(2))
        elif extra == "overlap":
            layers.append(nn.MaxPool2d(3, stride=1, padding=1))
        layers += [nn.Conv2d(3, 2, 3, padding=1), a(), nn.Flatten()]
        side = 3 if extra in ("maxpool", "avgpool", "stride") else 6
        layers += [nn.Linear(2 * side * side, 5), a(), nn.Linear(5, 4)]
        shape = (2, 6, 6)
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval(), shape


def _margins(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = net(x)
    return margin_spec(y, z.shape[1], dtype=z.dtype) @ z[:, :, None]


def _ball_points(threat: ThreatModel, x: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` points of the ball (and box) around each sample: random, plus corners for Linf."""
    rng = CounterRNG(7)
    index = torch.arange(x.shape[0])
    points = [threat.random_start(x, rng, index, stream=s) for s in range(count)]
    if threat.norm == "linf":
        for s in range(count):
            sign = torch.where(rng.uniform(index, 1000 + s, x.shape[1:]) < 0.5, -1.0, 1.0)
            points.append(threat.clip(x + threat.eps * sign))
    return torch.stack(points)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["mlp", "conv"]),
    act=st.sampled_from(sorted(ACTS)),
    extra=st.sampled_from(["none", "batchnorm", "maxpool", "avgpool", "overlap", "stride"]),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.005, 0.4),
    seed=st.integers(0, 10_000),
)
def test_no_point_of_the_ball_goes_below_the_bounds(kind, act, extra, norm, eps, seed):
    net, shape = _network(kind, act, extra, seed)
    x = torch.rand((4,) + shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    threat = ThreatModel(norm, eps=eps)
    chain = as_chain(net)
    spec = margin_spec(y, 4)
    inputs = InputSet(x, torch.full((4,), eps), norm, threat.box)
    with torch.no_grad():
        ibp = margin_bounds(chain, inputs, spec, method="ibp")
        crown = margin_bounds(chain, inputs, spec, method="crown")
    assert bool((crown >= ibp - 1e-6).all()), "CROWN looser than IBP"

    points = _ball_points(threat, x, 64)
    assert bool(threat.contains(points.reshape((-1,) + shape), x.repeat(points.shape[0], *[1] * len(shape))).all())
    sampled = torch.stack([_margins(net, p, y) for p in points]).amin(dim=0).squeeze(2)
    pgd = advlab.attack("pgd", net, x, y, threat, steps=20, loss="margin", early_stop=False)
    attacked = _margins(net, pgd.x_adv, y).squeeze(2)
    for name, bound in (("IBP", ibp), ("CROWN", crown)):
        assert bool((bound <= sampled + TOL).all()), f"{name} bound above a sampled margin"
        assert bool((bound <= attacked + TOL).all()), f"{name} bound above the margin PGD reached"

    # the intermediate interval bounds hold at every point too
    for p in points[:8]:
        z = p
        with torch.no_grad():
            bounds = interval_bounds(chain, inputs)
        for (lb, ub), layer in zip(bounds, [*chain, None], strict=True):
            assert bool((z >= lb - TOL).all() and (z <= ub + TOL).all())
            if layer is not None:
                with torch.no_grad():
                    z = layer(z)


def test_crown_is_tighter_than_ibp_on_trained_models(seed_mlp, cnn, mnist):
    x, y = mnist.x_test[:30], mnist.y_test[:30]
    for model, eps in ((seed_mlp, 0.01), (cnn, 0.005)):
        chain = as_chain(model)
        spec = margin_spec(y, 10)
        inputs = InputSet(x, torch.full((30,), eps), "linf", (0.0, 1.0))
        with torch.no_grad():
            ibp = margin_bounds(chain, inputs, spec, method="ibp")
            crown = margin_bounds(chain, inputs, spec, method="crown", max_neurons=16)
        # a real improvement on most margins, not only ties
        assert float((crown > ibp + 1e-3).float().mean()) > 0.8


# ---------------------------------------------------------------------- exact margins
def _exact_min_margin(net: nn.Sequential, x: np.ndarray, eps: float, c: np.ndarray) -> tuple[float, np.ndarray]:
    """min over the Linf ball (and [0, 1] box) of c . net(x'), by a mixed-integer program
    (big-M encoding of each ReLU with interval bounds as M); returns (value, argmin)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    linears = [m for m in net if isinstance(m, nn.Linear)]
    lo_x, hi_x = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    inputs = InputSet(torch.tensor(x[None]), torch.tensor([eps]), "linf", (0.0, 1.0))
    with torch.no_grad():
        ib = interval_bounds(list(net), inputs)
    # variable layout: x, then per hidden layer: z (pre), h (post), a (binary)
    sizes = [x.size]
    for lin in linears[:-1]:
        sizes += [lin.out_features] * 3
    offsets = np.cumsum([0] + sizes)
    nvar = int(offsets[-1])
    lb, ub = np.full(nvar, -np.inf), np.full(nvar, np.inf)
    integrality = np.zeros(nvar)
    lb[: x.size], ub[: x.size] = lo_x, hi_x
    rows, lows, highs = [], [], []

    def row(entries: dict[int, float], low: float, high: float) -> None:
        r = np.zeros(nvar)
        for k, v in entries.items():
            r[k] += v
        rows.append(r)
        lows.append(low)
        highs.append(high)

    prev = list(range(x.size))
    for li, lin in enumerate(linears[:-1]):
        w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        base = int(offsets[1 + 3 * li])
        zi, hi_, ai = base, base + lin.out_features, base + 2 * lin.out_features
        zl, zu = (t.detach().double().numpy()[0] for t in ib[2 * li + 1])
        for k in range(lin.out_features):
            row({zi + k: 1.0, **{p: -w[k, q] for q, p in enumerate(prev)}}, b[k], b[k])
            lb[zi + k], ub[zi + k] = zl[k], zu[k]
            lb[hi_ + k], ub[hi_ + k] = 0.0, max(zu[k], 0.0)
            lb[ai + k], ub[ai + k] = 0.0, 1.0
            integrality[ai + k] = 1
            row({hi_ + k: 1.0, zi + k: -1.0}, 0.0, np.inf)  # h >= z
            row({hi_ + k: 1.0, zi + k: -1.0, ai + k: -zl[k]}, -np.inf, -zl[k])  # h <= z - zl (1 - a)
            row({hi_ + k: 1.0, ai + k: -max(zu[k], 0.0)}, -np.inf, 0.0)  # h <= zu a
        prev = list(range(hi_, hi_ + lin.out_features))
    last = linears[-1]
    w, b = last.weight.detach().double().numpy(), last.bias.detach().double().numpy()
    cost = np.zeros(nvar)
    cost[prev] = c @ w
    res = milp(cost, constraints=LinearConstraint(np.array(rows), lows, highs), integrality=integrality, bounds=Bounds(lb, ub))
    assert res.success, res.message
    return float(res.fun + c @ b), res.x[: x.size]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crown_below_the_exact_minimum_below_the_attack(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x = torch.rand(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    eps = 0.15
    chain = as_chain(net)
    spec = margin_spec(y, 3, dtype=torch.float64)
    inputs = InputSet(x, torch.full((6,), eps, dtype=torch.float64), "linf", (0.0, 1.0))
    with torch.no_grad():
        ibp = margin_bounds(chain, inputs, spec, method="ibp")
        crown = margin_bounds(chain, inputs, spec, method="crown")
    pgd = advlab.attack("pgd", net.float(), x.float(), y, ThreatModel("linf", eps=eps), steps=50, loss="margin", early_stop=False)
    net.double()
    attacked = _margins(net, pgd.x_adv.double(), y).squeeze(2)
    gaps = []
    for i in range(6):
        for k in range(2):
            c = spec[i, k].numpy()
            exact, argmin = _exact_min_margin(net, x[i].numpy(), eps, c)
            # the program's optimum is a real input of the ball whose margin is that value
            with torch.no_grad():
                again = float(torch.tensor(c) @ net(torch.tensor(argmin[None]))[0])
            assert abs(again - exact) < 1e-5
            assert float(ibp[i, k]) <= float(crown[i, k]) + 1e-9
            assert float(crown[i, k]) <= exact + 1e-6, "CROWN above the exact minimum margin"
            assert exact <= float(attacked[i, k]) + 1e-5, "the attack went below the exact minimum"
            gaps.append(exact - float(crown[i, k]))
    assert min(gaps) >= -1e-6


# ---------------------------------------------------------------------- the public API
def test_certify_and_radius_on_the_seed_mlp(seed_mlp, mnist):
    x, y = mnist.x_test[:40], mnist.y_test[:40]
    small = certify(seed_mlp, x, y, ThreatModel("linf", eps=0.002))
    large = certify(seed_mlp, x, y, ThreatModel("linf", eps=0.2))
    assert small.accuracy > large.accuracy and small.accuracy > 0.5
    assert bool((small.certified <= small.clean_correct).all())
    assert small.margins.shape == (40, 9)
    radius = certified_radius(seed_mlp, x[:10], y[:10], "linf", steps=10)
    at = certify(seed_mlp, x[:10], y[:10], ThreatModel("linf", eps=1.0))
    assert not bool(at.certified.any())
    # each radius is certified, a PGD attack never breaks a sample inside its radius, and the
    # bisection's upper end (radius + top / 2**steps) is not certified
    assert bool((radius >= 0).all()) and bool((radius > 0).any())
    for i in range(10):
        if radius[i] > 0:
            xi, yi = x[i : i + 1], y[i : i + 1]
            r = certify(seed_mlp, xi, yi, ThreatModel("linf", eps=float(radius[i])))
            assert bool(r.certified.all())
            above = certify(seed_mlp, xi, yi, ThreatModel("linf", eps=float(radius[i]) + 2.0**-10))
            assert not bool(above.certified.any())
            pgd = advlab.attack("pgd", seed_mlp, xi, yi, ThreatModel("linf", eps=float(radius[i])), steps=40)
            assert not bool(pgd.success.any())


def test_unsupported_models_are_refused_with_the_reason():
    class Custom(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3]

    ok, reason = supports(Custom())
    assert not ok and "Custom" in reason and "Linear" in reason
    ok, reason = supports(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2)))
    assert not ok and "GELU" in reason and "MaxPool2d" in reason
    with pytest.raises(InputError, match="GELU"):
        certify(nn.Sequential(nn.Flatten(), nn.GELU(), nn.Linear(4, 2)), torch.rand(2, 4), torch.tensor([0, 1]), ThreatModel("linf", eps=0.1))

    class Tricky(nn.Sequential):
        def bound_layers(self):
            return [self[0]]  # claims a chain it does not compute

        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(InputError, match="not the chain"):
        certify(Tricky(nn.Linear(4, 2)), torch.rand(2, 4), torch.tensor([0, 1]), ThreatModel("linf", eps=0.1))


def test_bad_threats_are_refused():
    net = nn.Sequential(nn.Linear(4, 2))
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    for threat, match in (
        (ThreatModel("l1", eps=0.1), "Linf and L2"),
        (ThreatModel("linf"), "radius"),
        (ThreatModel("linf", eps=0.1, targeted=True), "untargeted"),
    ):
        with pytest.raises(InputError, match=match):
            certify(net, x, y, threat)
    with pytest.raises(InputError, match="method"):
        certify(net, x, y, ThreatModel("linf", eps=0.1), method="exact")
    with pytest.raises(InputError, match="outside the box"):
        certify(net, x + 2, y, ThreatModel("linf", eps=0.1))


# ---------------------------------------------------------------------- the evaluation's bracket
def test_bracket_helpers(seed_mlp, mnist):
    from advlab.certify import (
        applies,
        certified_flags,
        certified_radii,
        radius_bracket,
        sample_status,
    )

    x, y = mnist.x_test[:12], mnist.y_test[:12]
    threat = ThreatModel("linf", eps=0.01)
    flags, why = certified_flags(seed_mlp, x, y, threat)
    assert why == "" and flags is not None and flags.shape == (12,) and bool(flags.any())
    pgd = advlab.attack("pgd", seed_mlp, x, y, threat, steps=20)
    status = sample_status(flags, pgd.success)
    assert set(status) <= {"certified", "broken", "unknown"} and status.count("certified") == int(flags.sum())
    with pytest.raises(RuntimeError, match="certified and broken"):
        sample_status(torch.tensor([True]), torch.tensor([True]))
    # unsupported: a reason, not an error
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.GELU(), nn.Linear(10, 10))
    none, why = certified_flags(gelu, x, y, threat)
    assert none is None and "GELU" in why
    assert applies(seed_mlp, ThreatModel("l1", eps=1.0))[0] is False
    assert certified_flags(seed_mlp, x, y, ThreatModel("linf"))[0] is None
    # minimal norm: [certified radius, smallest perturbation found]
    radius, why = certified_radii(seed_mlp, x, y, ThreatModel("l2"), steps=8)
    assert radius is not None
    ddn = advlab.attack("ddn", seed_mlp, x, y, ThreatModel("l2"), steps=100)
    summary = radius_bracket(radius, ddn.norms["l2"], ddn.success)
    assert summary["violations"] == 0 and summary["samples_with_both"] > 5
    assert summary["median_ratio"] >= 1.0
    assert bool((summary["intervals"][:, 0] <= summary["intervals"][:, 1]).all())
