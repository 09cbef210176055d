"""Universal adversarial perturbations: one perturbation that fools a model on most inputs.

Two ways to craft one:

- ``method="deepfool"``: the original algorithm (Moosavi-Dezfooli et al. 2017,
  arXiv:1610.08401): pass over the data; for every input the current perturbation does not
  fool, add the minimal DeepFool perturbation that does, then project back onto the ball.
  Untargeted only.
- ``method="sgd"``: stochastic gradient ascent on the mean (clamped) loss over minibatches
  (Shafahi et al. 2020, "Universal adversarial training", arXiv:1811.11304).  Targeted or not.

Either returns a :class:`UniversalPerturbation`, an artifact that can be saved, loaded and
applied to any inputs later.  Its fooling rate should always be measured on held-out inputs
that were never used to craft it.

Example
-------
>>> uap = Universal(method="sgd", epochs=20).fit(model, data.x_train, ThreatModel("linf", eps=0.3))
>>> uap.evaluate(model, data.x_test, data.y_test)["fooling_rate"]
>>> uap.save("runs/uap"); UniversalPerturbation.load("runs/uap").apply(x)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.artifact import ArtifactError, read_artifact, read_png, write_artifact
from advlab.attacks.base import model_device
from advlab.losses import get_loss
from advlab.models.training import predict
from advlab.progress import track
from advlab.threat import ThreatModel
from advlab.validation import InputError, as_input_tensor
from advlab.victim import frozen

__all__ = ["Universal", "UniversalPerturbation", "UNIVERSAL_METHODS"]

UNIVERSAL_METHODS = ("sgd", "deepfool")


@dataclass
class UniversalPerturbation:
    """A perturbation ``delta`` (shape of one input) added to every input.

    Attributes
    ----------
    delta:
        The perturbation, shape ``(C, H, W)`` (or ``(D,)``), inside the threat model's ball.
    threat:
        Norm, ``eps``, ``box`` and whether it is targeted.
    target:
        The target class of a targeted perturbation, else ``None``.
    info:
        How it was crafted (method, hyperparameters, fitting-set fooling rate, seconds).
    """

    delta: Tensor
    threat: ThreatModel
    target: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, x: Tensor) -> Tensor:
        """``x + delta`` clipped to the box (``x`` is a batch)."""
        return self.threat.clip(x + self.delta.to(x.device, x.dtype))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: Tensor, y: Tensor | None = None, batch_size: int = 500) -> dict[str, float]:
        """Fooling rate on ``x``: the share of inputs whose prediction the perturbation changes.

        With labels ``y`` also the clean and perturbed accuracy; for a targeted perturbation
        the share of inputs (not already of the target class) sent to the target.
        """
        x = as_input_tensor(x, self.threat.box)
        clean = predict(model, x, batch_size)
        adv = predict(model, self.apply(x), batch_size)
        out = {"n": float(len(x)), "fooling_rate": float((clean != adv).float().mean())}
        if y is not None:
            y = torch.as_tensor(y).cpu()
            out["clean_accuracy"] = float((clean == y).float().mean())
            out["perturbed_accuracy"] = float((adv == y).float().mean())
        if self.target is not None:
            keep = (y if y is not None else clean) != self.target
            out["target_success"] = float((adv[keep] == self.target).float().mean()) if bool(keep.any()) else float("nan")
        return out

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write ``perturbation.safetensors``, ``perturbation.json`` and ``perturbation.png``
        (the perturbation mapped to [0, 1], gray = 0)."""
        meta = {"threat": self.threat.to_dict(), "target": self.target, "info": self.info}
        return write_artifact(folder, "perturbation", self.delta, meta, self.visual())

    @classmethod
    def load(cls, folder: str | Path) -> UniversalPerturbation:
        """Read a perturbation written by :meth:`save` (the exact tensor, or the PNG)."""
        meta, delta = read_artifact(folder, "perturbation")
        threat = ThreatModel.from_dict(meta["threat"])
        if delta is None:  # only the PNG: undo the visual mapping (quantised)
            shape = meta["shape"]
            img = read_png(Path(folder if Path(folder).is_dir() else Path(folder).parent) / "perturbation.png", shape[0])
            delta = (img * 2 - 1) * float(meta["info"].get("visual_scale", 1.0))
            delta = threat.lp.project(delta[None], threat.eps_tensor(1)).squeeze(0) if threat.eps else delta
        if threat.eps is not None and float(threat.lp.measure(delta[None].float())) > threat.eps * (1 + 1e-5) + 1e-6:
            raise ArtifactError(f"the perturbation in {folder} is larger than its eps {threat.eps}")
        return cls(delta=delta, threat=threat, target=meta.get("target"), info=meta.get("info", {}))

    def visual(self) -> Tensor:
        """The perturbation as an image in [0, 1]: 0.5 + delta / (2 * max |delta|)."""
        scale = float(self.delta.abs().max().clamp_min(1e-12))
        self.info["visual_scale"] = scale
        return 0.5 + self.delta / (2 * scale)


