"""The contract every registered attack keeps (STYLE.md, "Tests that mean something" 1).

The battery is parametrised over ``available_attacks()`` read at collection time, so an attack
registered later is covered without touching this file. Runs use the cached seed MLP on a
few dozen test images with cheap hyperparameters (``_fast``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advlab.attacks import Attack, AttackError, UnknownAttackError, available_attacks, get_attack
from advlab.threat import ThreatModel
from advlab.validation import InputError

ATTACKS = available_attacks()
NAMES = sorted(ATTACKS)
N = 24
EPS = {"linf": 0.08, "l2": 1.0, "l1": 8.0, "l0": 12.0}

# Cheap settings for the battery, by hyperparameter name (applied when the attack has the field).
FAST_FIELDS = {
    "steps": 5,
    "restarts": 1,
    "binary_search_steps": 2,
    "search_steps": 2,
    "n_target_classes": 2,
    "max_queries": 100,
    "queries": 100,
    "max_iterations": 10,
}
# ... and whole parameter sets for attacks that need more than that.
FAST_PARAMS = {
    "ensemble": {"attacks": [{"name": "apgd", "steps": 5}, {"name": "apgd-t", "steps": 5, "n_target_classes": 2}]},
}


def _skip_reason(cls: type[Attack]) -> str | None:
    if cls.knowledge == "gray":
        return "gray-box attacks need a surrogate model or data, not covered by this battery"
    if getattr(cls, "family", "") in {"poisoning", "universal", "patch", "physical", "generative", "transfer"}:
        return f"{cls.family} attacks have their own contract tests"
    return None


def _fast(name: str) -> Attack:
    cls = ATTACKS[name]
    reason = _skip_reason(cls)
    if reason:
        pytest.skip(reason)
    fields = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in FAST_FIELDS.items() if k in fields}
    params.update(FAST_PARAMS.get(name, {}))
    return get_attack(name, **params)


def _threat(cls: type[Attack], targeted: bool = False) -> ThreatModel:
    norm = "linf" if "linf" in cls.norms else cls.norms[0]
    eps = None if cls.minimal else EPS[norm]
    return ThreatModel(norm, eps=eps, targeted=targeted, knowledge=cls.knowledge if cls.knowledge != "gray" else "white")


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.x_test[:N].clone(), mnist.y_test[:N].clone()


def _run(atk: Attack, model, x, y, threat, **kw):
    return atk(model, x, y, threat, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_output_respects_threat_and_success_is_recomputed(name, seed_mlp, data):
    atk = _fast(name)
    x, y = data
    x_before, y_before = x.clone(), y.clone()
    cls = ATTACKS[name]
    threat = _threat(cls, targeted=not cls.supports_untargeted)
    targets = "next" if threat.targeted else None
    res = atk(seed_mlp, x, y, threat, targets=targets)

    assert torch.equal(x, x_before) and torch.equal(y, y_before), "the attack mutated its inputs"
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert bool(threat.contains(res.x_adv, x).all()), "output outside the threat model's ball or box"
    with torch.no_grad():
        pred = seed_mlp(res.x_adv).argmax(dim=1)
    goal = res.target if threat.targeted else y
    expected = pred == goal if threat.targeted else pred != goal
    assert torch.equal(res.success, expected)
    assert torch.equal(res.adv_pred, pred)
    for norm in ("linf", "l2", "l1"):
        assert torch.allclose(res.norms[norm], threat.distance(res.x_adv, x, norm), atol=1e-5)
    assert res.success.any(), f"{name} broke none of {N} images of an undefended MLP"


@pytest.mark.parametrize("name", NAMES)
def test_passes_are_counted(name, seed_mlp, data):
    atk = _fast(name)
    cls = ATTACKS[name]
    x, y = data
    res = atk(seed_mlp, x, y, _threat(cls, targeted=not cls.supports_untargeted), targets="next" if not cls.supports_untargeted else None)
    attacked = res.clean_pred == y if not res.threat.targeted else res.clean_pred != res.target
    assert bool((res.forwards[attacked] > 0).all()), "an attacked sample spent no forward pass"
    assert bool((res.forwards[~attacked] == 0).all()), "a sample adversarial from the start was charged"
    # A forward pass feeds at most one backward pass per output (a full Jacobian, as DeepFool
    # and JSMA take, is one vector-Jacobian product per class).
    num_classes = 10
    assert bool((res.backwards <= num_classes * res.forwards).all()), "more backward passes than one forward can feed"
    if cls.uses_gradients:
        assert bool((res.backwards[attacked] > 0).all())
    else:
        assert int(res.backwards.sum()) == 0, "a gradient-free attack counted gradients"


@pytest.mark.parametrize("name", [n for n in NAMES if ATTACKS[n].supports_targeted and ATTACKS[n].supports_untargeted])
def test_targeted_success_means_the_target(name, seed_mlp, data):
    atk = _fast(name)
    x, y = data
    threat = _threat(ATTACKS[name], targeted=True)
    res = atk(seed_mlp, x, y, threat, targets="next")
    assert torch.equal(res.target, (y + 1) % 10)
    assert torch.equal(res.success, res.adv_pred == res.target)
    assert bool(threat.contains(res.x_adv, x).all())


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_get_clear_errors(name, seed_mlp, data):
    cls = ATTACKS[name]
    if _skip_reason(cls):
        pytest.skip(_skip_reason(cls))
    atk = get_attack(name)
    x, y = data
    threat = _threat(cls, targeted=not cls.supports_untargeted)
    kw = {"targets": "next"} if threat.targeted else {}
    bad_x = x.clone()
    bad_x[3, 0, 5, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        atk(seed_mlp, bad_x, y, threat, **kw)
    with pytest.raises(InputError, match="dtype"):
        atk(seed_mlp, (x * 255).to(torch.uint8), y, threat, **kw)
    with pytest.raises(InputError, match="outside the box"):
        atk(seed_mlp, x * 255, y, threat, **kw)
    with pytest.raises(InputError, match="labels"):
        atk(seed_mlp, x, y + 10, threat, **kw)
    with pytest.raises(InputError, match="shape"):
        atk(seed_mlp, x, y[:-1], threat, **kw)
    with pytest.raises(InputError, match="shape"):
        atk(seed_mlp, x[:5], y, threat, **kw)
    with pytest.raises(InputError, match="shape"):
        atk(seed_mlp, x[0, 0, 0], y[:1], threat, **kw)
    with pytest.raises(InputError):
        atk(seed_mlp, x.numpy().astype(np.float32), y.float(), threat, **kw)
    unsupported = [n for n in ("linf", "l2", "l1", "l0") if n not in cls.norms]
    if unsupported:
        with pytest.raises(AttackError, match="norm"):
            atk(seed_mlp, x, y, ThreatModel(unsupported[0], eps=1.0), **kw)
    if not cls.minimal:
        with pytest.raises(AttackError, match="eps"):
            atk(seed_mlp, x, y, threat.replace(eps=None), **kw)


def test_unknown_attack_name_suggests_close_ones():
    with pytest.raises(UnknownAttackError, match="did you mean pgd"):
        get_attack("pgdd")
    with pytest.raises(ValueError, match="parameters"):
        get_attack("pgd", stepz=3)


@pytest.mark.parametrize(
    "name,params,msg",
    [
        ("pgd", {"steps": 0}, "steps"),
        ("pgd", {"step_size": -1.0}, "step_size"),
        ("pgd", {"restarts": 1.5}, "restarts"),
        ("mi-fgsm", {"momentum": -1.0}, "momentum"),
        ("bim", {"loss": "hinge"}, "loss"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(name, params, msg):
    with pytest.raises(ValueError, match=msg):
        get_attack(name, **params)


GRADIENT_LOOP = [n for n in ("fgsm", "bim", "pgd", "mi-fgsm", "cw-linf", "apgd") if n in ATTACKS]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(GRADIENT_LOOP),
    norm=st.sampled_from(["linf", "l2", "l1"]),
    eps=st.floats(0.0, 1.0),
    box=st.sampled_from([(0.0, 1.0), (0.1, 0.9)]),
    targeted=st.booleans(),
    start=st.integers(0, 900),
)
def test_property_every_output_is_inside_ball_and_box(seed_mlp, mnist, name, norm, eps, box, targeted, start):
    cls = ATTACKS[name]
    if norm not in cls.norms:
        norm = "linf"
    scale = {"linf": 1.0, "l2": 5.0, "l1": 30.0}[norm]
    lo, hi = box
    x = mnist.x_test[start : start + 6].clamp(lo, hi)
    y = mnist.y_test[start : start + 6]
    threat = ThreatModel(norm, eps=eps * scale, targeted=targeted, box=box)
    params = {"steps": 3} if "steps" in {f.name for f in dataclasses.fields(cls)} else {}
    res = get_attack(name, **params)(seed_mlp, x, y, threat, targets="random" if targeted else None)
    assert bool(threat.contains(res.x_adv, x).all())
