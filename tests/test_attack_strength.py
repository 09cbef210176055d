"""Strength floors and orderings of the gradient attacks on small trained models.

Floors and orderings only, never golden numbers (STYLE.md, "Tests that mean something" 4).
The seed MLP is cheap, so it gets 200 images; the CNN gets 200 images where early stopping
keeps the cost down (eps = 0.3) and 100 where most samples resist.
"""

from __future__ import annotations

import pytest
import torch

from advlab.attacks import get_attack
from advlab.threat import ThreatModel

MODELS = ["seed_mlp", "cnn"]
# an eps at which each model still resists on a good share of the images (orderings show)
MID_EPS = {"seed_mlp": 0.05, "cnn": 0.1}
N = {"seed_mlp": 200, "cnn": 100}


@pytest.fixture(scope="module")
def models(seed_mlp, cnn):
    return {"seed_mlp": seed_mlp, "cnn": cnn}


def _images(mnist, n):
    return mnist.x_test[:n], mnist.y_test[:n]


def _robust(name, model, x, y, threat, **params):
    return get_attack(name, **params)(model, x, y, threat).robust_accuracy


@pytest.mark.parametrize("model_name", MODELS)
def test_pgd_linf_03_leaves_at_most_2_percent(model_name, models, mnist):
    x, y = _images(mnist, 200)
    model = models[model_name]
    threat = ThreatModel("linf", eps=0.3)
    pgd = _robust("pgd", model, x, y, threat)
    assert pgd <= 0.02
    assert _robust("apgd", model, x, y, threat) <= pgd
    assert _robust("ensemble", model, x, y, threat) <= pgd
    assert _robust("cw-linf", model, x, y, threat, steps=40) <= 0.02


@pytest.mark.parametrize("model_name", MODELS)
def test_fgsm_weaker_than_pgd_weaker_than_apgd_and_ensemble(model_name, models, mnist):
    x, y = _images(mnist, N[model_name])
    model = models[model_name]
    threat = ThreatModel("linf", eps=MID_EPS[model_name])
    clean = get_attack("fgsm")(model, x, y, threat).clean_accuracy
    fgsm = _robust("fgsm", model, x, y, threat)
    pgd = _robust("pgd", model, x, y, threat)
    apgd = _robust("apgd", model, x, y, threat, steps=50)
    assert pgd < clean - 0.1, "PGD barely moved the accuracy: this eps does not test the ordering"
    assert fgsm > pgd
    assert apgd <= pgd
    cascade = [{"name": "apgd", "steps": 50}, {"name": "apgd-t", "steps": 30, "n_target_classes": 3}]
    ens = _robust("ensemble", model, x, y, threat, attacks=cascade)
    assert ens <= apgd


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", ["pgd", "apgd", "bim"])
def test_targeted_attacks_reach_the_target(model_name, name, models, mnist):
    x, y = _images(mnist, N[model_name])
    res = get_attack(name)(models[model_name], x, y, ThreatModel("linf", eps=0.3, targeted=True), targets="random")
    assert res.summary()["success_rate_on_correct"] >= 0.9
    assert torch.equal(res.success, res.adv_pred == res.target)


def test_l2_pgd_is_sensible(seed_mlp, mnist):
    x, y = _images(mnist, 200)
    small = get_attack("pgd")(seed_mlp, x, y, ThreatModel("l2", eps=1.0))
    large = get_attack("pgd")(seed_mlp, x, y, ThreatModel("l2", eps=2.0))
    assert large.robust_accuracy <= 0.02
    assert large.robust_accuracy <= small.robust_accuracy < small.clean_accuracy - 0.3
    assert float(small.norms["l2"].max()) <= 1.0 + 1e-4
    assert _robust("fgsm", seed_mlp, x, y, ThreatModel("l2", eps=2.0)) > large.robust_accuracy
    assert _robust("apgd", seed_mlp, x, y, ThreatModel("l2", eps=1.0)) <= small.robust_accuracy


def test_l1_pgd_uses_its_budget(seed_mlp, mnist):
    x, y = _images(mnist, 200)
    res = get_attack("pgd")(seed_mlp, x, y, ThreatModel("l1", eps=10.0))
    assert res.robust_accuracy <= 0.1
    assert float(res.norms["l1"].max()) <= 10.0 * (1 + 1e-4)
    assert _robust("fgsm", seed_mlp, x, y, ThreatModel("l1", eps=10.0)) > res.robust_accuracy


def test_early_stop_off_finds_every_success_early_stop_finds(seed_mlp, mnist):
    x, y = _images(mnist, 200)
    threat = ThreatModel("linf", eps=MID_EPS["seed_mlp"])
    on = get_attack("pgd", steps=20, restarts=2)(seed_mlp, x, y, threat)
    off = get_attack("pgd", steps=20, restarts=2, early_stop=False)(seed_mlp, x, y, threat)
    assert bool((off.success | ~on.success).all())
    assert float(off.backwards.float().mean()) > float(on.backwards.float().mean())


def test_restarts_never_hurt(seed_mlp, mnist):
    x, y = _images(mnist, 200)
    threat = ThreatModel("linf", eps=MID_EPS["seed_mlp"])
    one = get_attack("pgd", steps=10)(seed_mlp, x, y, threat)
    three = get_attack("pgd", steps=10, restarts=3)(seed_mlp, x, y, threat)
    assert bool((three.success | ~one.success).all()), "a restart lost a success of the first run"
    assert three.robust_accuracy <= one.robust_accuracy