@dataclass(frozen=True)
class Universal:
    """Crafts a :class:`UniversalPerturbation` (hyperparameters only; the model is passed in).

    Parameters
    ----------
    method:
        ``"sgd"`` (Shafahi et al. 2020, arXiv:1811.11304) or ``"deepfool"``
        (Moosavi-Dezfooli et al. 2017, arXiv:1610.08401).
    epochs:
        Passes over the fitting inputs.
    batch_size:
        Minibatch size for ``sgd``.
    step_size:
        ``sgd`` step in the threat model's norm (default ``eps / 10``), decayed with a cosine
        schedule to zero over the run.
    loss:
        ``sgd`` objective per input: ``"ce"`` or ``"margin"``, clamped at ``clamp`` so that
        inputs already fooled stop dominating the average.
    clamp:
        Upper bound of the per-input loss (``None``: no clamp).
    overshoot:
        ``deepfool``: the minimal perturbation is scaled by ``1 + overshoot``.
    deepfool_steps:
        ``deepfool``: iterations of the inner DeepFool per input (cost: ``C`` backward passes each).
    fooling_goal:
        ``deepfool``: stop once this share of the fitting inputs is fooled.
    seed:
        Seeds the order of the inputs.
    """

    method: str = "sgd"
    epochs: int = 10
    batch_size: int = 32
    step_size: float | None = None
    loss: str = "ce"
    clamp: float | None = 10.0
    overshoot: float = 0.02
    deepfool_steps: int = 50
    fooling_goal: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in UNIVERSAL_METHODS:
            raise ValueError(f"unknown universal method {self.method!r}; expected one of {UNIVERSAL_METHODS}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        get_loss(self.loss)

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fit(
        self,
        model: nn.Module,
        x: Any,
        threat: ThreatModel,
        *,
        target: int | None = None,
        progress: Callable[[int], None] | bool | None = None,
    ) -> UniversalPerturbation:
        """Craft one perturbation for the inputs ``x`` (labels are the model's own predictions).

        ``threat`` must be bounded (``eps``) in ``linf`` or ``l2``; a targeted threat model needs
        ``target`` (one class for every input).  ``progress`` is called with 1 after each epoch (default: :mod:`advlab.progress` shows
        it; ``False``: silent).
        """
        if threat.eps is None or threat.norm not in ("linf", "l2"):
            raise InputError(f"a universal perturbation needs a bounded linf or l2 threat model, got {threat.describe()}")
        if threat.targeted != (target is not None):
            raise InputError("give target= exactly when the threat model is targeted (ThreatModel(..., targeted=True))")
        if self.method == "deepfool" and threat.targeted:
            raise InputError("the deepfool method is untargeted; use method='sgd' for a targeted universal perturbation")
        dev = model_device(model)
        xs = as_input_tensor(x, threat.box, device=dev)
        start = time.perf_counter()
        with frozen(model):
            labels = _predict(model, xs)
            if target is not None:
                with torch.no_grad():
                    num_classes = model(xs[:1]).shape[1]
                if not 0 <= int(target) < num_classes:
                    raise InputError(f"target must be a class in 0..{num_classes - 1}, got {target!r}")
            delta = torch.zeros_like(xs[0])
            with track(progress, f"universal perturbation ({self.method}, {self.epochs} epochs)", self.epochs) as advance:
                if self.method == "sgd":
                    delta = self._fit_sgd(model, xs, labels, threat, target, delta, advance)
                else:
                    delta = self._fit_deepfool(model, xs, labels, threat, delta, advance)
            fooled = _predict(model, threat.clip(xs + delta)) != labels
        info = {
            "method": self.method,
            "params": self.params(),
            "fit_inputs": int(len(xs)),
            "fit_fooling_rate": float(fooled.float().mean()),
            "seconds": time.perf_counter() - start,
        }
        return UniversalPerturbation(delta=delta.detach().cpu(), threat=threat, target=target, info=info)

    # ------------------------------------------------------------------ SGD (Shafahi et al. 2020)
    def _fit_sgd(self, model, xs, labels, threat, target, delta, progress) -> Tensor:  # type: ignore[no-untyped-def]
        loss_fn = get_loss(self.loss)
        targeted = target is not None
        step0 = self.step_size if self.step_size is not None else threat.eps / 10
        n = len(xs)
        steps_per_epoch = math.ceil(n / self.batch_size)
        total = self.epochs * steps_per_epoch
        g = torch.Generator().manual_seed(self.seed)
        eps = threat.eps_tensor(1, xs.device, xs.dtype)
        step = 0
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=g).to(xs.device)
            for i in range(0, n, self.batch_size):
                idx = perm[i : i + self.batch_size]
                xb = xs[idx]
                yb = torch.full_like(labels[idx], target) if targeted else labels[idx]
                d = delta.detach().requires_grad_(True)
                with torch.enable_grad():
                    per = loss_fn(model(threat.clip(xb + d)), yb, targeted=targeted)
                    if self.clamp is not None:
                        per = per.clamp(max=self.clamp)
                    (grad,) = torch.autograd.grad(per.mean(), d)
                lr = step0 * 0.5 * (1 + math.cos(math.pi * step / total))
                delta = delta + lr * threat.lp.steepest(grad[None])[0]
                delta = threat.lp.project(delta[None], eps)[0]
                step += 1
            if progress is not None:
                progress(1)
        return delta.detach()

    # ------------------------------------------------------------------ DeepFool (Moosavi-Dezfooli et al. 2017)
    def _fit_deepfool(self, model, xs, labels, threat, delta, progress) -> Tensor:  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(self.seed)
        eps = threat.eps_tensor(1, xs.device, xs.dtype)
        for _ in range(self.epochs):
            for i in torch.randperm(len(xs), generator=g).tolist():
                xi = threat.clip(xs[i : i + 1] + delta)
                with torch.no_grad():
                    if int(model(xi).argmax(dim=1)) != int(labels[i]):
                        continue
                r = deepfool_step(model, xi, labels[i : i + 1], threat.norm, self.deepfool_steps, self.overshoot, threat.box)
                delta = threat.lp.project((delta + r[0])[None], eps)[0]
            if progress is not None:
                progress(1)
            fooled = float((_predict(model, threat.clip(xs + delta)) != labels).float().mean())
            if fooled >= self.fooling_goal:
                break
        return delta.detach()


