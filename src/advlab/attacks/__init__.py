"""Attacks: importing this package registers every built-in attack.

Use :func:`get_attack` (by name) or the classes directly; every attack is called as
``attack(model, x, y, threat) -> AttackResult``.
"""

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import (
    UnknownAttackError,
    attack_class,
    available_attacks,
    get_attack,
    make_attack,
    register,
)

# Built-in attacks: importing a module registers its attacks (one line per module).
from advlab.attacks import gradient  # noqa: E402,F401,I001  (FGSM, BIM, PGD, MI-FGSM, C&W-Linf)
from advlab.attacks import apgd  # noqa: E402,F401,I001  (APGD, APGD-T)

__all__ = [
    "Attack",
    "AttackError",
    "Batch",
    "UnknownAttackError",
    "attack_class",
    "available_attacks",
    "get_attack",
    "make_attack",
    "register",
]
