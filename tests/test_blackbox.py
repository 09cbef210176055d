"""The black box and the query-only attacks: the wrapper cannot be cheated, budgets hold,
and each attack reaches a stated strength on the small trained models."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from advlab.attacks import available_attacks, get_attack
from advlab.attacks.base import AttackError
from advlab.attacks.blackbox import BlackBoxAttack, HopSkipJump, Square
from advlab.blackbox import BlackBox, BlackBoxError, GradientAccessError, QueryBudgetExceeded
from advlab.losses import margin
from advlab.threat import ThreatModel

BLACK_BOX = ["square", "simba", "nes", "hopskipjump", "boundary"]
THREATS = {
    "square": ThreatModel("linf", eps=0.3),
    "simba": ThreatModel("l2", eps=3.0),
    "nes": ThreatModel("linf", eps=0.3),
    "hopskipjump": ThreatModel("l2"),
    "boundary": ThreatModel("l2"),
}


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.x_test, mnist.y_test


# ---------------------------------------------------------------------------- the wrapper
def test_box_answers_detached_scores_or_labels(seed_mlp, data):
    x = data[0][:5]
    box = BlackBox(seed_mlp, output="scores")
    p = box(x)
    assert p.dtype == torch.float64 and p.shape == (5, 10) and p.grad_fn is None
    assert torch.allclose(p.sum(dim=1), torch.ones(5, dtype=torch.float64))
    labels = BlackBox(seed_mlp, output="labels")(x)
    assert labels.dtype == torch.long and torch.equal(labels, p.argmax(dim=1))
    assert box.num_classes == 10
    with pytest.raises(BlackBoxError, match="labels only"):
        BlackBox(seed_mlp, output="labels").scores(x)


def test_budget_is_never_exceeded_and_repeats_are_counted(seed_mlp, data):
    x = data[0][:4]
    box = BlackBox(seed_mlp, output="labels", budget=3)
    box(x)
    box(x[:2], torch.tensor([0, 0]))  # two probes around sample 0
    assert box.queries.tolist() == [3, 1, 1, 1]
    with pytest.raises(QueryBudgetExceeded, match="budget of 3"):
        box(x[:1], torch.tensor([0]))
    assert box.queries.tolist() == [3, 1, 1, 1]  # a refused query costs nothing
    assert box.remaining(torch.arange(4)).tolist() == [0, 2, 2, 2]
    total = BlackBox(seed_mlp, output="labels", total_budget=5)
    total(x)
    with pytest.raises(QueryBudgetExceeded, match="total budget"):
        total(x[:2], torch.tensor([4, 5]))


@pytest.mark.parametrize("name", ["parameters", "state_dict", "value_and_grad", "logits", "forward", "model", "gradient"])
def test_box_refuses_parameters_and_gradients(seed_mlp, name):
    box = BlackBox(seed_mlp)
    with pytest.raises(GradientAccessError, match="only answers queries"):
        getattr(box, name)


def test_box_refuses_inputs_that_require_grad(seed_mlp, data):
    x = data[0][:2].clone().requires_grad_(True)
    with pytest.raises(GradientAccessError, match="no gradients"):
        BlackBox(seed_mlp)(x)


def test_black_box_attack_refuses_a_plain_model(seed_mlp, data):
    x, y = data[0][:3], data[1][:3]
    with pytest.raises(AttackError, match="only talks to an advlab.blackbox.BlackBox"):
        Square().run(seed_mlp, x, y, ThreatModel("linf", eps=0.3))
    with pytest.raises(BlackBoxError, match="score-based"):
        Square().run(BlackBox(seed_mlp, output="labels"), x, y, ThreatModel("linf", eps=0.3))


@dataclass(frozen=True)
class _Cheat(BlackBoxAttack):
    """An attack that tries to read gradients through the box it is given."""

    name = "test-cheat"

    def _attack(self, box, batch, threat, rng):
        return box.value_and_grad(batch.x, lambda z: margin(z, batch.y))


def test_an_attack_asking_for_gradients_fails_clearly(seed_mlp, data):
    with pytest.raises(GradientAccessError, match="value_and_grad"):
        _Cheat()(seed_mlp, data[0][:3], data[1][:3], ThreatModel("linf", eps=0.3))


def test_query_level_api_counts_on_the_users_box(seed_mlp, data):
    x, y = data[0][:8], data[1][:8]
    box = BlackBox(seed_mlp, output="scores", budget=40)
    x_adv = Square(max_queries=1000).run(box, x, y, ThreatModel("linf", eps=0.3))
    assert int(box.queries.max()) <= 40 and int(box.queries.min()) >= 1
    assert float((x_adv - x).abs().max()) <= 0.3 + 1e-6


@pytest.mark.parametrize("name", BLACK_BOX)
def test_budget_holds_and_no_gradients_through_the_standard_entry_point(name, seed_mlp, data):
    x, y = data[0][:12], data[1][:12]
    threat = THREATS[name]
    atk = get_attack(name, max_queries=60)
    res = atk(seed_mlp, x, y, threat, batch_size=5)
    assert int(res.forwards.max()) <= 60
    assert int(res.backwards.sum()) == 0
    assert type(atk).knowledge == "black" and not type(atk).uses_gradients
    attacked = res.clean_pred == res.y
    assert bool((res.forwards[attacked] >= 1).all())
    assert bool(res.threat.contains(res.x_adv, x).all())
    # a user's box: its (smaller) budget applies
    res_box = atk(BlackBox(seed_mlp, output=type(atk).output, budget=25), x, y, threat)
    assert int(res_box.forwards.max()) <= 25


@pytest.mark.parametrize("name", BLACK_BOX)
def test_seeded_and_batch_size_independent(name, seed_mlp, data):
    x, y = data[0][:6], data[1][:6]
    atk = get_attack(name, max_queries=80, seed=3)
    a = atk(seed_mlp, x, y, THREATS[name], batch_size=None)
    b = atk(seed_mlp, x, y, THREATS[name], batch_size=4)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
    assert torch.equal(a.forwards, b.forwards)


def test_registered_with_metadata():
    registry = available_attacks()
    for name in BLACK_BOX + ["transfer", "advgan"]:
        cls = registry[name]
        assert "arXiv:" in cls.paper and cls.knowledge in ("black", "gray")
    assert registry["hopskipjump"].minimal and registry["boundary"].minimal
    assert registry["hopskipjump"].output == "labels" and registry["square"].output == "scores"


# ---------------------------------------------------------------------------- strength
def test_square_linf_on_the_cnn(cnn, data):
    x, y = data[0][:100], data[1][:100]
    res = Square(max_queries=1000)(cnn, x, y, ThreatModel("linf", eps=0.3))
    s = res.summary()
    print(f"square linf 0.3 cnn: success {s['success_rate_on_correct']:.3f}, median queries {s['median_forwards_successful']}")
    assert s["success_rate_on_correct"] >= 0.90
    assert int(res.forwards.max()) <= 1000
    assert s["median_forwards_successful"] <= 200


def test_square_l2_beats_its_start(seed_mlp, data):
    x, y = data[0][:30], data[1][:30]
    threat = ThreatModel("l2", eps=2.0)
    res = Square(max_queries=300)(seed_mlp, x, y, threat)
    first = Square(max_queries=1)(seed_mlp, x, y, threat)  # the initialisation only
    assert res.summary()["success_rate_on_correct"] >= 0.7
    assert res.success_rate > first.success_rate + 0.2


@pytest.mark.parametrize("basis", ["pixel", "dct"])
def test_simba_l2(basis, seed_mlp, data):
    x, y = data[0][:30], data[1][:30]
    res = get_attack("simba", basis=basis, max_queries=1000)(seed_mlp, x, y, ThreatModel("l2", eps=3.0))
    assert res.summary()["success_rate_on_correct"] >= 0.8


def test_nes_linf(seed_mlp, data):
    x, y = data[0][:60], data[1][:60]
    res = get_attack("nes", max_queries=1000)(seed_mlp, x, y, ThreatModel("linf", eps=0.2))
    assert res.summary()["success_rate_on_correct"] >= 0.8


def _min_l2_reference(model, x, y):
    """A white-box minimal-L2 reference: C&W when registered, else bisection on eps with
    PGD-L2 (an upper bound on the minimal norm close to C&W's)."""
    if "cw-l2" in available_attacks():
        res = get_attack("cw-l2")(model, x, y, ThreatModel("l2"))
        return res.norms["l2"], res.success
    lo = torch.zeros(len(x))
    hi = torch.full((len(x),), 8.0)
    found = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(12):
        eps = (lo + hi) / 2
        delta = torch.zeros_like(x)
        best_adv = torch.zeros(len(x), dtype=torch.bool)
        for _ in range(40):
            d = delta.clone().requires_grad_(True)
            logits = model((x + d).clamp(0, 1))
            (g,) = torch.autograd.grad(margin(logits, y).sum(), d)
            g = g / g.reshape(len(x), -1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = delta + (eps / 8)[:, None, None, None] * g
            n = delta.reshape(len(x), -1).norm(dim=1)
            delta = delta * (eps / n.clamp_min(1e-12)).clamp(max=1)[:, None, None, None]
            delta = (x + delta).clamp(0, 1) - x
            with torch.no_grad():
                best_adv |= model(x + delta).argmax(1) != y
        hi = torch.where(best_adv, eps, hi)
        lo = torch.where(best_adv, lo, eps)
        found |= best_adv
    return hi, found


def test_hopskipjump_l2_reaches_everything_near_the_white_box_minimum(seed_mlp, data):
    x, y = data[0][:20], data[1][:20]
    correct = seed_mlp(x).argmax(1) == y
    x, y = x[correct], y[correct]
    res = HopSkipJump(max_queries=5000)(seed_mlp, x, y, ThreatModel("l2"))
    assert res.success_rate == 1.0
    assert int(res.forwards.max()) <= 5000
    ref, ref_ok = _min_l2_reference(seed_mlp, x, y)
    hsj = float(res.norms["l2"].median())
    print(f"hopskipjump l2 median {hsj:.3f} vs white-box reference {float(ref[ref_ok].median()):.3f}")
    assert hsj <= 2 * float(ref[ref_ok].median())


def test_decision_attacks_improve_with_queries(seed_mlp, data):
    x, y = data[0][:10], data[1][:10]
    for name, threat in [("hopskipjump", ThreatModel("linf")), ("boundary", ThreatModel("l2"))]:
        short = get_attack(name, max_queries=100)(seed_mlp, x, y, threat)
        long = get_attack(name, max_queries=1000)(seed_mlp, x, y, threat)
        assert short.success_rate == 1.0 and long.success_rate == 1.0
        assert long.median_norm() < 0.8 * short.median_norm(), name


def test_decision_attack_with_eps_stops_inside_the_ball(seed_mlp, data):
    x, y = data[0][:10], data[1][:10]
    res = HopSkipJump(max_queries=1000)(seed_mlp, x, y, ThreatModel("l2", eps=2.5))
    unbounded = HopSkipJump(max_queries=1000)(seed_mlp, x, y, ThreatModel("l2"))
    assert int(res.success.sum()) >= 9
    assert float(res.forwards.float().mean()) < float(unbounded.forwards.float().mean())


# ---------------------------------------------------------------------------- CLI
def test_cli_runs_black_box_attacks(seed_mlp, tmp_path):
    import json

    from typer.testing import CliRunner

    from advlab.cli import app
    from advlab.models import save_model

    folder = save_model(seed_mlp, tmp_path / "mlp", dataset="mnist-sample")
    runner = CliRunner()
    out = tmp_path / "square"
    res = runner.invoke(
        app,
        ["attack", "square", "--model", str(folder), "--eps", "0.3", "--n", "20", "-p", "max_queries=100", "--out", str(out)],
        env={"COLUMNS": "120"},
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"] == "square" and summary["params"]["max_queries"] == 100
    assert summary["mean_backwards"] == 0 and 0 < summary["mean_forwards"] <= 100
    res = runner.invoke(app, ["attack", "hopskipjump", "--model", str(folder), "--norm", "l2", "--n", "5", "-p", "max_queries=200"])
    assert res.exit_code == 0, res.output
    listing = runner.invoke(app, ["list", "attacks"], env={"COLUMNS": "200"})
    assert "square" in listing.output and "black box" in listing.output
