"""The ``advlab`` command: a thin layer over the public API.

Commands live in :mod:`advlab.commands`, one module each, and are discovered automatically.
Heavy imports (torch, matplotlib) happen inside the commands so ``advlab --help`` is fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="advlab",
    help="Attack classifiers, defend them, and evaluate their robustness honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List what advlab knows: attacks, models, datasets.", no_args_is_help=True)
app.add_typer(list_app, name="list")


def _load_commands() -> None:
    import advlab.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"advlab.commands.{info.name}")
        module.register(app, list_app)


_load_commands()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
