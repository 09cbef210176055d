"""Saving and loading models: ``model.safetensors`` weights plus ``config.json``. No pickle."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["save_model", "load_model", "read_config", "weights_header", "build_checked", "ModelFileError"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1
# A config whose architecture would hold more parameters than this is refused before anything
# is allocated (a config.json typo such as "hidden": 1e9 would otherwise ask for terabytes).
MAX_PARAMETERS = 2_000_000_000


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
    # Each file is written beside its final name and renamed over it, so a process killed
    # mid-save never leaves a truncated file under the real name.
    tmp = d / f".{WEIGHTS}.tmp{os.getpid()}"
    save_file(state, str(tmp))
    os.replace(tmp, d / WEIGHTS)
    tmp = d / f".{CONFIG}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, d / CONFIG)
    return d


def read_config(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / CONFIG
    if not path.is_file():
        raise ModelFileError(f"no {CONFIG} in {d} (a saved advlab model is a folder with {CONFIG} and {WEIGHTS})")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{path} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def weights_header(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a safetensors file, read from its header alone.

    A file that is not safetensors (a pickle from ``torch.save`` renamed, a truncated
    download, anything else) is a :class:`ModelFileError` naming the file and the problem;
    nothing in it is ever unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"weights file {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:  # type: ignore[no-untyped-call]
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        with open(p, "rb") as fh:
            head = fh.read(2)
        if head == b"PK" or head[:1] == b"\x80":  # torch.save's zip archive, or a bare pickle
            raise ModelFileError(
                f"{p} is a pickle (torch.save output), not safetensors; advlab never loads pickles. "
                "Convert it where you trust it: safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{p} is not a valid safetensors file (truncated or another format?): {reason}") from None
    size = p.stat().st_size
    needed = sum(math.prod(s) for s in shapes.values())
    if needed > size:  # at least one byte per element: a header promising more is truncated data
        raise ModelFileError(f"{p} is truncated: its header lists {needed:,} values but the file has {size:,} bytes")
    return shapes


def build_checked(cfg: dict[str, Any], where: str | Path) -> nn.Module:
    """Build the model a config describes, after checking on the ``meta`` device (no memory)
    that it builds at all and is of a sane size."""
    from advlab.models import build_any

    try:
        with torch.device("meta"):
            probe = build_any(cfg)
    except ModelFileError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFileError(f"{where}: the config does not build a model: {exc}") from None
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMETERS:
        raise ModelFileError(
            f"{where}: the config asks for {count:,} parameters (kwargs {cfg.get('kwargs')}); "
            f"refusing more than {MAX_PARAMETERS:,}: check the config for a typo"
        )
    return build_any(cfg)


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (config first, then the safetensors weights)."""
    d = Path(directory)
    cfg = read_config(d)
    weights = d / WEIGHTS
    if not weights.is_file():
        raise ModelFileError(f"no {WEIGHTS} in {d}")
    header = weights_header(weights)
    model = build_checked(cfg, d / CONFIG)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"weights in {weights} do not match architecture {cfg.get('name')!r}: missing {missing}, unexpected {unexpected}")
    wrong = [f"{k}: file {header[k]}, model {expected[k]}" for k in expected if header[k] != expected[k]]
    if wrong:
        raise ModelFileError(f"weights in {weights} do not match the shapes config.json builds: {'; '.join(wrong[:5])}")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:
        raise ModelFileError(f"{weights} could not be read: {exc}") from None
    model.load_state_dict(state, strict=True)
    model.advlab_config = cfg  # type: ignore[assignment]
    return model.to(device).eval()


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in config.json")
