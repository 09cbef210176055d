"""Input-transformation defenses: a preprocessing step in front of a model.

Each transformation says how it must be attacked (Athalye et al. 2018, "Obfuscated
gradients give a false sense of security", arXiv:1802.00420):

- a non-differentiable one (``differentiable = False``) supplies a BPDA surrogate, used on
  the backward pass while the forward pass stays exact;
- a randomized one (``randomized = True``) must be attacked with Expectation over
  Transformation (EOT, Athalye et al. 2018, arXiv:1707.07397): :class:`EOT` averages the
  defended model over ``samples`` draws of its randomness.

:meth:`Defended.adaptive` builds that adaptive model; :meth:`advlab.attacks.base.Attack.__call__`
attacks it automatically (``adaptive=False`` turns this off, to show what a naive evaluation
reports).  Randomized transforms draw from their own ``torch.Generator`` (seeded by ``seed``),
so a run is reproducible when its calls happen in the same order.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.defenses.adaptive import EOT, Wrapper, adaptive_model

__all__ = [
    "InputTransform",
    "BinaryThreshold",
    "BitDepth",
    "MedianSmoothing",
    "JPEG",
    "GaussianNoise",
    "RandomResizePad",
    "Chain",
    "Defended",
    "straight_through",
    "build_transform",
    "TRANSFORMS",
]


def straight_through(x: Tensor, exact: Tensor, surrogate: Tensor) -> Tensor:
    """Forward value ``exact`` (bit for bit), gradient of ``surrogate`` (BPDA)."""
    return exact.detach() + (surrogate - surrogate.detach())


class InputTransform(nn.Module):
    """A preprocessing step.  Subclasses implement ``forward`` and, when it is not
    differentiable, ``surrogate`` (a differentiable approximation used by BPDA).

    Class attributes: ``kind`` (the name in saved configs and the CLI), ``differentiable``
    (False: attack with BPDA), ``randomized`` (True: attack with EOT).
    """

    differentiable: ClassVar[bool] = True
    randomized: ClassVar[bool] = False
    kind: ClassVar[str] = "transform"

    def surrogate(self, x: Tensor) -> Tensor:
        """Differentiable approximation of the transformation (identity by default)."""
        return x

    def bpda(self, x: Tensor) -> Tensor:
        """Exact forward pass, surrogate gradient (the exact gradient when differentiable)."""
        if self.differentiable:
            return self(x)
        return straight_through(x, self(x), self.surrogate(x))

    def params(self) -> dict[str, Any]:
        """Constructor arguments (what :func:`build_transform` needs to rebuild it)."""
        return {}

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, **self.params()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params().items())


class _Randomized(InputTransform):
    """Base of randomized transforms: owns a seeded generator."""

    randomized = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self.reseed(self.seed)

    def reseed(self, seed: int | None = None) -> None:
        """Restart the transform's random stream (at ``seed``, default its own)."""
        self._gen = torch.Generator().manual_seed(self.seed if seed is None else int(seed))

    def _uniform(self, *shape: int, like: Tensor) -> Tensor:
        return torch.rand(shape, generator=self._gen).to(device=like.device, dtype=like.dtype)


class BinaryThreshold(InputTransform):
    """Binary thresholding (the seed report, section 6.1): every pixel becomes 0 or 1.

    Not differentiable (its gradient is zero almost everywhere), so gradient attacks on the
    defended model see no signal; BPDA with the identity surrogate restores it.
    """

    differentiable = False
    kind = "binary-threshold"

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        return (x > self.threshold).to(x.dtype)

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


class BitDepth(InputTransform):
    """Bit-depth reduction to ``bits`` bits per value (feature squeezing, Xu et al. 2018,
    arXiv:1704.01155).  ``bits=1`` is binarization at 0.5.  BPDA surrogate: identity."""

    differentiable = False
    kind = "bit-depth"

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        if not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an int in [1, 16], got {bits!r}")
        self.bits = bits

    def forward(self, x: Tensor) -> Tensor:
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0, 1) * levels) / levels

    def params(self) -> dict[str, Any]:
        return {"bits": self.bits}


def _symmetric_pad(x: Tensor, before: int, after: int, dim: int) -> Tensor:
    """Pad by mirroring with the edge repeated (``d c b a | a b c d | d c b a``)."""
    parts = []
    if before:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
    return torch.cat(parts, dim=dim)


