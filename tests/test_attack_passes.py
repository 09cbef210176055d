"""What the base class runs on the model: the clean pass shared with an attack's first gradient
step, caller-supplied clean logits, and the single verification pass (issue 15)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import get_attack
from advlab.chunking import set_chunk_rows
from advlab.threat import ThreatModel
from advlab.validation import InputError

N = 40


class Counting(nn.Module):
    """The wrapped model, counting the rows of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0
        self.calls = 0
        set_chunk_rows(self, None)  # one piece: no probe passes for the chunking rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        self.calls += 1
        return self.inner(x)


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.x_test[:N].clone(), mnist.y_test[:N].clone()


def test_fgsm_runs_one_gradient_pass_and_one_verification(seed_mlp, data):
    x, y = data
    model = Counting(seed_mlp)
    res = get_attack("fgsm")(model, x, y, ThreatModel("linf", eps=0.1), batch_size=None)
    # the clean pass is the gradient step's forward pass; the verification (of the attacked
    # rows) is the only other
    attacked = res.clean_pred == y
    assert model.rows == N + int(attacked.sum())
    assert bool((res.forwards[attacked] == 1).all() and (res.backwards[attacked] == 1).all())
    assert int(res.forwards[~attacked].sum()) == 0
    assert res.checks is not None and bool((res.checks == 1).all())  # clean pass or verification
    assert int(res.model_forwards.sum()) == model.rows


@pytest.mark.parametrize("name,norm,params", [("fgsm", "linf", {}), ("bim", "l2", {"steps": 3}), ("pgd", "linf", {"steps": 3, "random_start": False}), ("deepfool", "l2", {}), ("ddn", "l2", {"steps": 5}), ("fmn", "linf", {"steps": 5})])
def test_a_shared_clean_pass_changes_nothing_but_the_work(name, norm, params, seed_mlp, data):
    x, y = data
    atk = get_attack(name, **params)
    eps = {"linf": 0.1, "l2": 1.5}[norm] if not atk.minimal else None
    threat = ThreatModel(norm, eps=eps)
    shared = Counting(seed_mlp)
    a = atk(shared, x, y, threat, batch_size=16)
    with torch.no_grad():
        clean = seed_mlp(x)
    separate = Counting(seed_mlp)
    b = atk(separate, x, y, threat, batch_size=16, clean_logits=clean)  # no clean pass to share
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-5)
    assert torch.equal(a.success, b.success) and torch.equal(a.clean_pred, b.clean_pred)
    assert torch.equal(a.forwards, b.forwards) and torch.equal(a.backwards, b.backwards)
    # in one batch (most rows attacked): the clean pass was the attacked rows' first pass, so
    # the caller's logits saved only the rows not attacked
    shared.rows = separate.rows = 0
    c = atk(shared, x, y, threat, batch_size=None)
    d = atk(separate, x, y, threat, batch_size=None, clean_logits=clean)
    attacked = int((a.clean_pred == y).sum())
    assert attacked >= 0.75 * N
    assert separate.rows == shared.rows - (N - attacked)
    # every row through the model is counted once: by the attack or as the library's check
    assert int(c.model_forwards.sum()) == shared.rows and int(d.model_forwards.sum()) == separate.rows


def test_clean_logits_are_used_and_checked(seed_mlp, data):
    x, y = data
    threat = ThreatModel("linf", eps=0.1)
    with torch.no_grad():
        clean = seed_mlp(x)
    wrong = clean.clone()
    wrong[:, 0] = 1e6  # every sample "predicted" as class 0
    res = get_attack("fgsm")(seed_mlp, x, y, threat, clean_logits=wrong)
    assert torch.equal(res.clean_pred, torch.zeros_like(y))
    assert int(res.forwards[y != 0].sum()) == 0  # taken as already misclassified: not attacked
    for bad, what in [(clean[:-1], "shape"), (clean[:, None], "shape"), (clean.masked_fill(clean > 0, float("nan")), "finite"), (clean.long(), "finite"), (clean.numpy(), "tensor")]:
        with pytest.raises(InputError, match=what):
            get_attack("fgsm")(seed_mlp, x, y, threat, clean_logits=bad)
