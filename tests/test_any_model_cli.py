"""Any model, any image data from the CLI (issue 18): ``module:factory`` + safetensors weights
and ONNX exports, on ``.npz`` arrays and PNG folders, with mean/std normalisation. Each entry
point (evaluate, attack, serve) must give what the Python API gives on the same tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import advlab
from _user_model import MEAN, STD, fold_normalisation, user_mlp
from advlab.cli import app
from advlab.models.onnx_import import load_onnx, onnx_available
from advlab.models.preprocessing import InputAdapter
from advlab.models.spec import load_weights

pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning", "ignore:The feature will be removed:DeprecationWarning")
runner = CliRunner()
N = 40
FACTORY = "_user_model:user_mlp"
NORM = ["--mean", str(MEAN), "--std", str(STD)]
PLAN = f"""
samples = {N}
batch_size = {N}
minimal = false
audit = false
escalate = false
examples = 2
[[threat]]
norm = "linf"
eps = [0.05, 0.1]
attacks = ["fgsm"]
"""
needs_onnx = pytest.mark.skipif(not onnx_available(), reason="ONNX models need the 'onnx' extra: pip install 'advlab[onnx]'")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("anymodel")


@pytest.fixture(scope="module")
def weights(seed_mlp, folder):
    path = folder / "user.safetensors"
    save_file(fold_normalisation(seed_mlp.state_dict()), str(path))
    return path


@pytest.fixture(scope="module")
def onnx_file(weights, folder):
    if not onnx_available():
        pytest.skip("ONNX models need the 'onnx' extra")
    net = load_weights(user_mlp(), weights).eval()
    path = folder / "user.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return path


@pytest.fixture(scope="module")
def digits(mnist):
    """N test digits as bytes (what files hold) and their labels."""
    x = (mnist.x_test[:N] * 255).round().to(torch.uint8).numpy()
    return x, mnist.y_test[:N].numpy()


@pytest.fixture(scope="module")
def npz(digits, folder):
    x, y = digits
    path = folder / "digits.npz"
    np.savez(path, x=x, y=y)
    return path, torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


@pytest.fixture(scope="module")
def pngs(digits, folder):
    """One subfolder per class; the loader reads classes in order, files by name."""
    from PIL import Image

    x, y = digits
    root = folder / "pngs"
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0], mode="L").save(root / str(label) / f"{i:03d}.png")
    order = sorted(range(N), key=lambda i: (int(y[i]), i))
    return root, torch.from_numpy(x[order].astype(np.float32) / 255), torch.from_numpy(y[order].astype(np.int64))


@pytest.fixture(scope="module")
def plan_file(folder):
    path = folder / "plan.toml"
    path.write_text(PLAN)
    return path


def model_args(kind, weights, onnx_path):
    return [FACTORY, "--weights", str(weights)] if kind == "factory" else [str(onnx_path)]


def api_model(kind, weights, onnx_path):
    net = load_weights(user_mlp(), weights) if kind == "factory" else load_onnx(onnx_path)
    return InputAdapter(net.eval(), mean=(MEAN,), std=(STD,)).eval()


KINDS = ["factory", pytest.param("onnx", marks=needs_onnx)]


def _data(which, npz, pngs):
    return npz if which == "npz" else pngs


def _invoke(args):
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["npz", "png"])
def test_evaluate_matches_the_python_api(kind, which, request, weights, npz, pngs, plan_file, tmp_path):
    onnx_path = request.getfixturevalue("onnx_file") if kind == "onnx" else None
    path, x, y = _data(which, npz, pngs)
    spec, *rest = model_args(kind, weights, onnx_path)
    out = tmp_path / "cli"
    _invoke(["evaluate", spec, *rest, *NORM, "--data", str(path), "--plan", str(plan_file), "--out", str(out), "--no-report"])
    cli = json.loads((out / "results.json").read_text())
    api = advlab.evaluate(api_model(kind, weights, onnx_path), (x, y), plan_file, out=tmp_path / "api", report=False).data
    assert cli["clean_accuracy"] == api["clean_accuracy"]
    got = [r["robust_accuracy"] for r in cli["threats"][0]["results"]]
    assert got == [r["robust_accuracy"] for r in api["threats"][0]["results"]]
    assert got[0] >= got[1] and got[1] < cli["clean_accuracy"]  # the budgets are real: fgsm breaks some digits
    assert cli["data"]["samples"] == N and cli["data"]["name"] == str(path)
    assert cli["model"]["name"] == spec
    assert "0.1307" in cli["model"]["preprocessing"] and "0.3081" in cli["model"]["preprocessing"]


def test_normalisation_is_what_makes_the_model_right(seed_mlp, weights, npz, plan_file, tmp_path):
    """With --mean/--std the user's model computes the seed MLP; without them it is a different
    (wrong) function of the pixels: the normalisation runs inside the model."""
    path, x, y = npz
    expected = float((seed_mlp(x).argmax(1) == y).float().mean())
    results = {}
    for label, extra in (("with", NORM), ("without", [])):
        out = tmp_path / label
        _invoke(["evaluate", FACTORY, "--weights", str(weights), *extra, "--data", str(path), "--plan", str(plan_file), "--out", str(out)])
        results[label] = json.loads((out / "results.json").read_text())
    assert abs(results["with"]["clean_accuracy"] - expected) <= 1 / N
    assert results["with"]["clean_accuracy"] - results["without"]["clean_accuracy"] > 0.2
    assert results["without"]["model"]["preprocessing"] is None
    html = (tmp_path / "with" / "report.html").read_text()
    assert "0.1307" in html and "preprocessing" in html


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["npz", "png"])
def test_attack_matches_the_python_api(kind, which, request, weights, npz, pngs, tmp_path):
    onnx_path = request.getfixturevalue("onnx_file") if kind == "onnx" else None
    path, x, y = _data(which, npz, pngs)
    out = tmp_path / "run"
    _invoke(["attack", "fgsm", "--model", *model_args(kind, weights, onnx_path), *NORM, "--data", str(path), "--eps", "0.1", "--out", str(out)])
    cli = json.loads((out / "summary.json").read_text())
    api = advlab.get_attack("fgsm")(api_model(kind, weights, onnx_path), x, y, advlab.ThreatModel("linf", eps=0.1)).summary()
    assert cli["n"] == N
    assert cli["robust_accuracy"] == api["robust_accuracy"] and cli["clean_accuracy"] == api["clean_accuracy"]
    assert "mean (0.1307)" in cli["preprocessing"]


@pytest.mark.parametrize("kind", KINDS)
def test_serve_plays_the_same_model(kind, request, weights, monkeypatch):
    pytest.importorskip("fastapi")
    import uvicorn
    from fastapi.testclient import TestClient

    onnx_path = request.getfixturevalue("onnx_file") if kind == "onnx" else None
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: started.update(app=application))
    _invoke(["serve", "--model", *model_args(kind, weights, onnx_path), *NORM])
    client = TestClient(started["app"])
    spec = model_args(kind, weights, onnx_path)[0]
    assert client.get("/api/info").json()["model"] == spec
    net = api_model(kind, weights, onnx_path)
    for sample in client.get("/api/samples?count=3").json():
        image = torch.tensor(sample["image"]).reshape(1, 1, 28, 28)
        got = client.post("/api/predict", json={"image": sample["image"]}).json()["probabilities"]
        assert np.allclose(got, torch.softmax(net(image), 1)[0].detach().numpy(), atol=1e-5)
        attacked = client.post("/api/attack", json={"image": sample["image"], "label": sample["label"], "attack": "fgsm", "eps": 0.1}).json()
        adv = advlab.get_attack("fgsm")(net, image, torch.tensor([sample["label"]]), advlab.ThreatModel("linf", eps=0.1))
        assert attacked["adversarial"]["label"] == int(net(adv.x_adv).argmax(1))
        assert np.allclose(attacked["adversarial_image"], adv.x_adv.flatten().numpy(), atol=1e-5)


# ---------------------------------------------------------------------------- clear errors
def _fails(args, *fragments):
    res = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    for f in fragments:
        assert f in text, text
    return text


def test_weights_are_loaded_strictly_and_errors_name_the_keys(seed_mlp, weights, npz, tmp_path):
    state = fold_normalisation(seed_mlp.state_dict())
    state["extra.weight"] = torch.zeros(2)
    del state["3.bias"]
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    _fails(["attack", "fgsm", "--model", FACTORY, "--weights", str(bad), "--eps", "0.1", "--n", "5"], "missing keys 3.bias", "unexpected keys extra.weight")
    state = fold_normalisation(seed_mlp.state_dict())
    state["1.weight"] = torch.zeros(20, 100)
    save_file(state, str(bad))
    _fails(["attack", "fgsm", "--model", FACTORY, "--weights", str(bad), "--eps", "0.1"], "1.weight (20, 100) vs (20, 784)")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "model.pt"], ["never loads pickled"]),
        (["--model", FACTORY, "--weights", "w.pth"], ["never a pickle"]),
        (["--model", "_user_model:needs_an_argument"], ["without arguments"]),
        (["--model", "_user_model:nothing"], ["has no attribute 'nothing'"]),
        (["--model", "no_such_module_xyz:net"], ["cannot import 'no_such_module_xyz'"]),
        (["--model", "seed-mlp", "--weights", "w.safetensors"], ["--weights applies to a module:factory"]),
        (["--model", "seed-mlp", "--mean", "0.1,0.2", "--std", "0.3,0.3"], ["--mean/--std have 2 values", "1 channels"]),
        (["--model", "seed-mlp", "--box", "1,0"], ["--box must be LOW,HIGH"]),
        (["--model", "seed-mlp", "--data", "mnist-sampel"], ["did you mean 'mnist-sample'"]),
    ],
)
def test_bad_models_and_options_get_one_line_errors(args, fragments):
    _fails(["attack", "fgsm", "--eps", "0.1", *args], *fragments)


def _npz(tmp_path, x, y):
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def test_data_that_does_not_fit_the_model_is_refused_before_any_attack(tmp_path, digits):
    x, y = digits
    # shape: 32x32 images for a 28x28 model
    _fails(["evaluate", "seed-mlp", "--out", str(tmp_path / "o"), "--data", _npz(tmp_path, np.zeros((4, 1, 32, 32), np.float32), y[:4])], "does not fit the model", "cannot take x of shape (2, 1, 32, 32)", "784 values per sample")
    # range: bytes stored as float without --box
    _fails(["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--data", _npz(tmp_path, x.astype(np.float32), y)], "outside the box [0, 1]", "--box 0,255")
    # dtype
    _fails(["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--data", _npz(tmp_path, x.astype(np.int64), y)], "dtype int64")
    # labels the model has no logit for
    _fails(["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--data", _npz(tmp_path, x, np.full(len(y), 12))], "13 classes but the model returns 10 logits")
    # missing arrays
    path = tmp_path / "wrong.npz"
    np.savez(path, images=x)
    _fails(["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--data", str(path)], "needs arrays 'x' and 'y'")
    # images of different sizes
    from PIL import Image

    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    Image.new("L", (28, 28)).save(root / "a" / "1.png")
    Image.new("L", (30, 28)).save(root / "a" / "2.png")
    _fails(["attack", "fgsm", "--model", "seed-mlp", "--eps", "0.1", "--data", str(root)], "differ in size")


def test_box_maps_raw_values_to_pixel_space(tmp_path, digits, seed_mlp):
    """Float data in [0, 255] with --box 0,255 is read as pixels in [0, 1], and the model (wrapped
    to receive [0, 255]) sees the raw values: a model trained on bytes works unchanged."""
    from advlab.commands._common import load_inputs

    x, y = digits
    path = _npz(tmp_path, x.astype(np.float32), y)
    resolved, data = load_inputs("seed-mlp", path, box="0,255")
    assert float(data.x_test.max()) <= 1.0 and torch.allclose(data.x_test * 255, torch.from_numpy(x.astype(np.float32)), atol=1e-3)
    assert "[0, 255]" in resolved.preprocessing
    # the wrapped seed MLP gets 255x its usual input: a different function than the plain seed MLP
    assert not torch.allclose(resolved.module(data.x_test), seed_mlp(data.x_test))


def test_npy_pair_and_npy_folder(tmp_path, digits, mnist):
    from advlab.data.files import load_data_spec

    x, y = digits
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    pair = load_data_spec(f"{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}")
    folder = load_data_spec(str(tmp_path))
    assert torch.equal(pair.x_test, folder.x_test) and torch.equal(pair.y_test, torch.from_numpy(y))
    assert torch.allclose(pair.x_test, mnist.x_test[:N], atol=1e-6)


def test_file_py_factory_spec(tmp_path, weights):
    from advlab.models.spec import resolve_model

    source = Path(__file__).with_name("_user_model.py")
    resolved = resolve_model(f"{source}:user_mlp", weights=weights)
    reference = load_weights(user_mlp(), weights)
    z = torch.rand(3, 1, 28, 28)
    assert torch.equal(resolved.module(z), reference(z)) and resolved.source == "factory"


def test_input_adapter_passes_hidden_activations_through(seed_mlp, mnist, weights):
    """The playground draws a wrapped model's hidden layer when the model has one."""
    x = mnist.x_test[:3]
    wrapped = InputAdapter(seed_mlp, mean=(0.0,), std=(2.0,))
    assert torch.allclose(wrapped.activations(x)["hidden"], seed_mlp.activations(x / 2)["hidden"])
    assert not hasattr(InputAdapter(user_mlp()), "activations")


