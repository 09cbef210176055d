"""Adversarial patches (Brown et al. 2017, arXiv:1712.09665).

A patch is a small image that turns any input into the target class wherever it is pasted.
:class:`PatchAttack` trains one under random location, scale and rotation (differentiable
placement with ``affine_grid``/``grid_sample``), maximising the expected log-probability of
the target.  The result is a :class:`Patch` artifact (PNG + JSON) that can be pasted onto
any images later without the attack object.

Example
-------
>>> patch = PatchAttack(target=3, size=12, epochs=10).fit(model, data.x_train)
>>> patch.evaluate(model, data.x_test, data.y_test)["success"]
>>> patch.save("runs/patch"); Patch.load("runs/patch").apply(x, seed=1)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.artifact import read_artifact, read_png, write_artifact
from advlab.attacks.base import model_device
from advlab.losses import get_loss
from advlab.models.training import predict
from advlab.progress import track
from advlab.rng import CounterRNG
from advlab.validation import InputError, as_input_tensor
from advlab.victim import frozen

__all__ = ["Patch", "PatchAttack", "Placement", "paste", "patch_side"]

EVAL_SEED = 2_147_483_001


@dataclass(frozen=True)
class Placement:
    """Where and how a patch lands: uniform location (fully inside the image), uniform
    rotation in ``[-rotation, rotation]`` degrees, uniform scale in ``scale``."""

    rotation: float = 20.0
    scale: tuple[float, float] = (0.9, 1.1)

    def sample(self, rng: CounterRNG, index: Tensor, stream: int, device: torch.device) -> Tensor:
        """Per-sample ``(angle in radians, scale, u_x, u_y)``; ``u`` in (0, 1) picks the location."""
        u = rng.uniform(index, stream, (4,), device=device)
        angle = (2 * u[:, 0] - 1) * self.rotation * math.pi / 180
        scale = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 1]
        return torch.stack([angle, scale, u[:, 2], u[:, 3]], dim=1)


def paste(x: Tensor, patch: Tensor, mask: Tensor, params: Tensor) -> Tensor:
    """Paste ``patch`` ``(C, s, s)`` with its ``mask`` ``(1, s, s)`` onto every image of ``x``
    ``(N, C, H, W)``, rotated, scaled and moved by ``params`` (from :meth:`Placement.sample`).

    Differentiable in ``x`` and ``patch``: the patch is resampled into image coordinates with
    ``affine_grid``/``grid_sample`` and blended in with the resampled mask.
    """
    n, _, h, w = x.shape
    s = patch.shape[-1]
    angle, scale, ux, uy = params.to(x.dtype).unbind(1)
    # Half-extent of the rotated, scaled patch; its centre stays inside [r, side - r].
    r = 0.5 * s * scale * (torch.cos(angle).abs() + torch.sin(angle).abs())
    cx = r + (w - 2 * r).clamp_min(0) * ux
    cy = r + (h - 2 * r).clamp_min(0) * uy
    cx = torch.where(2 * r > w, torch.full_like(cx, w / 2), cx)
    cy = torch.where(2 * r > h, torch.full_like(cy, h / 2), cy)
    off_x, off_y = cx - w / 2, cy - h / 2  # centre offset from the image centre, pixels
    cos, sin = torch.cos(angle), torch.sin(angle)
    k = 1.0 / (s * scale)
    # Output (image) normalised coords -> input (patch) normalised coords.
    theta = torch.stack(
        [
            torch.stack([cos * w * k, sin * h * k, -2 * k * (cos * off_x + sin * off_y)], dim=1),
            torch.stack([-sin * w * k, cos * h * k, -2 * k * (-sin * off_x + cos * off_y)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    # Resample the patch premultiplied by its mask (zero outside), so that edges blend as
    # (1 - coverage) * image + coverage * patch and the covered area is preserved.
    m0 = mask.to(patch.dtype)
    stacked = torch.cat([patch * m0, m0], dim=0)[None].expand(n, -1, -1, -1)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    p, m = warped[:, :-1], warped[:, -1:]
    return (1 - m) * x + p


def patch_side(size: float | int, image_shape: tuple[int, ...]) -> int:
    """Patch side in pixels: ``size`` itself if an integer >= 1, else the side of a square
    covering that fraction of the image area."""
    h, w = image_shape[-2:]
    if isinstance(size, int) or (isinstance(size, float) and size >= 1):
        side = int(size)
    elif 0 < size < 1:
        side = int(round(math.sqrt(size * h * w)))
    else:
        raise InputError(f"size must be a side in pixels (>= 1) or an area fraction in (0, 1), got {size!r}")
    if not 1 <= side <= min(h, w):
        raise InputError(f"a patch side of {side} pixels does not fit in a {h}x{w} image")
    return side


def _shape_mask(shape: str, side: int) -> Tensor:
    if shape == "square":
        return torch.ones(1, side, side)
    if shape == "circle":
        c = (torch.arange(side) + 0.5 - side / 2) / (side / 2)
        return ((c[None, :] ** 2 + c[:, None] ** 2) <= 1).float()[None]
    raise InputError(f"patch shape must be 'square' or 'circle', got {shape!r}")


@dataclass
class Patch:
    """A trained patch: an image, its shape mask, its target, and how to place it.

    Attributes
    ----------
    image:
        ``(C, s, s)`` values in ``box``.
    target:
        The class it sends inputs to.
    shape:
        ``"square"`` or ``"circle"``.
    placement:
        The random placement it was trained (and is evaluated) under.
    box:
        Valid pixel range.
    info:
        How it was made.
    """

    image: Tensor
    target: int
    shape: str = "square"
    placement: Placement = field(default_factory=Placement)
    box: tuple[float, float] = (0.0, 1.0)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def side(self) -> int:
        return int(self.image.shape[-1])

    @property
    def mask(self) -> Tensor:
        return _shape_mask(self.shape, self.side)

    def area(self, image_shape: tuple[int, ...]) -> float:
        """Share of an image of ``image_shape`` the patch covers at scale 1."""
        h, w = image_shape[-2:]
        return float(self.mask.sum()) / (h * w)

    @classmethod
    def random(cls, side: int, target: int, channels: int = 1, seed: int = 0, **kw: Any) -> Patch:
        """A patch of uniform noise (the baseline a trained patch must beat)."""
        g = torch.Generator().manual_seed(seed)
        lo, hi = kw.get("box", (0.0, 1.0))
        image = lo + (hi - lo) * torch.rand(channels, side, side, generator=g)
        return cls(image=image, target=target, info={"method": "random", "seed": seed}, **kw)

    def apply(
        self,
        x: Tensor,
        *,
        seed: int = EVAL_SEED,
        placement: Placement | None = None,
        location: tuple[int, int] | None = None,
        rotation: float = 0.0,
        scale: float = 1.0,
    ) -> Tensor:
        """Paste the patch onto every image of ``x`` (``N, C, H, W``).

        By default at a random location, rotation and scale drawn from ``placement`` (the
        training placement if ``None``) with ``seed``; with ``location=(row, col)`` at that
        top-left corner, with the given ``rotation`` (degrees) and ``scale``.
        """
        x = as_input_tensor(x, self.box)
        if x.dim() != 4:
            raise InputError(f"patches are pasted onto images (N, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != self.image.shape[0]:
            raise InputError(f"the patch has {self.image.shape[0]} channel(s) but the images have {x.shape[1]}")
        image = self.image.to(x.device, x.dtype)
        mask = self.mask.to(x.device, x.dtype)
        n, _, h, w = x.shape
        if location is not None:
            row, col = location
            span = self.side * scale
            if not (0 <= row <= h - span and 0 <= col <= w - span):
                raise InputError(f"a patch of side {span:g} at {location} does not fit in a {h}x{w} image")
            angle = math.radians(rotation)
            r = 0.5 * span * (abs(math.cos(angle)) + abs(math.sin(angle)))
            cx, cy = col + span / 2, row + span / 2
            ux = (cx - r) / (w - 2 * r) if w > 2 * r else 0.5
            uy = (cy - r) / (h - 2 * r) if h > 2 * r else 0.5
            params = torch.tensor([[angle, scale, ux, uy]], device=x.device).expand(n, -1)
        else:
            index = torch.arange(n, device=x.device)
            params = (placement or self.placement).sample(CounterRNG(seed), index, 0, x.device)
        with torch.no_grad():
            return paste(x, image, mask, params).clamp(*self.box)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: Tensor, y: Tensor, *, draws: int = 4, seed: int = EVAL_SEED) -> dict[str, float]:
        """Targeted success on inputs whose true class is not the target, averaged over
        ``draws`` random placements (fresh seeds, never those of training)."""
        y = torch.as_tensor(y).cpu()
        keep = y != self.target
        xs = as_input_tensor(x, self.box)[keep]
        rates = []
        for d in range(draws):
            pred = predict(model, self.apply(xs, seed=seed + d))
            rates.append(float((pred == self.target).float().mean()))
        return {
            "success": sum(rates) / len(rates),
            "n": float(len(xs)),
            "draws": float(draws),
            "area": self.area(tuple(x.shape)),
            "side": float(self.side),
        }

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write ``patch.png`` (the patch), ``patch.json`` (target, size, shape, placement) and
        ``patch.safetensors`` (the exact values)."""
        lo, hi = self.box
        meta = {
            "target": self.target,
            "side": self.side,
            "outline": self.shape,
            "placement": dataclasses.asdict(self.placement),
            "box": list(self.box),
            "info": self.info,
        }
        return write_artifact(folder, "patch", self.image, meta, (self.image - lo) / (hi - lo))

    @classmethod
    def load(cls, folder: str | Path) -> Patch:
        """Read a patch written by :meth:`save` (the exact tensor, else the PNG)."""
        meta, image = read_artifact(folder, "patch")
        lo, hi = (float(v) for v in meta.get("box", (0.0, 1.0)))
        if image is None:
            d = Path(folder)
            d = d.parent if d.is_file() else d
            image = lo + (hi - lo) * read_png(d / "patch.png", int(meta["shape"][0]))
        pl = meta.get("placement", {})
        low, high = (float(v) for v in pl.get("scale", (0.9, 1.1)))
        placement = Placement(rotation=float(pl.get("rotation", 20.0)), scale=(low, high))
        return cls(
            image=image.float(),
            target=int(meta["target"]),
            shape=meta.get("outline", "square"),
            placement=placement,
            box=(lo, hi),
            info=meta.get("info", {}),
        )


