"""Long operations are never silent (issue 18): one helper, a bar with an ETA on a terminal,
plain periodic lines elsewhere, used by training, black-box attacks, substitute and AdvGAN
training, universal and patch fitting, and evaluations."""

from __future__ import annotations

import io
import re

import pytest

import advlab
from advlab.progress import format_seconds, progress, progress_mode, track


@pytest.fixture
def plain(monkeypatch):
    monkeypatch.setenv("ADVLAB_PROGRESS", "plain")
    monkeypatch.setenv("ADVLAB_PROGRESS_INTERVAL", "0")


def test_plain_lines_report_share_elapsed_and_time_left(plain):
    out = io.StringIO()
    with progress("work", 4, stream=out) as advance:
        for _ in range(4):
            advance(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[advlab] work: 0/4, started"
    assert re.fullmatch(r"\[advlab\] work: 1/4 \(25%\), \d+\.\d s elapsed, about \d+\.\d s left", lines[1])
    assert re.fullmatch(r"\[advlab\] work: 4/4 done in \d+\.\d s", lines[-1])
    assert len(lines) == 5  # start, after 1, 2 and 3 (never "4/4 ... left"), end


def test_a_failure_is_reported_as_stopped(plain):
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress("work", 10, stream=out) as advance:
        advance(3)
        raise RuntimeError("boom")
    assert "3/10 stopped in" in out.getvalue()


def test_modes(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("ADVLAB_PROGRESS", raising=False)
    assert progress_mode(Tty()) == "bar" and progress_mode(io.StringIO()) == "plain"
    monkeypatch.setenv("ADVLAB_PROGRESS", "off")
    out = io.StringIO()
    with progress("work", 3, stream=out) as advance:
        advance(3)
    assert out.getvalue() == ""
    monkeypatch.setenv("ADVLAB_PROGRESS", "bar")
    with progress("work", 3, stream=out) as advance:
        advance(3)
    assert "work" in out.getvalue() and "ETA" in out.getvalue() and "3/3" in out.getvalue()


def test_track_passes_a_callback_through_and_false_silences(plain, capsys):
    seen = []
    with track(seen.append, "x", 3) as advance:
        advance(2)
    with track(False, "quiet", 3) as advance:
        advance(3)
    assert seen == [2] and "quiet" not in capsys.readouterr().err


def test_format_seconds():
    assert format_seconds(4.23) == "4.2 s" and format_seconds(75.3) == "75 s"
    assert format_seconds(3 * 60 + 5) == "3 min 05 s" and format_seconds(3 * 3600 + 60) == "3 h 01 min"


def test_long_operations_show_their_progress(plain, capsys, tmp_path, seed_mlp, cnn, mnist):
    from advlab.attacks.advgan import train_advgan
    from advlab.attacks.patch import PatchAttack
    from advlab.attacks.substitute import train_substitute
    from advlab.attacks.universal import Universal

    x, y = mnist.x_test[:8], mnist.y_test[:8]
    advlab.trained_model("seed-mlp", cache_dir=tmp_path, training={"epochs": 1})
    advlab.attack("square", seed_mlp, x[:2], y[:2], advlab.ThreatModel("linf", eps=0.3), max_queries=10)
    train_substitute(seed_mlp, x, rounds=1, epochs=1, architecture="seed-mlp")
    train_advgan(seed_mlp, x, y, epochs=1, width=4, res_blocks=1)
    Universal(epochs=1).fit(seed_mlp, x, advlab.ThreatModel("linf", eps=0.1))
    PatchAttack(epochs=1, size=6).fit(cnn, x, y)
    advlab.evaluate(seed_mlp, (x, y), {"samples": 4, "minimal": False, "audit": False, "threats": [{"norm": "linf", "eps": [0.1], "attacks": ["fgsm"]}]})
    err = capsys.readouterr().err
    for what in ("training seed-mlp", "square on 2 inputs", "substitute round 1/1", "AdvGAN training", "universal perturbation", "adversarial patch", "evaluating"):
        assert f"[advlab] {what}" in err, what
        assert re.search(re.escape(what) + r"[^\n]*: \d+/\d+ done in", err), what


def test_progress_false_is_silent(plain, capsys, tmp_path, seed_mlp, mnist):
    from advlab.attacks.universal import Universal

    advlab.trained_model("seed-mlp", cache_dir=tmp_path, training={"epochs": 1}, progress=False)
    Universal(epochs=1).fit(seed_mlp, mnist.x_test[:4], advlab.ThreatModel("linf", eps=0.1), progress=False)
    assert "[advlab]" not in capsys.readouterr().err


def test_query_attacks_count_progress_in_queries(plain, capsys, seed_mlp, mnist):
    """Within a batch the unit is the query, so the time left is known before the batch ends;
    the hook is removed afterwards and copies of the model report to the same meter."""
    x, y = mnist.x_test[:6], mnist.y_test[:6]
    result = advlab.attack("hopskipjump", seed_mlp, x, y, advlab.ThreatModel("l2"), max_queries=200, batch_size=6)
    err = capsys.readouterr().err
    counts = [int(m) for m in re.findall(r"up to 200 queries each: (\d+)/1200", err)]
    assert counts[0] == 0 and counts[-1] == 1200 and counts == sorted(counts)
    assert any(0 < c < 1200 for c in counts[1:-1]), err  # progress inside the one batch
    assert int(result.queries.sum()) <= 1200
    assert not seed_mlp._forward_hooks
