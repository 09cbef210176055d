"""Masks for region-confined attacks: where an adversary may paint (glasses, stickers, a frame).

A mask spec is a string, a file, or an array:

- ``"frame:W"``: a border ``W`` pixels wide;
- ``"rect:TOP,LEFT,HEIGHT,WIDTH"``: a rectangle in pixels (or fractions of the side if all
  four numbers are below 1), e.g. ``"rect:0,0,6,28"``;
- ``"glasses"``: two eye rims and a bridge (Sharif et al. 2016) scaled to the image;
- ``"stickers"``: two horizontal bars, like the black-and-white stickers of Eykholt et al.
  2018 (arXiv:1707.08945);
- several specs joined by ``+`` (their union), e.g. ``"rect:2,2,4,4+rect:20,20,4,4"``;
- a ``.npy`` or ``.png`` file, or a NumPy array / tensor of 0s and 1s of shape ``(H, W)``,
  ``(C, H, W)`` or one mask per input ``(N, C, H, W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advlab.validation import InputError

__all__ = ["make_mask", "describe_mask", "MASK_SHAPES"]

MASK_SHAPES = ("frame:W", "rect:TOP,LEFT,HEIGHT,WIDTH", "glasses", "stickers", "file.npy|file.png")

# Shapes in fractions of the image side: (top, left, height, width).
_GLASSES = [
    (0.25, 0.10, 0.06, 0.34), (0.45, 0.10, 0.06, 0.34), (0.25, 0.10, 0.26, 0.06), (0.25, 0.38, 0.26, 0.06),
    (0.25, 0.56, 0.06, 0.34), (0.45, 0.56, 0.06, 0.34), (0.25, 0.56, 0.26, 0.06), (0.25, 0.84, 0.26, 0.06),
    (0.30, 0.44, 0.05, 0.12),
]
_STICKERS = [(0.22, 0.15, 0.12, 0.70), (0.66, 0.15, 0.12, 0.70)]


def make_mask(spec: Any, shape: tuple[int, ...]) -> Tensor:
    """A float mask of 0s and 1s for images of ``shape`` ``(C, H, W)``.

    Returns a tensor of shape ``(C, H, W)`` (one mask for every input) or ``(N, C, H, W)``
    (one per input, when an array with a batch dimension was given).
    """
    if len(shape) != 3:
        raise InputError(f"masks are for images (C, H, W); got inputs of shape {shape}")
    c, h, w = shape
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if text.lower().endswith((".npy", ".png")):
            return _check(_load_file(Path(text)), shape, text)
        m = torch.zeros(h, w)
        for part in text.split("+"):
            m = torch.maximum(m, _shape_mask(part.strip(), h, w))
        return m.expand(c, h, w).clone()
    if isinstance(spec, np.ndarray):
        spec = torch.from_numpy(np.ascontiguousarray(spec))
    if isinstance(spec, Tensor):
        return _check(spec.detach().float().cpu(), shape, "mask")
    raise InputError(f"a mask must be a spec string ({', '.join(MASK_SHAPES)}), a file, or an array; got {type(spec).__name__}")


def describe_mask(spec: Any) -> str:
    """A short JSON-friendly description of a mask spec (arrays become their shape and size)."""
    if isinstance(spec, (str, Path)):
        return str(spec)
    if isinstance(spec, (Tensor, np.ndarray)):
        arr = spec if isinstance(spec, Tensor) else torch.from_numpy(np.asarray(spec))
        return f"array{tuple(arr.shape)} with {int((arr != 0).sum())} nonzero entries"
    return repr(spec)


def _shape_mask(part: str, h: int, w: int) -> Tensor:
    name, _, args = part.partition(":")
    name = name.strip().lower()
    m = torch.zeros(h, w)
    if name == "frame":
        try:
            width = int(args)
        except ValueError:
            raise InputError(f"mask {part!r}: expected frame:WIDTH in pixels, e.g. frame:3") from None
        if width < 1 or 2 * width > min(h, w):
            raise InputError(f"mask {part!r}: the frame width must be in 1..{min(h, w) // 2}")
        m[:width], m[-width:], m[:, :width], m[:, -width:] = 1, 1, 1, 1
        return m
    if name == "rect":
        try:
            nums = [float(v) for v in args.split(",")]
        except ValueError:
            nums = []
        if len(nums) != 4:
            raise InputError(f"mask {part!r}: expected rect:TOP,LEFT,HEIGHT,WIDTH, e.g. rect:0,0,6,28")
        if all(0 <= v < 1 for v in nums) and any(v > 0 for v in nums):
            rects = [tuple(nums)]
            return _fraction_rects(rects, h, w)  # type: ignore[arg-type]
        top, left, height, width = (int(round(v)) for v in nums)
        if height < 1 or width < 1 or top < 0 or left < 0 or top >= h or left >= w:
            raise InputError(f"mask {part!r} lies outside the {h}x{w} image or is empty")
        m[top : top + height, left : left + width] = 1
        return m
    if name == "glasses":
        return _fraction_rects(_GLASSES, h, w)
    if name == "stickers":
        return _fraction_rects(_STICKERS, h, w)
    raise InputError(f"unknown mask shape {part!r}; expected one of {', '.join(MASK_SHAPES)} (joined by '+')")


def _fraction_rects(rects: list[tuple[float, float, float, float]], h: int, w: int) -> Tensor:
    m = torch.zeros(h, w)
    for top, left, height, width in rects:
        r0, c0 = int(round(top * h)), int(round(left * w))
        r1, c1 = max(r0 + 1, int(round((top + height) * h))), max(c0 + 1, int(round((left + width) * w)))
        m[r0:r1, c0:c1] = 1
    return m


def _load_file(path: Path) -> Tensor:
    if not path.is_file():
        raise InputError(f"mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy((arr > 0.5).astype(np.float32))


def _check(m: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    c, h, w = shape
    if m.dim() == 2:
        m = m[None]
    if m.dim() not in (3, 4) or tuple(m.shape[-2:]) != (h, w) or m.shape[-3] not in (1, c):
        raise InputError(f"{name} has shape {tuple(m.shape)}; expected (H, W), (C, H, W) or (N, C, H, W) with H, W = {h}, {w}")
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise InputError(f"{name} must hold values in [0, 1] (1 = the attacker may change the pixel)")
    m = (m > 0.5).float()
    if not bool(m.any()):
        raise InputError(f"{name} is empty: no pixel may change")
    target = (m.shape[0], c, h, w) if m.dim() == 4 else (c, h, w)
    return m.expand(*target).clone()
