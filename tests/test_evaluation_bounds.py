"""The bracket certified <= true <= attacked inside ``advlab.evaluate`` (issue 17, item 4).

Cheap by design: the seed MLP (CROWN in milliseconds) on a dozen samples."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import advlab
from advlab.certify.network import as_chain
from advlab.evaluation import EvaluationPlan, ThreatSpec
from advlab.evaluation import bounds as bounds_module
from advlab.evaluation.bounds import BoundContradiction, choose_method

BRACKET = "certified accuracy ≤ true robust accuracy ≤ attacked robust accuracy"


def plan(samples: int = 12, eps=(0.01, 0.03), minimal: bool | str = False, **kw) -> EvaluationPlan:
    kw.setdefault("certify", "crown")
    return EvaluationPlan(
        threats=(ThreatSpec("linf", eps, attacks=["pgd"]),), samples=samples, batch_size=6, minimal=minimal,
        audit=False, escalate=False, examples=2, **kw,
    )


@pytest.fixture(scope="module")
def mlp_run(seed_mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("bounds-mlp")
    both = plan(minimal=True).replace(threats=(ThreatSpec("linf", (0.01, 0.03), attacks=["pgd"]), ThreatSpec("l2", (0.1, 0.3), attacks=["pgd"])))
    return advlab.evaluate(seed_mlp, "mnist-sample", both, out=out), out


def test_bracket_for_the_seed_mlp(mlp_run):
    result, out = mlp_run
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == advlab.evaluation.SCHEMA == "advlab.evaluation/3"
    for block in data["threats"]:
        _check_block(data, block)
    assert BRACKET in result.summary and "median ratio found/certified" in result.summary
    cost = data["cost"]["certify"]
    assert cost["method"] == "CROWN" and cost["model_forwards"] > 0 and "no attack passes" in cost["note"]


def _check_block(data: dict, block: dict) -> None:
    cert = block["certified"]
    assert cert["available"] and cert["method"] == "CROWN" and cert["max_neurons"] == 64 and cert["reason"] is None
    status = data["samples"]["certified"][block["key"]]["status"]
    outcomes = data["samples"]["outcomes"][block["key"]]
    for row, budget in zip(cert["per_eps"], block["results"], strict=True):
        assert row["robust_accuracy"] == budget["robust_accuracy"]
        assert row["certified_accuracy"] <= row["robust_accuracy"]  # certified <= attacked, every budget
        assert row["gap"] >= 0
        assert sum(row["status"].values()) == row["n"] == 12
        per_sample = status[repr(row["eps"])]
        assert per_sample.count("certified") == row["certified"]
        robust = outcomes[repr(row["eps"])]["robust"]
        for s, r in zip(per_sample, robust, strict=True):
            assert (s == "broken") == (not r)  # broken exactly where the attacks broke it; certified ones stayed robust
    # certified accuracy falls with eps; CROWN certifies a clear share at the smaller budget
    # (measured on 100 samples: 0.79 at Linf 0.01, 0.82 at L2 0.1)
    assert cert["per_eps"][0]["certified_accuracy"] >= cert["per_eps"][1]["certified_accuracy"]
    assert cert["per_eps"][0]["certified_accuracy"] >= 0.25
    radius = cert["radius"]
    assert radius["violations"] == 0 and radius["samples_with_both"] > 0
    assert radius["median_ratio"] >= 1.0 and 0.0 <= radius["tight_share"] <= 1.0
    curve = radius["curve"]
    found = block["minimal"]["curve"]
    assert [e for e, _ in curve] == [e for e, _ in found]
    assert all(c <= f for (_, c), (_, f) in zip(curve, found, strict=True))  # certified radii below the found ones
    intervals = data["samples"]["certified"][block["key"]]["interval"]
    assert all(hi is None or lo <= hi for lo, hi in intervals)


def test_report_draws_the_certified_curve(mlp_run):
    _, out = mlp_run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "certified accuracy (CROWN), a lower bound" in html
    assert "true robust accuracy lies in the shaded gap" in html
    assert BRACKET.replace("≤", "&le;") in html or BRACKET in html
    assert "counted apart from the attacks" in html


class Custom(nn.Module):
    """A layer the bounds do not know."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class WithCustomLayer(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.custom = Custom()

    def forward(self, x):
        return self.custom(self.inner(x))


