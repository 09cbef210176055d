"""Model registry: architectures by name, so configs and saved models can rebuild them."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from advlab.models.architectures import SeedMLP, SmallCNN

__all__ = ["register_model", "build_model", "available_models", "get_factory"]

_MODELS: dict[str, Callable[..., nn.Module]] = {"seed-mlp": SeedMLP, "cnn": SmallCNN}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an architecture under ``name`` (its kwargs must be JSON-serialisable)."""
    if name in _MODELS and _MODELS[name] is not factory:
        raise ValueError(f"model name {name!r} is already registered")
    _MODELS[name] = factory


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The class or function registered as ``name`` (unknown names get suggestions)."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (known: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A fresh, untrained model of architecture ``name``."""
    model = get_factory(name)(**kwargs)
    model.advlab_config = {"name": name, "kwargs": dict(kwargs)}  # type: ignore[assignment]
    return model


def available_models() -> list[str]:
    return sorted(_MODELS)
