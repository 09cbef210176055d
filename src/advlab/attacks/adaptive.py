"""The attack side of the adaptive-attack protocol (see :mod:`advlab.defenses.adaptive`): a
model that declares ``adaptive()`` is differentiated through that module, and one that
declares ``adaptive_loss`` gets attacks left on cross-entropy switched to that loss
(Athalye et al. 2018, arXiv:1802.00420; Tramer et al. 2020, arXiv:2002.08347).  It lives
with the attacks, which call it, so that attacks never import the defenses above them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from advlab.attacks.base import Attack

__all__ = ["adapt", "adaptive_model"]

log = logging.getLogger("advlab.defenses.adaptive")


def adaptive_model(model: nn.Module) -> nn.Module:
    """What an honest attack on ``model`` should differentiate: ``model.adaptive()`` when the
    model declares one (defenses do), else the model itself."""
    fn = getattr(model, "adaptive", None)
    return fn() if callable(fn) else model


def adapt(attack: Attack, model: nn.Module) -> tuple[Attack, nn.Module]:
    """The attack and the module it should differentiate to evaluate ``model`` honestly.

    The module is :func:`adaptive_model`; an attack whose ``loss`` is ``"ce"`` switches to the
    model's ``adaptive_loss`` when it declares one.  Models that declare nothing come back as is.
    """
    attacked = adaptive_model(model)
    hint = getattr(model, "adaptive_loss", None)
    if hint and getattr(attack, "loss", None) == "ce":
        log.info("attack %s: loss ce -> %s, as %s asks (adaptive=False keeps ce)", attack.name, hint, type(model).__name__)
        attack = attack.replace(loss=hint)
    elif hint and hasattr(attack, "adaptive_loss"):  # a cascade passes the hint to its members
        attack = attack.replace(adaptive_loss=hint)
    if attacked is not model:
        log.info("attack %s: differentiating %s (adaptive form of %s)", attack.name, type(attacked).__name__, type(model).__name__)
    return attack, attacked
