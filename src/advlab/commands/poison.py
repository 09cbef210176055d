"""``advlab poison``: train on a poisoned training set and report what the attack achieved."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from advlab.commands._common import console, load_victim, user_errors

ATTACKS = ("badnets", "label-flip", "feature-collision")


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def poison(
        attack: str = typer.Argument(..., help=f"One of {', '.join(ATTACKS)}."),
        model: str = typer.Option("cnn", "--model", help="Architecture to train (feature-collision: the pretrained model to fine-tune)."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset."),
        rate: list[float] = typer.Option([0.05], help="Poison rate(s); repeat for a sweep (e.g. label flipping 0..0.5)."),
        target: int = typer.Option(None, help="Backdoor target / flip target class (badnets default 0)."),
        source: int = typer.Option(None, help="label-flip: flip only this class (needs --target)."),
        trigger: str = typer.Option("pattern", help="badnets trigger: pattern, square or pixel."),
        trigger_size: int = typer.Option(4, help="badnets trigger side in pixels."),
        target_index: int = typer.Option(0, help="feature-collision: test instance to be misclassified."),
        base_class: int = typer.Option(None, help="feature-collision: class it should become (default: next class)."),
        poisons: int = typer.Option(50, help="feature-collision: number of poison images."),
        watermark: float = typer.Option(0.0, help="feature-collision: opacity of the target blended into the bases."),
        eps: float = typer.Option(None, help="feature-collision: hard Linf budget of each poison around its base."),
        epochs: int = typer.Option(None, help="Training epochs (default: the architecture's default)."),
        seed: int = typer.Option(0, help="Random seed (rows poisoned and training)."),
        out: Path = typer.Option(..., "--out", help="Folder for results.json and figures."),
    ) -> None:
        """Poison the training set (label flipping, BadNets backdoor, feature collision), train, and report
        clean accuracy, accuracy on the attacked class and the attack's success rate."""
        with user_errors():
            from advlab.commands.models import _model_kwargs
            from advlab.data import load_data
            from advlab.models import DEFAULT_TRAINING, TrainConfig, build_model
            from advlab.poisoning import (
                BadNets,
                FeatureCollision,
                LabelFlip,
                fine_tune,
                poison_report,
                train_poisoned,
            )
            from advlab.report.physical import curve_figure, image_grid

            if attack not in ATTACKS:
                raise ValueError(f"unknown poisoning attack {attack!r}; expected one of {', '.join(ATTACKS)}")
            ds = load_data(data)
            settings = dict(DEFAULT_TRAINING.get(model, {}), seed=seed)
            if epochs is not None:
                settings["epochs"] = epochs
            config = TrainConfig(**settings)
            out.mkdir(parents=True, exist_ok=True)
            reports = []
            c = console()
            if attack == "feature-collision":
                reference = load_victim(model, data)
                base = base_class if base_class is not None else (int(ds.y_test[target_index]) + 1) % ds.num_classes
                fc = FeatureCollision(target_index=target_index, base_class=base, poisons=poisons, watermark=watermark, eps=eps, seed=seed)
                pdata = fc.poison(reference, ds)
                tuned = fine_tune(reference, pdata, TrainConfig(epochs=epochs or 10, seed=seed))
                reports.append(poison_report(tuned, pdata, reference))
                rows = pdata.poisoned.nonzero().squeeze(1)[:8]
                image_grid(pdata.dataset.x_train[rows], [f"label {int(v)}" for v in pdata.dataset.y_train[rows]], out / "poisons.png",
                           suptitle=f"clean-label poisons (class {base}) colliding with test image {target_index}")
            else:
                kwargs = _model_kwargs(model, ds)
                reference = None
                for r in rate:
                    if attack == "badnets":
                        pdata = BadNets(target=0 if target is None else target, rate=r, trigger=trigger, size=trigger_size, seed=seed).poison(ds)
                    else:
                        pdata = LabelFlip(rate=r, source=source, target=target, seed=seed).poison(ds)
                    if reference is None and model in DEFAULT_TRAINING:
                        reference = load_victim(model, data) if settings == dict(DEFAULT_TRAINING[model], seed=0) else None
                    trained, report = train_poisoned(pdata, lambda: build_model(model, **kwargs), config, reference=reference, progress=True)
                    reports.append(report)
                    c.print(_line(report))
                if attack == "badnets":
                    xs = ds.x_test[ds.y_test != pdata.target][:8]
                    from advlab.models import predict

                    xt = pdata.trigger(xs)  # type: ignore[misc]
                    image_grid(xt, [f"pred {int(v)}" for v in predict(trained, xt)], out / "triggered_examples.png",
                               suptitle=f"test images with the trigger (target {pdata.target})")
                if len(rate) > 1:
                    series = {"clean test accuracy": [rep.clean_accuracy for rep in reports]}
                    if reports[0].target_class_accuracy is not None:
                        series["attacked-class accuracy"] = [rep.target_class_accuracy or 0.0 for rep in reports]
                    if reports[0].attack_success is not None:
                        series["attack success"] = [rep.attack_success or 0.0 for rep in reports]
                    curve_figure(rate, series, out / f"{attack}_curve.png", xlabel="poison rate (%)", ylabel="%", percent_x=True,
                                 title=f"{attack}: {model} on {data}")
            if attack == "feature-collision":
                c.print(_line(reports[0]))
            (out / "results.json").write_text(json.dumps({"attack": attack, "model": model, "data": data, "reports": [r.to_dict() for r in reports]}, indent=2))
            c.print(f"[green]saved[/] {out}")


def _line(report) -> str:  # type: ignore[no-untyped-def]
    parts = [f"{report.attack} rate {report.poison_rate:.1%}: clean accuracy [bold]{report.clean_accuracy:.1%}[/]"]
    if report.reference_accuracy is not None:
        parts.append(f"(clean model {report.reference_accuracy:.1%})")
    if report.target_class_accuracy is not None:
        parts.append(f"attacked class {report.target_class_accuracy:.1%}")
    if report.attack_success is not None:
        parts.append(f"attack success [bold]{report.attack_success:.1%}[/]")
    return ", ".join(parts)
