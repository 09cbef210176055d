"""The defaults come from what registered attacks declare: every name resolves, the cascade,
the minimal-norm, audit and playground choices are what the roles say, and the one cascade
loop counts every pass."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from advlab import ThreatModel
from advlab.attacks import available_attacks, get_attack, make_attack
from advlab.attacks.cascade import members, playground_attacks, role_attacks

SRC = Path(__file__).resolve().parents[1] / "src" / "advlab"


def test_every_declared_role_builds_its_attack():
    for name, cls in available_attacks().items():
        for role in cls.roles:
            atk = make_attack({"name": name, **role.params})
            assert type(atk) is cls


def test_default_cascades_are_what_the_registry_declares():
    linf = [(m.attack.name, m.attack.params().get("loss"), m.focus) for m in members(ThreatModel("linf", eps=0.3))]
    assert linf[0] == ("apgd", "ce", "all")
    assert [n for n, _, _ in linf] == ["apgd", "apgd-t", "square"]
    assert [m.focus for m in members(ThreatModel("linf", eps=0.3))] == ["all", "uncertain", "uncertain"]
    targeted = [m.attack.name for m in members(ThreatModel("linf", eps=0.3, targeted=True))]
    assert "apgd-t" not in targeted and targeted.count("apgd") == 2  # CE and DLR
    assert [m.attack.name for m in members(ThreatModel("linf", eps=0.3), knowledge="black")] == ["square"]
    assert {m.attack.name for m in members(ThreatModel("l1", eps=10.0))} == {"pgd"}
    assert role_attacks("minimal", ThreatModel("linf"))[0].name == "fmn"
    assert role_attacks("single-step", ThreatModel("l2", eps=1.0))[0].name == "fgsm"
    assert role_attacks("black-box", ThreatModel("linf", eps=0.1))[0].name == "square"
    offered = list(playground_attacks())
    assert offered[:3] == ["fgsm", "bim", "pgd"] and "apgd" in offered and "square" in offered


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


@pytest.mark.parametrize("module", ["evaluation", "serve", "attacks/ensemble.py", "attacks/cascade.py"])
def test_no_attack_name_lists_outside_the_registry(module):
    """A name in a default that does not resolve (``apgd-ce``, ``fab``) used to be skipped
    silently; defaults are now queried from the registry, and no module of the evaluation, the
    playground or the cascade holds a tuple or list of attack names."""
    known = set(available_attacks())
    paths = [SRC / module] if module.endswith(".py") else sorted((SRC / module).rglob("*.py"))
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                attackish = [n for n in names if n in known or n in ("apgd-ce", "apgd-dlr", "fab", "fab-t", "spsa")]
                assert len(attackish) < 2, f"{path.name} lists attack names {attackish}: declare a Role instead"


def test_ensemble_counts_every_pass_and_traces_its_members(seed_mlp, mnist):
    x, y = mnist.x_test[:24], mnist.y_test[:24]
    rows = {"n": 0}
    handle = seed_mlp.register_forward_hook(lambda m, i, o: rows.__setitem__("n", rows["n"] + i[0].shape[0]))
    try:
        atk = get_attack("ensemble", attacks=[{"name": "fgsm"}, {"name": "apgd", "steps": 5}, {"name": "apgd", "steps": 5, "loss": "dlr", "focus": "uncertain"}])
        res = atk(seed_mlp, x, y, ThreatModel("linf", eps=0.1))
    finally:
        handle.remove()
    # the library's clean and verification passes are its checks
    assert rows["n"] == int(res.forwards.sum()) + int(res.checks.sum())
    trace = res.trace
    assert trace["member_forwards"].shape == (24, 3)
    assert torch.equal(trace["member_forwards"].sum(1), res.forwards)
    broken = trace["broken_by"]
    correct = res.clean_pred == res.y
    assert torch.equal(broken[correct] >= 0, res.success[correct])
    # the uncertain member ran only on samples the earlier members left near the boundary
    ran = trace["member_forwards"][:, 2] > 0
    assert not bool((ran & (trace["margin"] > atk.focus_margin) & (broken < 2) & (broken >= 0)).any())
