"""``advlab serve``: the playground web app."""

from __future__ import annotations

from pathlib import Path

import typer

from advlab.commands._common import HELP, console, fail, load_inputs, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: str = typer.Option("seed-mlp", "--model", help=HELP["model"] + " It must classify 28x28 greyscale digits."),
        weights: str = typer.Option(None, "--weights", help=HELP["weights"]),
        mean: str = typer.Option(None, "--mean", help=HELP["mean"]),
        std: str = typer.Option(None, "--std", help=HELP["std"]),
        box: str = typer.Option(None, "--box", help=HELP["box"]),
        host: str = typer.Option("127.0.0.1", help="Address to bind (localhost by default)."),
        port: int = typer.Option(8000, help="Port."),
        runs: Path = typer.Option(Path("runs"), help="Folder searched for evaluation reports."),
        time_limit: float = typer.Option(20.0, help="Seconds an attack request may take."),
    ) -> None:
        """Start the playground: draw a digit, attack it, watch the network be fooled."""
        try:
            import uvicorn

            from advlab.serve import create_app
        except ImportError as exc:
            fail(f"the playground needs FastAPI and uvicorn: pip install 'advlab[serve]' ({exc})")
        with user_errors():
            resolved, _ = load_inputs(model, "mnist-sample", weights=weights, mean=mean, std=std, box=box)
            application = create_app(model=resolved.module, runs_dir=runs, time_limit=time_limit)
        if host not in ("127.0.0.1", "localhost", "::1"):
            console().print(f"[yellow]warning:[/] binding to {host}: the playground has no authentication")
        console().print(f"advlab playground on http://{host}:{port}/  (API docs at /docs; Ctrl+C to stop)")
        uvicorn.run(application, host=host, port=port, log_level="warning")
