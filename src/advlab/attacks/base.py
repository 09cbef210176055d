"""The attack base class: one entry point that validates, batches, projects and verifies.

Subclasses implement only :meth:`Attack._run` (craft adversarial inputs for one batch).
:meth:`Attack.__call__` is never overridden: it checks the inputs, runs the attack only on
the samples that are not already adversarial, clips the output to the threat model's ball
and box, and recomputes success and norms with its own forward pass, so no attack can
report a perturbation it did not respect or a success it did not achieve.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.model_check import model_dtype, model_logits
from advlab.norms import NORM_NAMES, get_norm
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError, as_input_tensor, as_label_tensor
from advlab.victim import Victim, frozen, run_model

__all__ = ["Attack", "Batch", "AttackError", "model_device", "choose_targets", "TARGET_RULES"]

TARGET_RULES = ("random", "next", "least-likely")


class AttackError(ValueError):
    """An attack was asked for something its threat model or its design does not allow."""


@dataclass
class Batch:
    """One batch as an attack's ``_run`` receives it.

    Attributes
    ----------
    x: inputs, shape (B, ...), inside the box.
    y: the label the objective is about: the true label (untargeted) or the target (targeted).
    y_true: the true labels.
    index: global sample indices (for :class:`~advlab.rng.CounterRNG`).
    num_classes: number of classes of the model.
    """

    x: Tensor
    y: Tensor
    y_true: Tensor
    index: Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.x.shape[0])


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device(default)


def choose_targets(rule: str, logits: Tensor, y: Tensor, index: Tensor, seed: int) -> Tensor:
    """Target labels different from ``y``: ``random`` (seeded per sample), ``next`` ((y+1) mod C)
    or ``least-likely`` (the class with the smallest logit)."""
    c = logits.shape[1]
    if rule == "next":
        return (y + 1) % c
    if rule == "random":
        offset = CounterRNG(seed).randint(index, 999_983, c - 1, device=y.device)
        return (y + 1 + offset) % c
    if rule == "least-likely":
        masked = logits.scatter(1, y[:, None], float("inf"))
        return masked.argmin(dim=1)
    raise InputError(f"unknown target rule {rule!r}; expected a label tensor or one of {TARGET_RULES}")


@dataclass(frozen=True)
class Attack:
    """Base class of every attack: a frozen dataclass of hyperparameters.

    Class attributes describe the attack for the registry, the CLI and the docs:
    ``name`` (registry key), ``norms`` (supported threat-model norms), ``paper`` (citation),
    ``minimal`` (minimal-norm attack: ``eps`` may be ``None``), ``targeted`` support,
    ``knowledge`` needed, and ``family``.
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = NORM_NAMES
    paper: ClassVar[str] = ""
    minimal: ClassVar[bool] = False
    supports_targeted: ClassVar[bool] = True
    supports_untargeted: ClassVar[bool] = True
    knowledge: ClassVar[str] = "white"
    family: ClassVar[str] = "other"
    uses_gradients: ClassVar[bool] = True

    seed: int = 0

    # ------------------------------------------------------------------ to implement
    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        """Return adversarial inputs for ``batch`` (shape of ``batch.x``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Attack:
        return dataclasses.replace(self, **changes)

    def check_threat(self, threat: ThreatModel) -> None:
        """Raise :class:`AttackError` if this attack cannot run under ``threat``."""
        if not isinstance(threat, ThreatModel):
            raise AttackError(f"threat must be a ThreatModel, got {type(threat).__name__}")
        if threat.norm not in self.norms:
            raise AttackError(
                f"attack {self.name!r} supports norms {', '.join(self.norms)}, not {threat.norm!r}"
            )
        if threat.eps is None and not self.minimal:
            raise AttackError(
                f"attack {self.name!r} is a fixed-budget attack: give the threat model an eps "
                f"(e.g. ThreatModel({threat.norm!r}, eps=...))"
            )
        if threat.targeted and not self.supports_targeted:
            raise AttackError(f"attack {self.name!r} has no targeted version")
        if not threat.targeted and not self.supports_untargeted:
            raise AttackError(f"attack {self.name!r} is targeted only: use ThreatModel(..., targeted=True)")

    # ------------------------------------------------------------------ the entry point
    def __call__(
        self,
        model: nn.Module,
        x: Any,
        y: Any,
        threat: ThreatModel,
        *,
        targets: Any = None,
        batch_size: int | None = 500,
        device: torch.device | str | None = None,
        progress: Callable[[int], None] | None = None,
        adaptive: bool = True,
    ) -> AttackResult:
        """Attack ``model`` on inputs ``x`` with true labels ``y`` under ``threat``.

        Parameters
        ----------
        model:
            Any ``torch.nn.Module`` mapping inputs in ``threat.box`` to logits ``(N, C)``.
        x, y:
            Inputs (batch first, floats in the box) and integer labels, NumPy or torch.
        threat:
            The threat model; the result is guaranteed to respect it.
        targets:
            For a targeted threat model: target labels, or a rule ``"random"``, ``"next"``,
            ``"least-likely"``.
        batch_size:
            Samples per batch (results per sample do not depend on it).
        device:
            Where to run; by default the model's device.
        progress:
            Called with the number of samples finished after each batch.
        adaptive:
            Attack a defense the way it declares it must be attacked (BPDA, EOT, a loss on
            logits; see :mod:`advlab.defenses.adaptive`).  ``False`` attacks the deployed
            model naively, to show what gradient masking hides.  Success is always judged
            on the deployed model.
        """
        self.check_threat(threat)
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        dev = torch.device(device) if device is not None else model_device(model)
        x_t = as_input_tensor(x, threat.box, device=dev, dtype=model_dtype(model))
        n = x_t.shape[0]
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive int or None, got {batch_size!r}")
        bs = n if batch_size is None else batch_size
        rng = CounterRNG(self.seed)
        runner, attacked = (self, model)
        if adaptive:
            from advlab.defenses.adaptive import adapt

            runner, attacked = adapt(self, model)

        with frozen(model):
            clean_logits = model_logits(model, x_t, run_model, batch_size=bs)
            num_classes = clean_logits.shape[1]
            y_t = as_label_tensor(y, n, num_classes, device=dev)
            target_t = self._targets(threat, targets, clean_logits, y_t, n, num_classes, dev)
            goal = target_t if target_t is not None else y_t
            clean_pred = clean_logits.argmax(dim=1)
            already = clean_pred == goal if threat.targeted else clean_pred != goal

            x_adv = x_t.clone()
            forwards = torch.zeros(n, dtype=torch.long, device=dev)
            backwards = torch.zeros(n, dtype=torch.long, device=dev)
            todo = (~already).nonzero().squeeze(1)
            start = time.perf_counter()
            done = int(already.sum())
            if progress is not None and done:
                progress(done)
            for i in range(0, todo.numel(), bs):
                sel = todo[i : i + bs]
                batch = Batch(x=x_t[sel], y=goal[sel], y_true=y_t[sel], index=sel, num_classes=num_classes)
                victim = Victim(attacked, len(sel), dev)
                out = runner._run(victim, batch, threat, rng)
                if not isinstance(out, Tensor) or out.shape != batch.x.shape:
                    raise AttackError(f"attack {self.name!r} returned {getattr(out, 'shape', out)!r}, expected {tuple(batch.x.shape)}")
                out = torch.nan_to_num(out.detach().to(x_t.dtype), nan=0.0)
                x_adv[sel] = threat.project(out, batch.x)
                forwards[sel] = victim.forwards
                backwards[sel] = victim.backwards
                if progress is not None:
                    progress(len(sel))
            seconds = time.perf_counter() - start

            # Verification: only the attacked rows changed; the others keep their clean logits.
            adv_logits = clean_logits.clone()
            if todo.numel():
                adv_logits[todo] = model_logits(model, x_adv[todo], run_model, batch_size=bs, where="the adversarial inputs")
        checks = torch.ones(n, dtype=torch.long, device=dev)
        checks[todo] += 1
        adv_pred = adv_logits.argmax(dim=1)
        success = adv_pred == goal if threat.targeted else adv_pred != goal
        delta = x_adv - x_t
        norms = {k: get_norm(k).measure(delta) for k in NORM_NAMES}
        conf = torch.softmax(adv_logits, dim=1).gather(1, adv_pred[:, None]).squeeze(1)
        return AttackResult(
            x_adv=x_adv,
            y=y_t,
            success=success,
            clean_pred=clean_pred,
            adv_pred=adv_pred,
            norms=norms,
            forwards=forwards,
            backwards=backwards,
            checks=checks,
            seconds=seconds,
            attack=self.name,
            threat=threat,
            params=runner.params(),
            target=target_t,
            adv_confidence=conf,
        )

    def _targets(
        self, threat: ThreatModel, targets: Any, logits: Tensor, y: Tensor, n: int, c: int, dev: torch.device
    ) -> Tensor | None:
        if not threat.targeted:
            if targets is not None:
                raise InputError("targets were given but the threat model is untargeted (use targeted=True)")
            return None
        if targets is None:
            raise InputError(
                f"a targeted threat model needs targets=: a label tensor or one of {TARGET_RULES}"
            )
        if isinstance(targets, str):
            return choose_targets(targets, logits, y, torch.arange(n, device=dev), self.seed)
        t = as_label_tensor(targets, n, c, name="targets", device=dev)
        if bool((t == y).any()):
            raise InputError(f"targets equal the true label for {int((t == y).sum())} sample(s); a target must differ from y")
        return t

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"


