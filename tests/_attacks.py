"""A gradient attack for tests of victims: the registry's PGD when it is installed, else a
minimal sign-gradient PGD written against the Attack base class (same contract)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from advlab.attacks import Attack, UnknownAttackError, get_attack
from advlab.losses import cross_entropy
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim


@dataclass(frozen=True)
class SignPGD(Attack):
    """Projected sign-gradient ascent on the cross-entropy (Madry et al. 2018, arXiv:1706.06083)."""

    name = "test-sign-pgd"
    norms = ("linf",)
    steps: int = 20

    def _run(self, victim: Victim, batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:  # type: ignore[no-untyped-def]
        x = batch.x.clone()
        step = 2.5 * float(threat.eps) / self.steps
        for _ in range(self.steps):
            _, g, _ = victim.value_and_grad(x, lambda z: cross_entropy(z, batch.y, threat.targeted))
            x = threat.project(x + step * threat.lp.steepest(g), batch.x)
        return x


def pgd(steps: int = 20) -> Attack:
    try:
        return get_attack("pgd", steps=steps)
    except UnknownAttackError:
        return SignPGD(steps=steps)
