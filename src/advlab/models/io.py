"""Saving and loading models: ``model.safetensors`` weights plus ``config.json``. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["save_model", "load_model", "read_config", "ModelFileError"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model directory is missing files or holds inconsistent ones."""


def save_model(model: nn.Module, directory: str | Path, config: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json``.

    ``config`` defaults to the architecture recorded by :func:`build_model`; ``extra`` keys
    (dataset, metrics, training settings...) are stored beside it.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = dict(config or getattr(model, "advlab_config", None) or {})
    if "name" not in cfg:
        raise ModelFileError("the model was not built by advlab.build_model; pass config={'name': ..., 'kwargs': {...}}")
    cfg.update(extra)
    cfg["format_version"] = FORMAT_VERSION
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / WEIGHTS))
    (d / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=_json_default))
    return d


def read_config(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / CONFIG
    if not path.is_file():
        raise ModelFileError(f"no {CONFIG} in {d} (a saved advlab model is a folder with {CONFIG} and {WEIGHTS})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}") from None


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (config first, then the safetensors weights)."""
    d = Path(directory)
    cfg = read_config(d)
    weights = d / WEIGHTS
    if not weights.is_file():
        raise ModelFileError(f"no {WEIGHTS} in {d}")
    from advlab.models import build_any

    model = build_any(cfg)
    state = load_file(str(weights), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFileError(f"weights in {weights} do not match architecture {cfg.get('name')!r}: missing {missing}, unexpected {unexpected}")
    model.advlab_config = cfg  # type: ignore[assignment]
    return model.to(device).eval()


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in config.json")
