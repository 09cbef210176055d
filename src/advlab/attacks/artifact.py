"""Files for input-agnostic attack artifacts (universal perturbations, patches).

An artifact is a folder holding ``<kind>.safetensors`` (the exact tensor), ``<kind>.png``
(a viewable 8-bit image) and ``<kind>.json`` (what it is and how it was made).  Loading
prefers the exact tensor and falls back to the PNG (quantised to 1/255) when only the
PNG and the JSON were shipped.  No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["write_artifact", "read_artifact", "write_png", "read_png", "ArtifactError"]

FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """An artifact folder is missing files or holds inconsistent ones."""


def write_png(path: Path, image: Tensor) -> None:
    """Save an image ``(C, H, W)`` with values in [0, 1] as an 8-bit PNG (gray or RGB)."""
    from PIL import Image

    arr = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if arr.shape[0] == 1:
        Image.fromarray(arr[0], mode="L").save(path)
    elif arr.shape[0] == 3:
        Image.fromarray(np.transpose(arr, (1, 2, 0)), mode="RGB").save(path)
    else:
        raise ArtifactError(f"cannot write an image with {arr.shape[0]} channels as PNG")


def read_png(path: Path, channels: int) -> Tensor:
    """Read a PNG as a float tensor ``(channels, H, W)`` in [0, 1]."""
    from PIL import Image

    img = Image.open(path).convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr)
    return t[None] if channels == 1 else t.permute(2, 0, 1).contiguous()


def write_artifact(folder: str | Path, kind: str, tensor: Tensor, meta: dict[str, Any], png: Tensor) -> Path:
    """Write ``kind.safetensors``, ``kind.png`` (the image ``png`` in [0, 1]) and ``kind.json``."""
    from safetensors.torch import save_file

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    save_file({kind: tensor.detach().cpu().contiguous()}, str(d / f"{kind}.safetensors"))
    write_png(d / f"{kind}.png", png)
    info = dict(meta, kind=kind, shape=list(tensor.shape), format_version=FORMAT_VERSION)
    (d / f"{kind}.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return d


def read_artifact(folder: str | Path, kind: str) -> tuple[dict[str, Any], Tensor | None]:
    """The metadata and, when present, the exact tensor of an artifact folder.

    ``folder`` may also be the path of the JSON file itself.
    """
    d = Path(folder)
    if d.is_file() and d.suffix == ".json":
        d = d.parent
    meta_path = d / f"{kind}.json"
    if not meta_path.is_file():
        raise ArtifactError(f"no {kind}.json in {d} (an advlab {kind} is a folder with {kind}.json and {kind}.png)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("kind") != kind:
        raise ArtifactError(f"{meta_path} describes a {meta.get('kind')!r}, not a {kind}")
    tensor_path = d / f"{kind}.safetensors"
    tensor = None
    if tensor_path.is_file():
        from safetensors.torch import load_file

        tensor = load_file(str(tensor_path))[kind]
        if list(tensor.shape) != list(meta.get("shape", tensor.shape)):
            raise ArtifactError(f"{tensor_path} has shape {list(tensor.shape)} but {meta_path} says {meta.get('shape')}")
    elif not (d / f"{kind}.png").is_file():
        raise ArtifactError(f"{d} has neither {kind}.safetensors nor {kind}.png")
    return meta, tensor
