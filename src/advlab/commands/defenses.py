"""``advlab defend`` (put an input transformation in front of a saved model) and
``advlab list defenses``."""

from __future__ import annotations

from pathlib import Path

import typer

from advlab.commands._common import console, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def defend(
        model_dir: Path = typer.Argument(..., help="A saved model folder (config.json + model.safetensors)."),
        transform: list[str] = typer.Option(..., "--transform", "-t", help="Transformation (see `advlab list defenses`), repeat to chain them."),
        param: list[str] = typer.Option([], "--param", "-p", help="Transformation parameter NAME=VALUE (applies to every --transform that takes it)."),
        out: Path = typer.Option(..., "--out", help="Folder to write the defended model."),
        eot_samples: int = typer.Option(10, help="Draws an adaptive (EOT) attack averages over, for randomized transformations."),
    ) -> None:
        """Save MODEL_DIR behind an input transformation; attacks on it are adaptive (BPDA/EOT)."""
        with user_errors():
            import inspect

            from advlab.defenses import TRANSFORMS, Chain, Defended, build_transform
            from advlab.models import load_model, save_model

            values = dict(_parse_param(p) for p in param)
            links = []
            for name in transform:
                if name not in TRANSFORMS:
                    raise ValueError(f"unknown transformation {name!r}; expected one of {', '.join(sorted(TRANSFORMS))}")
                accepted = inspect.signature(TRANSFORMS[name]).parameters
                links.append(build_transform(name, **{k: v for k, v in values.items() if k in accepted}))
            unused = set(values) - {k for name in transform for k in inspect.signature(TRANSFORMS[name]).parameters}
            if unused:
                raise ValueError(f"parameter(s) {', '.join(sorted(unused))} are not taken by {', '.join(transform)}")
            net = load_model(model_dir)
            defended = Defended(net, links[0] if len(links) == 1 else Chain(*links), eot_samples=eot_samples)
            save_model(defended, out)
            console().print(f"[green]saved[/] {out}  ({defended.transform!r})")

    @list_app.command("defenses")
    def list_defenses() -> None:
        """Input transformations and how each must be attacked."""
        from advlab.defenses import TRANSFORMS

        for name, cls in sorted(TRANSFORMS.items()):
            how = ", ".join(w for w, on in (("BPDA", not cls.differentiable), ("EOT", cls.randomized)) if on) or "gradient"
            console().print(f"{name:20s} attack with: {how}")


def _parse_param(text: str) -> tuple[str, int | float | str]:
    if "=" not in text:
        raise ValueError(f"--param takes NAME=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    value: int | float | str = raw
    for cast in (int, float):
        try:
            value = cast(raw)
            break
        except ValueError:
            continue
    return key.strip().replace("-", "_"), value