class MedianSmoothing(InputTransform):
    """Median filter over ``size`` x ``size`` windows, per channel (feature squeezing, Xu et
    al. 2018, arXiv:1704.01155; they use 2x2 and 3x3).

    Matches ``scipy.ndimage.median_filter(x, size, mode="reflect")`` (for even sizes the
    upper median).  Differentiable almost everywhere: the gradient flows to the median pixel.
    """

    kind = "median"

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"median smoothing needs images (N, C, H, W), got shape {tuple(x.shape)}")
        k = self.size
        before, after = k // 2, (k - 1) // 2
        xp = _symmetric_pad(_symmetric_pad(x, before, after, 2), before, after, 3)
        patches = xp.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H, W, k, k)
        flat = patches.reshape(*patches.shape[:4], k * k)
        return flat.sort(dim=-1).values[..., (k * k) // 2]

    def params(self) -> dict[str, Any]:
        return {"size": self.size}


# JPEG (ITU T.81, Annex K) quantisation tables.
_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def _quant_table(base: list[int], quality: int) -> Tensor:
    """libjpeg's quality scaling of a base table."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    t = torch.floor((torch.tensor(base, dtype=torch.float64) * scale + 50) / 100).clamp(1, 255)
    return t.reshape(8, 8).float()


def _dct_matrix() -> Tensor:
    n = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * torch.pi / 16) * (2 / 8) ** 0.5
    m[0] /= 2**0.5
    return m.float()


class JPEG(InputTransform):
    """JPEG compression at ``quality`` (Guo et al. 2018, arXiv:1711.00117; Das et al. 2017,
    arXiv:1705.02900), written in torch: colour conversion to YCbCr (for 3 channels), 8x8
    block DCT, quantisation with the standard tables scaled as libjpeg does, inverse DCT and
    rounding to 8 bits.  No chroma subsampling; the entropy coding JPEG adds is lossless.

    Not differentiable (the rounding); BPDA surrogate: identity.  Within a few grey levels of
    Pillow's JPEG codec at the same quality (tested).
    """

    differentiable = False
    kind = "jpeg"
    dct: Tensor
    q_luma: Tensor
    q_chroma: Tensor

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        if not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ValueError(f"quality must be an int in [1, 100], got {quality!r}")
        self.quality = quality
        self.register_buffer("dct", _dct_matrix(), persistent=False)
        self.register_buffer("q_luma", _quant_table(_LUMA, quality), persistent=False)
        self.register_buffer("q_chroma", _quant_table(_CHROMA, quality), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"JPEG needs images (N, C, H, W) with 1 or 3 channels, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        v = torch.round(x.clamp(0, 1) * 255)
        if c == 3:
            v = torch.round(_rgb_to_ycbcr(v)).clamp(0, 255)
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            v = F.pad(v, (0, pw, 0, ph), mode="replicate")
        hh, ww = v.shape[2] // 8, v.shape[3] // 8
        blocks = (v - 128).reshape(n, c, hh, 8, ww, 8).permute(0, 1, 2, 4, 3, 5)  # (n, c, hh, ww, 8, 8)
        d = self.dct.to(v.dtype)
        coef = d @ blocks @ d.T
        q = torch.stack([self.q_luma] + [self.q_chroma] * (c - 1)).to(v.dtype)[None, :, None, None]
        coef = torch.round(coef / q) * q
        out = (d.T @ coef @ d + 128).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hh * 8, ww * 8)[:, :, :h, :w]
        if c == 3:
            out = _ycbcr_to_rgb(torch.round(out).clamp(0, 255))
        return torch.round(out).clamp(0, 255) / 255

    def params(self) -> dict[str, Any]:
        return {"quality": self.quality}


def _rgb_to_ycbcr(v: Tensor) -> Tensor:
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return torch.stack([y, cb, cr], dim=1)


def _ycbcr_to_rgb(v: Tensor) -> Tensor:
    y, cb, cr = v[:, 0], v[:, 1] - 128, v[:, 2] - 128
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)


class GaussianNoise(_Randomized):
    """Additive Gaussian noise of standard deviation ``sigma``, clipped to [0, 1] (randomized
    smoothing's base noise, Cohen et al. 2019, arXiv:1902.02918).  Randomized: attack with EOT."""

    kind = "gaussian-noise"

    def __init__(self, sigma: float = 0.25, seed: int = 0) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        super().__init__(seed)
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=self._gen).to(device=x.device, dtype=x.dtype)
        return (x + self.sigma * noise).clamp(0, 1)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "seed": self.seed}


