"""Transfer attacks: craft on a surrogate model you own, use on a victim you cannot see into.

Adversarial examples found with white-box access to one model often fool another
(Szegedy et al. 2014, arXiv:1312.6199; Papernot et al. 2016, arXiv:1605.07277). The victim
is never queried while crafting: ``forwards`` and ``backwards`` of the result are zero.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import attack_class, make_attack, register
from advlab.models.training import predict
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim, frozen

__all__ = ["Transfer", "TransferReport", "transfer_rate"]


@functools.lru_cache(maxsize=8)
def _load(path: str) -> nn.Module:
    from advlab.models import load_model

    return load_model(path)


def _describe(model: Any) -> Any:
    if isinstance(model, nn.Module):
        cfg = getattr(model, "advlab_config", None) or {}
        return f"<{type(model).__name__}{' ' + cfg['name'] if 'name' in cfg else ''}>"
    return model


@register
@dataclass(frozen=True)
class Transfer(Attack):
    """Transfer attack: any attack run on a surrogate model, its output used on the victim.

    Parameters
    ----------
    surrogate:
        The attacker's own model: a ``torch.nn.Module`` or the folder of a saved advlab model
        (``advlab.models.save_model``), e.g. a substitute from
        :func:`advlab.attacks.substitute.train_substitute`.
    attack:
        The attack run on the surrogate: a registry name (default ``"pgd"``) or an
        :class:`Attack` instance.
    attack_params:
        Hyperparameters for a named attack (``{"steps": 40}``).

    Cost: the inner attack's cost on the surrogate; no victim queries.

    Examples
    --------
    >>> res = Transfer(surrogate="runs/substitute")(victim, x, y, ThreatModel("linf", eps=0.3))  # doctest: +SKIP
    """

    name = "transfer"
    paper = "Papernot, McDaniel, Goodfellow 2016, Transferability in Machine Learning, arXiv:1605.07277"
    knowledge = "black"
    family = "transfer"
    uses_gradients = False
    minimal = False

    surrogate: Any = None
    attack: Any = "pgd"
    attack_params: dict[str, Any] | None = field(default=None)

    def inner(self) -> Attack:
        """The attack run on the surrogate. A named attack with an ``early_stop`` option runs
        with ``early_stop=False`` unless told otherwise: stopping as soon as the surrogate is
        fooled leaves examples on its decision boundary, which rarely transfer."""
        if isinstance(self.attack, Attack):
            if self.attack_params:
                return self.attack.replace(**self.attack_params)
            return self.attack
        if not isinstance(self.attack, str):
            raise AttackError(f"attack must be a registry name or an Attack, got {type(self.attack).__name__}")
        params = dict(self.attack_params or {})
        params.setdefault("seed", self.seed)
        if "early_stop" in {f.name for f in dataclasses.fields(attack_class(self.attack))}:
            params.setdefault("early_stop", False)
        return make_attack({"name": self.attack, **params})

    def surrogate_model(self) -> nn.Module:
        if isinstance(self.surrogate, nn.Module):
            return self.surrogate
        if isinstance(self.surrogate, (str, Path)):
            return _load(str(Path(self.surrogate).resolve()))
        raise AttackError(
            "transfer needs surrogate=: the attacker's own model (a torch.nn.Module or a saved model folder)"
        )

    def check_threat(self, threat: ThreatModel) -> None:
        super().check_threat(threat)
        if self.surrogate is None:
            raise AttackError("transfer needs surrogate=: the attacker's own model (a torch.nn.Module or a saved model folder)")
        self.inner().check_threat(threat)

    def params(self) -> dict[str, Any]:
        p = super().params()
        p["surrogate"] = _describe(self.surrogate)
        if isinstance(self.attack, Attack):
            p["attack"] = {"name": self.attack.name, **self.attack.params()}
        return p

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        inner = self.inner()
        model = self.surrogate_model()
        device = batch.x.device
        if next(iter(model.parameters()), torch.empty(0, device=device)).device != device:
            model = model.to(device)
        with frozen(model):
            out = inner._run(Victim(model, len(batch), device), batch, threat, CounterRNG(inner.seed))
        return out


@dataclass
class TransferReport:
    """How well adversarial examples crafted on a surrogate transfer to a victim.

    Rates are over the ``n`` samples that both models classify correctly:
    ``surrogate_success`` (fooled the surrogate), ``victim_success`` (fooled the victim) and
    ``transfer_rate`` (fooled the victim among those that fooled the surrogate).
    """

    n: int
    surrogate_success: float
    victim_success: float
    transfer_rate: float
    result: AttackResult
    surrogate_fooled: Tensor

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "surrogate_success": self.surrogate_success,
            "victim_success": self.victim_success,
            "transfer_rate": self.transfer_rate,
            "threat": self.result.threat.to_dict(),
            "params": self.result.params,
        }


def transfer_rate(
    surrogate: nn.Module | str,
    victim: nn.Module,
    x: Any,
    y: Any,
    threat: ThreatModel,
    attack: str | Attack = "pgd",
    *,
    targets: Any = None,
    batch_size: int | None = 500,
    seed: int = 0,
    **attack_params: Any,
) -> TransferReport:
    """Craft with ``attack`` on ``surrogate``, evaluate on ``victim``; see :class:`TransferReport`.

    >>> rep = transfer_rate(substitute, victim, x, y, ThreatModel("linf", eps=0.3), "pgd", steps=40)  # doctest: +SKIP
    >>> rep.transfer_rate                                                                              # doctest: +SKIP
    """
    atk = Transfer(surrogate=surrogate, attack=attack, attack_params=attack_params or None, seed=seed)
    result = atk(victim, x, y, threat, targets=targets, batch_size=batch_size)
    model = atk.surrogate_model()
    x_t = torch.as_tensor(x).to(result.x_adv.device)
    dev = next(iter(model.parameters()), torch.empty(0)).device
    sur_clean = predict(model, x_t.to(dev)).to(result.y.device)
    sur_adv = predict(model, result.x_adv.to(dev)).to(result.y.device)
    goal = result.target if result.target is not None else result.y
    fooled_sur = sur_adv == goal if threat.targeted else sur_adv != goal
    both = (sur_clean == result.y) & result.clean_correct
    n = int(both.sum())
    fooled_vic = result.success & both
    fooled_sur_both = fooled_sur & both
    rate = float((fooled_vic & fooled_sur_both).sum()) / max(1, int(fooled_sur_both.sum()))
    return TransferReport(
        n=n,
        surrogate_success=float(fooled_sur_both.sum()) / max(1, n),
        victim_success=float(fooled_vic.sum()) / max(1, n),
        transfer_rate=rate,
        result=result,
        surrogate_fooled=fooled_sur,
    )
