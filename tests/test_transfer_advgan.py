"""Transfer attacks, the Papernot substitute and AdvGAN: no victim access where none is
allowed, label queries counted, and floors on small runs (full-size runs:
benchmarks/blackbox.py)."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks import get_attack
from advlab.attacks.advgan import AdvGAN, load_generator, train_advgan
from advlab.attacks.base import AttackError
from advlab.attacks.substitute import train_substitute
from advlab.attacks.transfer import Transfer, transfer_rate
from advlab.blackbox import BlackBox
from advlab.threat import ThreatModel

LINF = ThreatModel("linf", eps=0.3)


@pytest.fixture(scope="module")
def data(mnist):
    return mnist


def test_transfer_never_touches_the_victim(seed_mlp, cnn, data):
    x, y = data.x_test[:100], data.y_test[:100]
    atk = Transfer(surrogate=seed_mlp, attack="pgd")
    res = atk(cnn, x, y, LINF)
    assert int(res.forwards.sum()) == 0 and int(res.backwards.sum()) == 0
    assert bool(LINF.contains(res.x_adv, x).all())
    assert isinstance(res.params["surrogate"], str)  # serialisable
    rep = transfer_rate(seed_mlp, cnn, x, y, LINF, "pgd")
    assert rep.surrogate_success >= 0.9  # white box on the surrogate
    assert 0.0 < rep.transfer_rate <= 1.0
    with pytest.raises(AttackError, match="surrogate"):
        Transfer()(cnn, x[:2], y[:2], LINF)


def test_substitute_from_label_queries_transfers(cnn, data):
    x_seed = data.x_test[:100]
    sub = train_substitute(cnn, x_seed, rounds=3, epochs=6, model_kwargs={"width": 8}, seed=0)
    assert sub.queries == 100 * 2**2  # every synthetic input labelled once
    assert [h["train_size"] for h in sub.history] == [100, 200, 400]
    x, y = data.x_test[100:300], data.y_test[100:300]
    rep = transfer_rate(sub.model, cnn, x, y, LINF, "pgd")
    print(f"substitute ({sub.queries} label queries): transfer rate {rep.transfer_rate:.3f}, victim success {rep.victim_success:.3f}")
    assert rep.victim_success >= 0.3
    # a total budget is respected
    capped = train_substitute(BlackBox(cnn, output="labels", total_budget=250), x_seed, rounds=3, epochs=1, model_kwargs={"width": 4})
    assert capped.queries <= 250


def test_advgan_trains_once_then_attacks_held_out_images_without_the_victim(seed_mlp, data, tmp_path):
    # seed-mlp is the victim here to keep the test fast; the CNN run is in benchmarks/blackbox.py
    trained = train_advgan(seed_mlp, data.x_train[:600], data.y_train[:600], epochs=3, res_blocks=1, seed=0)
    folder = trained.save(tmp_path / "advgan", victim="seed-mlp")
    assert (folder / "generator.safetensors").is_file() and (folder / "discriminator.safetensors").is_file()
    gen = load_generator(folder)
    x, y = data.x_test[:200], data.y_test[:200]
    with torch.no_grad():
        assert torch.allclose(gen(x), trained.generator(x), atol=1e-6)
    res = AdvGAN(generator=str(folder))(seed_mlp, x, y, LINF)
    s = res.summary()
    print(f"advgan (seed-mlp victim, small training): held-out success {s['success_rate_on_correct']:.3f}")
    assert s["success_rate_on_correct"] >= 0.6
    assert int(res.forwards.sum()) == 0 and int(res.backwards.sum()) == 0
    assert float(res.norms["linf"].max()) <= 0.3 + 1e-6
    assert get_attack("advgan", generator=str(folder)).params()["generator"] == str(folder)
