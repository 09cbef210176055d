"""benchmarks/compare.py judges every library's output itself: these tests hold that checker
to account (without the peer libraries, which are never installed for the test suite)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def compare():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("advlab_bench_compare", BENCH / "compare.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_checker_rejects_nan_box_and_ball_violations(compare, seed_mlp, mnist):
    peers = sys.modules["peers"]
    s = peers.Setting("PGD Linf", "pgd", "linf", 0.1, 10, 0.025)
    x, y = mnist.x_test[:6], mnist.y_test[:6]
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")  # NaN
    bad[1] = (bad[1] + 0.05).clamp(max=1.02)  # outside the box
    bad[2] = (x[2] + 0.2).clamp(0, 1)  # outside the ball where x[2] < 0.8
    bad[3] = (x[3] + 0.1).clamp(0, 1)  # exactly on the ball: valid
    part = compare.check(seed_mlp, x, y, bad, s)
    assert part["valid"].tolist() == [False, False, False, True, True, True]
    # invalid outputs count as the clean image: they cannot add successes
    with torch.no_grad():
        clean = seed_mlp(x).argmax(1)
    assert bool((part["pred"][:3] == clean[:3]).all())


def test_claimed_successes_are_checked_not_believed(compare, seed_mlp, mnist):
    peers = sys.modules["peers"]
    s = peers.Setting("FGSM Linf", "fgsm", "linf", 0.1)
    x, y = mnist.x_test[:20], mnist.y_test[:20]
    part = compare.check(seed_mlp, x, y, x.clone(), s)  # returns the clean images ...
    part["claimed"] = torch.ones(20, dtype=torch.bool)  # ... and claims every one succeeded
    with torch.no_grad():
        correct = seed_mlp(x).argmax(1) == y
    summary = compare.summarise([part], correct, y)
    assert summary["success"] == 0.0
    assert summary["claimed_unconfirmed"] == int(correct.sum())


def test_advlab_rows_run_and_are_judged(compare, seed_mlp, mnist):
    peers = sys.modules["peers"]
    x, y = mnist.x_test[:40], mnist.y_test[:40]
    with torch.no_grad():
        correct = seed_mlp(x).argmax(1) == y
    rows = {s.label: s for s in compare.settings(0.3, 3.0, 1, 20)}
    for label in ("PGD Linf 40", "DDN L2 100"):
        s = rows[label]
        assert peers.supports("advlab", s)
        seconds, parts = compare.run_library("advlab", seed_mlp, x, y, s, batch_size=25)
        out = compare.summarise(parts, correct, y)
        assert out["invalid"] == 0 and seconds > 0
        assert out["success"] >= 0.95, (label, out)
