"""Poisoning attacks: the training set is attacked, not the input.

Each attack turns a clean :class:`~advlab.data.Dataset` into a :class:`PoisonedData` whose
training split feeds the ordinary training loop; :func:`poison_report` measures clean
accuracy, accuracy on the class under attack and the attack's success rate.
"""

from advlab.poisoning.backdoor import TRIGGERS, BadNets
from advlab.poisoning.base import (
    PoisonedData,
    PoisonReport,
    choose_rows,
    poison_report,
    train_poisoned,
)
from advlab.poisoning.feature_collision import FeatureCollision, fine_tune, penultimate
from advlab.poisoning.label_flip import LabelFlip

__all__ = [
    "BadNets",
    "FeatureCollision",
    "LabelFlip",
    "PoisonReport",
    "PoisonedData",
    "TRIGGERS",
    "choose_rows",
    "fine_tune",
    "penultimate",
    "poison_report",
    "train_poisoned",
]
