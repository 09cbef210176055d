"""Universal perturbations and adversarial patches: strength floors on held-out images,
geometry of patch placement, and artifacts that round-trip through files."""

from __future__ import annotations

import json

import pytest
import torch

from advlab.attacks.patch import Patch, PatchAttack, Placement, paste
from advlab.attacks.universal import Universal, UniversalPerturbation
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError


# ---------------------------------------------------------------- universal perturbations
@pytest.fixture(scope="module")
def cnn_uap(cnn, mnist):
    # Crafted on 1,500 training images only; measured on the 1,000 test images.
    return Universal(method="sgd", epochs=3, batch_size=32).fit(cnn, mnist.x_train[:1500], ThreatModel("linf", eps=0.3))


def test_universal_linf_03_fools_the_cnn_on_held_out_images(cnn_uap, cnn, mnist):
    res = cnn_uap.evaluate(cnn, mnist.x_test, mnist.y_test)
    assert res["fooling_rate"] >= 0.55, res
    assert float(cnn_uap.delta.abs().max()) <= 0.3 + 1e-6
    assert res["perturbed_accuracy"] < res["clean_accuracy"] - 0.4


def test_universal_beats_random_noise_of_the_same_size(cnn_uap, cnn, mnist):
    g = torch.Generator().manual_seed(0)
    noise = UniversalPerturbation((torch.rand(1, 28, 28, generator=g) * 2 - 1).sign() * 0.3, cnn_uap.threat)
    x = mnist.x_test[:500]
    assert cnn_uap.evaluate(cnn, x)["fooling_rate"] > noise.evaluate(cnn, x)["fooling_rate"] + 0.3


def test_universal_deepfool_l2_and_targeted_sgd_on_the_mlp(seed_mlp, mnist):
    x_fit, x_test = mnist.x_train[:300], mnist.x_test[:500]
    df = Universal(method="deepfool", epochs=2, fooling_goal=0.8).fit(seed_mlp, x_fit, ThreatModel("l2", eps=4.0))
    assert float(df.delta.norm()) <= 4.0 + 1e-4
    assert df.evaluate(seed_mlp, x_test)["fooling_rate"] >= 0.4
    tm = ThreatModel("linf", eps=0.2, targeted=True)
    tgt = Universal(method="sgd", epochs=3).fit(seed_mlp, x_fit, tm, target=3)
    res = tgt.evaluate(seed_mlp, x_test, mnist.y_test[:500])
    assert res["target_success"] >= 0.5, res


def test_universal_validation(seed_mlp, mnist):
    x = mnist.x_train[:20]
    with pytest.raises(InputError, match="bounded"):
        Universal().fit(seed_mlp, x, ThreatModel("linf", eps=None))
    with pytest.raises(InputError, match="target"):
        Universal().fit(seed_mlp, x, ThreatModel("linf", eps=0.1, targeted=True))
    with pytest.raises(InputError, match="untargeted"):
        Universal(method="deepfool").fit(seed_mlp, x, ThreatModel("linf", eps=0.1, targeted=True), target=1)
    with pytest.raises(ValueError, match="unknown universal method"):
        Universal(method="nope")


def test_universal_artifact_round_trip(cnn_uap, tmp_path):
    cnn_uap.save(tmp_path / "uap")
    files = sorted(p.name for p in (tmp_path / "uap").iterdir())
    assert files == ["perturbation.json", "perturbation.png", "perturbation.safetensors"]
    meta = json.loads((tmp_path / "uap" / "perturbation.json").read_text())
    assert meta["threat"]["eps"] == 0.3 and meta["target"] is None
    back = UniversalPerturbation.load(tmp_path / "uap")
    assert torch.equal(back.delta, cnn_uap.delta) and back.threat == cnn_uap.threat
    (tmp_path / "uap" / "perturbation.safetensors").unlink()  # PNG + JSON only: quantised
    png = UniversalPerturbation.load(tmp_path / "uap" / "perturbation.json")
    assert float((png.delta - cnn_uap.delta).abs().max()) <= 0.3 / 255 * 1.01 + 1e-6


# ---------------------------------------------------------------- patches
def test_patch_lands_exactly_where_asked():
    img = torch.rand(1, 6, 6)
    p = Patch(image=img, target=1)
    x = torch.zeros(3, 1, 28, 28)
    out = p.apply(x, location=(5, 9))
    assert torch.allclose(out[:, :, 5:11, 9:15], img.expand(3, -1, -1, -1), atol=1e-5)
    outside = torch.ones(28, 28, dtype=torch.bool)
    outside[5:11, 9:15] = False
    assert float(out[:, :, outside].abs().max()) <= 1e-6
    with pytest.raises(InputError, match="does not fit"):
        p.apply(x, location=(25, 0))


def test_random_placement_keeps_the_whole_patch_in_the_image():
    side = 10
    mask = torch.ones(1, side, side)
    params = Placement(rotation=30, scale=(0.9, 1.1)).sample(CounterRNG(0), torch.arange(64), 0, torch.device("cpu"))
    covered = paste(torch.zeros(64, 1, 28, 28), torch.ones(1, side, side), mask, params)
    area = covered.flatten(1).sum(1)
    expected = (side * params[:, 1]) ** 2
    assert torch.allclose(area, expected, rtol=0.06), (area[:5], expected[:5])
    assert bool((covered.flatten(1).amax(1) > 0.99).all())


def test_patch_gradient_reaches_the_patch():
    img = torch.rand(1, 8, 8, requires_grad=True)
    params = Placement().sample(CounterRNG(1), torch.arange(4), 0, torch.device("cpu"))
    paste(torch.rand(4, 1, 28, 28), img, torch.ones(1, 8, 8), params).sum().backward()
    assert float(img.grad.abs().sum()) > 0


@pytest.fixture(scope="module")
def cnn_patch(cnn, mnist):
    return PatchAttack(target=3, size=12, epochs=2, loss="margin", batch_size=64).fit(cnn, mnist.x_train[:2000], mnist.y_train[:2000])


def test_trained_patch_beats_a_random_patch_on_held_out_images(cnn_patch, cnn, mnist):
    x, y = mnist.x_test[:500], mnist.y_test[:500]
    trained = cnn_patch.evaluate(cnn, x, y, draws=2)
    random = Patch.random(12, 3, seed=1).evaluate(cnn, x, y, draws=2)
    assert trained["area"] <= 0.20
    assert trained["success"] >= 0.2, trained
    assert trained["success"] >= random["success"] + 0.15, (trained, random)


def test_patch_artifact_round_trip(cnn_patch, tmp_path):
    cnn_patch.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "patch.json").read_text())
    assert meta["target"] == 3 and meta["side"] == 12 and meta["outline"] == "square"
    back = Patch.load(tmp_path / "p")
    assert torch.equal(back.image, cnn_patch.image) and back.target == 3 and back.placement == cnn_patch.placement
    (tmp_path / "p" / "patch.safetensors").unlink()
    png = Patch.load(tmp_path / "p")
    assert float((png.image - cnn_patch.image).abs().max()) <= 0.5 / 255 + 1e-6
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(png.apply(x, seed=3), cnn_patch.apply(x, seed=3), atol=1 / 255)


def test_patch_size_validation():
    with pytest.raises(InputError, match="does not fit"):
        PatchAttack(target=0, size=40).fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), torch.rand(4, 1, 28, 28))
    with pytest.raises(InputError, match="size"):
        PatchAttack(target=0, size=-0.5).fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), torch.rand(4, 1, 28, 28))
