"""The row-by-row LSTM victim: input handling, clean accuracy, attacks running unchanged."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from _attacks import pgd
from advlab.models import build_model, load_model
from advlab.threat import ThreatModel
from advlab.validation import InputError


def test_lstm_reads_rows_and_checks_shapes():
    model = build_model("lstm", input_size=28, hidden=8)
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 10)
    assert torch.allclose(model(x.reshape(3, 28, 28)), out)
    assert torch.allclose(model(x.reshape(3, 784)), out)
    with pytest.raises(InputError, match="28 features per step"):
        model(torch.rand(2, 1, 28, 14))
    with pytest.raises(InputError, match="expects images"):
        model(torch.rand(2, 100))


def test_trained_lstm_is_accurate_and_falls_to_pgd(lstm, mnist):
    x, y = mnist.x_test[:100], mnist.y_test[:100]
    results = {eps: pgd(steps=10)(lstm, x, y, ThreatModel("linf", eps=eps)) for eps in (0.1, 0.3)}
    clean = results[0.1].clean_accuracy
    assert clean >= 0.85
    assert results[0.1].robust_accuracy <= clean - 0.2
    assert results[0.3].robust_accuracy <= 0.1
    assert results[0.3].robust_accuracy <= results[0.1].robust_accuracy
    assert int(results[0.3].backwards.max()) <= 10


def test_advlab_train_builds_lstm(tmp_path, mnist):
    from advlab.cli import app

    out = tmp_path / "lstm"
    res = CliRunner().invoke(app, ["train", "lstm", "--out", str(out), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    model = load_model(out)
    assert model(mnist.x_test[:2]).shape == (2, 10)
    bad = CliRunner().invoke(app, ["train", "sklearn-svc", "--out", str(tmp_path / "svc")])
    assert bad.exit_code != 0 and "scikit-learn" in bad.output
