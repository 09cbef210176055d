"""Robustness evaluation: plans, the audit for gradient masking, resumable and sharded runs.

>>> result = advlab.evaluate("cnn", "mnist-sample", samples=100, out="runs/cnn")  # doctest: +SKIP
>>> result.robust_accuracy(0.3), result.audit_clean  # doctest: +SKIP
>>> graph = advlab.evaluate("gcn", "karate", budgets=[0, 8, 16], out="runs/karate")  # doctest: +SKIP

Graph victims are evaluated by :mod:`advlab.graphs.evaluator`, which plugs in through
:mod:`advlab.evaluation.evaluators`.
"""

from advlab.evaluation.plan import EvaluationPlan, ThreatSpec, as_plan, load_plan
from advlab.evaluation.results import SCHEMA, EvaluationResult, comparable
from advlab.evaluation.runner import evaluate

__all__ = ["SCHEMA", "EvaluationPlan", "EvaluationResult", "ThreatSpec", "as_plan", "comparable", "evaluate", "load_plan"]
