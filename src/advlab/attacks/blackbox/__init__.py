"""Query-only attacks: score-based (Square, SimBA, NES) and decision-based (HopSkipJump,
Boundary). They see the victim only through an :class:`advlab.blackbox.BlackBox`."""

from advlab.attacks.blackbox.base import BlackBoxAttack
from advlab.attacks.blackbox.boundary import Boundary
from advlab.attacks.blackbox.hopskipjump import HopSkipJump
from advlab.attacks.blackbox.nes import NES
from advlab.attacks.blackbox.simba import SimBA
from advlab.attacks.blackbox.square import Square

__all__ = ["BlackBoxAttack", "Boundary", "HopSkipJump", "NES", "SimBA", "Square"]