@dataclass(frozen=True)
class PatchAttack:
    """Trains a universal targeted patch (Brown et al. 2017, arXiv:1712.09665).

    Parameters
    ----------
    target:
        The class every patched input should be sent to.
    size:
        Side in pixels (int) or the share of the image area it covers (float in (0, 1)).
    shape:
        ``"square"`` or ``"circle"``.
    epochs:
        Passes over the training images (those not of the target class).
    batch_size:
        Images per step; each image gets its own random placement.
    step_size:
        Adam learning rate on the patch pixels (decayed to 0 with a cosine schedule if ``decay``).
    loss:
        ``"ce"`` (expected log-probability of the target) or ``"margin"``.
    rotation, scale:
        The random placement trained under (see :class:`Placement`).
    seed:
        Seeds the initial patch, the order of images and the placements.
    """

    target: int = 0
    size: float | int = 0.15
    shape: str = "square"
    epochs: int = 10
    batch_size: int = 64
    step_size: float = 0.05
    loss: str = "ce"
    rotation: float = 20.0
    scale: tuple[float, float] = (0.9, 1.1)
    decay: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        get_loss(self.loss)
        _shape_mask(self.shape, 2)
        if self.epochs < 1 or self.batch_size < 1 or not self.step_size > 0:
            raise ValueError("epochs, batch_size and step_size must be positive")

    def params(self) -> dict[str, Any]:
        p = dataclasses.asdict(self)
        p["scale"] = list(self.scale)
        return p

    def fit(
        self,
        model: nn.Module,
        x: Any,
        y: Any | None = None,
        *,
        box: tuple[float, float] = (0.0, 1.0),
        progress: Callable[[int], None] | bool | None = None,
    ) -> Patch:
        """Train the patch on images ``x`` (those labelled ``target`` in ``y`` are skipped).

        ``progress`` is called with 1 per epoch (default: :mod:`advlab.progress` shows it;
        ``False``: silent)."""
        dev = model_device(model)
        xs = as_input_tensor(x, box, device=dev)
        if xs.dim() != 4:
            raise InputError(f"patches need images (N, C, H, W); got shape {tuple(xs.shape)}")
        if y is not None:
            xs = xs[torch.as_tensor(y).to(dev) != self.target]
        side = patch_side(self.size, tuple(xs.shape))
        lo, hi = box
        g = torch.Generator().manual_seed(self.seed)
        image = (lo + (hi - lo) * torch.rand(xs.shape[1], side, side, generator=g)).to(dev).requires_grad_(True)
        mask = _shape_mask(self.shape, side).to(dev)
        placement = Placement(rotation=self.rotation, scale=(float(self.scale[0]), float(self.scale[1])))
        rng = CounterRNG(self.seed)
        opt = torch.optim.Adam([image], lr=self.step_size)
        total = self.epochs * math.ceil(len(xs) / self.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / total)) if self.decay else 1.0)
        loss_fn = get_loss(self.loss)
        start = time.perf_counter()
        step = 0
        with frozen(model), track(progress, f"adversarial patch ({self.epochs} epochs)", self.epochs) as advance:
            for _ in range(self.epochs):
                perm = torch.randperm(len(xs), generator=g).to(dev)
                for i in range(0, len(xs), self.batch_size):
                    idx = perm[i : i + self.batch_size]
                    params = placement.sample(rng, idx, 1 + step, dev)
                    with torch.enable_grad():
                        logits = model(paste(xs[idx], image, mask, params))
                        target = torch.full((len(idx),), self.target, device=dev)
                        objective = loss_fn(logits, target, targeted=True).mean()
                        opt.zero_grad(set_to_none=True)
                        (-objective).backward()
                    opt.step()
                    sched.step()
                    with torch.no_grad():
                        image.clamp_(lo, hi)
                    step += 1
                advance(1)
        info = {"method": "brown2017", "params": self.params(), "fit_inputs": int(len(xs)), "seconds": time.perf_counter() - start}
        return Patch(image=image.detach().cpu(), target=self.target, shape=self.shape, placement=placement, box=(lo, hi), info=info)
