"""Attacks: importing this package registers every built-in attack.

Use :func:`get_attack` (by name) or the classes directly; every attack is called as
``attack(model, x, y, threat) -> AttackResult``.
"""

from advlab.attacks import masked  # noqa: F401,E402  (registers "masked")
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.eot import EOT, transformed_success
from advlab.attacks.masked import MaskedAttack
from advlab.attacks.registry import (
    UnknownAttackError,
    attack_class,
    available_attacks,
    get_attack,
    make_attack,
    register,
)
from advlab.attacks.transforms import Transformations

# Built-in attacks: importing a module registers its attacks (one line per module).
from advlab.attacks import gradient  # noqa: E402,F401,I001  (FGSM, BIM, PGD, MI-FGSM, C&W-Linf)
from advlab.attacks import apgd  # noqa: E402,F401,I001  (APGD, APGD-T)

__all__ = [
    "Attack",
    "AttackError",
    "Batch",
    "EOT",
    "MaskedAttack",
    "Transformations",
    "transformed_success",
    "UnknownAttackError",
    "attack_class",
    "available_attacks",
    "get_attack",
    "make_attack",
    "register",
]
