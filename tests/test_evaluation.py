"""advlab.evaluate: plans, the worst case over a cascade, the audit and its escalations,
results.json and the report, resumption after SIGKILL and sharding over 2 gloo processes.

Mechanism tests use a tiny PGD defined here (so they do not depend on which attacks are
registered) and the session's seed MLP on a few samples.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

import advlab
from advlab.attacks.base import Attack
from advlab.evaluation import (
    EvaluationPlan,
    EvaluationResult,
    ThreatSpec,
    as_plan,
    comparable,
    load_plan,
)
from advlab.evaluation.store import RunMismatchError
from advlab.losses import cross_entropy

SRC = str(Path(__file__).resolve().parents[1] / "src")

@dataclass(frozen=True)
class TinyPGD(Attack):
    """PGD with a fixed step of eps/2 (a test helper, not registered)."""

    name: ClassVar[str] = "tiny-pgd"
    norms: ClassVar[tuple] = ("linf", "l2")
    steps: int = 5

    def _run(self, victim, batch, threat, rng):
        time.sleep(float(os.environ.get("ADVLAB_TEST_DELAY", "0")))
        x = threat.random_start(batch.x, rng, batch.index, stream=0)
        for _ in range(self.steps):
            _, grad, _ = victim.value_and_grad(x, lambda z: cross_entropy(z, batch.y, threat.targeted))
            x = threat.project(x + 0.5 * threat.eps * threat.lp.steepest(grad), batch.x)
        return x


# A run in a subprocess: the same tiny attack, a saved model, 4 samples per unit.
WORKER = (
    "import os, sys, time, torch\ntorch.set_num_threads(1)\n"
    "from dataclasses import dataclass\nfrom typing import ClassVar\n"
    "from advlab.attacks.base import Attack\nfrom advlab.losses import cross_entropy\n\n"
    + inspect.getsource(TinyPGD)
    + """
import advlab
from advlab.models import load_model
plan = advlab.EvaluationPlan(
    threats=[advlab.ThreatSpec("linf", (0.05, 0.1), attacks=[TinyPGD()])],
    samples=int(sys.argv[3]), batch_size=4, minimal=False, examples=2, seed=3, escalate=False)
