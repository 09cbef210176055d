"""`advlab demo`: the report's experiment end to end, its numbers, files and CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from advlab.demo import EXPECTATIONS, DemoConfig, run_demo, select_images, spread_goals
from advlab.report import Figure, Section, Table, render_html, write_report
from advlab.validation import InputError

RESULT_KEYS = {
    "experiment", "advlab_version", "config", "dataset", "model", "fooling", "targeted",
    "lambda_sweep", "thresholding", "environment", "expectations", "seconds",
}
METRIC_KEYS = {
    "goal_reached", "misclassified", "true_confidence_dropped", "mean_goal_confidence",
    "mean_l2", "median_l2", "mean_true_confidence_before", "mean_true_confidence_after",
}
FIGURES = ("fooling-activations", "targeted-pairs", "lambda-sweep", "thresholding")


@pytest.fixture(scope="module")
def demo_run(seed_mlp, tmp_path_factory):
    """The demo's code path on 30 images (3 per class), with the session's trained seed MLP."""
    out = tmp_path_factory.mktemp("demo")
    seen: list[tuple[str, int]] = []

    from contextlib import contextmanager

    @contextmanager
    def progress(description, total):
        seen.append((description, total))
        yield lambda n: None

    results = run_demo(out, DemoConfig(images=30), model=seed_mlp, progress=progress)
    return out, results, seen


def test_the_reports_numbers_hold(demo_run):
    _, r, _ = demo_run
    assert r["model"]["test_accuracy"] >= 0.88
    assert r["fooling"]["goal_reached"] == 1.0
    assert r["fooling"]["predicted"] == r["fooling"]["goal_classes"] == list(range(10))
    assert min(r["fooling"]["goal_confidence"]) > 0.9
    t = r["targeted"]
    assert t["n"] == 30 and t["lam"] == 0.05 and t["goals_covered"] == list(range(10))
    assert t["true_confidence_dropped"] >= 0.90
    assert t["misclassified"] >= t["goal_reached"] >= 0.25
    assert t["mean_true_confidence_after"] < t["mean_true_confidence_before"]
    assert r["lambda_sweep"][0]["goal_reached"] >= 0.90
    assert r["thresholding"]["recovered"] >= 0.85
    assert r["thresholding"]["clean_accuracy"] >= 0.85
    assert all(e["passed"] for e in r["expectations"]), r["expectations"]
    assert {e["key"] for e in r["expectations"]} == {k for k, _, _ in EXPECTATIONS}


def test_lambda_sweep_trades_success_for_distance(demo_run):
    rows = demo_run[1]["lambda_sweep"]
    lams = [row["lam"] for row in rows]
    assert lams == sorted(lams) and 0.05 in lams and lams[0] <= 0.001 and lams[-1] >= 0.1
    l2 = [row["mean_l2"] for row in rows]
    success = [row["goal_reached"] for row in rows]
    # monotone up to noise: each larger lambda moves the image less (5% slack), and the ends differ clearly
    assert all(b <= a * 1.05 for a, b in zip(l2, l2[1:], strict=False)), l2
    assert l2[0] > 2 * l2[-1]
    assert success[0] > success[-1] + 0.3
    assert all(METRIC_KEYS <= set(row) for row in rows)


def test_demo_writes_a_self_contained_report(demo_run):
    out, r, seen = demo_run
    assert RESULT_KEYS <= set(r)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["targeted"]["goal_reached"] == r["targeted"]["goal_reached"]
    assert set(on_disk["seconds"]) >= {"network_test_and_save", "fooling", "targeted", "lambda_sweep", "report", "total"}
    assert "training" not in on_disk["seconds"]  # the model was given, not trained here
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not load anything from the network"
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    for title in ("Fooling images from noise", "Targeted attack with a prior", "sweep over lambda", "Binary thresholding"):
        assert title in html
    assert [d for d, _ in seen][:2] == ["fooling images from noise", "targeted attack, λ=0.05"]
    assert (out / "targeted-attack.npz").is_file()


def test_demo_saves_the_model_it_attacked(demo_run, seed_mlp, mnist):
    from advlab.models import load_model, read_config

    out, r, _ = demo_run
    model = load_model(out / "model")
    cfg = read_config(out / "model")
    assert cfg["name"] == "seed-mlp" and cfg["test_accuracy"] == r["model"]["test_accuracy"]
    with torch.no_grad():
        assert torch.equal(model(mnist.x_test[:50]), seed_mlp(mnist.x_test[:50]))


def test_selection_is_correct_balanced_and_goals_differ(seed_mlp, mnist):
    idx = select_images(seed_mlp, mnist.x_test, mnist.y_test, 25, 10)
    y = mnist.y_test[idx]
    with torch.no_grad():
        assert torch.equal(seed_mlp(mnist.x_test[idx]).argmax(dim=1), y)
    assert torch.bincount(y, minlength=10).min() >= 2
    goals = spread_goals(y, 10)
    assert bool((goals != y).all()) and set(goals.tolist()) == set(range(10))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"images": 5}, "images must be"), ({"lam": -0.05}, "lambda values"), ({"lambdas": (0.1, -1.0)}, "lambda values"),
     ({"steps": 0}, "steps must be"), ({"threshold": 1.5}, "threshold"), ({"seed": -1}, "seed")],
)
def test_bad_demo_settings_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        DemoConfig(**kwargs)


def test_cli_demo_writes_report_and_results(seed_mlp, tmp_path):
    from advlab.cli import app
    from advlab.models import save_model

    save_model(seed_mlp, tmp_path / "model-in")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "10", "--steps", "300", "--model", str(tmp_path / "model-in")])
    assert res.exit_code == 0, res.output
    assert "report.html" in res.output and "seed MLP test accuracy" in res.output
    results = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(results) and results["targeted"]["n"] == 10
    assert results["config"]["steps"] == 300 and results["model"]["trained_here"] is False
    assert "data:image/png;base64," in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "args, message",
    [(["--images", "5"], "images must be"), (["--steps", "0"], "steps must be"), (["--model", "/nonexistent/folder"], "config.json")],
)
def test_cli_demo_bad_inputs_exit_with_a_message(tmp_path, args, message):
    from advlab.cli import app

    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "x" / "results.json").exists()


# ---------------------------------------------------------------------------- the report module
def _png() -> bytes:
    from matplotlib.figure import Figure as MplFigure

    from advlab.report import to_png

    fig = MplFigure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    return to_png(fig, dpi=30)


def test_report_renders_sections_tables_and_escapes_text(tmp_path):
    fig = Figure("curve", _png(), "a <caption>")
    sec = Section("Results & more", "First <b>paragraph</b>.\n\nSecond one.", figures=[fig],
                  tables=[Table(["name", "value"], [["a", 0.123456], ["b", None]], caption="numbers")],
                  metrics={"accuracy": 0.9}, checks={"floor holds": True, "other": False})
    path = write_report(tmp_path, "Title", [sec, Section("Empty")], facts={"seed": 0})
    html = path.read_text()
    assert "&lt;b&gt;paragraph&lt;/b&gt;" in html and "<b>paragraph" not in html
    assert html.count("<p>") >= 2 and "0.123" in html and 'id="results-more"' in html
    assert 'class="badge pass"' in html and 'class="badge fail"' in html
    assert (tmp_path / "curve.png").is_file() and html.count("data:image/png;base64,") == 1
    assert render_html("T", [sec]).startswith("<!DOCTYPE html>")


def test_report_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="not PNG"):
        Figure("x", b"GIF89a")
    with pytest.raises(ValueError, match="plain file name"):
        Figure("../escape", _png())
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        Table(["a", "b"], [[1]])
    png = _png()
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path, "T", [Section("A", figures=[Figure("f", png)]), Section("B", figures=[Figure("f", png)])])


def test_one_training_time_and_no_bare_fractions(tmp_path, monkeypatch):
    """The report shows the training loop's time in the network section and in the timing
    table alike (it showed two different numbers), and a fraction of 1 as 1.000, not 1."""
    from advlab.models import DEFAULT_TRAINING
    from advlab.report.html import format_value

    monkeypatch.setitem(DEFAULT_TRAINING, "seed-mlp", {**DEFAULT_TRAINING["seed-mlp"], "epochs": 1})
    r = run_demo(tmp_path, DemoConfig(images=10, steps=100, lambdas=(0.05,)))
    assert r["seconds"]["training"] == r["model"]["train_seconds"] > 0
    html = (tmp_path / "report.html").read_text()
    assert html.count(format_value(r["model"]["train_seconds"])) >= 2
    assert not re.search(r'class="value">\s*1\s*<', html)
    assert (format_value(1.0), format_value(0.97), format_value(2.0893), format_value(61.23)) == ("1.000", "0.970", "2.089", "61.23")
