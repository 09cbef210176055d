"""Differentiable transformations, the EOT wrapper and region-confined (masked) attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advlab.attacks import EOT, MaskedAttack, Transformations, get_attack, transformed_success
from advlab.attacks.masks import make_mask
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError


def _x(n=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, 1, 28, 28)).astype(np.float32))


# ---------------------------------------------------------------- transformations
def test_identity_transformations_leave_images_unchanged():
    x = _x()
    out = Transformations()(x, CounterRNG(0), torch.arange(len(x)), 0)
    assert torch.allclose(out, x, atol=1e-6)


def test_transformations_are_differentiable_seeded_in_box_and_batch_independent():
    t = Transformations.preset("print-photo")
    x = _x().requires_grad_(True)
    idx = torch.arange(len(x))
    out = t(x, CounterRNG(3), idx, 5)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert float(grad.abs().sum()) > 0
    again = t(x, CounterRNG(3), idx, 5)
    assert torch.equal(out, again)
    one = t(x[2:3], CounterRNG(3), idx[2:3], 5)  # per-sample draws do not depend on the batch
    assert torch.allclose(one[0], out[2], atol=1e-5)
    assert not torch.allclose(t(x, CounterRNG(3), idx, 6), out)


def test_transformation_presets_and_validation():
    t = Transformations.preset("geometric", rotation=5.0)
    assert t.rotation == 5.0 and Transformations.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="unknown transformation preset"):
        Transformations.preset("nope")
    with pytest.raises(ValueError, match="scale"):
        Transformations(scale=(1.2, 0.8))


def test_eot_module_averages_and_is_reproducible(seed_mlp):
    x = _x(4)
    eot = EOT(seed_mlp, "print-photo", samples=5, seed=1)
    a = eot(x)
    assert a.shape == (4, 10)
    eot.reset()
    assert torch.equal(eot(x), a)
    assert not torch.equal(eot(x), a)  # the next call draws new transformations
    assert EOT(seed_mlp, "none", samples=3)(x).allclose(seed_mlp(x), atol=1e-5)


# ---------------------------------------------------------------- masks
def test_mask_specs():
    shape = (1, 28, 28)
    frame = make_mask("frame:2", shape)
    assert int(frame.sum()) == 28 * 28 - 24 * 24
    rect = make_mask("rect:0,0,6,28", shape)
    assert int(rect.sum()) == 6 * 28 and bool(rect[0, :6].all())
    union = make_mask("rect:0,0,2,2+rect:26,26,2,2", shape)
    assert int(union.sum()) == 8
    for name in ("glasses", "stickers"):
        m = make_mask(name, shape)
        assert 0 < int(m.sum()) < 28 * 28 // 2
    with pytest.raises(InputError, match="unknown mask shape"):
        make_mask("circle:3", shape)
    with pytest.raises(InputError, match="empty"):
        make_mask(np.zeros((28, 28)), shape)
    with pytest.raises(InputError, match="shape"):
        make_mask(np.ones((10, 10)), shape)


# ---------------------------------------------------------------- masked attack
@pytest.mark.parametrize("eps", [None, 0.5])
@pytest.mark.parametrize("mask", ["frame:3", "glasses"])
def test_masked_attack_changes_only_mask_pixels_inside_the_box(seed_mlp, mnist, mask, eps):
    x, y = mnist.x_test[:20], mnist.y_test[:20]
    threat = ThreatModel("linf", eps=eps)
    res = get_attack("masked", mask=mask, steps=30, step_size=0.1)(seed_mlp, x, y, threat)
    m = make_mask(mask, (1, 28, 28)).bool()
    delta = res.x_adv - x
    assert float(delta[:, ~m].abs().max()) == 0.0
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert bool(threat.contains(res.x_adv, x).all())
    assert torch.equal(x, mnist.x_test[:20])  # inputs untouched
    assert res.success_rate >= 0.5
    assert res.params["mask"] == mask


def test_masked_attack_with_per_input_array_masks_and_targets(seed_mlp, mnist):
    x, y = mnist.x_test[:10], mnist.y_test[:10]
    masks = np.zeros((10, 1, 28, 28), dtype=np.float32)
    for i in range(10):
        masks[i, 0, i : i + 8, :] = 1  # a different band per input
    attack = MaskedAttack(mask=masks, steps=40, step_size=0.1)
    res = attack(seed_mlp, x, y, ThreatModel("linf", eps=None, targeted=True), targets="next")
    outside = torch.from_numpy(masks) == 0
    assert float((res.x_adv - x)[outside].abs().max()) == 0.0
    assert res.success_rate >= 0.5
    assert "array(10, 1, 28, 28)" in res.params["mask"]


def test_masked_attack_is_seeded_and_batch_independent(seed_mlp, mnist):
    x, y = mnist.x_test[:12], mnist.y_test[:12]
    attack = get_attack("masked", mask="stickers", steps=15, restarts=2, seed=4)
    threat = ThreatModel("linf", eps=None)
    a = attack(seed_mlp, x, y, threat, batch_size=12)
    b = attack(seed_mlp, x, y, threat, batch_size=5)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)


def test_masked_attack_rejects_l0_and_bad_parameters():
    from advlab.attacks import AttackError

    with pytest.raises(ValueError, match="steps"):
        MaskedAttack(steps=0)
    with pytest.raises(AttackError, match="norms"):
        MaskedAttack().check_threat(ThreatModel("l0", eps=None))


def test_eot_attack_survives_fresh_transformations_better_than_plain(cnn, mnist):
    # Frame stickers on 24 test digits; success judged under 12 fresh print-and-photograph draws.
    x, y = mnist.x_test[:24], mnist.y_test[:24]
    threat = ThreatModel("linf", eps=None)
    plain = get_attack("masked", mask="frame:4", steps=25, step_size=0.1)(cnn, x, y, threat)
    robust = get_attack("masked", mask="frame:4", steps=25, step_size=0.1, eot="print-photo", eot_samples=4)(cnn, x, y, threat)
    s_plain = float(transformed_success(cnn, plain.x_adv, y, "print-photo", draws=12).mean())
    s_eot = float(transformed_success(cnn, robust.x_adv, y, "print-photo", draws=12).mean())
    assert s_eot >= s_plain + 0.2, (s_plain, s_eot)
    assert robust.backwards.float().mean() >= 4 * 25 * 0.9  # EOT samples are counted


def test_pgd_through_eot_beats_plain_pgd(cnn, mnist):
    from advlab.attacks import available_attacks

    if "pgd" not in available_attacks():
        pytest.skip("PGD not available on this branch yet")
    # PGD stops each sample as soon as it is adversarial (to the EOT model: on average over
    # its draws), so the plain attack stops at perturbations that a fresh transformation undoes.
    x, y = mnist.x_test[:24], mnist.y_test[:24]
    threat = ThreatModel("linf", eps=0.3)
    pgd = get_attack("pgd", steps=20)
    plain = pgd(cnn, x, y, threat)
    robust = pgd(EOT(cnn, "print-photo", samples=4, seed=0), x, y, threat)
    s_plain = float(transformed_success(cnn, plain.x_adv, y, "print-photo", draws=12).mean())
    s_eot = float(transformed_success(cnn, robust.x_adv, y, "print-photo", draws=12).mean())
    # The gain for plain PGD at this budget is small and model-dependent (measured 0.02-0.10
    # across seeds); the clear-margin EOT requirement is asserted on the masked attack above.
    assert s_eot > s_plain, (s_plain, s_eot)
