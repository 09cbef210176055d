"""Audit flags beyond the masking checks: batch dependence (TRADES issue #3), AutoAttack's
zero DLR gradient and autograd during inference (fra31/auto-attack flags_doc.md), each with
a planted model that triggers it and the honest seed MLP that does not."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import advlab
from _attacks import SignPGD
from advlab.evaluation import EvaluationPlan, ThreatSpec
from advlab.evaluation.flags import AutogradWatch, batch_composition


class BatchCentered(nn.Module):
    """Subtracts the batch mean from every input: a batch-wide normalisation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x - x.mean(0, keepdim=True) + 0.13)


class BatchStatsNorm(nn.Module):
    """BatchNorm without running statistics: batch statistics even in eval mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.norm = nn.BatchNorm1d(784, affine=False, track_running_stats=False)

    def forward(self, x):
        return self.model(self.norm(x.flatten(1)).view_as(x) * 0.3 + 0.13)


class InnerSteps(nn.Module):
    """Two gradient steps on its own input before classifying (a test-time optimisation defense)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        z = x
        for _ in range(2):
            with torch.enable_grad():
                leaf = z.detach().requires_grad_(True)
                energy = self.model(leaf).logsumexp(1).sum()
                (g,) = torch.autograd.grad(energy, leaf)
            z = (z + 0.01 * g.sign()).clamp(0, 1)
        return self.model(z)


class Quantised(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def plan(samples: int = 8) -> EvaluationPlan:
    return EvaluationPlan(threats=(ThreatSpec("linf", (0.1,), attacks=[SignPGD(steps=5)]),), samples=samples, batch_size=4,
                          minimal=False, examples=1, escalate=False)


def verdicts(model, tmp_path) -> dict[str, str]:
    result = advlab.evaluate(model, "mnist-sample", plan(4), out=tmp_path, report=False)
    return {c["id"]: c["verdict"] for c in result.data["audit"]["checks"]}


@pytest.mark.parametrize("wrap", [BatchCentered, BatchStatsNorm])
def test_batch_composition_probe_finds_batch_statistics(seed_mlp, mnist, wrap):
    x = mnist.x_test[:6]
    planted = wrap(seed_mlp).eval()
    with torch.no_grad():
        first = planted(x).float()
    got = batch_composition(planted, x, first, (0.0, 1.0), seed=1)
    assert bool(got["affected"].all()) and float(got["difference"].min()) > 1e-2
    with torch.no_grad():
        honest = seed_mlp(x).float()
    got = batch_composition(seed_mlp, x, honest, (0.0, 1.0), seed=1)
    assert not bool(got["affected"].any()) and float(got["difference"].max()) < 1e-5
    assert got["autograd"] is None


def test_autograd_watch_sees_test_time_optimisation_only(seed_mlp, mnist):
    x = mnist.x_test[:3]
    for model, expect in ((InnerSteps(seed_mlp), True), (seed_mlp, False)):
        watch = AutogradWatch()
        with torch.no_grad(), watch:
            model(x)
        assert (watch.seen is not None) == expect, watch.seen


def test_planted_models_fail_their_checks_and_the_seed_mlp_passes_all(seed_mlp, tmp_path):
    honest = verdicts(seed_mlp, tmp_path / "honest")
    assert honest["batch-dependence"] == honest["dlr-zero-gradient"] == honest["autograd-in-inference"] == "pass"
    assert verdicts(BatchCentered(seed_mlp), tmp_path / "batch")["batch-dependence"] == "fail"
    dynamic = verdicts(InnerSteps(seed_mlp), tmp_path / "dynamic")
    assert dynamic["autograd-in-inference"] == "fail" and dynamic["batch-dependence"] == "pass"
    assert verdicts(Quantised(seed_mlp), tmp_path / "flat")["dlr-zero-gradient"] == "fail"


def test_the_check_explains_itself(seed_mlp, tmp_path):
    # (BatchStatsNorm itself cannot take the single-row batches an attack may run on)
    result = advlab.evaluate(BatchCentered(seed_mlp), "mnist-sample", plan(), out=tmp_path, report=False)
    check = result.check("batch-dependence")
    assert check["verdict"] == "fail" and check["docs"].endswith("#batch-dependence")
    assert check["numbers"]["affected"] == 8 and "beyond 0.01" in check["evidence"]
    assert not result.audit_clean


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 12), width=st.integers(1, 20), classes=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_a_per_sample_model_is_never_batch_dependent(rows, width, classes, seed):
    """Property: a model that treats rows independently is never flagged, whatever the batch."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, classes)).eval()
    x = torch.rand(rows, width)
    with torch.no_grad():
        first = model(x)
    got = batch_composition(model, x, first, (0.0, 1.0), seed=seed)
    assert not bool(got["affected"].any()) and got["autograd"] is None
