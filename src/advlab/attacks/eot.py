"""Expectation over Transformation (Athalye et al. 2018, arXiv:1707.07397).

:class:`EOT` wraps a model in a distribution of differentiable transformations: its forward
pass draws ``samples`` transformations per input and averages the model's outputs, so any
gradient attack run against ``EOT(model, ...)`` optimises the *expected* objective and finds
perturbations that survive the transformations (a printed and re-photographed image, a
randomised defense).  :func:`transformed_success` measures that survival honestly, with fresh
transformations the attack never saw.

Example
-------
>>> robust = EOT(model, "print-photo", samples=16, seed=0)
>>> result = get_attack("pgd", steps=100)(robust, x, y, ThreatModel("linf", eps=0.3))
>>> transformed_success(model, result.x_adv, y, "print-photo", draws=20).mean()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.transforms import Transformations, as_transformations
from advlab.rng import CounterRNG

__all__ = ["EOT", "transformed_success", "EVAL_SEED"]

# Seed of the fresh transformations used to evaluate (never the seed an attack optimised with).
EVAL_SEED = 2_147_483_000


class EOT(nn.Module):
    """A model seen through random transformations: ``forward`` averages over ``samples`` draws.

    Parameters
    ----------
    model:
        The classifier (inputs in ``transforms.box`` to logits).
    transforms:
        A :class:`~advlab.attacks.transforms.Transformations`, a preset name
        (``"print-photo"``, ``"geometric"``, ``"photometric"``) or a dict of parameters.
    samples:
        Transformations drawn per input and per forward pass (cost: ``samples`` forward and
        backward passes of ``model`` per pass of the wrapper).
    seed:
        Seeds the draws; the ``i``-th call of ``forward`` uses streams ``i * samples + j``, so a
        run is reproducible (call :meth:`reset` to start again).
    reduce:
        ``"logits"`` (mean of logits) or ``"probs"`` (log of the mean probability, the
        expectation of the classifier's output as in the paper).
    """

    def __init__(
        self,
        model: nn.Module,
        transforms: Transformations | str | dict[str, Any] = "print-photo",
        samples: int = 8,
        seed: int = 0,
        reduce: str = "logits",
    ) -> None:
        super().__init__()
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        if reduce not in ("logits", "probs"):
            raise ValueError(f"reduce must be 'logits' or 'probs', got {reduce!r}")
        self.model = model
        self.transforms = as_transformations(transforms)
        self.samples = samples
        self.seed = seed
        self.reduce = reduce
        self.rng = CounterRNG(seed)
        self.calls = 0

    def reset(self) -> None:
        """Start the sequence of draws again."""
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        assert self.transforms is not None
        n = x.shape[0]
        index = torch.arange(n, device=x.device)
        base = self.calls * self.samples
        self.calls += 1
        views = torch.cat([self.transforms(x, self.rng, index, base + j) for j in range(self.samples)])
        out = self.model(views).reshape(self.samples, n, -1)
        if self.reduce == "probs":
            return torch.logsumexp(torch.log_softmax(out, dim=2), dim=0) - torch.log(torch.tensor(float(self.samples)))
        return out.mean(dim=0)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, seed={self.seed}, reduce={self.reduce!r}, transforms={self.transforms}"


@torch.no_grad()
def transformed_success(
    model: nn.Module,
    x_adv: Tensor,
    y: Tensor,
    transforms: Transformations | str | dict[str, Any],
    *,
    targeted: bool = False,
    draws: int = 20,
    seed: int = EVAL_SEED,
    batch_size: int = 500,
) -> Tensor:
    """Per-sample share of ``draws`` fresh random transformations under which ``x_adv`` is
    still adversarial (prediction ``!= y``, or ``== y`` when ``targeted``).

    The transformations are drawn with ``seed`` (by default one no attack uses), so this is
    the success an adversary can expect from a printed and re-photographed input.
    """
    t = as_transformations(transforms)
    if t is None:
        raise ValueError("transformed_success needs a transformation distribution")
    was = model.training
    model.eval()
    rng = CounterRNG(seed)
    device = next(iter(model.parameters()), torch.empty(0)).device
    hits = torch.zeros(x_adv.shape[0])
    for i in range(0, x_adv.shape[0], batch_size):
        xb = x_adv[i : i + batch_size].to(device)
        yb = y[i : i + batch_size].to(device)
        index = torch.arange(i, i + xb.shape[0], device=device)
        for d in range(draws):
            pred = model(t(xb, rng, index, d)).argmax(dim=1)
            ok = pred == yb if targeted else pred != yb
            hits[i : i + xb.shape[0]] += ok.float().cpu()
    model.train(was)
    return hits / draws
