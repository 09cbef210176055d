"""``advlab serve``: the playground web app."""

from __future__ import annotations

from pathlib import Path

import typer

from advlab.commands._common import console, fail, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: Path = typer.Option(None, "--model", help="A saved advlab model folder (default: the seed MLP)."),
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
            application = create_app(model_dir=model, runs_dir=runs, time_limit=time_limit)
        if host not in ("127.0.0.1", "localhost", "::1"):
            console().print(f"[yellow]warning:[/] binding to {host}: the playground has no authentication")
        console().print(f"advlab playground on http://{host}:{port}/  (API docs at /docs; Ctrl+C to stop)")
        uvicorn.run(application, host=host, port=port, log_level="warning")
