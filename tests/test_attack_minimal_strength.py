"""Minimal-norm and sparse attacks on the small trained models: floors and orderings.

Unbounded threat models: every attack reports the smallest perturbation it found; the
floors are success rates on the initially correct images, the orderings compare median norms
(C&W at most DeepFool's L2, FMN and DDN close to C&W, FMN's Linf at most DeepFool's Linf).
"""

from __future__ import annotations

import pytest

from advlab.attacks import get_attack
from advlab.threat import ThreatModel

SAMPLES = {"seed_mlp": 100, "cnn": 30}


@pytest.fixture(scope="module")
def run(request, mnist):
    """``run(model_name, attack_name, norm, **options)``: cached per module, returns
    (success rate on initially correct images, per-norm medians over the successes, result)."""
    cache: dict = {}

    def go(model_name: str, attack: str, norm: str, targeted: bool = False, **params):
        key = (model_name, attack, norm, targeted, tuple(sorted(params.items())))
        if key not in cache:
            model = request.getfixturevalue(model_name)
            n = SAMPLES[model_name]
            x, y = mnist.x_test[:n], mnist.y_test[:n]
            threat = ThreatModel(norm, targeted=targeted)
            res = get_attack(attack, **params)(model, x, y, threat, targets="next" if targeted else None)
            ok = res.clean_pred == res.y
            won = res.success[ok]
            medians = {k: float(v[ok][won].median()) for k, v in res.norms.items()}
            cache[key] = (float(won.float().mean()), medians, res)
        return cache[key]

    return go


@pytest.mark.parametrize("model", ["seed_mlp", "cnn"])
def test_cw_and_deepfool_break_almost_everything_and_cw_is_smaller(run, model):
    cw_rate, cw, _ = run(model, "cw-l2", "l2")
    df_rate, df, _ = run(model, "deepfool", "l2")
    assert cw_rate >= 0.99 and df_rate >= 0.99
    assert cw["l2"] <= df["l2"]


@pytest.mark.parametrize("model", ["seed_mlp", "cnn"])
@pytest.mark.parametrize("attack", ["fmn", "ddn"])
def test_fmn_and_ddn_break_everything_close_to_cw(run, model, attack):
    rate, med, res = run(model, attack, "l2")
    _, cw, _ = run(model, "cw-l2", "l2")
    assert rate == 1.0
    assert med["l2"] <= 1.05 * cw["l2"]
    assert int(res.backwards.max()) <= get_attack(attack).steps  # one gradient per step at most


def test_fmn_linf_is_smaller_than_deepfool_linf(run):
    rate, fmn, _ = run("seed_mlp", "fmn", "linf")
    df_rate, df, _ = run("seed_mlp", "deepfool", "linf")
    assert rate == 1.0 and df_rate >= 0.99
    assert fmn["linf"] <= df["linf"]


def test_fmn_sparse_norms_are_sparse(run):
    l1_rate, l1, _ = run("seed_mlp", "fmn", "l1")
    l0_rate, l0, _ = run("seed_mlp", "fmn", "l0")
    _, l2, _ = run("seed_mlp", "fmn", "l2")
    assert l1_rate >= 0.99 and l0_rate >= 0.99
    assert l1["l1"] < 0.6 * l2["l1"]  # the L1 attack spends far less L1 than the L2 attack
    assert l0["l0"] <= 10  # a handful of pixels out of 784


@pytest.mark.parametrize(
    "model,targeted,floor,max_pixels",
    [("seed_mlp", False, 0.95, 20), ("seed_mlp", True, 0.85, 40), ("cnn", False, 0.9, 80)],
)
def test_jsma_succeeds_with_few_pixels(run, model, targeted, floor, max_pixels):
    rate, med, res = run(model, "jsma", "l0", targeted=targeted)
    assert rate >= floor
    assert med["l0"] <= max_pixels
    assert float(res.norms["l0"].max()) <= int(0.145 * 784)  # never beyond gamma


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_refinement_only_shrinks(run, norm):
    """The final bisection keeps every success and never lengthens a perturbation, and it
    takes back the cases where DeepFool's last linearised step overshot far past the boundary."""
    _, raw_med, raw = run("seed_mlp", "deepfool", norm, refine_steps=0)
    _, ref_med, ref = run("seed_mlp", "deepfool", norm, refine_steps=10)
    assert bool((ref.success == raw.success).all())
    won = raw.success
    assert bool((ref.norms[norm][won] <= raw.norms[norm][won] * (1 + 1e-5)).all())
    assert ref_med[norm] <= raw_med[norm]
    assert bool((ref.norms[norm][won] < 0.9 * raw.norms[norm][won]).any())
