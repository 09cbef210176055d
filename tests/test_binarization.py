"""The binarization test (Zimmermann et al. 2022, arXiv:2206.13991): a strong attack finds the
planted adversarial examples, a crippled one does not, and the audit check says so."""

from __future__ import annotations

import torch

import advlab
from _attacks import SignPGD
from advlab.attacks import get_attack
from advlab.evaluation import EvaluationPlan, ThreatSpec
from advlab.evaluation.binarization import (
    BINARIZATION_PASS,
    THRESHOLD_AT,
    binarization_test,
    binarize,
)
from advlab.threat import ThreatModel

THREAT = ThreatModel(norm="linf", eps=0.1)


def runner(attack):
    def run(model, x, y):
        res = attack(model, x, y, THREAT)
        return res.success, int(res.forwards.sum()), int(res.backwards.sum())

    return run


def test_the_planted_example_lies_in_the_ball_and_is_the_other_class(seed_mlp, mnist):
    x = mnist.x_test[:8]
    planted = binarize(seed_mlp, x, THREAT, seed=0)
    assert planted is not None and bool(planted.kept.all())
    assert bool(THREAT.contains(planted.planted, x).all())
    assert float((planted.planted - x).abs().amax()) <= 0.1 + 1e-6
    with torch.no_grad():
        assert (planted.model(x).argmax(1) == 0).all() and (planted.model(planted.planted).argmax(1) == 1).all()
        # points of the inner ball stay on the clean side
        inner = (x + 0.05 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) - 1)).clamp(0, 1)
        assert (planted.model(inner).argmax(1) == 0).float().mean() >= 0.75


def test_a_strong_attack_passes_and_a_crippled_one_fails(seed_mlp, mnist):
    x = mnist.x_test[:10]
    strong = binarization_test(seed_mlp, x, THREAT, 0, runner(get_attack("apgd")))
    pgd = binarization_test(seed_mlp, x, THREAT, 0, runner(get_attack("pgd")))
    crippled = binarization_test(seed_mlp, x, THREAT, 0, runner(get_attack("pgd", steps=1, step_size=0.001)))
    assert strong is not None and pgd is not None and crippled is not None
    assert strong["tested"] >= 8 and strong["found"] >= BINARIZATION_PASS and pgd["found"] >= BINARIZATION_PASS
    assert crippled["found"] < 0.5


def plan(attack) -> EvaluationPlan:
    return EvaluationPlan(threats=(ThreatSpec("linf", (0.1,), attacks=[attack]),), samples=12, batch_size=6,
                          minimal=False, examples=1, escalate=False)


def test_the_audit_check_passes_a_strong_cascade_and_fails_a_crippled_one(seed_mlp, tmp_path):
    good = advlab.evaluate(seed_mlp, "mnist-sample", plan(SignPGD(steps=10)), out=tmp_path / "good", report=False)
    check = good.check("binarization-test")
    assert check["verdict"] in ("pass", "warn") and check["numbers"]["tested"] >= 8, check
    bad = advlab.evaluate(seed_mlp, "mnist-sample", plan(get_attack("pgd", steps=1, step_size=0.001)), out=tmp_path / "bad", report=False)
    check = bad.check("binarization-test")
    assert check["verdict"] == "fail" and "restarts" in check["actions"] and check["docs"].endswith("#binarization-test")
    assert not bad.audit_clean


class Thresholded(torch.nn.Module):
    """Inputs binarized at 0.5 before the network: zero gradients almost everywhere."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x > 0.5).float())


def test_a_gradient_masking_model_fails_it_even_with_a_strong_attack(seed_mlp, mnist):
    x = mnist.x_test[:10]
    got = binarization_test(Thresholded(seed_mlp), x, THREAT, 0, runner(get_attack("apgd")))
    assert got is not None and got["tested"] >= 5 and got["found"] < 0.5


class Scaled(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def test_the_binary_head_does_not_inherit_the_feature_scale(mnist):
    """Features 1000x larger (as after defensive distillation) give the same one-logit gap
    between the clean and the planted side, so the binary head does not saturate."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU())
    x = mnist.x_test[:6]
    gaps = []
    for factor in (1.0, 1000.0):
        model = torch.nn.Sequential(body, Scaled(factor), torch.nn.Linear(32, 10)).eval()
        planted = binarize(model, x, THREAT, seed=0)
        assert planted is not None and bool(planted.kept.any())
        with torch.no_grad():
            at_planted = planted.model(planted.planted)[:, 1]
            gaps.append(at_planted - planted.model(x)[:, 1])
        # the planted point scores (1 - THRESHOLD_AT) logits past the threshold, at any feature scale
        assert torch.allclose(at_planted[planted.kept], torch.full_like(at_planted[planted.kept], 1 - THRESHOLD_AT), atol=1e-3)
        got = binarization_test(model, x, THREAT, 0, runner(get_attack("apgd")))
        assert got is not None and got["found"] >= BINARIZATION_PASS
    assert torch.allclose(gaps[0], gaps[1], rtol=1e-3, atol=1e-4)
