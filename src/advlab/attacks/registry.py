"""The attack registry: names to attack classes, for the CLI, configs, docs and contract tests."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from advlab.attacks.base import Attack

__all__ = ["register", "get_attack", "attack_class", "available_attacks", "make_attack", "UnknownAttackError"]

_REGISTRY: dict[str, type[Attack]] = {}
A = TypeVar("A", bound=type[Attack])


class UnknownAttackError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def register(cls: A) -> A:
    """Class decorator: add an attack class to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"attack name {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def attack_class(name: str) -> type[Attack]:
    """The class registered as ``name``; unknown names get suggestions."""
    _load_builtin()
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownAttackError(f"unknown attack {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})")


def get_attack(name: str, **params: Any) -> Attack:
    """An attack instance by name, with hyperparameters (``get_attack("pgd", steps=100)``)."""
    cls = attack_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        import dataclasses

        fields = [f.name for f in dataclasses.fields(cls)]
        raise ValueError(f"bad parameters for attack {name!r}: {exc}; its parameters are {fields}") from None


def make_attack(spec: str | dict[str, Any] | Attack) -> Attack:
    """An attack from a config entry: a name, ``{"name": ..., **params}`` or an instance."""
    if isinstance(spec, Attack):
        return spec
    if isinstance(spec, str):
        return get_attack(spec)
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"attack config {spec!r} has no 'name'")
        params = {k: v for k, v in spec.items() if k != "name"}
        return get_attack(spec["name"], **params)
    raise TypeError(f"cannot make an attack from {type(spec).__name__}")


def available_attacks() -> dict[str, type[Attack]]:
    """Every registered attack, by name."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def _load_builtin() -> None:
    import advlab.attacks  # noqa: F401  (importing the package registers the built-in attacks)
