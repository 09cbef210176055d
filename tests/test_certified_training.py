"""IBP certified training: the schedule, the loss, and that it buys certified accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from advlab.certify import certify
from advlab.certify.training import CertifiedTraining, certified_train, ibp_loss
from advlab.models import TrainConfig, build_model, train_model
from advlab.threat import ThreatModel
from advlab.validation import InputError


def test_schedule_warms_up_then_ramps():
    ct = CertifiedTraining(eps=0.2, warmup=1, ramp=2, kappa_end=0.5)
    assert ct.schedule(0, 10) == (0.0, 1.0) and ct.schedule(9, 10) == (0.0, 1.0)
    eps, kappa = ct.schedule(19, 10)
    assert eps == pytest.approx(0.1) and kappa == pytest.approx(0.75)
    assert ct.schedule(500, 10) == (pytest.approx(0.2), pytest.approx(0.5))
    for bad in ({"eps": 0.0}, {"norm": "l1"}, {"method": "crown-ibp"}, {"kappa_end": 2.0}):
        with pytest.raises(InputError):
            CertifiedTraining(**bad)


def test_ibp_loss_is_the_clean_loss_at_eps_zero_and_grows(mnist):
    torch.manual_seed(0)
    model = build_model("seed-mlp")
    x, y = mnist.x_train[:32], mnist.y_train[:32]
    clean = torch.nn.functional.cross_entropy(model(x), y)
    assert float(ibp_loss(model, x, y, 0.0).detach()) == pytest.approx(float(clean.detach()), rel=1e-5)
    assert float(ibp_loss(model, x, y, 0.1).detach()) > float(clean.detach()) + 1e-3
    ibp_loss(model, x, y, 0.1).backward()
    assert model.fc1.weight.grad is not None and float(model.fc1.weight.grad.abs().sum()) > 0


def test_ibp_training_buys_certified_accuracy(mnist):
    xt, yt = mnist.x_test[:300], mnist.y_test[:300]
    x, y = mnist.x_train[:1000], mnist.y_train[:1000]
    cfg = TrainConfig(epochs=6, batch_size=50, lr=3e-3)
    torch.manual_seed(0)
    plain = build_model("seed-mlp")
    train_model(plain, x, y, cfg)
    torch.manual_seed(0)
    robust = build_model("seed-mlp")
    certified_train(robust, x, y, CertifiedTraining(eps=0.1, warmup=0, ramp=3), cfg)
    threat = ThreatModel("linf", eps=0.05)
    before = certify(plain, xt, yt, threat, method="ibp").accuracy
    after = certify(robust, xt, yt, threat, method="ibp").accuracy
    # measured 0.24 -> 0.51 on one machine; the floor leaves a wide margin
    assert after > before + 0.12


def test_certified_training_refuses_batchnorm():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with pytest.raises(InputError, match="BatchNorm1d"):
        certified_train(net, torch.rand(8, 4), torch.zeros(8, dtype=torch.long), CertifiedTraining())


def test_train_command_with_certified_ibp(tmp_path):
    from advlab.cli import app

    out = tmp_path / "m"
    res = CliRunner().invoke(
        app, ["train", "seed-mlp", "--certified", "ibp", "--eps", "0.05", "--epochs", "2", "--out", str(out)], env={"COLUMNS": "150"}
    )
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["certified_training"]["eps"] == 0.05 and config["certified_training"]["method"] == "ibp"
    res = CliRunner().invoke(app, ["train", "seed-mlp", "--certified", "ibp", "--adversarial", "pgd", "--out", str(out)])
    assert res.exit_code != 0 and "choose one of" in res.output
