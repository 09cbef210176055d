"""AttackResult: what one attack run produced, per sample, recomputed by the library itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advlab.norms import NORM_NAMES
from advlab.threat import ThreatModel

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """The outcome of one attack run on a batch of inputs.

    Every field with a leading sample dimension has one entry per input, in input order.
    ``success`` and ``norms`` are never taken from the attack itself: the attack base class
    clips the attack's output to the threat model and recomputes them with a fresh forward
    pass.

    Attributes
    ----------
    x_adv:
        Adversarial inputs, same shape as the inputs, inside the threat model's ball and box.
    y:
        True labels.
    target:
        Target labels for a targeted attack, else ``None``.
    success:
        Per-sample success: prediction differs from ``y`` (untargeted) or equals ``target``
        (targeted).  An input that is already misclassified counts as an untargeted success
        with a zero perturbation.
    clean_pred, adv_pred:
        The model's predictions on the original and the adversarial inputs.
    norms:
        Per-sample perturbation size in every norm (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"``).
    forwards, backwards:
        Per-sample count of forward passes (queries) and backward passes (gradients) the
        attack spent, not counting the library's own checks.
    checks:
        Per-sample forward passes the library itself ran around the attack: the clean pass
        (which finds samples adversarial from the start) and, for attacked samples, the
        verification of the output.  ``forwards + checks`` is every row this run pushed
        through the model (:attr:`model_forwards`).
    seconds:
        Wall-clock time of the attack.
    attack, params:
        The attack's registry name and hyperparameters.
    threat:
        The threat model the result is valid under.
    """

    x_adv: Tensor
    y: Tensor
    success: Tensor
    clean_pred: Tensor
    adv_pred: Tensor
    norms: dict[str, Tensor]
    forwards: Tensor
    backwards: Tensor
    seconds: float
    attack: str
    threat: ThreatModel
    params: dict[str, Any] = field(default_factory=dict)
    target: Tensor | None = None
    adv_confidence: Tensor | None = None
    checks: Tensor | None = None

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def queries(self) -> Tensor:
        """Alias of ``forwards``: the number of model queries per sample."""
        return self.forwards

    @property
    def gradients(self) -> Tensor:
        """Alias of ``backwards``: the number of gradient computations per sample."""
        return self.backwards

    @property
    def model_forwards(self) -> Tensor:
        """Per-sample rows pushed through the model by this run: the attack's forwards plus the
        library's clean pass and verification."""
        return self.forwards if self.checks is None else self.forwards + self.checks

    @property
    def clean_correct(self) -> Tensor:
        return self.clean_pred == self.y

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if len(self) else 0.0

    @property
    def robust_accuracy(self) -> float:
        """Share of inputs still classified correctly after the attack."""
        return float((self.adv_pred == self.y).float().mean()) if len(self) else 0.0

    @property
    def norm(self) -> Tensor:
        """Per-sample perturbation size in the threat model's norm."""
        return self.norms[self.threat.norm]

    def median_norm(self, norm: str | None = None, successful_only: bool = True) -> float:
        """Median perturbation of the successful samples (``nan`` when none succeeded)."""
        values = self.norms[norm or self.threat.norm]
        mask = self.success & self.clean_correct if successful_only else torch.ones_like(self.success)
        values = values[mask]
        return float(values.median()) if values.numel() else float("nan")

    def summary(self) -> dict[str, Any]:
        """Plain numbers for logs, CLI tables and JSON."""
        ok = self.success & self.clean_correct
        return {
            "attack": self.attack,
            "params": self.params,
            "threat": self.threat.to_dict(),
            "n": len(self),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "success_rate_on_correct": float(ok.sum()) / max(1, int(self.clean_correct.sum())),
            "median_norm": {k: _nan_to_none(self.median_norm(k)) for k in NORM_NAMES},
            "mean_forwards": float(self.forwards.float().mean()) if len(self) else 0.0,
            "mean_backwards": float(self.backwards.float().mean()) if len(self) else 0.0,
            "model_forwards": int(self.model_forwards.sum()),
            "median_forwards_successful": _nan_to_none(
                float(self.forwards[ok].float().median()) if ok.any() else float("nan")
            ),
            "seconds": self.seconds,
            "images_per_second": len(self) / self.seconds if self.seconds > 0 else None,
        }

    # ------------------------------------------------------------------ combine
    @classmethod
    def concat(cls, results: list[AttackResult]) -> AttackResult:
        """Join results of consecutive batches of the same attack and threat model."""
        if not results:
            raise ValueError("concat needs at least one AttackResult")
        first = results[0]
        for r in results[1:]:
            if r.threat != first.threat or r.attack != first.attack:
                raise ValueError("can only concatenate results of the same attack and threat model")
        cat = lambda name: torch.cat([getattr(r, name) for r in results])  # noqa: E731
        return cls(
            x_adv=cat("x_adv"),
            y=cat("y"),
            success=cat("success"),
            clean_pred=cat("clean_pred"),
            adv_pred=cat("adv_pred"),
            norms={k: torch.cat([r.norms[k] for r in results]) for k in first.norms},
            forwards=cat("forwards"),
            backwards=cat("backwards"),
            seconds=sum(r.seconds for r in results),
            attack=first.attack,
            threat=first.threat,
            params=dict(first.params),
            target=cat("target") if first.target is not None else None,
            adv_confidence=cat("adv_confidence") if first.adv_confidence is not None else None,
            checks=cat("checks") if all(r.checks is not None for r in results) else None,
        )

    def select(self, mask_or_index: Tensor) -> AttackResult:
        """The result restricted to some samples."""
        sel = mask_or_index
        return AttackResult(
            x_adv=self.x_adv[sel],
            y=self.y[sel],
            success=self.success[sel],
            clean_pred=self.clean_pred[sel],
            adv_pred=self.adv_pred[sel],
            norms={k: v[sel] for k, v in self.norms.items()},
            forwards=self.forwards[sel],
            backwards=self.backwards[sel],
            seconds=self.seconds,
            attack=self.attack,
            threat=self.threat,
            params=dict(self.params),
            target=self.target[sel] if self.target is not None else None,
            adv_confidence=self.adv_confidence[sel] if self.adv_confidence is not None else None,
            checks=self.checks[sel] if self.checks is not None else None,
        )

    # ------------------------------------------------------------------ export
    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-sample field as a NumPy array (``norm_l2`` etc. for the norms)."""
        out: dict[str, np.ndarray] = {
            "x_adv": self.x_adv.detach().cpu().numpy(),
            "y": self.y.cpu().numpy(),
            "success": self.success.cpu().numpy(),
            "clean_pred": self.clean_pred.cpu().numpy(),
            "adv_pred": self.adv_pred.cpu().numpy(),
            "forwards": self.forwards.cpu().numpy(),
            "backwards": self.backwards.cpu().numpy(),
        }
        for k, v in self.norms.items():
            out[f"norm_{k}"] = v.cpu().numpy()
        if self.target is not None:
            out["target"] = self.target.cpu().numpy()
        if self.adv_confidence is not None:
            out["adv_confidence"] = self.adv_confidence.cpu().numpy()
        if self.checks is not None:
            out["checks"] = self.checks.cpu().numpy()
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.npz`` arrays) and ``path`` with ``.json`` (summary); returns the npz path."""
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, **self.arrays())  # type: ignore[arg-type]
        p.with_suffix(".json").write_text(json.dumps(self.summary(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | Path) -> AttackResult:
        """Read a result written by :meth:`save` (no pickle is involved)."""
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        meta = json.loads(p.with_suffix(".json").read_text())
        with np.load(p, allow_pickle=False) as data:
            arr = {k: torch.from_numpy(data[k]) for k in data.files}
        return cls(
            x_adv=arr["x_adv"],
            y=arr["y"],
            success=arr["success"],
            clean_pred=arr["clean_pred"],
            adv_pred=arr["adv_pred"],
            norms={k[5:]: v for k, v in arr.items() if k.startswith("norm_")},
            forwards=arr["forwards"],
            backwards=arr["backwards"],
            seconds=float(meta["seconds"]),
            attack=meta["attack"],
            threat=ThreatModel.from_dict(meta["threat"]),
            params=meta.get("params", {}),
            target=arr.get("target"),
            adv_confidence=arr.get("adv_confidence"),
            checks=arr.get("checks"),
        )

    def __repr__(self) -> str:
        return (
            f"AttackResult(attack={self.attack!r}, n={len(self)}, success_rate={self.success_rate:.3f}, "
            f"robust_accuracy={self.robust_accuracy:.3f}, threat={self.threat.describe()!r}, seconds={self.seconds:.2f})"
        )


def _nan_to_none(v: float) -> float | None:
    return None if v != v else v
