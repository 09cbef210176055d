"""Victim models: architectures, a registry, training and safetensors I/O."""

from __future__ import annotations

from typing import Any

from torch import nn

from advlab.models.architectures import SeedMLP, SmallCNN
from advlab.models.graph import GCN
from advlab.models.io import ModelFileError, load_model, read_config, save_model
from advlab.models.preprocessing import InputAdapter
from advlab.models.recurrent import SequenceLSTM
from advlab.models.registry import available_models, build_model, get_factory, register_model
from advlab.models.sklearn import (
    SklearnGaussianNB,
    SklearnLinear,
    SklearnScores,
    SklearnSVC,
    from_sklearn,
    sklearn_blackbox,
    sklearn_scores,
)
from advlab.models.training import TrainConfig, accuracy, predict, train_model

__all__ = [
    "SeedMLP",
    "SmallCNN",
    "SequenceLSTM",
    "GCN",
    "InputAdapter",
    "resolve_model",
    "SklearnGaussianNB",
    "SklearnLinear",
    "SklearnSVC",
    "SklearnScores",
    "from_sklearn",
    "sklearn_scores",
    "sklearn_blackbox",
    "get_factory",
    "ModelFileError",
    "TrainConfig",
    "accuracy",
    "available_models",
    "build_any",
    "build_model",
    "load_model",
    "predict",
    "read_config",
    "register_model",
    "save_model",
    "train_model",
    "DEFAULT_TRAINING",
]

# Training settings used by `advlab train` and the demo (seeded; a few seconds on 2 CPU cores).
DEFAULT_TRAINING: dict[str, dict[str, Any]] = {
    "seed-mlp": {"epochs": 30, "batch_size": 32, "lr": 3e-3},
    "cnn": {"epochs": 8, "batch_size": 64, "lr": 1e-3},
    "lstm": {"epochs": 12, "batch_size": 64, "lr": 3e-3},
}

register_model("lstm", SequenceLSTM)


def resolve_model(spec: Any, **kwargs: Any) -> Any:
    """The model a command-line spec names: see :func:`advlab.models.spec.resolve_model`."""
    from advlab.models.spec import resolve_model as resolve

    return resolve(spec, **kwargs)
register_model("gcn", GCN)
register_model("sklearn-linear", SklearnLinear)
register_model("sklearn-svc", SklearnSVC)
register_model("sklearn-gnb", SklearnGaussianNB)


def build_any(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from a saved config, including defended wrappers (``wrapper`` key)."""
    if "name" not in config:
        raise ModelFileError("config.json has no 'name' (the architecture)")
    if "wrapper" in config:
        from advlab.defenses.adaptive import build_wrapper

        if not isinstance(config.get("model"), dict):
            raise ModelFileError("config.json describes a defense wrapper but has no 'model' (the wrapped model's config)")
        return build_wrapper(config["wrapper"], build_any(config["model"]))
    return build_model(config["name"], **config.get("kwargs", {}))

from advlab.models.zoo import default_cache_dir, trained_model  # noqa: E402

__all__ += ["trained_model", "default_cache_dir"]
