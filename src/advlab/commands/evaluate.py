"""``advlab evaluate`` (a robustness evaluation with its audit and report) and
``advlab report RUN_DIR`` (re-render a run's report from its ``results.json``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from advlab.commands._common import HELP, console, load_inputs, progress_bar, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        model: str = typer.Argument(..., help=HELP["model"]),
        out: Path = typer.Option(..., "--out", help="Run folder: store, results.json, report.html. Rerun to resume."),
        data: str = typer.Option("mnist-sample", "--data", help=HELP["data"] + " Graph victims: karate or csbm."),
        weights: str = typer.Option(None, "--weights", help=HELP["weights"]),
        mean: str = typer.Option(None, "--mean", help=HELP["mean"]),
        std: str = typer.Option(None, "--std", help=HELP["std"]),
        box: str = typer.Option(None, "--box", help=HELP["box"]),
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
        budgets: str = typer.Option(None, help="Graph victims: edge-flip budgets, counts or shares of the edges (0,4,5%)."),
        target_budgets: str = typer.Option(None, "--target-budgets", help="Graph victims: flips per target node (0,1,2,3)."),
        targets: int = typer.Option(None, help="Graph victims: how many test nodes the targeted attack attacks."),
        goal: str = typer.Option(None, help="Graph victims: evasion, poisoning, or evasion,poisoning."),
        steps: int = typer.Option(None, help="Graph victims: steps of the gradient graph attacks."),
    ) -> None:
        """Evaluate a model's robustness: robust-accuracy curve, minimal norms, audit, report.

        Launch with `torchrun --nproc_per_node N -m advlab evaluate ...` to shard the samples.
        A GCN on a graph (`advlab evaluate gcn --data karate --out runs/karate`) runs the
        graph attacks over edge-flip budgets instead (--eps then sets node-feature budgets).
        """
        with user_errors():
            from advlab.evaluation import ThreatSpec, as_plan
            from advlab.evaluation import evaluate as run
            from advlab.evaluation.evaluators import evaluator_for

            graph_options = {"budgets": budgets, "target_budgets": target_budgets, "targets": targets, "goals": goal, "steps": steps}
            if evaluator_for(model, data) is not None:
                if weights or mean or std or box:
                    raise ValueError("--weights, --mean, --std and --box apply to image models, not to a graph evaluation")
                graph_overrides = _graph_overrides(graph_options, samples=samples, seed=seed, batch_size=batch_size, norm=norm, eps=eps, attacks=attacks, minimal=minimal)
                result = run(model, data, plan, out=out, progress=progress_bar, report=report, **graph_overrides)
                _print(result, out)
                return
            flags = {"budgets": "--budgets", "target_budgets": "--target-budgets", "targets": "--targets", "goals": "--goal", "steps": "--steps"}
            given = [flags[k] for k, v in graph_options.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply to graph victims (a GCN with --data karate or csbm), not to {model!r}")
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
                    box=base.box,
                    attacks=tuple(a.strip() for a in attacks.split(",")) if attacks else base.attacks,
                )
                the_plan = the_plan.replace(threats=(spec,))
            resolved, dataset = load_inputs(model, data, weights=weights, mean=mean, std=std, box=box)
            rank = int(os.environ.get("RANK", "0"))
            if rank == 0 and resolved.preprocessing:
                console().print(resolved.preprocessing, style="dim", markup=False)
            bar = progress_bar if rank == 0 else None
            result = run(resolved.module, dataset, the_plan, out=out, device=device, progress=bar, report=report)
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


def _graph_overrides(options: dict, **image: object) -> dict:
    """Plan overrides of a graph evaluation from the command's options."""
    split = lambda text: [p.strip() for p in str(text).split(",") if p.strip()]  # noqa: E731
    out = {k: v for k, v in options.items() if v is not None}
    for key in ("budgets", "goals"):
        if key in out:
            out[key] = split(out[key])
    if "target_budgets" in out:
        try:
            out["target_budgets"] = [int(v) for v in split(out["target_budgets"])]
        except ValueError:
            raise ValueError(f"--target-budgets must be whole numbers of flips, got {options['target_budgets']!r}") from None
    if image.get("eps") is not None:
        out["feature_eps"] = [float(v) for v in split(image["eps"])]
    if image.get("norm") is not None:
        out["feature_norm"] = image["norm"]
    if image.get("attacks") is not None:
        out["attacks"] = split(image["attacks"])
    if image.get("seed") is not None:
        out["seed"] = image["seed"]
    for name in ("samples", "batch_size", "minimal"):
        if image.get(name) is not None:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to a graph evaluation (use --targets, --budgets, --eps for feature budgets)")
    return out


def _print(result, out: Path) -> None:
    from rich.table import Table

    c = console()
    c.print(result.summary)
    for t in result.data["threats"]:
        table = Table(title=t["threat_model"])
        table.add_column("budget" if "per_attack" in t["results"][0] else "eps")
        names = t["attacks"] if "per_attack" in t["results"][0] else []
        for name in names:
            table.add_column(name, justify="right")
        table.add_column("robust accuracy", justify="right")
        for r in t["results"]:
            cells = [f"{100 * e['accuracy']:.1f}%" for e in r.get("per_attack", [])]
            table.add_row(f"{r['eps']:g}", *cells, f"{100 * r['robust_accuracy']:.1f}%")
        c.print(table)
    for check in result.checks:
        color = {"pass": "green", "warn": "yellow", "fail": "red"}.get(check["verdict"], "dim")
        c.print(f"[{color}]{check['verdict']:>7}[/] {check['title']} ({check['threat'] or 'model'})")
    c.print(f"results: {out / 'results.json'}   report: {out / 'report.html'}")
