"""Damaged files, absurd configs, occupied run folders: each a one-line error naming the file
and the problem, before any work runs; a failed run leaves nothing that looks resumable."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import advlab
from advlab.cli import app
from advlab.evaluation.store import RunFolderError, RunLockedError, Store
from advlab.models import load_model, save_model
from advlab.models.io import ModelFileError

runner = CliRunner()
TINY = {"threats": [{"norm": "linf", "eps": [0.1], "attacks": ["fgsm"]}], "samples": 8, "batch_size": 8,
        "minimal": False, "audit": False}


@pytest.fixture()
def model_dir(seed_mlp, tmp_path):
    folder = tmp_path / "mlp"
    save_model(seed_mlp, folder, dataset="mnist-sample")
    return folder


def _cli_error(args: list[str]) -> str:
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code != 0
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit), res.output
    return " ".join(res.output.split())


def test_a_pickle_renamed_safetensors_is_refused_unread(model_dir, seed_mlp):
    torch.save(seed_mlp.state_dict(), model_dir / "model.safetensors")
    with pytest.raises(ModelFileError, match=r"model.safetensors is a pickle .*never loads pickles"):
        load_model(model_dir)
    assert "is a pickle" in _cli_error(["evaluate", str(model_dir), "--out", str(model_dir.parent / "run")])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_weights_name_the_file(model_dir, damage):
    path = model_dir / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"this is not a weights file" * 10, "truncated": raw[: len(raw) // 2], "empty": b""}[damage])
    with pytest.raises(ModelFileError, match=r"model.safetensors (is not a valid safetensors file|is truncated)"):
        load_model(model_dir)
    msg = _cli_error(["attack", "fgsm", "--model", str(model_dir), "--eps", "0.1", "--n", "4"])
    assert "model.safetensors" in msg


@pytest.mark.parametrize("hidden,word", [(1e9, "does not build"), (10**9, "parameters")])
def test_an_absurd_config_is_refused_before_allocating(model_dir, hidden, word):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["kwargs"] = {"hidden": hidden}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=word):  # 784 x 1e9 floats would be 3 TB
        load_model(model_dir)


def test_weights_of_another_shape_are_named(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["kwargs"] = {"hidden": 30}
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"fc1.weight: file \(20, 784\), model \(30, 784\)"):
        load_model(model_dir)


def test_out_pointing_at_a_file_is_refused(model_dir, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    with pytest.raises(RunFolderError, match="existing file"):
        advlab.evaluate(load_model(model_dir), "mnist-sample", TINY, out=target)
    assert target.read_text() == "keep me"
    assert "existing file" in _cli_error(["evaluate", str(model_dir), "--out", str(target), "--samples", "8"])


def test_a_failed_run_leaves_no_folder(seed_mlp, tmp_path):
    from test_model_faults import NaNRows

    out = tmp_path / "run"
    with pytest.raises(advlab.InputError, match=r"NaN logits .* first at sample index 2"):
        advlab.evaluate(NaNRows(seed_mlp, bad=[2]), "mnist-sample", TINY, out=out)
    assert not out.exists(), "a failed run left a folder that looks resumable"


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_free(tmp_path):
    first = Store(tmp_path / "run", {"plan": "a"})
    with pytest.raises(RunLockedError, match=r"being written by process \d+"):
        Store(tmp_path / "run", {"plan": "a"})
    Store(tmp_path / "run", {"plan": "a"}, rank=1).close()  # another rank of the same run is fine
    first.close()
    Store(tmp_path / "run", {"plan": "a"}).close()  # released: a resumed run proceeds
    shutil.rmtree(tmp_path / "run")
