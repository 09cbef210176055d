"""Trained reference models, trained once with the default settings and cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

from advlab.models.io import ModelFileError, load_model, save_model
from advlab.models.registry import build_model
from advlab.models.training import TrainConfig, accuracy, train_model

__all__ = ["trained_model", "default_cache_dir"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$ADVLAB_CACHE`` or ``~/.cache/advlab``."""
    return Path(os.environ.get("ADVLAB_CACHE", Path.home() / ".cache" / "advlab"))


def trained_model(
    name: str,
    dataset: str = "mnist-sample",
    *,
    cache_dir: str | Path | None = None,
    training: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    adversarial: dict[str, Any] | None = None,
    progress: bool = True,
) -> nn.Module:
    """Model ``name`` trained on ``dataset`` with the default (or given) settings.

    The result is cached under ``cache_dir`` keyed by every setting, so a second call loads the
    safetensors file instead of training again.  ``adversarial`` holds
    :class:`advlab.defenses.adversarial_training.AdversarialTraining` settings
    (``{"method": "pgd", "eps": 0.3, "steps": 10}``) for an adversarially trained model.
    Training shows its progress (:mod:`advlab.progress`) unless ``progress=False``.
    """
    from advlab.data import load_data
    from advlab.models import DEFAULT_TRAINING

    settings = dict(DEFAULT_TRAINING.get(name, {}))
    settings.update(training or {})
    kwargs = dict(model_kwargs or {})
    key_fields: dict[str, Any] = {"name": name, "dataset": dataset, "training": settings, "kwargs": kwargs}
    if adversarial:
        key_fields["adversarial"] = dict(adversarial)
    digest = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:12]
    tag = f"-{adversarial.get('method', 'pgd')}" if adversarial else ""
    folder = Path(cache_dir or default_cache_dir()) / "models" / f"{name}{tag}-{dataset}-{digest}"
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        try:
            return load_model(folder)
        except ModelFileError as exc:  # a damaged cache entry is retrained, not fatal
            log.warning("cached model %s is damaged (%s); training it again", folder, exc)
    data = load_data(dataset)
    import torch

    torch.manual_seed(int(settings.get("seed", 0)))  # the initial weights are part of the recipe
    model = build_model(name, **kwargs)
    extra: dict[str, Any] = {}
    if adversarial:
        from advlab.defenses.adversarial_training import AdversarialTraining, adversarial_train

        at = AdversarialTraining(**adversarial)
        history = adversarial_train(model, data.x_train, data.y_train, at, TrainConfig(**settings), progress=progress)
        extra["adversarial_training"] = at.to_dict()
    else:
        history = train_model(model, data.x_train, data.y_train, TrainConfig(**settings), progress=progress, description=f"training {name}")
    acc = accuracy(model, data.x_test, data.y_test)
    save_model(model, folder, dataset=dataset, training=settings, test_accuracy=acc, train_seconds=history["seconds"], **extra)
    return load_model(folder)
