"""What a graph attack produced, recomputed by the library: the flips it made, the features it
changed, and the predictions on the attacked nodes before and after (evasion) or after
retraining (poisoning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advlab.graphs.threat import GraphThreatModel

__all__ = ["GraphAttackResult"]


@dataclass
class GraphAttackResult:
    """The outcome of one graph attack.

    Attributes
    ----------
    attack, params:
        The attack's registry name and hyperparameters.
    threat:
        The graph threat model the result respects (checked by the attack base class).
    nodes:
        The attacked (evaluated) node indices.
    y:
        Their true labels.
    clean_pred, adv_pred:
        Predictions on ``nodes`` on the clean graph (by the given model) and on the perturbed
        graph (the same model for evasion, a model retrained on the perturbed graph for
        poisoning).
    flips:
        Undirected node pairs ``(k, 2)`` that were toggled, ``i < j``.
    flip_owner:
        For per-node (targeted) attacks, the position in ``nodes`` of the target each flip
        was made for (each target is evaluated on its own perturbed graph); ``-1`` for
        global attacks.
    x_adv:
        Perturbed node features, or ``None`` when the features were not changed.
    feature_norms:
        Per-node feature perturbation size in the feature threat model's norm, or ``None``.
    seconds:
        Wall-clock time of the attack (without retraining).
    retrained:
        Whether ``adv_pred`` comes from a model retrained on the perturbed graph.
    """

    attack: str
    params: dict[str, Any]
    threat: GraphThreatModel
    nodes: Tensor
    y: Tensor
    clean_pred: Tensor
    adv_pred: Tensor
    flips: Tensor
    flip_owner: Tensor
    x_adv: Tensor | None = None
    feature_norms: Tensor | None = None
    seconds: float = 0.0
    retrained: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.nodes.numel())

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_pred == self.y).float().mean()) if len(self) else 0.0

    @property
    def robust_accuracy(self) -> float:
        """Share of the attacked nodes still classified correctly."""
        return float((self.adv_pred == self.y).float().mean()) if len(self) else 0.0

    @property
    def success(self) -> Tensor:
        """Per node: classified correctly on the clean graph and wrongly after the attack."""
        return (self.clean_pred == self.y) & (self.adv_pred != self.y)

    @property
    def success_rate(self) -> float:
        """Share of the clean-correct nodes the attack made wrong."""
        correct = self.clean_pred == self.y
        return float(self.success.sum()) / max(1, int(correct.sum()))

    @property
    def num_flips(self) -> int:
        return int(self.flips.shape[0])

    def flips_per_target(self) -> Tensor:
        """Flips spent on each target (per-node attacks) or the total (global attacks)."""
        if bool((self.flip_owner < 0).all()):
            return torch.tensor([self.num_flips])
        return torch.bincount(self.flip_owner, minlength=len(self))

    def summary(self) -> dict[str, Any]:
        """Plain numbers for tables and JSON."""
        return {
            "attack": self.attack,
            "params": self.params,
            "threat": self.threat.to_dict(),
            "nodes": len(self),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "flips": self.num_flips,
            "max_feature_norm": float(self.feature_norms.max()) if self.feature_norms is not None and len(self.feature_norms) else None,
            "retrained": self.retrained,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return (
            f"GraphAttackResult(attack={self.attack!r}, nodes={len(self)}, clean_accuracy={self.clean_accuracy:.3f}, "
            f"robust_accuracy={self.robust_accuracy:.3f}, flips={self.num_flips}, threat={self.threat.describe()!r})"
        )