class Misdeclared(nn.Module):
    """Declares the seed MLP's chain but computes something else: the check must catch it
    and the evaluation must not crash after its attacks."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def bound_layers(self):
        return as_chain(self.inner)

    def forward(self, x):
        return self.inner(x) + torch.linspace(0, 1, 10)


def test_unsupported_models_get_the_attacks_and_a_sentence(seed_mlp, lstm, tmp_path):
    reasons = []
    for i, model in enumerate((WithCustomLayer(seed_mlp), Misdeclared(seed_mlp), lstm)):
        result = advlab.evaluate(model, "mnist-sample", plan(samples=4, eps=(0.05,), certify="auto"), out=tmp_path / str(i))
        cert = result.threat()["certified"]
        assert not cert["available"] and cert["reason"]
        assert "No certified bound: " + cert["reason"] in result.summary
        assert 0.0 <= result.robust_accuracy() <= 1.0  # the attacks' numbers stand alone
        assert "No certified bound" in (tmp_path / str(i) / "report.html").read_text(encoding="utf-8")
        reasons.append(cert["reason"])
    assert "Custom" in reasons[0] and "not the chain of its layers" in reasons[1] and "LSTM" in reasons[2]


def test_a_bound_that_certifies_a_broken_sample_raises(seed_mlp, tmp_path, monkeypatch):
    def everything_certified(model, x, y, threat, method="crown", **options):
        return torch.ones(x.shape[0], dtype=torch.bool), ""

    monkeypatch.setattr(bounds_module, "certified_flags", everything_certified)
    with pytest.raises(BoundContradiction, match="certifies sample"):
        advlab.evaluate(seed_mlp, "mnist-sample", plan(samples=8, eps=(0.1,)), out=tmp_path / "flags")


def test_a_radius_above_a_found_perturbation_raises(seed_mlp, tmp_path, monkeypatch):
    def huge(model, x, y, threat, method="crown", **options):
        return torch.full((x.shape[0],), 10.0), ""

    monkeypatch.setattr(bounds_module, "certified_radii", huge)
    with pytest.raises(BoundContradiction, match="smaller than the certified radius"):
        advlab.evaluate(seed_mlp, "mnist-sample", plan(samples=6, eps=(0.01,), minimal=True), out=tmp_path / "radii")


def test_method_rule_and_the_off_switch(seed_mlp, cnn, tmp_path):
    assert choose_method(seed_mlp, "auto") == ("crown", 64) and choose_method(cnn, "auto") == ("crown", 0)
    assert choose_method(cnn, "crown") == ("crown", 64) and choose_method(seed_mlp, "ibp") == ("ibp", 0)
    with pytest.raises(ValueError, match="certify must be"):
        EvaluationPlan(certify="exact")
    result = advlab.evaluate(seed_mlp, "mnist-sample", plan(samples=4, eps=(0.05,), certify="off"), out=tmp_path)
    assert not result.threat()["certified"]["available"] and "certify = 'off'" in result.summary
    assert result.data["cost"]["certify"]["model_forwards"] == 0


def test_cli_certify_option(seed_mlp, tmp_path):
    from typer.testing import CliRunner

    from advlab.cli import app
    from advlab.models import save_model

    save_model(seed_mlp, tmp_path / "mlp")
    toml = tmp_path / "plan.toml"
    toml.write_text('samples = 4\naudit = false\nescalate = false\nminimal = false\nexamples = 0\n[[threat]]\nnorm = "linf"\neps = 0.01\nattacks = ["fgsm"]\n')
    args = ["evaluate", str(tmp_path / "mlp"), "--out", str(tmp_path / "run"), "--plan", str(toml), "--no-report"]
    res = CliRunner().invoke(app, [*args, "--certify", "ibp"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["plan"]["certify"] == "ibp" and data["threats"][0]["certified"]["method"] == "IBP"
    res = CliRunner().invoke(app, [*args[:3], str(tmp_path / "bad"), *args[4:], "--certify", "exact"])
    assert res.exit_code != 0 and "certify must be" in res.output
