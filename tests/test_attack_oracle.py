"""An analytic oracle: on a linear classifier the minimal adversarial perturbation is known.

For logits ``z = W x + b`` the inputs misclassified away from ``y`` are the union over
``j != y`` of the half-spaces ``{(w_j - w_y) . x' > b_y - b_j}``, so the smallest perturbation
in any norm is the smallest distance to one of those half-spaces, inside the box.  Per
half-space ``{w . delta >= m}`` with ``lo - x <= delta <= hi - x``:

- L2: ``delta = clip(lambda * w)`` for the smallest ``lambda`` that reaches ``m`` (KKT);
- Linf: ``delta = clip(e * sign(w))`` for the smallest ``e``;
- L1: a fractional knapsack, filling coordinates by decreasing ``|w_i|``;
- L0: the fewest coordinates whose largest possible contributions reach ``m``.

Minimal-norm attacks must land within 1.25x of the optimum (and never below it) on every
sample of a two-class problem.  With more classes, attacks driven by the margin against the
currently strongest other class (C&W, FMN) or by the cross-entropy (DDN) can settle on a
farther boundary than the nearest one (the margin is convex in the input, so its ascent has
local optima); there DeepFool, which compares every class's boundary, must still be within
1.25x per sample and the others within 1.25x on the median.  Every white-box attack in the
registry, whoever wrote it, must never claim a success under a budget smaller than the
optimum.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advlab.attacks import AttackError, available_attacks, get_attack
from advlab.threat import ThreatModel

BOX = (0.0, 1.0)
D, C, N = 20, 4, 12

# Minimal-norm attacks that claim (near) optimality on a linear model, per norm.
MINIMAL = [
    ("deepfool", "l2"),
    ("deepfool", "linf"),
    ("cw-l2", "l2"),
    ("ddn", "l2"),
    ("fmn", "l2"),
    ("fmn", "linf"),
    ("fmn", "l1"),
    ("fmn", "l0"),
]


def _bisect(reach, top: float, iters: int = 60) -> float:
    lo, hi = 0.0, top
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reach(mid) else (mid, hi)
    return hi


def halfspace_distance(w: torch.Tensor, m: float, x: torch.Tensor, norm: str) -> float:
    """Smallest ``||delta||`` with ``w . delta >= m`` and ``x + delta`` in the box (float64)."""
    if m <= 0:
        return 0.0
    lo, hi = BOX[0] - x, BOX[1] - x
    cap = torch.where(w > 0, hi, -lo)  # how far each coordinate may move in its useful direction
    gain = w.abs() * cap
    if float(gain.sum()) < m:
        return math.inf
    if norm == "l2":
        lam = _bisect(lambda t: float(w @ (t * w).clamp(lo, hi)) >= m, 1e6)
        return float((lam * w).clamp(lo, hi).norm())
    if norm == "linf":
        e = _bisect(lambda t: float(w @ (t * w.sign()).clamp(lo, hi)) >= m, BOX[1] - BOX[0])
        return e
    order = w.abs().argsort(descending=True)
    if norm == "l0":
        order = gain.argsort(descending=True)
        return float(int((gain[order].cumsum(0) < m).sum()) + 1)
    total, need = 0.0, m
    for i in order.tolist():
        if gain[i] >= need:
            return total + need / float(w[i].abs())
        total += float(cap[i])
        need -= float(gain[i])
    return math.inf


def optimum(model: nn.Linear, x: torch.Tensor, y: torch.Tensor, norm: str, target: torch.Tensor | None = None) -> torch.Tensor:
    """Exact minimal perturbation per sample (untargeted); with ``target``, the distance to
    the half-space ``z_target >= z_y``: exact for two classes, a lower bound otherwise."""
    W, b = model.weight.detach().double(), model.bias.detach().double()
    out = []
    for i in range(x.shape[0]):
        xi = x[i].double()
        z = W @ xi + b
        classes = [int(target[i])] if target is not None else [j for j in range(W.shape[0]) if j != int(y[i])]
        out.append(min(halfspace_distance(W[j] - W[y[i]], float(z[y[i]] - z[j]), xi, norm) for j in classes))
    return torch.tensor(out)


def linear_problem(seed: int, classes: int = C):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(D, classes)
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, D, generator=g))
        model.bias.copy_(torch.randn(classes, generator=g) * 0.5)
    x = 0.3 + 0.4 * torch.rand(N, D, generator=g)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: a second intra-op thread only adds synchronisation (and is ruinous on a
    # loaded machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _within(found: torch.Tensor, opt: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "l0":  # counts: one feature of slack for small optima
        return found <= torch.maximum(1.25 * opt, opt + 1)
    return found <= 1.25 * opt + 1e-6


def _check_minimal(name: str, norm: str, model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    opt = optimum(model, x, y, norm)
    assert torch.isfinite(opt).all()
    res = get_attack(name)(model, x, y, ThreatModel(norm))
    assert res.success.all(), f"{name} failed on {int((~res.success).sum())} of {N}"
    found = res.norms[norm].double()
    assert (found >= opt * (1 - 1e-3) - 1e-6).all(), "below the exact optimum: the oracle or the check is wrong"
    return _within(found, opt, norm)


@pytest.mark.parametrize("name,norm", MINIMAL)
@pytest.mark.parametrize("seed", [0, 1])
def test_minimal_norm_attacks_reach_the_optimum_on_two_classes(name, norm, seed):
    model, x, y = linear_problem(seed, classes=2)
    within = _check_minimal(name, norm, model, x, y)
    assert within.all(), f"{name} {norm}: {int((~within).sum())} of {N} beyond 1.25x the optimum"


@pytest.mark.parametrize("name,norm", MINIMAL)
def test_minimal_norm_attacks_on_four_classes(name, norm):
    model, x, y = linear_problem(3)
    within = _check_minimal(name, norm, model, x, y)
    if name == "deepfool":
        assert within.all()
    else:
        assert within.float().mean() >= 0.5


_CW_TINY = pytest.mark.xfail(
    reason="known issue: C&W lands at 1.5x on one sample whose optimum is tiny (L2 0.023)", strict=False
)


@pytest.mark.parametrize("name", [pytest.param("cw-l2", marks=_CW_TINY), "ddn", "fmn"])
def test_targeted_minimal_attacks_reach_the_optimum(name):
    # Two classes: the targeted optimum is exact.
    model, x, y = linear_problem(5, classes=2)
    target = 1 - y
    opt = optimum(model, x, y, "l2", target)
    res = get_attack(name)(model, x, y, ThreatModel("l2", targeted=True), targets=target)
    assert res.success.all()
    found = res.norms["l2"].double()
    assert (found >= opt * (1 - 1e-3)).all() and (found <= 1.25 * opt).all()
    # Four classes: the half-space z_t >= z_y is only a lower bound, still never beaten.
    model, x, y = linear_problem(6)
    target = (y + 1) % C
    res = get_attack(name)(model, x, y, ThreatModel("l2", targeted=True), targets=target)
    lower = optimum(model, x, y, "l2", target)
    assert res.success.float().mean() >= 0.9
    assert (res.norms["l2"].double()[res.success] >= lower[res.success] * (1 - 1e-3)).all()


def test_jsma_never_beats_the_l0_optimum():
    # JSMA is a greedy heuristic with no optimality claim; it must still never go below it.
    model, x, y = linear_problem(2)
    opt = optimum(model, x, y, "l0")
    res = get_attack("jsma", gamma=0.5)(model, x, y, ThreatModel("l0"))
    assert res.success.float().mean() >= 0.5
    assert (res.norms["l0"][res.success].double() >= opt[res.success]).all()


@pytest.mark.parametrize("name,norm", [("ddn", "l2"), ("fmn", "l2"), ("fmn", "linf"), ("fmn", "l1"), ("cw-l2", "l2")])
def test_minimal_attacks_succeed_under_a_budget_above_the_optimum(name, norm):
    model, x, y = linear_problem(3, classes=2)
    opt = optimum(model, x, y, norm)
    eps = float(opt.median()) * 1.3
    res = get_attack(name)(model, x, y, ThreatModel(norm, eps=eps))
    must = opt * 1.25 < eps
    assert must.any() and res.success[must].all()
    assert (res.norms[norm] <= eps * (1 + 1e-5)).all()


# Families that are not per-input evasion attacks have their own contract tests.
_OTHER_FAMILIES = {"poisoning", "universal", "patch", "physical", "generative"}


def _white_box_cases():
    for name, cls in available_attacks().items():
        if cls.knowledge != "white" or getattr(cls, "family", "") in _OTHER_FAMILIES:
            continue
        for norm in cls.norms:
            yield pytest.param(name, norm, id=f"{name}-{norm}")


@pytest.mark.parametrize("name,norm", list(_white_box_cases()))
def test_no_attack_claims_success_below_the_optimum(name, norm):
    cls = available_attacks()[name]
    targeted = not cls.supports_untargeted
    model, x, y = linear_problem(4, classes=2 if targeted else C)
    target = (1 - y) if targeted else None
    opt = optimum(model, x, y, norm, target)
    attack = get_attack(name)
    for q in (0.0, 0.5):  # budgets just under the smallest and the median optimum
        eps = float(opt.quantile(q))
        eps = eps - 1 if norm == "l0" else eps * 0.97
        if eps <= 0:
            continue
        try:
            res = attack(model, x, y, ThreatModel(norm, eps=eps, targeted=targeted), targets=target)
        except AttackError as exc:  # e.g. attacks that start from noise have no bounded form
            pytest.skip(f"{name} refuses a bounded threat model: {exc}")
        above = opt > eps
        assert not res.success[above].any(), f"{name} claims success under eps={eps:.4g} < optimum"
        assert (res.norms[norm] <= eps * (1 + 1e-5) + 1e-6).all()
