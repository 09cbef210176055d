"""A model "of the user's own" for the CLI tests: built by a factory, weights from safetensors.

``user_mlp()`` is the seed MLP's architecture as a plain ``nn.Sequential`` that expects
normalised inputs ``(x - MEAN) / STD``, the convention most published models follow.
:func:`fold_normalisation` turns the trained seed MLP's weights into weights for it, so that
``user_mlp`` with those weights, given ``--mean MEAN --std STD``, computes the seed MLP.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN, STD = 0.1307, 0.3081


def user_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))


def needs_an_argument(width: int) -> nn.Module:
    return nn.Linear(784, width)


def fold_normalisation(seed_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights for ``user_mlp`` on normalised inputs z = (x - MEAN) / STD that give the seed
    MLP's logits on x: W' z + b' = W x + b with W' = W * STD and b' = b + MEAN * W.sum(1)."""
    w, b = seed_state["fc1.weight"], seed_state["fc1.bias"]
    return {
        "1.weight": (w * STD).contiguous(),
        "1.bias": (b + MEAN * w.sum(1)).contiguous(),
        "3.weight": seed_state["fc2.weight"].clone().contiguous(),
        "3.bias": seed_state["fc2.bias"].clone().contiguous(),
    }
