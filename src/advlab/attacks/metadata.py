"""What an attack class declares about itself, so that defaults are built from the registry.

Every :class:`~advlab.attacks.base.Attack` subclass describes, in class attributes, the
threat models it supports (``norms``, ``knowledge``, ``minimal``, ``supports_targeted``,
``supports_untargeted``), its ``cost_per_step`` and whether it can attack a defense's adaptive
form (``supports_adaptive``), and the ``roles`` it takes in the library's defaults: the evaluation cascade
(``"cascade"``), the minimal-norm distribution (``"minimal"``), the audit's single-step and
black-box checks (``"single-step"``, ``"black-box"``) and the playground (``"playground"``).
Defaults are queried from the registry (:mod:`advlab.attacks.cascade`), so no list of attack
names exists outside it and a new attack joins a default by declaring a role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Role", "ROLE_KINDS", "FOCUS", "WHEN"]

ROLE_KINDS = ("cascade", "minimal", "single-step", "black-box", "playground")
# Which samples a cascade member is run on: every sample still robust, or only those the
# cheaper members left close to the decision boundary (see advlab.attacks.cascade).
FOCUS = ("all", "uncertain")
WHEN = (None, "targeted", "untargeted")


@dataclass(frozen=True)
class Role:
    """One place an attack takes in the library's defaults.

    Parameters
    ----------
    kind:
        One of :data:`ROLE_KINDS`.
    order:
        Running order (cascade) or preference (other kinds): smaller first.
    params:
        Hyperparameters of the attack in this role (``{"loss": "dlr"}``).
    when:
        ``"targeted"`` / ``"untargeted"``: only for that kind of threat model.
    focus:
        Cascade members only: ``"all"`` (every sample still robust) or ``"uncertain"``
        (only the samples the earlier members left near the decision boundary).
    norms:
        Limit the role to these norms (default: every norm the attack supports).
    margin:
        ``"uncertain"`` members only: their own threshold on the relative margin left
        (default: the cascade's ``focus_margin``), for a member spent only on the samples
        closest to the boundary.
    """

    kind: str
    order: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    when: str | None = None
    focus: str = "all"
    norms: tuple[str, ...] | None = None
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS:
            raise ValueError(f"role kind must be one of {ROLE_KINDS}, got {self.kind!r}")
        if self.focus not in FOCUS:
            raise ValueError(f"role focus must be one of {FOCUS}, got {self.focus!r}")
        if self.when not in WHEN:
            raise ValueError(f"role 'when' must be one of {WHEN}, got {self.when!r}")
        object.__setattr__(self, "params", dict(self.params))
