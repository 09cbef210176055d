"""``advlab evaluate`` (a robustness evaluation with its audit and report) and
``advlab report RUN_DIR`` (re-render a run's report from its ``results.json``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from advlab.commands._common import console, progress_bar, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        model: str = typer.Argument(..., help="A saved model folder or a model-zoo name (e.g. cnn)."),
        out: Path = typer.Option(..., "--out", help="Run folder: store, results.json, report.html. Rerun to resume."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset name."),
        plan: Path = typer.Option(None, "--plan", help="Evaluation plan (TOML)."),
        samples: int = typer.Option(None, help="Number of test samples (overrides the plan)."),
        seed: int = typer.Option(None, help="Seed (overrides the plan)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Samples per unit of work (overrides the plan)."),
        norm: str = typer.Option(None, help="Threat-model norm for a one-threat plan (with --eps)."),
        eps: str = typer.Option(None, help="Comma-separated budgets for a one-threat plan, e.g. 0.1,0.2,0.3."),
        attacks: str = typer.Option(None, help="Comma-separated attack cascade (default: auto)."),
        minimal: str = typer.Option(None, help="Minimal-norm attack name, 'true' or 'false'."),
        device: str = typer.Option(None, help="cpu or cuda (default: CUDA when available)."),
        report: bool = typer.Option(True, "--report/--no-report", help="Write report.html."),
    ) -> None:
        """Evaluate a model's robustness: robust-accuracy curve, minimal norms, audit, report.

        Launch with `torchrun --nproc_per_node N -m advlab evaluate ...` to shard the samples.
        """
        with user_errors():
            from advlab.evaluation import ThreatSpec, as_plan
            from advlab.evaluation import evaluate as run

            overrides: dict = {"samples": samples, "seed": seed, "batch_size": batch_size}
            if minimal is not None:
                overrides["minimal"] = {"true": True, "false": False}.get(minimal.lower(), minimal)
            the_plan = as_plan(plan, **overrides)
            if norm or eps or attacks:
                if len(the_plan.threats) > 1:
                    raise ValueError("--norm/--eps/--attacks apply to a plan with one threat model; edit the plan file instead")
                base = the_plan.threats[0]
                spec = ThreatSpec(
                    norm=norm or base.norm,
                    eps=tuple(float(e) for e in eps.split(",")) if eps else base.eps,
                    targeted=base.targeted,
                    knowledge=base.knowledge,
                    attacks=tuple(a.strip() for a in attacks.split(",")) if attacks else base.attacks,
                )
                the_plan = the_plan.replace(threats=(spec,))
            rank = int(os.environ.get("RANK", "0"))
            bar = progress_bar if rank == 0 else None
            result = run(model, data, the_plan, out=out, device=device, progress=bar, report=report)
            if rank == 0:
                _print(result, out)

    @app.command("report")
    def report_cmd(run_dir: Path = typer.Argument(..., help="A run folder with results.json.")) -> None:
        """Re-render RUN_DIR/report.html from RUN_DIR/results.json."""
        with user_errors():
            from advlab.evaluation import EvaluationResult
            from advlab.evaluation.report import render_report

            result = EvaluationResult.load(run_dir)
            path = render_report(result.data, run_dir)
            console().print(f"[green]wrote[/] {path}")


def _print(result, out: Path) -> None:
    from rich.table import Table

    c = console()
    c.print(result.summary)
    for t in result.data["threats"]:
        table = Table(title=t["threat_model"])
        table.add_column("eps")
        table.add_column("robust accuracy", justify="right")
        for r in t["results"]:
            table.add_row(f"{r['eps']:g}", f"{100 * r['robust_accuracy']:.1f}%")
        c.print(table)
    for check in result.checks:
        color = {"pass": "green", "warn": "yellow", "fail": "red"}.get(check["verdict"], "dim")
        c.print(f"[{color}]{check['verdict']:>7}[/] {check['title']} ({check['threat'] or 'model'})")
    c.print(f"results: {out / 'results.json'}   report: {out / 'report.html'}")
