"""The threat model: the one object every attack, defense and evaluation shares.

It says what the adversary wants (``goal``, ``targeted``), what it knows (``knowledge``) and
what it may change (``norm``, ``eps``, ``box``), and it owns the geometry that follows:
projection onto the ball, clipping to the box, distances, random starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from advlab.norms import LpNorm, canonical_norm, get_norm
from advlab.rng import CounterRNG

__all__ = ["ThreatModel", "KNOWLEDGE", "GOALS"]

KNOWLEDGE = ("white", "gray", "black")
GOALS = ("evasion", "poisoning")


@dataclass(frozen=True)
class ThreatModel:
    """What the adversary wants, knows and may change.

    Parameters
    ----------
    norm:
        ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"`` (common spellings such as ``"Linf"`` or ``2``
        are accepted and normalised).
    eps:
        Radius of the perturbation ball; ``None`` means unbounded (minimal-norm attacks then
        report the smallest perturbation they found).  For ``l0`` it counts changed features.
    targeted:
        Whether the adversary wants a chosen class (``True``) or any wrong class.
    box:
        Valid input range ``(low, high)``; adversarial inputs are always clipped to it.
    knowledge:
        ``"white"`` (weights and gradients), ``"gray"`` (architecture/training data, no
        queries at attack time) or ``"black"`` (queries only).
    goal:
        ``"evasion"`` (test-time inputs) or ``"poisoning"`` (training data).

    Examples
    --------
    >>> tm = ThreatModel("linf", eps=0.3)
    >>> tm.describe()
    'untargeted evasion, white box, Linf <= 0.3, inputs in [0.0, 1.0]'
    """

    norm: str = "linf"
    eps: float | None = None
    targeted: bool = False
    box: tuple[float, float] = field(default=(0.0, 1.0))
    knowledge: str = "white"
    goal: str = "evasion"

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        if self.eps is not None:
            if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
                raise TypeError(f"eps must be a number or None, got {type(self.eps).__name__}")
            eps = float(self.eps)
            if math.isnan(eps) or eps < 0:
                raise ValueError(f"eps must be >= 0 (or None for unbounded), got {self.eps!r}")
            if math.isinf(eps):
                eps_value: float | None = None
            else:
                eps_value = eps
            object.__setattr__(self, "eps", eps_value)
        if not isinstance(self.targeted, bool):
            raise TypeError(f"targeted must be True or False, got {self.targeted!r}")
        try:
            lo, hi = (float(b) for b in self.box)
        except (TypeError, ValueError):
            raise ValueError(f"box must be a pair (low, high), got {self.box!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"box must satisfy low < high with finite bounds, got {self.box!r}")
        object.__setattr__(self, "box", (lo, hi))
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f"knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {self.goal!r}")

    # ------------------------------------------------------------------ geometry
    @property
    def lp(self) -> LpNorm:
        """The norm object (measure, project, steepest direction, sample)."""
        return get_norm(self.norm)

    @property
    def bounded(self) -> bool:
        return self.eps is not None

    def eps_tensor(self, n: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``eps`` repeated per sample (``inf`` when unbounded)."""
        value = math.inf if self.eps is None else self.eps
        return torch.full((n,), value, device=device, dtype=dtype)

    def distance(self, x_adv: Tensor, x: Tensor, norm: str | None = None) -> Tensor:
        """Per-sample distance between ``x_adv`` and ``x`` in this (or another) norm."""
        lp = self.lp if norm is None else get_norm(norm)
        return lp.measure(x_adv - x)

    def clip(self, x: Tensor) -> Tensor:
        """Clip to the valid input box."""
        return x.clamp(self.box[0], self.box[1])

    def project(self, x_adv: Tensor, x: Tensor, eps: Tensor | float | None = None) -> Tensor:
        """Bring ``x_adv`` into the ball around ``x`` and into the box.

        Projection onto the ball first, then clipping: clipping never moves a coordinate
        further from ``x`` (``x`` is inside the box), so the result lies in both sets.
        """
        if eps is None:
            eps = self.eps
        if eps is not None:
            e = eps if isinstance(eps, Tensor) else torch.full((x.shape[0],), float(eps), device=x.device, dtype=x.dtype)
            if torch.isfinite(e).any():
                e = torch.where(torch.isfinite(e), e, torch.full_like(e, 1e30))
                x_adv = x + self.lp.project(x_adv - x, e.to(x.dtype))
        return self.clip(x_adv)

    def contains(self, x_adv: Tensor, x: Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> Tensor:
        """Per-sample check that ``x_adv`` lies in the box and in the ball around ``x``."""
        lo, hi = self.box
        flat = x_adv.reshape(x_adv.shape[0], -1)
        in_box = (flat >= lo - atol).all(dim=1) & (flat <= hi + atol).all(dim=1) & torch.isfinite(flat).all(dim=1)
        if self.eps is None:
            return in_box
        d = self.distance(x_adv, x)
        if self.norm == "l0":
            in_ball = d <= self.eps + 0.5
        else:
            in_ball = d <= self.eps * (1 + rtol) + atol
        return in_box & in_ball

    def random_start(self, x: Tensor, rng: CounterRNG, index: Tensor, stream: int = 0, radius: str = "volume") -> Tensor:
        """A random point of the ball around ``x`` (clipped to the box).

        ``radius="volume"``: uniform over the ball's volume.  ``radius="uniform"``: a uniform
        direction at a distance drawn uniformly from ``[0, eps]`` — for L1/L2 balls in high
        dimension a volume-uniform point lies almost on the surface, and starting there
        leaves an iterative attack fighting its own noise for the budget.
        """
        if self.eps is None:
            raise ValueError("a random start needs a bounded threat model (eps is None)")
        if radius not in ("volume", "uniform"):
            raise ValueError(f"radius must be 'volume' or 'uniform', got {radius!r}")
        eps = self.eps_tensor(x.shape[0], x.device, x.dtype)
        delta = self.lp.sample(rng, index, stream, x, eps)
        if radius == "uniform":
            view = (-1,) + (1,) * (x.dim() - 1)
            size = self.lp.measure(delta).clamp_min(1e-12)
            u = rng.uniform(index, stream + 0x5EED, (), device=x.device, dtype=x.dtype)
            delta = delta * (u * eps / size).view(view)
        return self.clip(x + delta)

    # ------------------------------------------------------------------ reporting
    def replace(self, **changes: Any) -> ThreatModel:
        """A copy with some fields changed (``tm.replace(eps=0.1)``)."""
        values = asdict(self)
        values.update(changes)
        return ThreatModel(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThreatModel:
        unknown = set(data) - {"norm", "eps", "targeted", "box", "knowledge", "goal"}
        if unknown:
            raise ValueError(f"unknown threat model field(s): {sorted(unknown)}")
        values = dict(data)
        if "box" in values:
            values["box"] = tuple(values["box"])
        return cls(**values)

    def describe(self) -> str:
        """One line in plain words, used in CLI summaries and reports."""
        names = {"linf": "Linf", "l2": "L2", "l1": "L1", "l0": "L0"}
        aim = "targeted" if self.targeted else "untargeted"
        budget = f"{names[self.norm]} <= {self.eps:g}" if self.eps is not None else f"unbounded {names[self.norm]} (minimal norm)"
        return f"{aim} {self.goal}, {self.knowledge} box, {budget}, inputs in [{self.box[0]}, {self.box[1]}]"
