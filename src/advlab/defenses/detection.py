"""Detecting adversarial inputs by feature squeezing, and attacking the detector jointly.

Feature squeezing (Xu et al. 2018, "Feature squeezing: detecting adversarial examples in deep
neural networks", arXiv:1704.01155): an input is flagged when the model's prediction on it
and on a squeezed copy (reduced bit depth, median smoothing) differ by more than a threshold
in L1 distance; the threshold is chosen for a stated false-positive rate on clean data.

A detector is not a defense until it survives an attack that knows about it (Carlini & Wagner
2017, "Adversarial examples are not easily detected", arXiv:1705.07263): :func:`evade_detector`
maximises the classifier's margin loss while pushing the detector's score under its threshold
(BPDA through the squeezers), and counts a success only when the input is misclassified *and*
not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.defenses.adaptive import Wrapper
from advlab.defenses.transforms import BitDepth, InputTransform, MedianSmoothing, build_transform
from advlab.losses import margin
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel

__all__ = ["FeatureSqueezingDetector", "EvasionResult", "evade_detector"]


class FeatureSqueezingDetector(Wrapper):
    """A classifier with a feature-squeezing detector.  ``forward`` returns the classifier's
    logits (its predictions are unchanged); :meth:`detect` flags inputs.

    Parameters
    ----------
    model:
        The classifier.
    squeezers:
        Input transformations; default 1-bit depth and 2x2 median smoothing (Xu et al.'s MNIST
        setting).  The score is the largest L1 distance over squeezers.
    threshold:
        Score above which an input is flagged; set by :meth:`calibrate`.

    Examples
    --------
    >>> det = FeatureSqueezingDetector(model)                        # doctest: +SKIP
    >>> det.calibrate(x_clean, fpr=0.05)                             # doctest: +SKIP
    >>> det.detect(result.x_adv).float().mean()                      # detection rate  # doctest: +SKIP
    """

    kind = "feature-squeezing"

    def __init__(
        self,
        model: nn.Module,
        squeezers: list[InputTransform] | None = None,
        threshold: float | None = None,
        fpr: float | None = None,
    ) -> None:
        super().__init__(model)
        self.squeezers = nn.ModuleList(squeezers if squeezers is not None else [BitDepth(1), MedianSmoothing(2)])
        if not len(self.squeezers) or not all(isinstance(s, InputTransform) for s in self.squeezers):
            raise ValueError("squeezers must be a non-empty list of InputTransform objects")
        self.threshold = None if threshold is None else float(threshold)
        self.fpr = fpr

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def score(self, x: Tensor, bpda: bool = False) -> Tensor:
        """Per-sample L1 distance between the predictions on ``x`` and on its squeezed copies
        (the largest over squeezers); ``bpda=True`` makes it differentiable."""
        p = F.softmax(self.model(x), dim=1)
        dists = [
            (p - F.softmax(self.model(s.bpda(x) if bpda else s(x)), dim=1)).abs().sum(dim=1)  # type: ignore[operator]
            for s in self.squeezers
        ]
        return torch.stack(dists).amax(dim=0)

    @torch.no_grad()
    def scores(self, x: Tensor, batch_size: int = 1000) -> Tensor:
        """:meth:`score` in batches, without gradients."""
        return torch.cat([self.score(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def calibrate(self, x_clean: Tensor, fpr: float = 0.05) -> float:
        """Set the threshold so that a share ``fpr`` of ``x_clean`` is flagged; returns it."""
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr must lie in (0, 1), got {fpr!r}")
        s = self.scores(x_clean)
        self.threshold = float(torch.quantile(s.double(), 1.0 - fpr))
        self.fpr = float(fpr)
        return self.threshold

    @torch.no_grad()
    def detect(self, x: Tensor) -> Tensor:
        """Boolean per sample: flagged as adversarial."""
        if self.threshold is None:
            raise ValueError("the detector has no threshold yet: call calibrate(x_clean, fpr=...)")
        return self.scores(x) > self.threshold

    def wrapper_config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "squeezers": [s.config() for s in self.squeezers],  # type: ignore[operator]
            "threshold": self.threshold,
            "fpr": self.fpr,
        }

    @classmethod
    def from_config(cls, model: nn.Module, config: dict[str, Any]) -> FeatureSqueezingDetector:
        return cls(model, [build_transform(c) for c in config["squeezers"]], config.get("threshold"), config.get("fpr"))


@dataclass
class EvasionResult:
    """Outcome of :func:`evade_detector`, per sample."""

    x_adv: Tensor
    misclassified: Tensor
    detected: Tensor
    score: Tensor

    @property
    def success(self) -> Tensor:
        """Misclassified and not flagged."""
        return self.misclassified & ~self.detected

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.x_adv) else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "misclassified": float(self.misclassified.float().mean()),
            "detected": float(self.detected.float().mean()),
            "undetected_success": self.success_rate,
        }


def evade_detector(
    detector: FeatureSqueezingDetector,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    step_size: float | None = None,
    penalties: tuple[float, ...] = (0.0, 1.0, 10.0),
    slack: float = 0.9,
    kappa: float = 5.0,
    seed: int = 0,
) -> EvasionResult:
    """Attack classifier and detector jointly (PGD, Madry et al. 2018, arXiv:1706.06083, on the
    objective of Carlini & Wagner 2017, arXiv:1705.07263).

    Maximises ``min(margin(z, y), kappa) - penalty * relu(score - slack * threshold)``: the
    classifier's C&W margin, capped so that it stops pulling once misclassification is safe,
    minus a penalty whenever the (BPDA-differentiated) detector score rises above a fraction
    ``slack`` of its threshold.  One run per ``penalties`` value (0 is plain PGD), each from
    its own random start; per sample, the first iterate that is misclassified and unflagged is
    kept (else the last one).  Cost: ``len(penalties) * steps`` x (1 + number of squeezers)
    forward and backward passes.
    """
    if detector.threshold is None:
        raise ValueError("the detector has no threshold yet: call calibrate(x_clean, fpr=...)")
    if threat.eps is None or threat.targeted:
        raise ValueError("evade_detector needs an untargeted threat model with an eps")
    if not penalties:
        raise ValueError("penalties must hold at least one value")
    step = step_size if step_size is not None else 2.5 * threat.eps / steps
    lp = threat.lp
    index = torch.arange(len(x), device=x.device)
    was = detector.training
    detector.eval()
    best = x.clone()
    last = x.clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    try:
        for run, penalty in enumerate(penalties):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            x0, y0 = x[todo], y[todo]
            x_adv = threat.random_start(x0, CounterRNG(seed), index[todo], run)
            for _ in range(steps):
                x_adv = x_adv.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = detector.model(x_adv)
                    objective = margin(logits, y0).clamp(max=kappa)
                    if penalty:
                        s = detector.score(x_adv, bpda=True)
                        objective = objective - penalty * F.relu(s - slack * detector.threshold)
                    (grad,) = torch.autograd.grad(objective.sum(), x_adv)
                with torch.no_grad():
                    ok = (logits.argmax(dim=1) != y0) & (detector.scores(x_adv) <= detector.threshold) & ~found[todo]
                    best[todo[ok]] = x_adv.detach()[ok]
                    found[todo[ok]] = True
                    x_adv = threat.project(x_adv.detach() + step * lp.steepest(grad), x0)
            last[todo] = x_adv.detach()
        final = torch.where(found.view(-1, *([1] * (x.dim() - 1))), best, last)
        with torch.no_grad():
            pred = torch.cat([detector.model(final[i : i + 1000]).argmax(dim=1) for i in range(0, len(x), 1000)])
            sc = detector.scores(final)
    finally:
        detector.train(was)
    return EvasionResult(final, pred != y, sc > detector.threshold, sc)
