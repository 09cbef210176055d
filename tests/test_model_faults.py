"""Broken models and misshapen inputs get an InputError naming the problem, before any attack runs."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import advlab
from advlab import ThreatModel
from advlab.validation import InputError


class NaNRows(nn.Module):
    """Wraps a model and returns NaN (or inf) logits for chosen sample rows."""

    def __init__(self, inner: nn.Module, bad: list[int], value: float = float("nan")) -> None:
        super().__init__()
        self.inner, self.bad, self.value, self.calls = inner, bad, value, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x).clone()
        rows = [i for i in self.bad if i < out.shape[0]]
        out[rows] = self.value
        return out


class Squeezed(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[:, None]


@pytest.mark.parametrize("value,word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
@pytest.mark.parametrize("attack", ["fgsm", "pgd", "square", "deepfool"])
def test_non_finite_logits_are_refused_before_the_attack(seed_mlp, mnist, attack, value, word):
    model = NaNRows(seed_mlp, bad=[5, 6, 9], value=value)
    x, y = mnist.x_test[:12], mnist.y_test[:12]
    eps = None if attack == "deepfool" else 0.1
    with pytest.raises(InputError) as err:
        advlab.attack(attack, model, x, y, ThreatModel("linf", eps=eps))
    msg = str(err.value)
    assert "NaNRows" in msg and word in msg and "3 row(s) of 12" in msg and "sample index 5" in msg
    assert model.calls == 1, "the attack ran on a broken model"


def test_wrong_logit_shape_is_refused(seed_mlp, mnist):
    with pytest.raises(InputError, match=r"Squeezed returned shape \(8, 1, 10\).*expected logits of shape \(8, C\)"):
        advlab.attack("fgsm", Squeezed(seed_mlp), mnist.x_test[:8], mnist.y_test[:8], ThreatModel("linf", eps=0.1))


@pytest.mark.parametrize(
    "shape,fix",
    [
        ((8, 784), r"x.reshape\(-1, 1, 28, 28\)"),
        ((28, 28), r"x\[None, None\]"),
        ((1, 28, 28), r"x\[:, None\].*x\[None\]"),
        ((8, 28, 28), r"without a channel axis: use x\[:, None\]$|channel axis: use x\[:, None\] \(the"),
        ((8, 28, 28, 1), r"x.permute\(0, 3, 1, 2\)"),
    ],
)
def test_shape_errors_name_the_shapes_and_the_fix(cnn, mnist, shape, fix):
    x = torch.rand(shape)
    y = mnist.y_test[: x.shape[0]]
    with pytest.raises(InputError) as err:
        advlab.attack("fgsm", cnn, x, y, ThreatModel("linf", eps=0.1))
    msg = str(err.value)
    assert f"SmallCNN cannot take x of shape {tuple(shape)}" in msg, msg
    assert "(N, 1, H, W)" in msg and re.search(fix, msg), msg


def test_mlp_given_a_single_unbatched_image(seed_mlp, mnist):
    x = mnist.x_test[0, 0]  # (28, 28): one image without batch axis
    with pytest.raises(InputError, match=r"784 values per sample.*x\[None\]"):
        advlab.attack("fgsm", seed_mlp, x, mnist.y_test[:28], ThreatModel("linf", eps=0.1))


def test_double_precision_model_is_attacked_in_double(seed_mlp, mnist):
    import copy

    m64 = copy.deepcopy(seed_mlp).double()
    res = advlab.attack("pgd", m64, mnist.x_test[:16], mnist.y_test[:16], ThreatModel("linf", eps=0.1), steps=3)
    assert res.x_adv.dtype == torch.float64 and res.success.any()
