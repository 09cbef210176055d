"""The attack contract as a property, over random small models, input shapes, boxes and threat
models, for every registered evasion attack: every output inside the ball and the box, success
recomputed independently, and the pass counts equal to what a counting forward hook sees."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import AttackError, get_attack
from advlab.threat import ThreatModel
from test_attack_contract import ATTACKS, FAST_FIELDS, FAST_PARAMS, NAMES, _skip_reason

COVERED = [n for n in NAMES if not _skip_reason(ATTACKS[n])]
BOXES = [(0.0, 1.0), (-1.0, 1.0), (0.2, 0.8)]
SCALE = {"linf": 1.0, "l2": 3.0, "l1": 15.0, "l0": 20.0}


def _model(kind: str, channels: int, side: int, classes: int, width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, width), nn.Tanh(), nn.Linear(width, classes))
    else:
        net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(width * (side // 2) ** 2, classes),
        )
    return net.eval()


class RowCounter:
    def __init__(self, model: nn.Module) -> None:
        self.rows = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        self.rows += int(inputs[0].shape[0])


@pytest.mark.parametrize("name", COVERED)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["mlp", "cnn"]),
    channels=st.sampled_from([1, 3]),
    side=st.sampled_from([4, 6, 8]),
    classes=st.integers(2, 5),
    width=st.integers(4, 12),
    box=st.sampled_from(BOXES),
    eps=st.floats(0.01, 1.0),
    targeted=st.booleans(),
    data=st.data(),
)
def test_contract_holds_on_random_models(name, kind, channels, side, classes, width, box, eps, targeted, data):
    cls = ATTACKS[name]
    norm = data.draw(st.sampled_from(list(cls.norms)), label="norm")
    targeted = (targeted and cls.supports_targeted) or not cls.supports_untargeted
    seed = data.draw(st.integers(0, 2**16), label="seed")
    model = _model(kind, channels, side, classes, width, seed)
    lo, hi = box
    g = torch.Generator().manual_seed(seed)
    n = 5
    x = lo + (hi - lo) * torch.rand((n, channels, side, side), generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    threat = ThreatModel(norm, eps=None if cls.minimal else eps * SCALE[norm] * (hi - lo), targeted=targeted, box=box)
    fields = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in FAST_FIELDS.items() if k in fields}
    params.update(FAST_PARAMS.get(name, {}))
    atk = get_attack(name, **params)

    counter = RowCounter(model)
    try:
        res = atk(model, x, y, threat, targets="random" if targeted else None)
    except AttackError as err:  # a threat model the attack declines, before any pass
        assert counter.rows == 0, f"{name} declined after {counter.rows} rows: {err}"
        assume(False)
    finally:
        counter.handle.remove()

    assert bool(threat.contains(res.x_adv, x).all()), "output outside the threat model's ball or box"
    with torch.no_grad():
        pred = model(res.x_adv).argmax(dim=1)
    goal = res.target if targeted else y
    assert torch.equal(res.success, pred == goal if targeted else pred != goal)
    assert torch.equal(res.adv_pred, pred)
    assert int(res.model_forwards.sum()) == counter.rows, (
        f"{name}: the result counts {int(res.model_forwards.sum())} rows through the model, a hook saw {counter.rows}"
    )
