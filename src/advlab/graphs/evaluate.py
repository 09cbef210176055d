"""Accuracy against the attack budget: the curve every graph attack is judged by."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from advlab.graphs.attacks.base import GraphAttack
from advlab.graphs.data import Graph
from advlab.graphs.result import GraphAttackResult
from advlab.graphs.threat import GraphThreatModel
from advlab.models.training import TrainConfig

__all__ = ["BudgetCurve", "accuracy_vs_budget"]


@dataclass
class BudgetCurve:
    """Accuracy of the attacked nodes for each attack and edge budget.

    ``rows`` hold one dict per (attack, budget): ``attack``, ``budget`` (edge flips; per
    target node for per-node attacks), ``flips`` (actually used, in total), ``accuracy``,
    ``clean_accuracy``, ``success_rate``, ``seconds``.
    """

    graph: str
    goal: str
    nodes: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, budget: int, result: GraphAttackResult, per_node: bool) -> None:
        self.rows.append(
            {
                "attack": result.attack,
                "budget": budget,
                "per_node": per_node,
                "flips": result.num_flips,
                "accuracy": result.robust_accuracy,
                "clean_accuracy": result.clean_accuracy,
                "success_rate": result.success_rate,
                "seconds": result.seconds,
            }
        )

    def accuracy(self, attack: str) -> dict[int, float]:
        """``{budget: accuracy}`` for one attack."""
        return {r["budget"]: r["accuracy"] for r in self.rows if r["attack"] == attack}

    def attacks(self) -> list[str]:
        return list(dict.fromkeys(r["attack"] for r in self.rows))

    def budgets(self) -> list[int]:
        return sorted({r["budget"] for r in self.rows})

    def table(self) -> list[list[str]]:
        """Rows ``[budget, accuracy per attack...]`` as strings (header first)."""
        attacks = self.attacks()
        out = [["budget"] + attacks]
        for b in self.budgets():
            line = [str(b)]
            for a in attacks:
                acc = self.accuracy(a).get(b)
                line.append("-" if acc is None else f"{acc:.3f}")
            out.append(line)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "goal": self.goal, "nodes": self.nodes, "rows": self.rows}

    def figure(self, title: str | None = None) -> Any:
        """A matplotlib figure (no pyplot, no global backend): accuracy against the budget,
        one line per attack.  ``curve.figure().savefig("curve.png")``."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.5))
        ax = fig.add_subplot(1, 1, 1)
        for attack in self.attacks():
            points = sorted(self.accuracy(attack).items())
            ax.plot([b for b, _ in points], [a for _, a in points], marker="o", label=attack)
        per_node = any(r["per_node"] for r in self.rows)
        ax.set_xlabel("edge flips per target node" if per_node else "edge flips")
        ax.set_ylabel(f"accuracy ({self.nodes} nodes)")
        ax.set_ylim(0, 1.02)
        ax.set_title(title or f"{self.graph}, {self.goal}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        return fig

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p


def accuracy_vs_budget(
    model: nn.Module,
    graph: Graph,
    attacks: Sequence[GraphAttack],
    budgets: Sequence[int],
    *,
    goal: str = "evasion",
    nodes: Tensor | None = None,
    train: TrainConfig | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BudgetCurve:
    """Run every attack at every edge budget and collect the accuracy of ``nodes``.

    Per-node attacks (Nettack) read each budget as flips per target node.  ``goal="poisoning"``
    retrains a fresh model on each perturbed graph (settings ``train``).
    """
    idx = graph.test if nodes is None else nodes
    curve = BudgetCurve(graph=graph.name, goal=goal, nodes=int(idx.numel()))
    for attack in attacks:
        for b in budgets:
            result = attack(model, graph, GraphThreatModel(edges=int(b), goal=goal), idx, train=train)
            curve.add(int(b), result, attack.per_node)
            if progress is not None:
                progress(attack.name, int(b))
    return curve
