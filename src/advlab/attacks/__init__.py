"""Attacks: importing this package registers every built-in attack.

Use :func:`get_attack` (by name) or the classes directly; every attack is called as
``attack(model, x, y, threat) -> AttackResult``.
"""

# Built-in attacks register themselves on import.
from advlab.attacks import advgan, blackbox, transfer  # noqa: E402,F401
from advlab.attacks.base import Attack, AttackError, Batch
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
    "UnknownAttackError",
    "attack_class",
    "available_attacks",
    "get_attack",
    "make_attack",
    "register",
]