advlab.evaluate(load_model(sys.argv[1]), "mnist-sample", plan, out=sys.argv[2], report=False)
"""
)


def plan_for(samples: int = 12, eps=(0.05, 0.1), **kw) -> EvaluationPlan:
    kw.setdefault("escalate", False)  # escalations run Square (slow); the tests that need them say so
    return EvaluationPlan(threats=(ThreatSpec("linf", eps, attacks=[TinyPGD()]),), samples=samples, batch_size=4, minimal=False, examples=2, **kw)


# ---------------------------------------------------------------- plan
def test_plan_from_toml_and_overrides(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(
        'samples = 20\nseed = 4\n[[threat]]\nnorm = "Linf"\neps = [0.3, 0.1]\n'
        '[[threat]]\nnorm = "l2"\neps = 2.0\nattacks = ["pgd", {name = "fgsm"}]\n'
    )
    plan = load_plan(path)
    assert plan.samples == 20 and plan.seed == 4
    assert plan.threats[0].eps == (0.1, 0.3) and plan.threats[0].norm == "linf"
    assert plan.threats[1].attacks == ("pgd", {"name": "fgsm"})
    assert as_plan(path, samples=5).samples == 5
    assert plan.fingerprint() != as_plan(path, seed=5).fingerprint()
    with pytest.raises(ValueError, match="unknown plan field"):
        EvaluationPlan.from_dict({"sample": 3})
    with pytest.raises(ValueError, match="eps"):
        ThreatSpec("linf", (-1.0,))
    with pytest.raises(ValueError, match="knowledge"):
        ThreatSpec("linf", (0.1,), knowledge="gray")


# ---------------------------------------------------------------- numbers
@pytest.fixture(scope="module")
def run_mlp(seed_mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-mlp")
    return advlab.evaluate(seed_mlp, "mnist-sample", plan_for(16), out=out), out


def test_worst_case_numbers_are_consistent(run_mlp):
    result, out = run_mlp
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "advlab.evaluation/2"
    threat = data["threats"][0]
    outcomes = data["samples"]["outcomes"][threat["key"]]
    previous = 1.0
    for r in threat["results"]:
        robust = outcomes[repr(r["eps"])]["robust"]
        assert r["robust_accuracy"] == pytest.approx(sum(robust) / len(robust))
        assert r["robust_accuracy"] <= previous  # carried over: never rises with eps
        previous = r["robust_accuracy"]
        after = [s["robust_accuracy_after"] for s in r["stages"]]
        assert after == sorted(after, reverse=True) and after[-1] == pytest.approx(r["robust_accuracy"])
        assert sum(r2["n"] for r2 in r["per_class"]) == 16
        # every sample's perturbation respects the budget
        assert max(outcomes[repr(r["eps"])]["perturbation"]) <= r["eps"] + 1e-6
    assert result.robust_accuracy(0.1) < result.clean_accuracy  # a 784-20-10 MLP is not robust at 0.1
    assert {c["id"] for c in result.checks} >= {"gradient-census", "randomness", "softmax-output", "shattered-gradients", "unbounded", "eps-monotone", "convergence"}
    assert result.check("unbounded")["verdict"] == "pass"
    assert all(c["docs"].startswith("docs/audit.md#") for c in result.checks)
    assert data["cost"]["backwards"] > 0 and data["environment"]["torch"] == torch.__version__


def test_report_is_self_contained_and_rerenders(run_mlp):
    _, out = run_mlp
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 2 and "data:image/png;base64," in html and 'src="http' not in html
    for title in ("Summary", "Threat model", "Examples", "Per class", "Cost", "Audit"):
        assert title in html
    (out / "report.html").unlink()
    from typer.testing import CliRunner

    from advlab.cli import app

    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()


def test_same_command_reuses_everything(run_mlp, seed_mlp):
    result, out = run_mlp
    again = advlab.evaluate(seed_mlp, "mnist-sample", plan_for(16), out=out)
    assert comparable(again.data) == comparable(result.data)
    with sqlite3.connect(out / "store-0.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM writes")]
    assert len(keys) == len(set(keys))  # nothing was computed twice
    with pytest.raises(RunMismatchError, match="plan"):
        advlab.evaluate(seed_mlp, "mnist-sample", plan_for(16, seed=9), out=out)


# ---------------------------------------------------------------- the audit escalates
class Probabilities(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x) * 50, dim=1)


class Noisy(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 0.5 * torch.randn(x.shape[0], 10)


class Binarized(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x > 0.5).float())


def test_softmax_output_is_found_and_attacked_through_logits(seed_mlp, tmp_path):
    result = advlab.evaluate(Probabilities(seed_mlp), "mnist-sample", plan_for(8, eps=(0.1,)), out=tmp_path)
    check = result.check("softmax-output")
    assert check["verdict"] == "fail" and "logits" in check["actions"]
    esc = result.data["audit"]["escalation"]
    assert "logits" in esc["wanted"] and esc["actions"] == []  # the plan turned escalation off


def test_random_output_is_found(seed_mlp, tmp_path):
    result = advlab.evaluate(Noisy(seed_mlp), "mnist-sample", plan_for(8, eps=(0.1,)), out=tmp_path)
    assert result.check("randomness")["verdict"] == "fail"
    assert "eot" in result.data["audit"]["escalation"]["wanted"]


def test_binarization_is_found(seed_mlp, tmp_path):
    result = advlab.evaluate(Binarized(seed_mlp), "mnist-sample", plan_for(8, eps=(0.3,)), out=tmp_path)
    assert result.check("shattered-gradients")["verdict"] == "fail"
    assert result.check("gradient-census")["verdict"] == "fail"
    assert not result.audit_clean


# ---------------------------------------------------------------- reliability and scale
def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def saved_mlp(seed_mlp, tmp_path_factory):
    from advlab.models import save_model

    folder = tmp_path_factory.mktemp("saved-mlp")
    save_model(seed_mlp, folder)
    script = folder / "worker.py"
    script.write_text(WORKER)
    return folder, script


@pytest.fixture(scope="module")
def reference(saved_mlp, tmp_path_factory):
    """An uninterrupted single-process run of the worker (20 samples, 5 units of 4)."""
    folder, script = saved_mlp
    out = tmp_path_factory.mktemp("reference")
    subprocess.run([sys.executable, str(script), str(folder), str(out), "20"], env=_env(), check=True, timeout=120)
    return json.loads((out / "results.json").read_text())


def _units(out: Path) -> int:
    path = out / "store-0.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT count(*) FROM units").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_and_resume_match_an_uninterrupted_run(saved_mlp, reference, tmp_path):
    folder, script = saved_mlp
    cmd = [sys.executable, str(script), str(folder), str(tmp_path), "20"]
    env = dict(_env(), ADVLAB_TEST_DELAY="0.15")
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 60
    while _units(tmp_path) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _units(tmp_path)
    assert 4 <= done < 20 and not (tmp_path / "results.json").exists()
    subprocess.run(cmd, env=_env(), check=True, timeout=120)
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert comparable(resumed) == comparable(reference)
    with sqlite3.connect(tmp_path / "store-0.sqlite") as db:
        writes = db.execute("SELECT key, pid FROM writes").fetchall()
    keys = [k for k, _ in writes]
    assert len(keys) == len(set(keys)) == 20  # 5 batches x (probe, 2 budgets, audit), none recomputed
    assert len({pid for _, pid in writes}) == 2  # both processes wrote: the second resumed


def test_torchrun_two_gloo_processes_match_one(saved_mlp, reference, tmp_path):
    folder, script = saved_mlp
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(folder), str(tmp_path), "20"]
    subprocess.run(cmd, env=_env(), check=True, timeout=180)
    sharded = json.loads((tmp_path / "results.json").read_text())
    assert sharded["environment"]["processes"] == 2
    assert comparable(sharded) == comparable(reference)
    assert (tmp_path / "store-0.sqlite").exists() and (tmp_path / "store-1.sqlite").exists()


def test_public_api():
    assert advlab.evaluate is advlab.evaluation.evaluate
    assert isinstance(EvaluationResult({"summary": "x"}).summary, str)


# ---------------------------------------------------------------- what must be shown
def _registered(*names: str) -> bool:
    from advlab.attacks import available_attacks

    return all(n in available_attacks() for n in names)


@pytest.mark.slow
@pytest.mark.skipif(not _registered("apgd", "fgsm"), reason="needs the white-box attacks")
def test_standard_cnn_is_not_robust_and_the_audit_is_clean(cnn, tmp_path):
    result = advlab.evaluate(cnn, "mnist-sample", samples=50, batch_size=50, out=tmp_path, examples=2,
                             threats=[ThreatSpec("linf", (0.3,))])
    assert result.clean_accuracy >= 0.9
    assert result.robust_accuracy(0.3) <= 0.02
    failed = [c["id"] for c in result.checks if c["verdict"] == "fail"]
    assert result.audit_clean, failed
    assert "no sign of gradient masking" in result.summary


def _distill():
    import importlib

    return getattr(importlib.import_module("advlab.defenses"), "distill", None)


@pytest.fixture(scope="session")
def distilled_cnn(model_cache, mnist):
    """A narrow CNN distilled at T = 100 on half the sample (the defenses tests' model, same cache)."""
    from advlab.models import TrainConfig, load_model, save_model

    folder = model_cache / "distilled-cnn8-T100"
    if not (folder / "config.json").is_file():
        student, hist = _distill()(
            "cnn", mnist.x_train[:2000], mnist.y_train[:2000], 100.0,
            TrainConfig(epochs=5, batch_size=64, lr=3e-3), model_kwargs={"width": 8},
        )
        save_model(student, folder, dataset="mnist-sample", train_seconds=hist["seconds"])
    return load_model(folder)


@pytest.mark.slow
@pytest.mark.skipif(not _registered("apgd") or _distill() is None, reason="needs the white-box attacks and defensive distillation")
def test_distilled_model_is_not_reported_robust_and_the_masking_is_named(distilled_cnn, tmp_path):
    result = advlab.evaluate(distilled_cnn, "mnist-sample", samples=30, batch_size=30, out=tmp_path, examples=2,
                             threats=[ThreatSpec("linf", (0.3,))], minimal=False)
    assert result.clean_accuracy >= 0.8
    assert result.robust_accuracy(0.3) <= 0.05
    census = result.check("gradient-census")
    assert census["verdict"] == "fail" and census["numbers"]["zero"] > 0
    assert result.check("adaptive-vs-naive")["verdict"] == "fail"
    assert not result.audit_clean and "gradient-census" in result.summary


# ---------------------------------------------------------------- exact costs, the caller's model
def test_every_pass_is_counted_exactly_and_the_model_is_left_as_it_was(seed_mlp, tmp_path):
    """Forward and backward rows seen by hooks on the model equal the rows results.json
    reports (equal, not close), and the caller's train flag and requires_grad survive."""
    rows = {"forwards": 0, "backwards": 0}

    def forward_hook(_m, inputs, _o):
        rows["forwards"] += int(inputs[0].shape[0])

    def backward_hook(_m, _gi, grad_output):
        rows["backwards"] += int(grad_output[0].shape[0])

    seed_mlp.train()
    flags = [p.requires_grad for p in seed_mlp.parameters()]
    handles = [seed_mlp.register_forward_hook(forward_hook), seed_mlp.register_full_backward_hook(backward_hook)]
    try:
        result = advlab.evaluate(seed_mlp, "mnist-sample", plan_for(8, eps=(0.05, 0.1)), out=tmp_path)
    finally:
        for h in handles:
            h.remove()
        training = seed_mlp.training
        seed_mlp.eval()
    cost = result.data["cost"]
    assert rows["forwards"] == cost["forwards"] == sum(r["forwards"] for r in cost["by_stage"])
    assert rows["backwards"] == cost["backwards"] == sum(r["backwards"] for r in cost["by_stage"])
    assert training and [p.requires_grad for p in seed_mlp.parameters()] == flags
    head = result.data["threats"][0]["results"][-1]
    lo, hi = head["interval"]
    assert head["n"] == 8 and lo <= head["robust_accuracy"] <= hi and "95% interval" in result.summary
    assert "over 1 cascade attack and the audit's" in result.summary  # members counted, not audit probes


class Centered(nn.Module):
    """The seed MLP on inputs in [-1, 1]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x + 1) / 2)


def test_the_threat_models_box_is_used_everywhere(seed_mlp, mnist, tmp_path):
    x, y = mnist.x_test[:8] * 2 - 1, mnist.y_test[:8]
    plan = EvaluationPlan(threats=(ThreatSpec("linf", (0.2,), attacks=[TinyPGD()], box=(-1.0, 1.0)),), samples=8, batch_size=4,
                          minimal=False, examples=2, escalate=False)
    result = advlab.evaluate(Centered(seed_mlp), (x, y), plan, out=tmp_path, report=False)
    assert result.check("unbounded")["numbers"]["eps"] == 2.0  # the whole [-1, 1] box
    assert result.robust_accuracy(0.2) < result.clean_accuracy
    with pytest.raises(advlab.InputError):
        advlab.evaluate(Centered(seed_mlp), (x, y), plan.replace(threats=(ThreatSpec("linf", (0.2,), attacks=[TinyPGD()]),)), out=tmp_path / "b")


def test_curve_shows_the_first_pass_above_the_worst_case(monkeypatch):
    """The first-pass line was drawn under the worst-case line and vanished where they coincide."""
    from advlab.evaluation import report as rep

    captured = {}
    real = rep._png
    monkeypatch.setattr(rep, "_png", lambda fig: real(captured.setdefault("fig", fig)))
    threat = {
        "key": "linf", "norm": "linf", "threat_model": "untargeted evasion, Linf",
        "results": [{"eps": 0.1, "robust_accuracy": 0.5, "raw_robust_accuracy": 0.5}, {"eps": 0.3, "robust_accuracy": 0.1, "raw_robust_accuracy": 0.1}],
    }
    rep.curve_figure(rep._api(), threat, 0.9, "curve")
    lines = {ln.get_label(): ln for ln in captured["fig"].axes[0].get_lines()}
    worst, first = lines["worst case over the attacks"], lines["first pass of the cascade (= worst case)"]
    assert first.get_zorder() > worst.get_zorder()
    assert first.get_markerfacecolor() == "none" and first.get_markersize() > worst.get_markersize()


def test_audit_probes_are_timed(seed_mlp, mnist, tmp_path):
    import advlab

    plan = {"samples": 10, "minimal": False, "threats": [{"norm": "linf", "eps": [0.1], "attacks": ["fgsm"]}]}
    result = advlab.evaluate(seed_mlp, (mnist.x_test[:10], mnist.y_test[:10]), plan, out=tmp_path / "run")
    probes = next(r for r in result.data["cost"]["by_stage"] if r["stage"] == "clean pass and audit probes")
    assert probes["forwards"] > 0 and probes["seconds"] > 0
    # ten samples need not hold every label; the classes still cover every output of the model
    assert result.data["data"]["classes"] == [str(i) for i in range(10)]
