"""Request and response bodies of the playground API, validated by pydantic."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, field_validator

IMAGE_SIDE = 28
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
MAX_STEPS = 500
EPS_LIMITS = {"linf": 1.0, "l2": 28.0, "l1": 784.0, "l0": 784.0}
DEFENSES = ("none", "binary-threshold")


def _check_pixels(v: list[float] | list[list[float]]) -> list[float]:
    flat: list[float]
    if v and isinstance(v[0], list):
        rows = v
        if len(rows) != IMAGE_SIDE or any(not isinstance(r, list) or len(r) != IMAGE_SIDE for r in rows):
            raise ValueError(f"image must be {IMAGE_SIDE}x{IMAGE_SIDE} pixels or a flat list of {IMAGE_SIZE}")
        flat = [p for r in rows for p in r]  # type: ignore[union-attr]
    else:
        flat = list(v)  # type: ignore[arg-type]
    if len(flat) != IMAGE_SIZE:
        raise ValueError(f"image must have {IMAGE_SIZE} pixels ({IMAGE_SIDE}x{IMAGE_SIDE}), got {len(flat)}")
    for p in flat:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ValueError(f"image pixels must be finite numbers, found {p!r} ({type(p).__name__})")
        if p < 0.0 or p > 1.0:
            raise ValueError(f"image pixels must lie in [0, 1], found {p}")
    return [float(p) for p in flat]


class PredictRequest(BaseModel):
    image: list[float] | list[list[float]] = Field(..., description="28x28 grey levels in [0, 1] (flat or nested)")
    defense: str = Field("none", description="Input defense in front of the model: " + ", ".join(DEFENSES))

    # "before": the raw JSON values are checked, so a string ("0.5") or a boolean (true) is
    # refused like any other bad pixel instead of being coerced into a number.
    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, v: object) -> list[float]:
        if not isinstance(v, list):
            raise ValueError(f"image must be a list of {IMAGE_SIZE} numbers or {IMAGE_SIDE} rows of {IMAGE_SIDE}")
        return _check_pixels(v)

    @field_validator("defense")
    @classmethod
    def _defense(cls, v: str) -> str:
        if v not in DEFENSES:
            raise ValueError(f"unknown defense {v!r}; expected one of {', '.join(DEFENSES)}")
        return v


class AttackRequest(PredictRequest):
    attack: str = Field("pgd", description="Attack name from GET /api/info")
    label: int | None = Field(None, ge=0, le=9, description="True label (default: the model's prediction)")
    norm: str = Field("linf", description="linf, l2, l1 or l0")
    eps: float | None = Field(0.3, description="Perturbation budget (null for minimal-norm attacks)")
    targeted: bool = False
    target: int | None = Field(None, ge=0, le=9, description="Target class for a targeted attack")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description=f"Iterations (at most {MAX_STEPS})")
    adaptive: bool = Field(True, description="Attack the defense adaptively (BPDA) instead of naively")

    @field_validator("norm")
    @classmethod
    def _norm(cls, v: str) -> str:
        if v not in EPS_LIMITS:
            raise ValueError(f"norm must be one of {', '.join(EPS_LIMITS)}")
        return v

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError("eps must be a finite number >= 0, or null")
        return v


class Prediction(BaseModel):
    label: int
    probabilities: list[float]
    hidden: list[float] | None = None


class AttackResponse(BaseModel):
    attack: str
    threat: str
    success: bool
    original: Prediction
    adversarial: Prediction
    adversarial_image: list[float]
    perturbation: list[float]
    distances: dict[str, float]
    seconds: float
    forwards: int
    backwards: int
