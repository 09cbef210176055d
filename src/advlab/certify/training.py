"""Certified training with interval bound propagation (Gowal et al. 2018, "On the
effectiveness of interval bound propagation for training verifiably robust models",
arXiv:1810.12715).

The loss mixes the clean cross-entropy with the cross-entropy of the worst-case logits that
IBP certifies (``z_y`` at 0, every other logit at the upper bound of ``z_j - z_y``):
``kappa * CE(z(x), y) + (1 - kappa) * CE(z_worst, y)``.  After ``warmup`` epochs of clean
training, eps grows linearly from 0 to its target over ``ramp`` epochs while ``kappa``
falls from 1 to ``kappa_end``, as in the paper; both then stay put.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.certify.bounds import InputSet, margin_bounds, margin_spec
from advlab.certify.network import as_chain
from advlab.norms import canonical_norm
from advlab.validation import InputError

__all__ = ["CertifiedTraining", "certified_train", "ibp_loss", "CERTIFIED_METHODS"]

CERTIFIED_METHODS = ("ibp",)


def ibp_loss(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", box: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """Mean cross-entropy of the worst-case logits IBP certifies within ``eps`` (differentiable
    in the weights)."""
    chain = as_chain(model)
    logits = model(x[:1])
    spec = margin_spec(y, logits.shape[1], dtype=x.dtype)
    eps_t = torch.full((x.shape[0],), float(eps), device=x.device, dtype=x.dtype)
    lower = margin_bounds(chain, InputSet(x, eps_t, norm, box), spec, method="ibp")
    worst = torch.cat([torch.zeros_like(lower[:, :1]), -lower], dim=1)  # the true class first
    return F.cross_entropy(worst, torch.zeros_like(y))


@dataclass(frozen=True)
class CertifiedTraining:
    """Settings of an IBP training run.

    Parameters
    ----------
    method: ``"ibp"``.
    eps, norm: the ball trained against (Linf or L2); Gowal et al. train with an eps somewhat
        above the one they certify.
    warmup: epochs of clean training first.
    ramp: epochs over which eps grows from 0 to ``eps`` (and kappa falls to ``kappa_end``).
    kappa_end: the final weight of the clean loss.
    """

    method: str = "ibp"
    eps: float = 0.1
    norm: str = "linf"
    warmup: float = 1.0
    ramp: float = 5.0
    kappa_end: float = 0.5
    box: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.method not in CERTIFIED_METHODS:
            raise InputError(f"unknown certified training method {self.method!r}; expected one of {', '.join(CERTIFIED_METHODS)}")
        if not self.eps > 0:
            raise InputError(f"certified training needs eps > 0, got {self.eps!r}")
        norm = canonical_norm(self.norm)
        if norm not in ("linf", "l2"):
            raise InputError(f"certified training bounds Linf and L2 balls, not {self.norm!r}")
        object.__setattr__(self, "norm", norm)
        if self.warmup < 0 or self.ramp < 0:
            raise InputError(f"warmup and ramp must be >= 0 epochs, got {self.warmup!r} and {self.ramp!r}")
        if not 0.0 <= self.kappa_end <= 1.0:
            raise InputError(f"kappa_end must lie in [0, 1], got {self.kappa_end!r}")

    def schedule(self, step: int, steps_per_epoch: int) -> tuple[float, float]:
        """``(eps, kappa)`` at training step ``step``."""
        start = self.warmup * steps_per_epoch
        length = self.ramp * steps_per_epoch
        if step < start:
            fraction = 0.0
        elif length <= 0:
            fraction = 1.0
        else:
            fraction = min(1.0, (step - start + 1) / length)
        return self.eps * fraction, 1.0 - (1.0 - self.kappa_end) * fraction

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["box"] = list(self.box)
        return d


def certified_train(
    model: nn.Module, x: Tensor, y: Tensor, settings: CertifiedTraining, config: Any = None, *, progress: bool = False
) -> dict[str, Any]:
    """Train ``model`` in place with IBP (through :func:`advlab.models.train_model`'s
    ``objective``).  Returns the training history."""
    from advlab.models.training import TrainConfig, train_model

    chain = as_chain(model)
    for layer in chain:
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)):
            raise InputError(f"certified training does not handle {type(layer).__name__} layers (their training-mode forward is not the map the bounds cover)")
    cfg = config or TrainConfig()
    steps_per_epoch = max(1, (x.shape[0] + cfg.batch_size - 1) // cfg.batch_size)
    counter = {"step": 0}

    def objective(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        eps, kappa = settings.schedule(counter["step"], steps_per_epoch)
        counter["step"] += 1
        clean = F.cross_entropy(m(xb), yb)
        if eps <= 0:
            return clean
        return kappa * clean + (1 - kappa) * ibp_loss(m, xb, yb, eps, settings.norm, settings.box)

    desc = f"IBP certified training (eps {settings.eps:g})"
    return train_model(model, x, y, cfg, objective=objective, progress=progress, description=desc)
