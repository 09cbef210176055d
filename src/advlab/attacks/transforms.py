"""Differentiable random image transformations: a simulated print-and-photograph.

A :class:`Transformations` object is a *distribution* over transformations (rotation, scale,
translation, brightness, contrast, blur, sensor noise).  Drawing from it is seeded with the
library's :class:`~advlab.rng.CounterRNG`, so each sample's draw depends only on the seed, its
index and a stream number; applying it is plain differentiable torch (``affine_grid`` /
``grid_sample`` and a separable Gaussian convolution), so gradients flow back to the input.
This is the distribution that Expectation over Transformation
(Athalye et al. 2018, arXiv:1707.07397) averages over.

Example
-------
>>> t = Transformations.preset("print-photo")
>>> x_seen = t(x, CounterRNG(0), torch.arange(len(x)), stream=0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.rng import CounterRNG

__all__ = ["Transformations", "TRANSFORM_PRESETS", "as_transformations"]

# Column of each parameter in the per-sample uniform draw.
_ROT, _SCALE, _TX, _TY, _BRIGHT, _CONTRAST, _BLUR, _NOISE = range(8)


@dataclass(frozen=True)
class Transformations:
    """A distribution of differentiable transformations of images ``(N, C, H, W)``.

    Each parameter is drawn independently and uniformly per sample.

    Parameters
    ----------
    rotation:
        Maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
    scale:
        Range ``(low, high)`` of the zoom factor (``> 1`` enlarges the content).
    translation:
        Maximum shift as a fraction of the image side (each axis independently).
    brightness:
        Maximum additive brightness change (in box units).
    contrast:
        Range ``(low, high)`` of the multiplicative gain.
    blur:
        Maximum standard deviation in pixels of a Gaussian blur (camera focus).
    noise:
        Maximum standard deviation of additive Gaussian sensor noise.
    box:
        Valid pixel range; the result is clipped to it, and pixels shifted in from outside
        the image take the value ``box[0]`` (the background).
    """

    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translation: float = 0.0
    brightness: float = 0.0
    contrast: tuple[float, float] = (1.0, 1.0)
    blur: float = 0.0
    noise: float = 0.0
    box: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("scale", "contrast", "box"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{name} must be a range (low, high) with low <= high, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if self.scale[0] <= 0 or self.contrast[0] < 0:
            raise ValueError("scale must be positive and contrast non-negative")
        for name in ("rotation", "translation", "brightness", "blur", "noise"):
            number = float(getattr(self, name))
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, number)

    # ------------------------------------------------------------------ construction
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Transformations:
        """A named distribution (see :data:`TRANSFORM_PRESETS`), optionally with overrides."""
        key = name.strip().lower().replace("_", "-")
        if key not in TRANSFORM_PRESETS:
            raise ValueError(f"unknown transformation preset {name!r}; expected one of {sorted(TRANSFORM_PRESETS)}")
        return dataclasses.replace(TRANSFORM_PRESETS[key], **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transformations:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown transformation parameter(s) {sorted(unknown)}; known: {sorted(fields)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @property
    def is_identity(self) -> bool:
        return self == Transformations(box=self.box)

    # ------------------------------------------------------------------ sampling and applying
    def sample(self, rng: CounterRNG, index: Tensor, stream: int, device: torch.device | str | None = None) -> Tensor:
        """Per-sample parameters, a ``(len(index), 8)`` tensor (rotation in radians, scale,
        shift x, shift y as fractions, brightness, contrast, blur sigma, noise std)."""
        u = rng.uniform(index, stream, (8,), device=device)
        lo = torch.tensor(
            [-self.rotation, self.scale[0], -self.translation, -self.translation, -self.brightness, self.contrast[0], 0.0, 0.0],
            device=u.device,
        )
        hi = torch.tensor(
            [self.rotation, self.scale[1], self.translation, self.translation, self.brightness, self.contrast[1], self.blur, self.noise],
            device=u.device,
        )
        p = lo + (hi - lo) * u
        p[:, _ROT] = p[:, _ROT] * (math.pi / 180.0)
        return p

    def apply(self, x: Tensor, params: Tensor, rng: CounterRNG | None = None, index: Tensor | None = None, stream: int = 0) -> Tensor:
        """Transform ``x`` with per-sample ``params`` (from :meth:`sample`); differentiable in ``x``.

        ``rng``/``index``/``stream`` seed the sensor noise (needed only when ``noise > 0``).
        """
        if x.dim() != 4:
            raise ValueError(f"transformations need images (N, C, H, W), got shape {tuple(x.shape)}")
        params = params.to(device=x.device, dtype=x.dtype)
        lo, hi = self.box
        out = x
        if self.rotation or self.scale != (1.0, 1.0) or self.translation:
            out = _affine(out - lo, params[:, _ROT], params[:, _SCALE], params[:, _TX:_TY + 1]) + lo
        if self.blur:
            out = gaussian_blur(out, params[:, _BLUR], max_sigma=self.blur)
        if self.contrast != (1.0, 1.0) or self.brightness:
            out = out * _per_sample(params[:, _CONTRAST], out) + _per_sample(params[:, _BRIGHT], out)
        if self.noise:
            if rng is None or index is None:
                raise ValueError("noise > 0 needs rng and index to draw the sensor noise")
            z = rng.normal(index, stream * 2 + 1, x.shape[1:], device=x.device, dtype=x.dtype)
            out = out + z * _per_sample(params[:, _NOISE], out)
        return out.clamp(lo, hi)

    def __call__(self, x: Tensor, rng: CounterRNG, index: Tensor, stream: int = 0) -> Tensor:
        """Draw one transformation per sample and apply it."""
        return self.apply(x, self.sample(rng, index, stream, x.device), rng, index, stream)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _affine(x: Tensor, angle: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Rotate by ``angle`` (radians), zoom by ``scale`` and shift by ``shift`` (fractions of the
    side) each image about its centre; outside pixels become 0."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output coordinates to input coordinates: the inverse transformation.
    theta = torch.stack(
        [
            torch.stack([cos, sin, -2 * (cos * shift[:, 0] + sin * shift[:, 1])], dim=1),
            torch.stack([-sin, cos, -2 * (-sin * shift[:, 0] + cos * shift[:, 1])], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian blur with a per-sample standard deviation ``sigma`` (pixels)."""
    n, c, h, w = x.shape
    radius = max(1, int(math.ceil(2.5 * max_sigma)))
    d = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-(d[None, :] ** 2) / (2 * s**2))
    k = k / k.sum(dim=1, keepdim=True)  # (n, 2r+1)
    k = k.repeat_interleave(c, dim=0)  # one kernel per (sample, channel)
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, k[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, k[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


TRANSFORM_PRESETS: dict[str, Transformations] = {
    "none": Transformations(),
    # A printed image photographed again: small pose changes, lighting, focus and sensor noise.
    "print-photo": Transformations(
        rotation=20.0, scale=(0.85, 1.15), translation=0.1, brightness=0.15, contrast=(0.7, 1.3), blur=1.0, noise=0.05
    ),
    "geometric": Transformations(rotation=20.0, scale=(0.85, 1.15), translation=0.1),
    "photometric": Transformations(brightness=0.15, contrast=(0.7, 1.3), blur=1.0, noise=0.05),
}


def as_transformations(spec: Transformations | str | dict[str, Any] | None) -> Transformations | None:
    """A :class:`Transformations` from a preset name, a dict of parameters, or itself."""
    if spec is None or isinstance(spec, Transformations):
        return spec
    if isinstance(spec, str):
        return Transformations.preset(spec)
    if isinstance(spec, dict):
        return Transformations.from_dict(spec)
    raise TypeError(f"expected Transformations, a preset name or a dict, got {type(spec).__name__}")
