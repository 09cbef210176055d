"""The batch shape of CPU passes (advlab.chunking): a rule from what autograd saves per row,
user settings, and results that do not depend on it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import get_attack
from advlab.chunking import calibrate, chunk_rows, run_chunked, saved_bytes_per_row, set_chunk_rows
from advlab.threat import ThreatModel
from advlab.validation import InputError


def test_the_rule_chunks_the_cnn_finer_than_the_mlp(seed_mlp, cnn, mnist):
    x = mnist.x_test[:300]
    mlp_row, cnn_row = saved_bytes_per_row(seed_mlp, x), saved_bytes_per_row(cnn, x)
    assert cnn_row > 20 * mlp_row  # conv feature maps against a 20-unit hidden layer
    assert mlp_row >= x[0].numel() * 4  # the input row itself is kept
    mlp_rows, cnn_rows = chunk_rows(seed_mlp, x), chunk_rows(cnn, x)
    assert cnn_rows is not None and 16 <= cnn_rows < 300
    assert mlp_rows is None or mlp_rows > cnn_rows
    assert chunk_rows(cnn, x[:64]) is None  # a small batch: one piece


def test_the_probe_leaves_the_model_as_it_was(mnist):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)).train()
    stats = model[2].running_mean.clone()
    assert saved_bytes_per_row(model, mnist.x_test[:4]) > 0
    assert model.training and model[2].training and torch.equal(model[2].running_mean, stats)


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 40), n=st.integers(1, 40))
def test_rows_do_not_depend_on_the_chunking(cnn, mnist, rows, n):
    x = mnist.x_test[:n]
    with torch.no_grad():
        whole, chunked = cnn(x), run_chunked(cnn, x, rows)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_a_user_setting_wins_and_is_checked(cnn, mnist):
    x = mnist.x_test[:200]
    try:
        set_chunk_rows(cnn, 50)
        assert chunk_rows(cnn, x) == 50
        set_chunk_rows(cnn, None)
        assert chunk_rows(cnn, x) is None
        threat = ThreatModel("linf", eps=0.1)
        one_piece = get_attack("fgsm")(cnn, x[:40], mnist.y_test[:40], threat)
        set_chunk_rows(cnn, 7)
        chunked = get_attack("fgsm")(cnn, x[:40], mnist.y_test[:40], threat)
        assert torch.equal(one_piece.success, chunked.success)
        assert torch.allclose(one_piece.x_adv, chunked.x_adv, atol=1e-5)
        for bad in (0, -3, 2.5, True, "fast"):
            with pytest.raises(InputError, match="rows per chunk"):
                set_chunk_rows(cnn, bad)
    finally:
        set_chunk_rows(cnn, "auto")


def test_calibration_keeps_a_measured_candidate(seed_mlp, mnist):
    x = mnist.x_test[:100]  # more rows than chunk_rows runs in one piece unprobed
    timings = calibrate(seed_mlp, x, candidates=(None, 32, 16), repeats=1)
    assert set(timings) == {None, 32, 16} and all(t >= 0 for t in timings.values())
    best = min(timings, key=lambda r: timings[r])
    assert chunk_rows(seed_mlp, x) == best
