"""``advlab graph-attack`` (accuracy against the edge-flip budget) and ``advlab list graph-attacks``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from advlab.commands._common import console, user_errors


def parse_budgets(text: str, num_edges: int) -> list[int]:
    """``"0,4,5%"`` -> edge-flip counts (a ``%`` entry is a share of the graph's edges)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = round(float(part[:-1]) / 100 * num_edges) if part.endswith("%") else int(part)
        except ValueError:
            raise ValueError(f"bad budget {part!r}: use edge counts (8) or shares of the edges (5%)") from None
        if value < 0:
            raise ValueError(f"budgets must be >= 0, got {part!r}")
        out.append(int(value))
    if not out:
        raise ValueError("no budgets given")
    return sorted(set(out))


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    console().print(table)


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command("graph-attack")
    def graph_attack(
        graph: str = typer.Option("karate", help="Graph: karate (Zachary's karate club) or csbm (synthetic)."),
        attacks: str = typer.Option("dice,pgd-topology,nettack", "--attacks", help="Comma-separated graph attacks (see `advlab list graph-attacks`)."),
        budgets: str = typer.Option("0,5%,10%,20%", help="Edge-flip budgets for global attacks: counts or shares of the edges (5%)."),
        target_budgets: str = typer.Option("0,1,2,3", help="Flips per target node for targeted attacks (nettack)."),
        targets: int = typer.Option(20, help="How many test nodes targeted attacks attack (the first ones)."),
        feature_eps: str = typer.Option("0.1,0.3", help="Linf budgets for feature-pgd."),
        goal: str = typer.Option("evasion", help="evasion, or poisoning (retrain on the perturbed graph)."),
        nodes: int = typer.Option(1000, help="csbm: number of nodes."),
        steps: int = typer.Option(100, help="pgd-topology / feature-pgd steps."),
        seed: int = typer.Option(0, help="Seed of the graph split, the training and the attacks."),
        json_out: Path = typer.Option(None, "--json", help="Also write the results to this JSON file."),
        plot: Path = typer.Option(None, "--plot", help="Also save the accuracy-vs-flips figure (PNG) here."),
    ) -> None:
        """Train a GCN on a graph and print its accuracy against each attack's budget."""
        with user_errors():
            import json

            from advlab.graphs import (
                GraphThreatModel,
                accuracy_vs_budget,
                fit_gcn,
                get_graph_attack,
                load_graph,
                node_accuracy,
            )
            from advlab.models.training import TrainConfig
            from advlab.threat import ThreatModel

            if goal not in ("evasion", "poisoning"):
                raise ValueError(f"goal must be evasion or poisoning, got {goal!r}")
            kwargs: dict[str, Any] = {"seed": seed} if graph == "karate" else {"seed": seed, "nodes": nodes}
            g = load_graph(graph, **kwargs)
            train = TrainConfig(epochs=200, lr=0.01, weight_decay=5e-4, seed=seed)
            model = fit_gcn(g, config=train)
            console().print(f"{g}  GCN test accuracy {node_accuracy(model, g):.3f}")
            out: dict[str, Any] = {"graph": repr(g), "goal": goal, "tables": []}
            names = [a.strip() for a in attacks.split(",") if a.strip()]
            for name in names:
                get_graph_attack(name)  # unknown names fail before any work
            global_attacks, node_attacks, feature_attacks = [], [], []
            for name in names:
                atk = get_graph_attack(name, seed=seed)
                if "steps" in atk.params():
                    atk = atk.replace(steps=steps)
                if atk.per_node:
                    node_attacks.append(atk)
                elif atk.perturbs == ("features",):
                    feature_attacks.append(atk)
                else:
                    global_attacks.append(atk)
            if global_attacks:
                b = parse_budgets(budgets, g.num_edges)
                curve = accuracy_vs_budget(model, g, global_attacks, b, goal=goal, train=train)
                table = curve.table()
                _print_table(f"{goal}: accuracy of {curve.nodes} test nodes vs edge flips ({g.num_edges} edges)", table[0], table[1:])
                out["tables"].append({"kind": "edges", **curve.to_dict()})
                if plot is not None:
                    plot.parent.mkdir(parents=True, exist_ok=True)
                    curve.figure().savefig(plot, dpi=120)
                    console().print(f"[green]wrote[/] {plot}")
            if node_attacks:
                b = parse_budgets(target_budgets, g.num_edges)
                idx = g.test[:targets]
                curve = accuracy_vs_budget(model, g, node_attacks, b, goal=goal, nodes=idx, train=train)
                table = curve.table()
                _print_table(f"{goal}: accuracy of {len(idx)} targets vs flips per target", table[0], table[1:])
                out["tables"].append({"kind": "edges-per-target", **curve.to_dict()})
            if feature_attacks:
                rows = []
                for eps in [float(e) for e in feature_eps.split(",") if e.strip()]:
                    tm = GraphThreatModel(features=ThreatModel("linf", eps=eps, box=g.feature_box), goal=goal)
                    rows.append([f"{eps:g}"] + [f"{atk(model, g, tm, train=train).robust_accuracy:.3f}" for atk in feature_attacks])
                _print_table(f"{goal}: test accuracy vs feature Linf eps", ["eps"] + [a.name for a in feature_attacks], rows)
                out["tables"].append({"kind": "features", "rows": rows})
            if json_out is not None:
                json_out.parent.mkdir(parents=True, exist_ok=True)
                json_out.write_text(json.dumps(out, indent=2))
                console().print(f"[green]wrote[/] {json_out}")

    @list_app.command("graph-attacks")
    def list_graph_attacks() -> None:
        """Graph attacks (for `advlab graph-attack --attacks`)."""
        from advlab.graphs import available_graph_attacks

        for name, cls in available_graph_attacks().items():
            kind = "per target node" if cls.per_node else ", ".join(cls.perturbs)
            console().print(f"{name:14s} {kind:22s} {cls.paper}")
