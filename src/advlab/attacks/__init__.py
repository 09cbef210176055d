"""Attacks: importing this package registers every built-in attack.

Use :func:`get_attack` (by name) or the classes directly; every attack is called as
``attack(model, x, y, threat) -> AttackResult``.
"""

# Built-in attack modules register their attacks on import: one line per module.
from advlab.attacks import (  # noqa: F401
    apgd,  # APGD, APGD-T
    ensemble,  # the AutoAttack-style cascade
    gradient,  # FGSM, BIM, PGD, MI-FGSM, C&W-Linf
)
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.output_matching import OutputMatching, OutputMatchingNoise, fooling_images
from advlab.attacks.registry import (
    UnknownAttackError,
    attack_class,
    available_attacks,
    get_attack,
    make_attack,
    register,
)

__all__ = [
    "Attack",
    "AttackError",
    "Batch",
    "OutputMatching",
    "OutputMatchingNoise",
    "UnknownAttackError",
    "attack_class",
    "available_attacks",
    "fooling_images",
    "get_attack",
    "make_attack",
    "register",
]