def deepfool_step(
    model: nn.Module, x: Tensor, y: Tensor, norm: str, steps: int, overshoot: float, box: tuple[float, float]
) -> Tensor:
    """The minimal perturbation that moves ``x`` across the nearest linearised decision
    boundary (DeepFool, Moosavi-Dezfooli et al. 2016, arXiv:1511.04599), per sample.

    ``norm`` is ``"l2"`` or ``"linf"``; each iteration costs ``C`` backward passes.
    """
    r_total = torch.zeros_like(x)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        xa = (x + (1 + overshoot) * r_total).clamp(*box).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            c = logits.shape[1]
            grads = torch.stack([torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k < c - 1)[0] for k in range(c)], dim=1)
        logits = logits.detach()
        active &= logits.argmax(dim=1) == y
        if not bool(active.any()):
            break
        f = logits - logits.gather(1, y[:, None])  # (B, C)
        rows = torch.arange(x.shape[0], device=x.device)
        gf = grads.flatten(2)  # (B, C, D)
        wf = gf - gf[rows, y][:, None]
        dual = wf.abs().sum(dim=2) if norm == "linf" else wf.norm(dim=2)
        dist = f.abs() / dual.clamp_min(1e-12)
        dist.scatter_(1, y[:, None], float("inf"))
        k = dist.argmin(dim=1)
        wk, dk = wf[rows, k], dist[rows, k]
        step = (dk + 1e-4)[:, None] * (wk.sign() if norm == "linf" else wk / dual[rows, k].clamp_min(1e-12)[:, None])
        r_total = r_total + step.reshape(x.shape) * active.reshape((-1,) + (1,) * (x.dim() - 1))
    return (1 + overshoot) * r_total


def _predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])
