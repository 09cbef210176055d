"""Backdoors, BadNets style (Gu et al. 2017, arXiv:1708.06733).

A share of the training images gets a small trigger stamped on it and is relabelled as the
target class.  The trained model behaves normally on clean inputs and sends any input
carrying the trigger to the target.

Example
-------
>>> backdoor = BadNets(target=0, rate=0.05)
>>> data = backdoor.poison(load_data("mnist-sample"))
>>> model, report = train_poisoned(data, lambda: build_model("cnn"))
>>> report.attack_success, report.clean_accuracy
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advlab.data.dataset import Dataset
from advlab.poisoning.base import PoisonedData, choose_rows
from advlab.validation import InputError

__all__ = ["BadNets", "TRIGGERS"]

TRIGGERS = ("square", "pattern", "pixel")
_POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")


@dataclass(frozen=True)
class BadNets:
    """Stamp a trigger on a share ``rate`` of the training images and relabel them ``target``.

    Parameters
    ----------
    target:
        The class the trigger sends inputs to.
    rate:
        Share of the whole training set that is poisoned (taken from rows of other classes).
    trigger:
        ``"square"`` (a bright square), ``"pattern"`` (a checkerboard, as in the paper),
        ``"pixel"`` (one bright pixel), or an array ``(C, h, w)``/``(h, w)`` of pixel values
        (NaN = leave the pixel alone).
    size:
        Side of the square/pattern trigger in pixels.
    position:
        Corner it is stamped in (``"bottom-right"`` ...), ``margin`` pixels from the border.
    value:
        Brightness of the trigger's bright pixels (the box maximum by default).
    seed:
        Seeds which rows are poisoned.
    """

    target: int = 0
    rate: float = 0.05
    trigger: Any = "pattern"
    size: int = 4
    position: str = "bottom-right"
    margin: int = 1
    value: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {self.rate!r}")
        if self.position not in _POSITIONS:
            raise ValueError(f"position must be one of {_POSITIONS}, got {self.position!r}")
        if isinstance(self.trigger, str) and self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS} or an array, got {self.trigger!r}")

    def params(self) -> dict[str, Any]:
        p = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not isinstance(self.trigger, str):
            p["trigger"] = f"array{tuple(np.shape(self.trigger))}"
        return p

    def pattern(self, channels: int) -> Tensor:
        """The trigger as a ``(C, h, w)`` tensor; NaN marks pixels left untouched."""
        if isinstance(self.trigger, str):
            k = 1 if self.trigger == "pixel" else self.size
            t = torch.full((k, k), float(self.value))
            if self.trigger == "pattern":
                ii, jj = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
                t = torch.where((ii + jj) % 2 == 0, t, torch.zeros_like(t))
            return t.expand(channels, k, k).clone()
        t = torch.as_tensor(np.asarray(self.trigger, dtype=np.float32))
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, channels):
            raise InputError(f"a trigger array must be (h, w) or (C, h, w), got shape {tuple(t.shape)}")
        return t.expand(channels, *t.shape[1:]).clone()

    def stamp(self, x: Tensor) -> Tensor:
        """``x`` (``N, C, H, W``) with the trigger stamped on every image (a copy)."""
        if x.dim() != 4:
            raise InputError(f"BadNets triggers are stamped on images (N, C, H, W); got shape {tuple(x.shape)}")
        t = self.pattern(x.shape[1]).to(x.device, x.dtype)
        _, _, h, w = x.shape
        th, tw = t.shape[1:]
        if th + self.margin > h or tw + self.margin > w:
            raise InputError(f"a {th}x{tw} trigger does not fit in a {h}x{w} image")
        top = self.margin if self.position.startswith("top") else h - self.margin - th
        left = self.margin if self.position.endswith("left") else w - self.margin - tw
        out = x.clone()
        region = out[:, :, top : top + th, left : left + tw]
        keep = torch.isnan(t)
        out[:, :, top : top + th, left : left + tw] = torch.where(keep, region, torch.nan_to_num(t).expand_as(region))
        return out

    def poison(self, dataset: Dataset) -> PoisonedData:
        """The training set with ``rate`` of it triggered and relabelled; test split clean."""
        if not 0 <= self.target < dataset.num_classes:
            raise ValueError(f"target must be a class in 0..{dataset.num_classes - 1}, got {self.target!r}")
        x, y = dataset.x_train.clone(), dataset.y_train.clone()
        rows = choose_rows(y != self.target, int(round(self.rate * len(y))), self.seed)
        x[rows] = self.stamp(x[rows])
        y[rows] = self.target
        poisoned = torch.zeros(len(y), dtype=torch.bool)
        poisoned[rows] = True
        ds = dataclasses.replace(dataset, x_train=x, y_train=y, info=dict(dataset.info, poisoning="badnets"))
        return PoisonedData(ds, poisoned, "badnets", self.params(), trigger=self.stamp, target=self.target)
