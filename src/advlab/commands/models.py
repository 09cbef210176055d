"""``advlab train`` and ``advlab list models|datasets``."""

from __future__ import annotations

from pathlib import Path

import typer

from advlab.commands._common import console, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def train(
        model: str = typer.Argument(..., help="Architecture name (see `advlab list models`)."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset name."),
        out: Path = typer.Option(..., "--out", help="Folder to write model.safetensors and config.json."),
        epochs: int = typer.Option(None, help="Epochs (default: the architecture's default)."),
        lr: float = typer.Option(None, help="Learning rate."),
        batch_size: int = typer.Option(None, help="Batch size."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        """Train a model with a progress bar and save it (safetensors + JSON config)."""
        with user_errors():
            from advlab.data import load_data
            from advlab.models import (
                DEFAULT_TRAINING,
                TrainConfig,
                accuracy,
                build_model,
                get_factory,
                save_model,
                train_model,
            )

            hint = getattr(get_factory(model), "train_hint", None)
            if hint:
                raise ValueError(f"`advlab train` cannot train {model!r}: {hint}")
            dataset = load_data(data)
            settings = dict(DEFAULT_TRAINING.get(model, {}))
            for key, value in {"epochs": epochs, "lr": lr, "batch_size": batch_size}.items():
                if value is not None:
                    settings[key] = value
            settings["seed"] = seed
            kwargs = _model_kwargs(model, dataset)
            net = build_model(model, **kwargs)
            history = train_model(net, dataset.x_train, dataset.y_train, TrainConfig(**settings), progress=True, description=f"training {model}")
            acc = accuracy(net, dataset.x_test, dataset.y_test)
            save_model(net, out, dataset=data, training=settings, test_accuracy=acc, train_seconds=history["seconds"])
            console().print(f"[green]saved[/] {out}  test accuracy {acc:.4f}  ({history['seconds']:.1f} s)")

    @list_app.command("models")
    def list_models() -> None:
        """Model architectures."""
        from advlab.models import available_models

        for name in available_models():
            console().print(name)

    @list_app.command("datasets")
    def list_datasets() -> None:
        """Datasets."""
        from advlab.data import DATASETS

        for name in DATASETS:
            console().print(name)


def _model_kwargs(model: str, dataset) -> dict:
    shape = dataset.input_shape
    if model == "seed-mlp":
        import math

        return {"in_features": math.prod(shape), "num_classes": dataset.num_classes}
    if model == "cnn" and len(shape) == 3:
        return {"in_channels": shape[0], "num_classes": dataset.num_classes, "image_size": shape[1]}
    if model == "lstm":
        # rows are time steps: C * W features per step (images) or the feature width (sequences)
        width = shape[0] * shape[2] if len(shape) == 3 else shape[-1]
        return {"input_size": width, "num_classes": dataset.num_classes}
    return {}
