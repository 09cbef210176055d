"""Per-sample attack objectives, all written so that the attacker *maximises* them.

``targeted=False``: ``y`` is the true label and the loss grows as the model moves away from it.
``targeted=True``: ``y`` is the target label and the loss grows as the model moves towards it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy", "margin", "dlr", "get_loss", "LOSSES", "other_max"]


def other_max(logits: Tensor, y: Tensor) -> Tensor:
    """Largest logit among the classes other than ``y``."""
    masked = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return masked.amax(dim=1)


def cross_entropy(logits: Tensor, y: Tensor, targeted: bool = False) -> Tensor:
    ce = F.cross_entropy(logits, y, reduction="none")
    return -ce if targeted else ce


def margin(logits: Tensor, y: Tensor, targeted: bool = False, kappa: float = float("inf")) -> Tensor:
    """Carlini-Wagner margin on logits (Carlini & Wagner 2017, arXiv:1608.04644).

    Untargeted: ``max_{j != y} z_j - z_y``; targeted: ``z_t - max_{j != t} z_j``, both capped at
    ``kappa`` (the confidence) so that already-adversarial samples stop pulling the gradient.
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    m = z_y - other_max(logits, y) if targeted else other_max(logits, y) - z_y
    return m.clamp(max=kappa) if kappa != float("inf") else m


def dlr(logits: Tensor, y: Tensor, targeted: bool = False) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020, arXiv:2003.01690), scale invariant.

    Untargeted: ``-(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3)``.
    Targeted (``y`` = target, true class unknown here): ``-(max_{j!=t} z_j - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2)``.
    """
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if not targeted:
        return -(z_y - other_max(logits, y)) / (srt[:, 0] - srt[:, 2] + 1e-12)
    if logits.shape[1] < 4:
        return -(other_max(logits, y) - z_y) / (srt[:, 0] - srt[:, -1] + 1e-12)
    return -(other_max(logits, y) - z_y) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


LossFn = Callable[..., Tensor]
LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "cw": margin, "dlr": dlr}


def get_loss(name: str) -> LossFn:
    """The loss called ``name`` (``ce``, ``margin``/``cw`` or ``dlr``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None


def is_adversarial(logits: Tensor, y: Tensor, targeted: bool) -> Tensor:
    """Per-sample success of a prediction."""
    pred = logits.argmax(dim=1)
    return pred == y if targeted else pred != y


def probabilities(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=1)
