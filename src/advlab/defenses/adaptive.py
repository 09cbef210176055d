"""How a defended model must be attacked, and the wrapper plumbing shared by every defense.

A model takes part in the adaptive-attack protocol by defining either or both of:

- ``adaptive() -> nn.Module``: the module an honest gradient attack differentiates (BPDA
  through non-differentiable steps, EOT over randomness, logits at the training temperature);
  its forward pass must predict like the deployed model (up to the defense's randomness);
- ``adaptive_loss: str``: the loss an attack that was left on cross-entropy should use instead
  (``"margin"`` for defensive distillation's saturated softmax).

:meth:`advlab.attacks.base.Attack.__call__` calls :func:`adapt` (defined with the attacks,
:mod:`advlab.attacks.adaptive`, and re-exported here) unless it is given
``adaptive=False``; predictions and success are always computed on the deployed model.
Defense wrappers subclass :class:`Wrapper`, which makes them save and load like any model
(``config.json`` records the wrapper and the wrapped model's own config).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from torch import Tensor, nn

from advlab.attacks.adaptive import adapt, adaptive_model

__all__ = ["EOT", "Wrapper", "adapt", "adaptive_model", "build_wrapper", "WRAPPERS"]

log = logging.getLogger(__name__)

WRAPPERS: dict[str, type[Wrapper]] = {}


class EOT(nn.Module):
    """Expectation over Transformation (Athalye et al. 2018, arXiv:1707.07397): the logits of
    a randomized model averaged over ``samples`` draws of its randomness (one batched pass of
    ``samples`` copies).  The gradient of a loss of these logits averages every draw's
    gradient contribution, which is what an attack on a randomized defense needs.  Each call
    costs ``samples`` passes of the wrapped model (the victim counts it as one).
    """

    def __init__(self, model: nn.Module, samples: int = 10) -> None:
        super().__init__()
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        self.model = model
        self.samples = samples

    def forward(self, x: Tensor) -> Tensor:
        rep = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        return self.model(rep).reshape(self.samples, x.shape[0], -1).mean(dim=0)


class Wrapper(nn.Module):
    """A defense wrapped around a model (``self.model``), saved and loaded like any model.

    Subclasses set ``kind``, implement ``wrapper_config()`` (JSON-serialisable settings) and
    ``from_config(model, config)``; the class registers itself under ``kind``.
    """

    kind: ClassVar[str] = ""
    model: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            WRAPPERS[cls.kind] = cls

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._saved_extra: dict[str, Any] = {}
        self.train(model.training)  # a wrapper starts in its model's mode (attacks restore it)

    @property
    def adaptive_loss(self) -> str | None:
        return getattr(self.model, "adaptive_loss", None)

    def wrapper_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, model: nn.Module, config: dict[str, Any]) -> Wrapper:
        raise NotImplementedError

    @property
    def advlab_config(self) -> dict[str, Any] | None:
        """``{"name": kind, "wrapper": settings, "model": inner config}`` (None when the inner
        model was not built by :func:`advlab.models.build_model`)."""
        inner = getattr(self.model, "advlab_config", None)
        if not inner:
            return None
        return {**self._saved_extra, "name": self.kind, "wrapper": self.wrapper_config(), "model": dict(inner)}

    @advlab_config.setter
    def advlab_config(self, config: dict[str, Any]) -> None:
        self._saved_extra = {k: v for k, v in config.items() if k not in ("name", "wrapper", "model", "format_version")}


def build_wrapper(config: dict[str, Any], model: nn.Module) -> nn.Module:
    """Wrap ``model`` as a saved config's ``wrapper`` entry describes."""
    import advlab.defenses  # noqa: F401  (registers the built-in wrappers)

    kind = config.get("type")
    if kind not in WRAPPERS:
        raise ValueError(f"unknown defense wrapper {kind!r}; expected one of {', '.join(sorted(WRAPPERS))}")
    return WRAPPERS[kind].from_config(model, config)
