"""Input-transformation defenses: a preprocessing step in front of a model.

Each transformation says how it must be attacked (Athalye et al. 2018, "Obfuscated
gradients give a false sense of security", arXiv:1802.00420): a non-differentiable one
supplies a BPDA surrogate, used on the backward pass while the forward pass stays exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["InputTransform", "BinaryThreshold", "Defended", "straight_through"]


def straight_through(x: Tensor, exact: Tensor, surrogate: Tensor) -> Tensor:
    """Forward value ``exact``, gradient of ``surrogate`` (BPDA)."""
    return surrogate + (exact - surrogate).detach()


class InputTransform(nn.Module):
    """A preprocessing step.  Subclasses implement ``forward`` and, when it is not
    differentiable, ``surrogate`` (a differentiable approximation used by BPDA)."""

    differentiable: bool = True
    randomized: bool = False
    kind: str = "transform"

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable approximation of the transformation (identity by default)."""
        return x

    def bpda(self, x: Tensor) -> Tensor:
        """Exact forward pass, surrogate gradient."""
        return straight_through(x, self(x), self.surrogate(x))

    def config(self) -> dict[str, Any]:
        return {"type": self.kind}


class BinaryThreshold(InputTransform):
    """Binary thresholding (the seed report, section 6.1): every pixel becomes 0 or 1.

    Not differentiable (its gradient is zero almost everywhere), so gradient attacks on the
    defended model see no signal; BPDA with the identity surrogate restores it.
    """

    differentiable = False
    kind = "binary-threshold"

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        return (x > self.threshold).to(x.dtype)

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "threshold": self.threshold}


class Defended(nn.Module):
    """``model(transform(x))``.  With ``bpda=True`` the transform's backward pass is replaced by
    its surrogate: the adaptive version an honest evaluation attacks."""

    def __init__(self, model: nn.Module, transform: InputTransform, bpda: bool = False) -> None:
        super().__init__()
        self.model = model
        self.transform = transform
        self.bpda = bpda

    def forward(self, x: Tensor) -> Tensor:
        z = self.transform.bpda(x) if self.bpda else self.transform(x)
        return self.model(z)

    def adaptive(self) -> Defended:
        """The same defended model with BPDA on (shares the weights)."""
        return Defended(self.model, self.transform, bpda=True)

    @torch.no_grad()
    def preprocess(self, x: Tensor) -> Tensor:
        return self.transform(x)
