"""``advlab attack`` and ``advlab list attacks``: structure and files, not numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from advlab.attacks import available_attacks
from advlab.cli import app
from advlab.commands.attack import parse_params, short_paper

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(seed_mlp, tmp_path_factory):
    from advlab.models import save_model

    folder = tmp_path_factory.mktemp("mlp")
    save_model(seed_mlp, folder, dataset="mnist-sample")
    return folder


def test_attack_prints_a_summary_and_writes_results(model_dir, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["attack", "pgd", "--model", str(model_dir), "--norm", "linf", "--eps", "0.1", "--n", "40",
         "--steps", "10", "--param", "restarts=2", "--out", str(out)],
        env={"COLUMNS": "120"},
    )
    assert res.exit_code == 0, res.output
    for label in ("clean accuracy", "robust accuracy", "success rate", "median", "images/s", "forward / backward"):
        assert label in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 40 and summary["attack"] == "pgd"
    assert summary["params"]["steps"] == 10 and summary["params"]["restarts"] == 2
    assert 0.0 <= summary["robust_accuracy"] <= summary["clean_accuracy"]
    with np.load(out / "adv.npz") as arrays:
        assert arrays["x_adv"].shape == (40, 1, 28, 28)
        assert float(np.abs(arrays["norm_linf"]).max()) <= 0.1 + 1e-5
    from advlab.result import AttackResult

    assert len(AttackResult.load(out / "adv.npz")) == 40


def test_targeted_attack_with_a_target_rule(model_dir):
    res = runner.invoke(
        app, ["attack", "fgsm", "--model", str(model_dir), "--eps", "0.3", "--n", "20", "--targeted", "--targets", "next"]
    )
    assert res.exit_code == 0, res.output
    assert "targeted" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["attack", "pgdd", "--model", "seed-mlp", "--eps", "0.1"], "did you mean pgd"),
        (["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--steps", "3"], "parameters are"),
        (["attack", "pgd", "--model", "seed-mlp"], "eps"),
        (["attack", "pgd", "--model", "no/such/model", "--eps", "0.1"], "no such folder or file"),
        (["attack", "apgd", "--model", "seed-mlp", "--norm", "l1", "--eps", "1"], "supports norms"),
        (["attack", "pgd", "--model", "seed-mlp", "--eps", "0.1", "--param", "steps"], "key=value"),
    ],
)
def test_bad_requests_get_one_line_errors(args, message):
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_list_attacks_shows_the_registry():
    res = runner.invoke(app, ["list", "attacks"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name, cls in available_attacks().items():
        assert name in res.output
        assert short_paper(cls.paper) in res.output


def test_parse_params_reads_json_values():
    assert parse_params(["steps=10", "loss=dlr", "early-stop=false", 'attacks=[{"name": "apgd"}]']) == {
        "steps": 10,
        "loss": "dlr",
        "early_stop": False,
        "attacks": [{"name": "apgd"}],
    }
    assert short_paper("Madry et al. 2017, Towards deep learning, arXiv:1706.06083") == "Madry et al. 2017, arXiv:1706.06083"


def test_list_attacks_fits_80_columns_without_cutting_anything():
    import re

    res = runner.invoke(app, ["list", "attacks"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in res.output
    names = {line.split()[0] for line in lines if line.strip() and not line.startswith(" " * 10)}
    for name, cls in available_attacks().items():
        assert name in names, name  # whole, never cut
        for arxiv in re.findall(r"arXiv:\d{4}\.\d{4,5}", cls.paper):
            assert arxiv in res.output, (name, arxiv)
        assert cls.family.split(",")[0] in res.output


def test_more_images_than_the_split_holds_is_an_error_not_a_silent_cap(model_dir):
    res = runner.invoke(app, ["attack", "fgsm", "--model", str(model_dir), "--eps", "0.1", "--n", "5000"], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "--n 5000" in res.output and "holds 1000 images" in res.output and "--n 1000" in res.output


def test_infinite_eps_is_explained(model_dir):
    res = runner.invoke(app, ["attack", "pgd", "--model", str(model_dir), "--eps", "inf"], env={"COLUMNS": "300"})
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "--eps inf is an unbounded budget" in text and "ddn" in text and "finite --eps" in text
    # and through the Python API: the message says why inf is refused
    import advlab

    with pytest.raises(ValueError, match="inf"):
        advlab.get_attack("pgd").check_threat(advlab.ThreatModel("linf", eps=float("inf")))