class RandomResizePad(_Randomized):
    """Random resizing and padding (Xie et al. 2018, arXiv:1711.01991).

    Each image is shrunk by a random factor in ``[min_scale, 1]`` (bilinear) and placed at a
    random position of a zero canvas of the original size, so any model trained on that size
    accepts it (Xie et al. enlarge to 331 px instead; shrinking keeps the architecture).
    Differentiable but randomized: attack with EOT.
    """

    kind = "random-resize-pad"

    def __init__(self, min_scale: float = 0.8, seed: int = 0) -> None:
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must lie in (0, 1], got {min_scale!r}")
        super().__init__(seed)
        self.min_scale = float(min_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"random resize and pad needs images (N, C, H, W), got shape {tuple(x.shape)}")
        n = x.shape[0]
        u = self._uniform(n, 3, like=x)
        s = self.min_scale + (1 - self.min_scale) * u[:, 0]
        centre = (1 - s)[:, None] * (2 * u[:, 1:] - 1)  # where the shrunk image's centre lands
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
        theta[:, :, 2] = -centre / s[:, None]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def params(self) -> dict[str, Any]:
        return {"min_scale": self.min_scale, "seed": self.seed}


class Chain(InputTransform):
    """Several transformations applied in order; BPDA and EOT apply to each link."""

    kind = "chain"

    def __init__(self, *transforms: InputTransform) -> None:
        super().__init__()
        if not transforms or not all(isinstance(t, InputTransform) for t in transforms):
            raise ValueError("Chain needs one or more InputTransform objects")
        self.links = nn.ModuleList(transforms)

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return all(t.differentiable for t in self.links)

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return any(t.randomized for t in self.links)

    def forward(self, x: Tensor) -> Tensor:
        for t in self.links:
            x = t(x)
        return x

    def bpda(self, x: Tensor) -> Tensor:
        for t in self.links:
            x = t.bpda(x)  # type: ignore[operator]
        return x

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "links": [t.config() for t in self.links]}  # type: ignore[operator]


TRANSFORMS: dict[str, type[InputTransform]] = {
    cls.kind: cls
    for cls in (BinaryThreshold, BitDepth, MedianSmoothing, JPEG, GaussianNoise, RandomResizePad)
}


def build_transform(config: dict[str, Any] | str, **params: Any) -> InputTransform:
    """A transformation from its config (``{"type": "jpeg", "quality": 75}``) or its name."""
    if isinstance(config, str):
        config = {"type": config, **params}
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind == Chain.kind:
        return Chain(*(build_transform(c) for c in cfg.get("links", [])))
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown input transformation {kind!r}; expected one of {', '.join(sorted(TRANSFORMS))}")
    try:
        return TRANSFORMS[kind](**cfg)
    except TypeError as exc:
        raise ValueError(f"bad parameters for transformation {kind!r}: {exc}") from None


class Defended(Wrapper):
    """``model(transform(x))``.  With ``bpda=True`` the transform's backward pass is replaced by
    its surrogate: the adaptive version an honest evaluation attacks.

    Parameters
    ----------
    model:
        The classifier (any module returning logits).
    transform:
        The preprocessing step (an :class:`InputTransform`).
    bpda:
        Use the BPDA surrogate on the backward pass (the forward pass is unchanged).
    eot_samples:
        Draws :meth:`adaptive` averages over when the transform is randomized.

    Examples
    --------
    >>> defended = Defended(model, JPEG(quality=75))          # doctest: +SKIP
    >>> get_attack("pgd")(defended, x, y, threat)               # BPDA-PGD: attacks defended.adaptive()  # doctest: +SKIP
    """

    kind = "defended"
    transform: InputTransform

    def __init__(self, model: nn.Module, transform: InputTransform, bpda: bool = False, eot_samples: int = 10) -> None:
        super().__init__(model)
        if not isinstance(transform, InputTransform):
            raise ValueError(f"transform must be an InputTransform, got {type(transform).__name__}")
        self.transform = transform
        self.bpda = bpda
        self.eot_samples = eot_samples

    def forward(self, x: Tensor) -> Tensor:
        z = self.transform.bpda(x) if self.bpda else self.transform(x)
        return self.model(z)

    @property
    def randomized(self) -> bool:
        """Whether the forward pass is random (a randomized transform, or a randomized model
        inside): success is then judged by the expected prediction (:mod:`advlab.expectation`)."""
        return bool(self.transform.randomized or getattr(self.model, "randomized", False))

    def adaptive(self) -> nn.Module:
        """The model an adaptive attack differentiates: BPDA through the transformation, EOT
        over its randomness, and the inner model's own adaptive form (weights are shared)."""
        inner = Defended(adaptive_model(self.model), self.transform, bpda=True, eot_samples=self.eot_samples)
        return EOT(inner, self.eot_samples) if self.transform.randomized else inner

    @torch.no_grad()
    def preprocess(self, x: Tensor) -> Tensor:
        return self.transform(x)

    def wrapper_config(self) -> dict[str, Any]:
        return {"type": self.kind, "transform": self.transform.config(), "eot_samples": self.eot_samples}

    @classmethod
    def from_config(cls, model: nn.Module, config: dict[str, Any]) -> Defended:
        return cls(model, build_transform(config["transform"]), eot_samples=int(config.get("eot_samples", 10)))
