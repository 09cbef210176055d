"""``advlab universal``, ``patch``, ``apply-patch`` and ``poison``: files and schema, not numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from advlab.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def shared_model_cache(model_cache, seed_mlp, monkeypatch):
    # The CLI's reference models come from the same cache as the test fixtures.
    monkeypatch.setenv("ADVLAB_CACHE", str(model_cache))


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_universal_command(tmp_path):
    out = tmp_path / "uap"
    res = _ok(["universal", "--model", "seed-mlp", "--eps", "0.2", "--epochs", "1", "--fit-samples", "300", "--out", str(out)])
    assert "fooling rate" in res.output
    for name in ("perturbation.json", "perturbation.png", "perturbation.safetensors", "universal.png", "examples.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["held_out"]["fooling_rate"] <= 1 and results["fit_images"] == 300


def test_patch_then_apply_patch(tmp_path):
    out = tmp_path / "patch"
    _ok(["patch", "--model", "seed-mlp", "--target", "3", "--size", "6", "--size", "0.1", "--epochs", "1", "--draws", "1", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert [r["side"] for r in results["patches"]] == [6, 9]
    assert (out / "success_vs_area.png").is_file() and (out / "patched_examples.png").is_file()
    assert (out / "size-9" / "patch.png").is_file() and (out / "size-9" / "patch.json").is_file()
    npy = tmp_path / "applied" / "x.npy"
    res = _ok(["apply-patch", str(out / "size-9"), "--model", "seed-mlp", "--limit", "20", "--out", str(npy)])
    assert "classified as target 3" in res.output
    x = np.load(npy)
    assert x.shape == (20, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert json.loads(npy.with_suffix(".json").read_text())["target"] == 3
    _ok(["apply-patch", str(out / "size-6"), "--images", str(npy), "--location", "2,3", "--out", str(tmp_path / "y.npy")])
    bad = runner.invoke(app, ["apply-patch", str(out / "size-6"), "--location", "27,27", "--out", str(tmp_path / "z.npy")])
    assert bad.exit_code == 2 and "does not fit" in bad.output


def test_poison_commands(tmp_path):
    _ok(["poison", "label-flip", "--model", "seed-mlp", "--rate", "0", "--rate", "0.5", "--epochs", "1", "--out", str(tmp_path / "lf")])
    results = json.loads((tmp_path / "lf" / "results.json").read_text())
    assert [r["poison_rate"] for r in results["reports"]] == [0.0, 0.5]
    assert (tmp_path / "lf" / "label-flip_curve.png").is_file()
    res = _ok(["poison", "badnets", "--model", "seed-mlp", "--epochs", "2", "--out", str(tmp_path / "bd")])
    assert "attack success" in res.output and (tmp_path / "bd" / "triggered_examples.png").is_file()
    report = json.loads((tmp_path / "bd" / "results.json").read_text())["reports"][0]
    assert set(report) >= {"clean_accuracy", "target_class_accuracy", "attack_success", "poison_rate"}
    bad = runner.invoke(app, ["poison", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown poisoning attack" in bad.output
