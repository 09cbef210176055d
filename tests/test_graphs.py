"""GCN victims and graph attacks: training accuracy, budgets respected, PGD topology stronger
than random flips, poisoning by retraining, the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from advlab.graphs import (
    DICE,
    FeaturePGD,
    GraphAttackError,
    GraphThreatModel,
    Nettack,
    PGDTopology,
    accuracy_vs_budget,
    csbm,
    fit_gcn,
    get_graph_attack,
    karate_club,
    node_accuracy,
    node_logits,
)
from advlab.graphs.attacks import GraphAttack, Perturbation, project_budget
from advlab.models import load_model, save_model
from advlab.threat import ThreatModel
from advlab.validation import InputError


@pytest.fixture(scope="module")
def karate():
    g = karate_club()
    return g, fit_gcn(g)


@pytest.fixture(scope="module")
def sbm():
    g = csbm(nodes=300, seed=0)
    return g, fit_gcn(g)


def test_gcn_learns_karate_club(karate):
    g, model = karate
    assert (g.num_nodes, g.num_edges, g.num_classes) == (34, 78, 2)
    assert node_accuracy(model, g, g.train) == 1.0
    assert node_accuracy(model, g) >= 0.85


def test_gcn_on_csbm_uses_the_graph(sbm):
    g, model = sbm
    acc = node_accuracy(model, g)
    assert acc >= 0.8
    no_edges = g.replace(edges=torch.zeros(2, 0, dtype=torch.long))
    assert node_accuracy(fit_gcn(no_edges), no_edges) <= acc - 0.1  # features alone are weak


def test_dense_and_sparse_adjacency_agree(sbm, tmp_path):
    g, model = sbm
    dense = node_logits(model, g, adj=g.dense_adjacency())
    sparse = node_logits(model, g, adj=g.sparse_adjacency())
    assert torch.allclose(dense, sparse, atol=1e-5)
    loaded = load_model(save_model(model, tmp_path / "gcn"))
    assert torch.allclose(node_logits(loaded, g), node_logits(model, g))


def test_csbm_scales_and_is_seeded():
    a, b = csbm(nodes=2000, degree=6, seed=3), csbm(nodes=2000, degree=6, seed=3)
    assert torch.equal(a.edges, b.edges) and torch.equal(a.x, b.x)
    assert 4.5 <= 2 * a.num_edges / a.num_nodes <= 6.5
    same = (a.y[a.edges[0]] == a.y[a.edges[1]]).float().mean()
    assert 0.7 <= float(same) <= 0.9  # homophily 0.8


def test_graph_threat_model_validates_and_round_trips(karate):
    g, _ = karate
    tm = GraphThreatModel(edges=4, features=ThreatModel("l2", eps=0.5), goal="poisoning")
    assert GraphThreatModel.from_dict(json.loads(json.dumps(tm.to_dict()))) == tm
    assert GraphThreatModel.edge_fraction(g, 0.1).edges == 8
    assert "4 edge flips" in tm.describe()
    for bad in ({"edges": -1}, {"edges": 1.5}, {"goal": "stealing"}, {"features": ThreatModel("linf")}):
        with pytest.raises((ValueError, TypeError)):
            GraphThreatModel(**bad)


def test_budget_projection():
    s = torch.tensor([0.9, 0.8, 2.0, -1.0, 0.3])
    p = project_budget(s, 2.0)
    assert float(p.sum()) == pytest.approx(2.0, abs=1e-4)
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert torch.equal(project_budget(torch.tensor([0.2, 0.3]), 2.0), torch.tensor([0.2, 0.3]))


def test_pgd_topology_beats_random_flips(sbm):
    g, model = sbm
    budget = GraphThreatModel.edge_fraction(g, 0.1).edges
    curve = accuracy_vs_budget(model, g, [DICE(), PGDTopology(steps=50)], [0, budget])
    clean = curve.accuracy("dice")[0]
    dice, pgd = curve.accuracy("dice")[budget], curve.accuracy("pgd-topology")[budget]
    assert pgd <= dice - 0.05, curve.table()
    assert pgd <= clean - 0.05
    assert curve.table()[0] == ["budget", "dice", "pgd-topology"]
    assert all(r["flips"] <= r["budget"] for r in curve.rows)
    assert len(curve.figure().axes[0].lines) == 2


def test_flips_stay_in_budget_and_change_the_graph(karate):
    g, model = karate
    for attack in (DICE(seed=1), PGDTopology(steps=30)):
        r = attack(model, g, GraphThreatModel(edges=6))
        assert 0 < r.num_flips <= 6
        assert bool((r.flips[:, 0] < r.flips[:, 1]).all())
        flipped = g.flip(r.flips)
        assert abs(flipped.num_edges - g.num_edges) <= 6
        assert torch.equal(flipped.flip(r.flips).edges, g.edges)  # a flip twice is no flip
    dice = DICE(seed=1)(model, g, GraphThreatModel(edges=6))
    assert dice.num_flips == 6 and torch.equal(dice.flips, DICE(seed=1)(model, g, GraphThreatModel(edges=6)).flips)


def test_nettack_breaks_target_nodes(karate):
    g, model = karate
    targets = g.test[:12]
    r = Nettack()(model, g, GraphThreatModel(edges=3), targets)
    assert r.clean_accuracy >= 0.8
    assert r.robust_accuracy <= r.clean_accuracy - 0.3
    per = r.flips_per_target()
    assert int(per.max()) <= 3
    owners = targets[r.flip_owner]
    assert bool(((r.flips[:, 0] == owners) | (r.flips[:, 1] == owners)).all())  # direct attack


def test_feature_pgd_respects_the_ball(sbm):
    g, model = sbm
    tm = GraphThreatModel(features=ThreatModel("linf", eps=0.5, box=g.feature_box))
    r = FeaturePGD(steps=20)(model, g, tm)
    assert r.robust_accuracy <= r.clean_accuracy - 0.1
    assert float(r.feature_norms.max()) <= 0.5 + 1e-6 and r.num_flips == 0
    with pytest.raises(InputError, match="feature_box"):
        FeaturePGD()(model, g, GraphThreatModel(features=ThreatModel("linf", eps=0.5)))
    with pytest.raises(GraphAttackError, match="features"):
        FeaturePGD()(model, g, GraphThreatModel(edges=3))
    with pytest.raises(GraphAttackError, match="does not change node features"):
        DICE()(model, g, tm.replace(edges=2))


def test_poisoning_retrains_on_the_perturbed_graph(karate):
    g, model = karate
    none = PGDTopology(steps=20)(model, g, GraphThreatModel(edges=0, goal="poisoning"))
    assert none.retrained and torch.equal(none.adv_pred, none.clean_pred)  # seeded retraining
    minmax = PGDTopology(steps=30, inner_steps=2)
    r = minmax(model, g, GraphThreatModel(edges=12, goal="poisoning"))
    assert r.retrained and r.num_flips <= 12
    assert r.robust_accuracy <= r.clean_accuracy - 0.05


def test_attack_output_is_checked(karate):
    g, model = karate

    @dataclass(frozen=True)
    class Greedy(GraphAttack):
        name = "greedy-test"

        def _perturb(self, model, graph, threat, nodes):
            return Perturbation(flips=torch.tensor([[0, 1], [0, 2], [0, 3]]))

    with pytest.raises(GraphAttackError, match="budget is 2"):
        Greedy()(model, g, GraphThreatModel(edges=2))
    with pytest.raises(ValueError, match="unknown graph attack"):
        get_graph_attack("pgd-topolgy")


def test_graph_attack_cli(tmp_path):
    from advlab.cli import app

    out = tmp_path / "curve.json"
    res = CliRunner().invoke(
        app,
        ["graph-attack", "--attacks", "dice,pgd-topology,nettack", "--budgets", "0,4", "--target-budgets", "0,2",
         "--targets", "4", "--steps", "10", "--json", str(out), "--plot", str(tmp_path / "curve.png")],
    )
    assert res.exit_code == 0, res.output
    assert "pgd-topology" in res.output and "nettack" in res.output
    data = json.loads(out.read_text())
    assert [t["kind"] for t in data["tables"]] == ["edges", "edges-per-target"]
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert {r["budget"] for r in data["tables"][0]["rows"]} == {0, 4}
    listed = CliRunner().invoke(app, ["list", "graph-attacks"])
    assert "pgd-topology" in listed.output and "arXiv:1906.04214" in listed.output
    bad = CliRunner().invoke(app, ["graph-attack", "--budgets", "lots"])
    assert bad.exit_code != 0 and "bad budget" in bad.output
