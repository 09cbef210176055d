"""The graph evaluator: ``advlab.evaluate`` on a graph victim (a GCN on a graph) runs the graph
attacks over edge-flip and feature budgets (:mod:`.run`), with its plan (:mod:`.plan`) and
report layout (:mod:`.report`); it plugs into the evaluation through
:class:`advlab.evaluation.evaluators.Evaluator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advlab.evaluation.evaluators import register_evaluator
from advlab.graphs.evaluator.plan import GraphPlan, as_graph_plan
from advlab.graphs.evaluator.run import evaluate_graph, is_graph_evaluation

__all__ = ["GraphPlan", "GraphEvaluator", "as_graph_plan", "evaluate_graph", "is_graph_evaluation"]


class GraphEvaluator:
    """The :class:`~advlab.evaluation.evaluators.Evaluator` of graph victims."""

    kind = "graph"

    def accepts(self, model: Any, data: Any, plan: Any = None) -> bool:
        return is_graph_evaluation(model, data, plan)

    def evaluate(self, model: Any, data: Any, plan: Any, *, out: str | Path | None, progress: Any, report: bool, **overrides: Any) -> Any:
        return evaluate_graph(model, data, plan, out=out, progress=progress, report=report, **overrides)

    def sections(self, results: dict[str, Any]) -> list[Any]:
        from advlab.graphs.evaluator.report import graph_sections

        return graph_sections(results)


register_evaluator(GraphEvaluator())
