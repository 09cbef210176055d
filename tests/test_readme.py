"""The README's Python blocks run as written, in order, in one namespace (issue 18).

By default the sizes are shrunk so that the test takes seconds: every entry of ``SMALLER`` is a
piece of README text and its smaller stand-in, and each must occur in the README exactly once,
so a README edit that changes an example breaks this test instead of silently running the
full size.  ``ADVLAB_README_SIZES=full`` runs the blocks exactly as written (1005 s measured
on the project's busy 2-core machine).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

SMALLER = {
    "x, y = data.x_test[:100], data.y_test[:100]": "x, y = data.x_test[:6], data.y_test[:6]",
    "data.x_test[:500], data.y_test[:500], threat, steps=40": "data.x_test[:20], data.y_test[:20], threat, steps=5",
    'advlab.attack("cw-l2", model, x, y, tm, targets="random")': 'advlab.attack("cw-l2", model, x, y, tm, targets="random", steps=10, search_steps=2)',
    "max_queries=1000)": "max_queries=50)",
    'BlackBox(model, output="labels", budget=5000), x[:10], y[:10]': 'BlackBox(model, output="labels", budget=200), x[:2], y[:2]',
    "train_substitute(model, data.x_test[:150], rounds=6)": "train_substitute(model, data.x_test[:30], rounds=1, epochs=1)",
    "train_advgan(model, data.x_train, data.y_train, eps=0.3)": "train_advgan(model, data.x_train[:64], data.y_train[:64], eps=0.3, epochs=1)",
    'Universal(method="sgd", epochs=10).fit(model, data.x_train,': 'Universal(method="sgd", epochs=1).fit(model, data.x_train[:64],',
    'PatchAttack(target=3, size=12, loss="margin").fit(model, data.x_train, data.y_train)': 'PatchAttack(target=3, size=12, loss="margin", epochs=1).fit(model, data.x_train[:64], data.y_train[:64])',
    "uap.evaluate(model, data.x_test, data.y_test)": "uap.evaluate(model, data.x_test[:100], data.y_test[:100])",
    'EOT(model, "print-photo", samples=8)': 'EOT(model, "print-photo", samples=2)',
    "draws=20)": "draws=2)",
    'get_attack("masked", mask="glasses", eot="print-photo")': 'get_attack("masked", mask="glasses", eot="print-photo", steps=5, eot_samples=2)',
    'advlab.trained_model("lstm")': 'advlab.trained_model("lstm", training={"epochs": 1})',
    "BadNets(target=0, rate=0.05).poison(data)": "BadNets(target=0, rate=0.05).poison(data.subset(300, 50))",
    'lambda: advlab.build_model("cnn"))': 'lambda: advlab.build_model("cnn"), advlab.models.TrainConfig(epochs=1))',
    'distill("cnn", data.x_train, data.y_train, temperature=100)': 'distill("cnn", data.x_train[:200], data.y_train[:200], temperature=100, config=advlab.models.TrainConfig(epochs=1))',
    'samples=200, out="runs/cnn")': 'samples=4, threats=[{"norm": "linf", "eps": [0.1, 0.2, 0.3], "attacks": ["pgd"]}], out="runs/cnn")',
    "budgets=[0, 4, 8, 16], targets=8,": "budgets=[0, 16], targets=2, steps=5,",
    "data.x_train[:1000].flatten(1).numpy(), data.y_train[:1000].numpy()": "data.x_train[:200].flatten(1).numpy(), data.y_train[:200].numpy()",
    "RandomForestClassifier(n_estimators=50)": "RandomForestClassifier(n_estimators=5)",
}


SEPARATOR = "\n# --- next README block ---\n"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def shrink(code: str) -> str:
    for old, new in SMALLER.items():
        assert code.count(old) == 1, f"README example changed: {old!r} occurs {code.count(old)} times; update SMALLER"
        code = code.replace(old, new)
    return code


def test_the_readme_has_python_blocks_and_every_shrink_applies():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 8
    shrink("\n".join(blocks))


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch, model_cache):
    """Every ```python block, in order, in one namespace, in an empty working folder; models
    come from the test session's cache (ADVLAB_CACHE)."""
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADVLAB_CACHE", str(model_cache))
    full = os.environ.get("ADVLAB_README_SIZES", "small") == "full"
    namespace: dict = {"__name__": "readme"}
    code = SEPARATOR.join(python_blocks(README.read_text()))
    for i, block in enumerate((code if full else shrink(code)).split(SEPARATOR)):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)  # noqa: S102
    for name in ("x", "y", "x_flat", "result", "digits", "wrapped"):
        assert name in namespace, name
