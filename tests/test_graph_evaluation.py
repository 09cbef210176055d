"""advlab.evaluate on victims beyond images: a GCN on a graph (graph attacks over edge budgets,
the graph report layout), and the report's layouts for sequence and flat-vector inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import advlab
from advlab.cli import app
from advlab.evaluation import EvaluationPlan, EvaluationResult, ThreatSpec
from advlab.graphs import fit_gcn, karate_club
from advlab.graphs.evaluator import GraphPlan
from advlab.models.kinds import input_kind, sequence_shape
from advlab.validation import InputError

BUDGETS = [0, 8, 16]


@pytest.fixture(scope="module")
def karate():
    g = karate_club()
    return g, fit_gcn(g)


@pytest.fixture(scope="module")
def graph_run(karate, tmp_path_factory):
    g, model = karate
    out = tmp_path_factory.mktemp("eval-karate")
    result = advlab.evaluate(
        model, g, budgets=BUDGETS, target_budgets=[0, 2], targets=6, feature_eps=[0.1], steps=40, examples=2, out=out
    )
    return result, out


# ---------------------------------------------------------------- graph numbers
def test_pgd_topology_is_stronger_than_random_flips(graph_run):
    result, _ = graph_run
    acc = result.per_attack("edges")
    top = BUDGETS[-1]
    assert set(acc) == {"dice", "pgd-topology"}
    assert acc["pgd-topology"][top] <= acc["dice"][top] - 0.1, acc  # a floor, not a golden number
    assert acc["pgd-topology"][top] <= result.clean_accuracy - 0.15
    assert acc["pgd-topology"][0] == pytest.approx(result.clean_accuracy)  # no flips, no change
    assert result.robust_accuracy(top, threat="edges") == pytest.approx(min(acc["pgd-topology"][top], acc["dice"][top]))
    targeted = result.threat("edges-per-target")
    assert targeted["results"][-1]["robust_accuracy"] < targeted["clean_accuracy"]  # nettack breaks some targets
    assert result.per_attack("features")["feature-pgd"][0.1] < result.clean_accuracy
    assert result.kind == "graph" and result.audit_clean, result.checks
    assert {c["id"] for c in result.checks} >= {"graph-gradient-vs-random", "graph-budget-monotone", "graph-zero-budget"}


def test_results_follow_the_evaluation_schema(graph_run):
    result, out = graph_run
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "advlab.evaluation/3" and data["kind"] == "graph"
    assert [t["key"] for t in data["threats"]] == ["edges-evasion-white", "edges-per-target-evasion-white", "features-evasion-white"]
    for t in data["threats"]:
        assert t["threat_model"].startswith("evasion, white box")
        for r in t["results"]:
            if t["kind"] != "features":
                assert all(e["flips"] <= r["budget"] * (len(t["nodes"]) if t["targeted"] else 1) for e in r["per_attack"])
    loaded = EvaluationResult.load(out)
    assert loaded.per_attack() == result.per_attack()
    ex = data["examples"][0]
    assert ex["threat"] == "edges-per-target-evasion-white" and ex["node"] in ex["nodes"] and ex["flips"]
    assert all(ex["node"] in f for f in ex["flips"])  # Nettack flips edges of the target itself


def test_graph_report_draws_curves_and_neighbourhoods_not_images(graph_run):
    _, out = graph_run
    html = (out / "report.html").read_text()
    assert 'id="fig-graph-curve-0"' in html and 'id="fig-graph-neighbourhoods-1"' in html
    assert 'id="fig-examples"' not in html and "28x28" not in html
    assert "PGD topology (gradient) against DICE" in html
    for text in ("Threat model", "Goal: evasion", "Knowledge: white box", "Budget: up to 16 undirected edge flips", "Per class", "Cost", "Audit"):
        assert text in html, text
    (out / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert 'id="fig-graph-curve-0"' in (out / "report.html").read_text()


def test_rerun_resumes_from_the_store(graph_run, karate):
    import sqlite3

    result, out = graph_run
    g, model = karate

    def count() -> int:
        with sqlite3.connect(out / "store-0.sqlite") as db:
            return int(db.execute("SELECT COUNT(*) FROM writes").fetchone()[0])

    before = count()
    again = advlab.evaluate(model, g, budgets=BUDGETS, target_budgets=[0, 2], targets=6, feature_eps=[0.1], steps=40, examples=2, out=out, report=False)
    assert count() == before  # nothing recomputed
    assert again.per_attack() == result.per_attack()


def test_poisoning_retrains_and_is_reported(karate):
    g, model = karate
    plan = GraphPlan(budgets=[0, 16], attacks=["dice", "pgd-topology"], goals=["poisoning"], steps=20, epochs=100)
    result = advlab.evaluate(model, g, plan)
    t = result.threat("edges-poisoning-white")
    assert t["threat_model"].startswith("poisoning")
    assert result.per_attack()["pgd-topology"][16] < result.clean_accuracy


# ---------------------------------------------------------------- bad input
def test_bad_graph_input_is_named(karate, seed_mlp):
    g, model = karate
    with pytest.raises(InputError, match="attacks inputs .* graph attacks: dice"):
        advlab.evaluate(model, g, attacks=["pgd"])
    with pytest.raises(ValueError, match="did you mean dice"):
        advlab.evaluate(model, g, attacks=["dise"])
    with pytest.raises(ValueError, match="out of range"):
        advlab.evaluate(model, g, budgets=[0, "150%"])
    with pytest.raises(InputError, match="out of range: the graph has only 561 node pairs"):
        advlab.evaluate(model, g, budgets=[0, 1000])
    with pytest.raises(ValueError, match="edge budget -3 is out of range"):
        GraphPlan(budgets=[-3])
    with pytest.raises(InputError, match="target budget 40 is out of range"):
        advlab.evaluate(model, g, target_budgets=[0, 40])
    with pytest.raises(InputError, match="is a graph model .* give a graph as data"):
        advlab.evaluate(model, "mnist-sample")
    with pytest.raises(InputError, match="not a graph model"):
        advlab.evaluate(seed_mlp, g)
    with pytest.raises(InputError, match="'samples' does not apply to a graph evaluation"):
        advlab.evaluate(model, g, samples=10)
    with pytest.raises(InputError, match="needs a GraphPlan"):
        advlab.evaluate(model, g, EvaluationPlan())
    with pytest.raises(ValueError, match="knowledge must be 'white'"):
        GraphPlan(knowledge="black")
    wide = fit_gcn(g.replace(x=torch.cat([g.x, g.x], 1)))
    with pytest.raises(InputError, match="reads 68 node features"):
        advlab.evaluate(wide, g)


def test_cli_evaluates_a_graph_victim(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["evaluate", "gcn", "--data", "karate", "--out", str(out), "--budgets", "0,10%", "--targets", "2"]
    res = runner.invoke(app, [*args, "--target-budgets", "0,1", "--eps", "0.1", "--steps", "10", "--attacks", "dice,pgd-topology,nettack"])
    assert res.exit_code == 0, res.output
    assert "pgd-topology" in res.output and (out / "report.html").is_file()
    assert json.loads((out / "results.json").read_text())["threats"][0]["eps"] == [0, 8]
    for bad, message in [
        (["evaluate", "gcn", "--out", str(tmp_path / "x")], "give a graph as data"),
        (["evaluate", "seed-mlp", "--out", str(tmp_path / "y"), "--budgets", "0,4"], "--budgets apply to graph victims"),
        ([*args, "--samples", "5"], "--samples does not apply"),
    ]:
        res = runner.invoke(app, bad)
        assert res.exit_code != 0 and message in " ".join(res.output.split()), res.output


# ---------------------------------------------------------------- sequences and vectors
def _quick_plan(samples: int) -> EvaluationPlan:
    spec = ThreatSpec("linf", (0.1,), attacks=[{"name": "pgd", "steps": 5}])
    return EvaluationPlan(threats=(spec,), samples=samples, batch_size=samples, minimal=False, examples=2, escalate=False, audit=False)


def test_sequence_victim_report_shows_heatmaps(lstm, tmp_path):
    result = advlab.evaluate(lstm, "mnist-sample", _quick_plan(8), out=tmp_path)
    assert result.data["model"]["input_kind"] == "sequence"
    ex = result.data["examples"][0]
    assert ex["input_kind"] == "sequence" and ex["sequence_shape"] == [28, 28]
    html = (tmp_path / "report.html").read_text()
    assert 'id="fig-examples"' in html and "time step x feature heatmaps" in html


def test_flat_feature_vectors_are_plotted_per_feature(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from advlab.models import from_sklearn

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = np.clip(0.5 + 0.15 * rng.standard_normal((120, 30)) + 0.1 * (y[:, None] == np.arange(30) % 3), 0, 1).astype(np.float32)
    model = from_sklearn(LogisticRegression(max_iter=500).fit(x, y))
    result = advlab.evaluate(model, (x, y), _quick_plan(10), out=tmp_path)
    assert result.data["examples"][0]["input_kind"] == "vector"
    html = (tmp_path / "report.html").read_text()
    assert "Flat feature vectors" in html and "time step" not in html


def test_input_kinds():
    from advlab.models import build_model

    assert input_kind(build_model("lstm"), (1, 28, 28)) == "sequence"
    assert input_kind(build_model("gcn", in_features=4, num_classes=2), (4,)) == "graph"
    assert input_kind(torch.nn.Linear(784, 10), (1, 28, 28)) == "image"
    assert input_kind(torch.nn.Linear(784, 10), (784,)) == "image"
    assert input_kind(torch.nn.Linear(30, 2), (30,)) == "vector"
    assert sequence_shape(build_model("lstm"), (1, 28, 28)) == (28, 28)
    assert sequence_shape(build_model("lstm", input_size=7), (28,)) == (4, 7)
