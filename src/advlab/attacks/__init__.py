"""Attacks: importing this package registers every built-in attack.

Use :func:`get_attack` (by name) or the classes directly; every attack is called as
``attack(model, x, y, threat) -> AttackResult``.
"""

# Built-in attack modules register their attacks on import: one line per module.
from advlab.attacks import (  # noqa: F401
    advgan,  # AdvGAN (gray box, generative)
    apgd,  # APGD, APGD-T
    blackbox,  # Square, SimBA, NES (score-based); HopSkipJump, Boundary (decision-based)
    carlini_wagner,  # C&W L2
    ddn,  # DDN (L2)
    deepfool,  # DeepFool (L2, Linf)
    ensemble,  # the AutoAttack-style cascade
    fmn,  # FMN (L0, L1, L2, Linf)
    gradient,  # FGSM, BIM, PGD, MI-FGSM, C&W-Linf
    jsma,  # JSMA (L0)
    masked,  # sticker-like attacks confined to a mask
    output_matching,  # the seed report's output matching: from noise (5.1), with a prior (5.2)
    smoothadv,  # SmoothAdv-PGD on smoothed classifiers
    transfer,  # craft on a surrogate, evaluate on the victim
)
from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.eot import EOT, transformed_success
from advlab.attacks.masked import MaskedAttack
from advlab.attacks.output_matching import OutputMatching, OutputMatchingNoise, fooling_images
from advlab.attacks.registry import (
    UnknownAttackError,
    attack_class,
    available_attacks,
    get_attack,
    make_attack,
    register,
)
from advlab.attacks.transforms import Transformations

__all__ = [
    "Attack",
    "AttackError",
    "Batch",
    "EOT",
    "MaskedAttack",
    "OutputMatching",
    "OutputMatchingNoise",
    "Transformations",
    "transformed_success",
    "UnknownAttackError",
    "attack_class",
    "available_attacks",
    "fooling_images",
    "get_attack",
    "make_attack",
    "register",
]
