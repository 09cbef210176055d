"""The determinism promise of docs/determinism.md, checked on models trained on this machine.

* same seed, same batch size: bit-identical (float32);
* another batch size, float64 model: success and pass counts identical, ``x_adv`` within 1e-9
  (no attack has a real batch dependence);
* another batch size, float32 model: at most a few samples whose decisions sit within
  rounding of a tie may differ.

``test_promise_holds_under_every_cpu_capability`` reruns this module under
``ATEN_CPU_CAPABILITY=default``, ``avx2`` and ``avx512`` (torch reads the variable at import,
so each needs its own process).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_attack_contract import ATTACKS, NAMES, _fast, _skip_reason, _threat

N = 24
COVERED = [n for n in NAMES if not _skip_reason(ATTACKS[n])]
# A float32 sample may differ between batch sizes only where one of its decisions fell within
# rounding of a tie (docs/determinism.md); a real batch dependence changes most of the 24.
MAX_FLOAT32_DIFFERING = 3


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.x_test[:N].clone(), mnist.y_test[:N].clone()


@pytest.fixture(scope="module")
def mlp64(seed_mlp):
    return copy.deepcopy(seed_mlp).double()


def _runs(name, model, x, y, batch_sizes):
    atk = _fast(name)
    cls = ATTACKS[name]
    threat = _threat(cls, targeted=not cls.supports_untargeted)
    targets = "random" if threat.targeted else None
    return [atk(model, x, y, threat, targets=targets, batch_size=bs) for bs in batch_sizes]


def _differing(a, b, atol: float) -> torch.Tensor:
    """Samples whose output, success flag or pass counts differ between two runs."""
    coords = (a.x_adv - b.x_adv).abs().flatten(1).amax(dim=1) > atol
    return coords | (a.success != b.success) | (a.forwards != b.forwards) | (a.backwards != b.backwards)


@pytest.mark.parametrize("name", COVERED)
def test_same_seed_same_batch_size_is_bit_identical(name, seed_mlp, data):
    a, b = _runs(name, seed_mlp, *data, batch_sizes=[None, None])
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert torch.equal(a.forwards, b.forwards) and torch.equal(a.backwards, b.backwards)
    assert torch.equal(a.checks, b.checks)


@pytest.mark.parametrize("name", COVERED)
def test_float64_results_do_not_depend_on_the_batch_size(name, mlp64, data):
    x, y = data
    a, c = _runs(name, mlp64, x.double(), y, batch_sizes=[None, 7])
    assert a.x_adv.dtype == torch.float64, "a float64 model must be attacked in float64"
    assert torch.equal(a.success, c.success), "per-sample success depends on the batch size"
    assert torch.equal(a.forwards, c.forwards) and torch.equal(a.backwards, c.backwards)
    diff = (a.x_adv - c.x_adv).abs()
    assert float(diff.max()) <= 1e-9, f"per-sample output depends on the batch size: max {float(diff.max()):.3g}"


@pytest.mark.parametrize("name", COVERED)
def test_float32_batch_size_changes_at_most_a_tie(name, seed_mlp, data):
    a, c = _runs(name, seed_mlp, *data, batch_sizes=[None, 7])
    differing = _differing(a, c, atol=1e-4)
    assert int(differing.sum()) <= MAX_FLOAT32_DIFFERING, (
        f"{int(differing.sum())} of {N} samples differ between batch sizes: more than rounding at a tie explains"
    )


def test_a_batch_dependent_attack_is_caught(mlp64, data):
    """The float64 check can fail: an attack whose random start is drawn per batch (one
    generator seeded per call, as most libraries do) differs on most samples between batch sizes."""
    from dataclasses import dataclass

    from advlab.attacks import Attack

    @dataclass(frozen=True)
    class PerBatchNoise(Attack):
        name = "per-batch-noise"

        def _run(self, victim, batch, threat, rng):
            g = torch.Generator().manual_seed(self.seed)
            noise = torch.rand(batch.x.shape, generator=g, dtype=batch.x.dtype) * 2 - 1
            victim.logits(batch.x)
            return batch.x + threat.eps * noise

    x, y = data
    threat = _threat(ATTACKS["pgd"])
    a, c = (PerBatchNoise()(mlp64, x.double(), y, threat, batch_size=bs) for bs in (None, 7))
    assert int(_differing(a, c, atol=1e-9).sum()) > MAX_FLOAT32_DIFFERING


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_promise_holds_under_every_cpu_capability(capability, request, seed_mlp):
    if os.environ.get("ADVLAB_CAPABILITY_RUN"):
        pytest.skip("already inside a per-capability run")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "ADVLAB_CAPABILITY_RUN": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-x", str(Path(__file__)),
         "-k", "not capability and not batch_dependent",
         "-o", f"cache_dir={request.config.cache._cachedir}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    assert proc.returncode == 0, f"determinism tests fail under ATEN_CPU_CAPABILITY={capability}:\n{tail}"
