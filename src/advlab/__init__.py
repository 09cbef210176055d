"""advlab: attack classifiers, defend them, and evaluate their robustness honestly.

The public API is imported lazily so that ``import advlab`` (and the CLI's ``--help``) stays
fast; every name in ``__all__`` resolves on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ThreatModel": "advlab.threat",
    "AttackResult": "advlab.result",
    "Attack": "advlab.attacks.base",
    "get_attack": "advlab.attacks.registry",
    "available_attacks": "advlab.attacks.registry",
    "register": "advlab.attacks.registry",
    "attack": "advlab.api",
    "load_data": "advlab.data",
    "Dataset": "advlab.data",
    "build_model": "advlab.models",
    "train_model": "advlab.models",
    "trained_model": "advlab.models",
    "save_model": "advlab.models",
    "load_model": "advlab.models",
    "CounterRNG": "advlab.rng",
    "InputError": "advlab.validation",
    "evaluate": "advlab.evaluation",
    "EvaluationPlan": "advlab.evaluation",
    "ThreatSpec": "advlab.evaluation",
    "EvaluationResult": "advlab.evaluation",
    "GraphPlan": "advlab.graphs.evaluator",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'advlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
