"""``advlab demo``: the seed report's experiment, offline, with a self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from advlab.commands._common import console, progress_bar, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for report.html, results.json, figures and the model."),
        seed: int = typer.Option(0, "--seed", help="Seed for training and the attacks' noise."),
        images: int = typer.Option(100, "--images", help="Test images attacked (>= 10)."),
        steps: int = typer.Option(2000, "--steps", help="Maximum descent steps per attack."),
        model: Path = typer.Option(None, "--model", help="Use this saved seed-mlp folder instead of training one."),
    ) -> None:
        """Reproduce the seed report's experiment on the embedded MNIST sample (61-79 s measured on a busy 2-core machine).

        Trains the 784-20-10 network, makes fooling images from noise, runs the targeted attack with
        a prior (lambda = 0.05) and a lambda sweep, tests binary thresholding, and writes
        OUT/report.html, OUT/results.json, PNG figures and the model.
        """
        with user_errors():
            import time

            from advlab.demo import DemoConfig, run_demo

            start = time.perf_counter()
            cfg = DemoConfig(seed=seed, images=images, steps=steps)
            net = None
            if model is not None:
                from advlab.models import load_model

                net = load_model(model)
            results = run_demo(out, cfg, model=net, progress=progress_bar)
            _print_summary(results, out, time.perf_counter() - start)


def _print_summary(results: dict, out: Path, seconds: float) -> None:
    from rich.table import Table

    c = console()
    t = results["targeted"]
    table = Table(title="The seed report's experiment", show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("seed MLP test accuracy", results["model"]["test_accuracy"]),
        ("fooling images classified as their goal", results["fooling"]["goal_reached"]),
        (f"targeted (λ={t['lam']:g}): goal class reached", t["goal_reached"]),
        ("targeted: misclassified", t["misclassified"]),
        ("targeted: true-class confidence dropped", t["true_confidence_dropped"]),
        ("targeted: mean goal-class confidence", t["mean_goal_confidence"]),
        ("targeted: mean L2 distance", t["mean_l2"]),
        (f"smallest λ ({results['lambda_sweep'][0]['lam']:g}): goal reached", results["lambda_sweep"][0]["goal_reached"]),
        ("thresholding: adversarial back to true label", results["thresholding"]["recovered"]),
        ("thresholding: clean accuracy", results["thresholding"]["clean_accuracy"]),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:.3f}")
    c.print(table)
    failed = [e for e in results["expectations"] if not e["passed"]]
    for e in failed:
        c.print(f"[yellow]below expectation:[/] {e['description']}: {e['value']:.3f} < {e['floor']}")
    c.print(f"[green]wrote[/] {out / 'report.html'}, {out / 'results.json'} ({seconds:.1f} s)")
