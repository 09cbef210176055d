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
        adversarial: str = typer.Option(None, "--adversarial", help="Adversarial training: pgd (Madry et al.), fgsm (Wong et al., random start) or trades (Zhang et al.)."),
        eps: float = typer.Option(0.3, help="Adversarial training: the threat model's eps."),
        norm: str = typer.Option("linf", help="Adversarial training: the threat model's norm."),
        attack_steps: int = typer.Option(10, help="Adversarial training: attack steps per batch (pgd, trades)."),
        step_size: float = typer.Option(None, help="Adversarial training: attack step (default 2.5 eps / steps; fgsm 1.25 eps)."),
        beta: float = typer.Option(6.0, help="TRADES: weight of the robustness term."),
        warmup: int = typer.Option(0, help="Adversarial training: epochs over which eps grows from 0."),
        distill: float = typer.Option(None, "--distill", help="Defensive distillation at this temperature (Papernot et al. use 100)."),
        certified: str = typer.Option(None, "--certified", help="Certified training: ibp (Gowal et al.), against --eps in --norm; eps ramps up over --warmup epochs (default: half the epochs) after one clean epoch."),
    ) -> None:
        """Train a model with a progress bar and save it (safetensors + JSON config).

        With --adversarial the model is adversarially trained; with --distill it is a
        defensively distilled student (deployed at T = 1; attacks on it are adaptive).
        """
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
            import torch

            torch.manual_seed(seed)  # seeds the initial weights too, so a run is reproducible
            extra: dict = {}
            if sum(option is not None for option in (adversarial, distill, certified)) > 1:
                raise ValueError("choose one of --adversarial, --distill and --certified")
            if certified is not None:
                from advlab.certify.training import CertifiedTraining, certified_train

                ramp = float(warmup) if warmup else max(1.0, settings.get("epochs", 10) / 2)
                ct = CertifiedTraining(certified.lower(), eps=eps, norm=norm, warmup=1.0, ramp=ramp)
                net = build_model(model, **kwargs)
                history = certified_train(net, dataset.x_train, dataset.y_train, ct, TrainConfig(**settings), progress=True)
                extra["certified_training"] = ct.to_dict()
            elif adversarial is not None:
                from advlab.defenses.adversarial_training import (
                    AdversarialTraining,
                    adversarial_train,
                )

                at = AdversarialTraining(adversarial.lower(), eps=eps, norm=norm, steps=attack_steps, step_size=step_size, beta=beta, warmup=warmup, seed=seed)
                net = build_model(model, **kwargs)
                history = adversarial_train(net, dataset.x_train, dataset.y_train, at, TrainConfig(**settings), progress=True)
                extra["adversarial_training"] = at.to_dict()
            elif distill is not None:
                from advlab.defenses.distillation import distill as run_distillation

                net, history = run_distillation(model, dataset.x_train, dataset.y_train, distill, TrainConfig(**settings), model_kwargs=kwargs, progress=True)
            else:
                net = build_model(model, **kwargs)
                history = train_model(net, dataset.x_train, dataset.y_train, TrainConfig(**settings), progress=True, description=f"training {model}")
            acc = accuracy(net, dataset.x_test, dataset.y_test)
            save_model(net, out, dataset=data, training=settings, test_accuracy=acc, train_seconds=history["seconds"], **extra)
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