def test_onnx_without_the_extra_names_the_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # as if it were not installed
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    _fails(["attack", "fgsm", "--model", str(path), "--eps", "0.1"], "pip install 'advlab[onnx]'")


def test_a_small_file_names_the_samples_it_has(npz, tmp_path):
    path, _, _ = npz
    _fails(["evaluate", "seed-mlp", "--data", str(path), "--out", str(tmp_path / "o")], f"the data has {N}", f"--samples {N}")


def test_an_idx_folder_is_read_as_data(tmp_path):
    from advlab.data.files import load_data_spec
    from test_data import write_dataset

    folder = write_dataset(tmp_path / "my-idx", n_train=20, n_test=12)
    data = load_data_spec(str(folder))
    assert data.x_test.shape == (12, 1, 28, 28) and data.y_test.tolist() == [i % 10 for i in range(12)]
    assert float(data.x_test.max()) <= 1.0 and data.name == str(folder)
    out = tmp_path / "run"
    _invoke(["attack", "fgsm", "--model", "seed-mlp", "--data", str(folder), "--eps", "0.1", "--out", str(out)])
    assert json.loads((out / "summary.json").read_text())["n"] == 12


def test_colour_images_keep_their_channels_and_classes_are_sorted_folder_names(tmp_path):
    from PIL import Image

    from advlab.data.files import load_data_spec

    for cls, colour in (("dog", (255, 0, 0)), ("cat", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 6), colour).save(tmp_path / cls / "a.png")
    data = load_data_spec(str(tmp_path))
    assert data.classes == ["cat", "dog"] and data.y_test.tolist() == [0, 1]
    assert data.x_test.shape == (2, 3, 6, 8)
    assert data.x_test[0, 2].min() == 1.0 and data.x_test[1, 0].min() == 1.0 and data.x_test[1, 2].max() == 0.0


def test_a_double_precision_factory_model_stays_double(tmp_path, weights, npz):
    """A float64 model is not cast down: the check feeds it its own precision, the attack runs."""
    source = tmp_path / "double.py"
    source.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom _user_model import user_mlp\n\ndef net():\n    return user_mlp().double()\n")
    from advlab.commands._common import load_inputs

    path, _, _ = npz
    resolved, _ = load_inputs(f"{source}:net", str(path))
    assert next(resolved.module.parameters()).dtype == torch.float64
    _invoke(["attack", "fgsm", "--model", f"{source}:net", "--data", str(path), "--eps", "0.1"])
