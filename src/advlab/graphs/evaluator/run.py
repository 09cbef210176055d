"""``advlab.evaluate`` on a graph victim: GCN node classification under the graph threat model.

The adapter between :mod:`advlab.graphs` and the evaluation: it runs each graph attack of a
:class:`~advlab.graphs.evaluator.plan.GraphPlan` at each budget under a
:class:`~advlab.graphs.GraphThreatModel` (global structure attacks on the test nodes,
targeted attacks on a few target nodes, feature attacks), persists every (attack, budget)
unit in the run folder's store (a rerun resumes), runs the graph audit checks, and writes the
same ``results.json`` schema as an image evaluation (``"kind": "graph"``) and a report with a
graph layout (:mod:`advlab.graphs.evaluator.report`).  :class:`EvaluationResult` reads both.

Robust accuracy at a budget is the lowest accuracy any attack reached at that budget or a
smaller one (a perturbation within a smaller budget is within the larger one).  For global
attacks that is per perturbation (one perturbed graph serves all test nodes); for targeted
attacks, where each target gets its own perturbed graph, it is per node.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advlab.evaluation.audit import FAIL_SHARE, MASK_SHARE, Check
from advlab.evaluation.results import SCHEMA, EvaluationResult, environment, write_json
from advlab.evaluation.store import Store
from advlab.graphs.evaluator.plan import GraphPlan, as_graph_plan
from advlab.validation import InputError

__all__ = ["evaluate_graph", "is_graph_evaluation", "load_graph_data", "GRAPH_KINDS"]

log = logging.getLogger(__name__)

GRAPH_NAMES = ("karate", "karate-club", "csbm")
# Threat blocks of a graph evaluation: global edge flips, flips per target node, node features.
GRAPH_KINDS = ("edges", "edges-per-target", "features")
MAX_DRAWN_NODES = 40


# ---------------------------------------------------------------------------- dispatch
def _graph_model(model: Any) -> bool:
    from advlab.models.kinds import declared_input_kind

    if isinstance(model, nn.Module):
        return declared_input_kind(model) == "graph"
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir() and (path / "config.json").is_file():
            from advlab.models import read_config

            return read_config(path).get("name") == "gcn"
        return str(model).strip().lower() == "gcn"
    return False


def _graph_data(data: Any) -> bool:
    from advlab.graphs import Graph

    if isinstance(data, Graph):
        return True
    return isinstance(data, str) and data.split(":", 1)[0].strip().lower().replace("_", "-") in GRAPH_NAMES


def is_graph_evaluation(model: Any, data: Any, plan: Any = None) -> bool:
    """Whether ``evaluate(model, data, plan)`` is a graph evaluation; a graph model with
    non-graph data (or the reverse) is an :class:`InputError` that names the mismatch."""
    g_model, g_data = _graph_model(model), _graph_data(data)
    shown = model if isinstance(model, (str, Path)) else type(model).__name__
    if g_model and not g_data:
        what = data if isinstance(data, str) else type(data).__name__
        raise InputError(
            f"{str(shown)!r} is a graph model (a GCN classifies the nodes of a graph); give a graph as data: "
            f"'karate', 'csbm' (options: 'csbm:nodes=300,seed=1') or an advlab.graphs.Graph, not {what!r}"
        )
    if g_data and not g_model:
        raise InputError(
            f"the data is a graph, but {str(shown)!r} is not a graph model; evaluate a GCN on it "
            "('gcn' trains one, or a saved GCN folder, or advlab.graphs.fit_gcn(graph))"
        )
    if isinstance(plan, GraphPlan) and not g_model:
        raise InputError(f"a GraphPlan evaluates graph victims; {str(shown)!r} is not a graph model")
    return g_model


# ---------------------------------------------------------------------------- inputs
def load_graph_data(data: Any) -> Any:
    """A :class:`~advlab.graphs.Graph` from a graph or a name with options (``"csbm:nodes=300,seed=1"``)."""
    from advlab.graphs import Graph, load_graph

    if isinstance(data, Graph):
        return data
    name, _, options = str(data).partition(":")
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise InputError(f"graph option {part!r} must be key=value (e.g. 'csbm:nodes=300,seed=1')")
        try:
            kwargs[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise InputError(f"graph option {part!r} needs a number") from None
    try:
        return load_graph(name, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad option for graph {name!r}: {exc}") from None


def _training(plan: GraphPlan) -> Any:
    from advlab.graphs import GCN_TRAINING
    from advlab.models.training import TrainConfig

    return TrainConfig(epochs=plan.epochs, lr=GCN_TRAINING.lr, weight_decay=GCN_TRAINING.weight_decay, seed=plan.seed)


def graph_victim(model: Any, graph: Any, plan: GraphPlan) -> tuple[nn.Module, str]:
    """The GCN to attack: a module, a saved folder, or ``"gcn"`` (trained here on the graph)."""
    from advlab.graphs import fit_gcn, node_logits

    if isinstance(model, nn.Module):
        victim, name = model, type(model).__name__
    elif Path(model).is_dir():
        from advlab.models import load_model

        victim, name = load_model(Path(model)), str(model)
    else:
        victim, name = fit_gcn(graph, config=_training(plan)), "gcn"
    expected = getattr(victim, "in_features", graph.num_features)
    if expected != graph.num_features:
        raise InputError(f"the model reads {expected} node features but graph {graph.name!r} has {graph.num_features}")
    out = node_logits(victim, graph)
    if out.shape != (graph.num_nodes, graph.num_classes):
        raise InputError(f"the model gives logits of shape {tuple(out.shape)}; graph {graph.name!r} needs ({graph.num_nodes}, {graph.num_classes})")
    if "poisoning" in plan.goals and not getattr(victim, "advlab_config", None):
        raise InputError("poisoning retrains a fresh model on the perturbed graph: build the victim with advlab.build_model('gcn', ...) or fit_gcn")
    return victim, name


def _graph_hash(graph: Any) -> str:
    h = hashlib.sha256(graph.name.encode())
    for t in (graph.x, graph.edges, graph.y, graph.train, graph.test):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _block_of(attack: Any) -> str:
    if attack.per_node:
        return "edges-per-target"
    return "features" if attack.perturbs == ("features",) else "edges"


# ---------------------------------------------------------------------------- the run
def evaluate_graph(
    model: nn.Module | str | Path,
    data: Any,
    plan: Any = None,
    *,
    out: str | Path | None = None,
    progress: Callable[[str, int], Any] | None = None,
    report: bool = True,
    **overrides: Any,
) -> EvaluationResult:
    """Evaluate a graph victim as ``plan`` says (called by :func:`advlab.evaluate`).

    ``plan`` is a :class:`GraphPlan`, a dict, a TOML file with ``kind = "graph"`` or ``None``.
    Graph evaluations run in one process, on the CPU (the graphs are small; PGD topology needs
    a dense ``n x n`` adjacency).

    Examples
    --------
    >>> result = advlab.evaluate("gcn", "karate", budgets=[0, 4, 8, 16], out="runs/karate")  # doctest: +SKIP
    >>> result.per_attack()["pgd-topology"][16] < result.per_attack()["dice"][16]  # doctest: +SKIP
    """
    from advlab.evaluation.runner import model_hash
    from advlab.graphs import GraphThreatModel, node_logits
    from advlab.progress import progress as default_progress
    from advlab.threat import ThreatModel

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("graph evaluations run in one process: launch `advlab evaluate` without torchrun for a graph victim")
    started = time.perf_counter()
    the_plan = as_graph_plan(plan, **overrides)
    graph = load_graph_data(data)
    victim, model_name = graph_victim(model, graph, the_plan)
    attacks = the_plan.build_attacks()
    if the_plan.targets > len(graph.test) and any(a.per_node for a in attacks):
        raise InputError(f"targets = {the_plan.targets} is out of range: graph {graph.name!r} has {len(graph.test)} test nodes")
    budgets: dict[str, list[Any]] = {
        "edges": the_plan.edge_budgets(graph.num_nodes, graph.num_edges),
        "edges-per-target": the_plan.per_target_budgets(graph.num_nodes),
        "features": list(the_plan.feature_eps),
    }
    nodes = {"edges": graph.test, "edges-per-target": graph.test[: the_plan.targets], "features": graph.test}
    train = _training(the_plan)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="advlab-eval-")
        out, report = tmp.name, False
    folder = Path(out)
    store = Store(folder, {"plan": the_plan.fingerprint(), "model": model_hash(victim), "data": _graph_hash(graph)})
    work = [(goal, _block_of(a), a, b) for goal in the_plan.goals for a in attacks for b in budgets[_block_of(a)]]
    units: dict[str, dict[str, Any]] = {}
    try:
        with (progress or default_progress)("evaluating graph", len(work)) as advance:
            for goal, kind, attack, budget in work:
                key = f"graph/{goal}/{kind}/{attack.name}/{budget!r}"
                got = store.get(key)
                if got is None:
                    if kind == "features":
                        threat = GraphThreatModel(features=ThreatModel(the_plan.feature_norm, eps=budget, box=graph.feature_box), goal=goal)
                    else:
                        threat = GraphThreatModel(edges=int(budget), goal=goal)
                    r = attack(victim, graph, threat, nodes[kind], train=train)
                    store.put(
                        key,
                        {
                            "seconds": r.seconds,
                            "max_feature_norm": r.summary()["max_feature_norm"],
                            "adv_pred": r.adv_pred.numpy(),
                            "flips": r.flips.numpy().reshape(-1, 2),
                            "flip_owner": r.flip_owner.numpy(),
                        },
                    )
                    got = store.get(key)
                assert got is not None
                units[key] = got
                advance(1)
        clean_pred = node_logits(victim, graph).argmax(dim=1).numpy()
        results = build_graph_results(
            plan=the_plan,
            graph=graph,
            victim=victim,
            model_name=model_name,
            attacks=attacks,
            budgets=budgets,
            nodes={k: v.numpy() for k, v in nodes.items()},
            clean_pred=clean_pred,
            units=units,
            wall_seconds=time.perf_counter() - started,
        )
        write_json(folder / "results.json", results)
        if report:
            from advlab.evaluation.report import render_report

            render_report(results, folder)
        return EvaluationResult(results, None if tmp is not None else folder)
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


# ---------------------------------------------------------------------------- results.json
def _threat_text(kind: str, goal: str, top: float, plan: GraphPlan) -> str:
    from advlab.graphs import GraphThreatModel
    from advlab.threat import ThreatModel

    if kind == "features":
        return GraphThreatModel(features=ThreatModel(plan.feature_norm, eps=top), goal=goal).describe()
    text = GraphThreatModel(edges=int(top), goal=goal).describe()
    return text + " per target node" if kind == "edges-per-target" else text


def _block(kind: str, goal: str, plan: GraphPlan, graph: Any, attacks: list[Any], budgets: list[Any], idx: np.ndarray, clean_pred: np.ndarray, units: dict[str, Any]) -> dict[str, Any]:
    y = graph.y.numpy()[idx]
    clean = clean_pred[idx] == y
    per_node = kind == "edges-per-target"
    rows = []
    worst_robust = clean.copy()  # per node (targeted attacks)
    worst_acc, worst_pred = float(clean.mean()), clean_pred[idx]  # per perturbation (global attacks)
    raw_seen: dict[str, float] = {}
    outcomes: dict[str, Any] = {}
    for b in budgets:
        entries = []
        raw = 1.0
        step_robust = clean.copy()
        for a in attacks:
            u = units[f"graph/{goal}/{kind}/{a.name}/{b!r}"]
            pred = np.asarray(u["adv_pred"])
            ok = pred == y
            acc = float(ok.mean())
            raw = min(raw, acc)
            step_robust &= ok
            if acc < worst_acc:
                worst_acc, worst_pred = acc, pred
            entries.append(
                {
                    "attack": a.name,
                    "accuracy": acc,
                    "success_rate": float((clean & ~ok).sum()) / max(1, int(clean.sum())),
                    "flips": int(np.asarray(u["flips"]).shape[0]),
                    "max_feature_norm": u.get("max_feature_norm"),
                    "seconds": float(u["seconds"]),
                }
            )
            raw_seen.setdefault(a.name, acc)
            outcomes.setdefault(repr(b), {})[a.name] = {"adv_pred": [int(v) for v in pred], "robust": [bool(v) for v in ok]}
        worst_robust &= step_robust
        robust = worst_robust if per_node else (worst_pred == y)
        per_class = []
        for c, cname in enumerate(graph.classes):
            m = y == c
            if m.any():
                per_class.append({"class": cname, "n": int(m.sum()), "robust_accuracy": float(robust[m].mean())})
        rows.append(
            {
                "eps": b,
                "budget": b,
                "robust_accuracy": float(robust.mean()) if per_node else min(worst_acc, raw),
                "raw_robust_accuracy": raw,
                "strongest": min(entries, key=lambda e: e["accuracy"])["attack"] if entries else None,
                "per_attack": entries,
                "per_class": per_class,
            }
        )
    norm = {"linf": "Linf", "l2": "L2", "l1": "L1", "l0": "L0"}[plan.feature_norm]
    unit = {"edges": "edge flips", "edges-per-target": "edge flips per target node", "features": f"node features {norm}"}[kind]
    return {
        "key": f"{kind}-{goal}-{plan.knowledge}",
        "kind": kind,
        "goal": goal,
        "knowledge": plan.knowledge,
        "norm": kind,
        "budget_unit": unit,
        "targeted": per_node,
        "threat_model": _threat_text(kind, goal, budgets[-1], plan),
        "eps": list(budgets),
        "edges_total": graph.num_edges,
        "attacks": [a.name for a in attacks],
        "attack_params": [{"name": a.name, **a.params()} for a in attacks],
        "papers": {a.name: a.paper for a in attacks},
        "nodes": [int(v) for v in idx],
        "clean_accuracy": float(clean.mean()),
        "results": rows,
        "minimal": None,
        "escalation": [],
        "outcomes": outcomes,
    }


def _checks(blocks: list[dict[str, Any]]) -> list[Check]:
    out: list[Check] = []
    for t in blocks:
        n = len(t["nodes"])
        tol = max(FAIL_SHARE, 1.0 / max(n, 1))
        names = t["attacks"]
        if t["kind"] == "edges" and "dice" in names and "pgd-topology" in names:
            worse = []
            for r in t["results"]:
                acc = {e["attack"]: e["accuracy"] for e in r["per_attack"]}
                if r["budget"] and acc["pgd-topology"] > acc["dice"] + tol:
                    worse.append(f"{r['budget']} flips: PGD topology {100 * acc['pgd-topology']:.1f}% vs DICE {100 * acc['dice']:.1f}%")
            top = t["results"][-1]
            acc = {e["attack"]: e["accuracy"] for e in top["per_attack"]}
            out.append(
                Check(
                    id="graph-gradient-vs-random",
                    title="gradient attack beats random flips",
                    verdict="fail" if worse else "pass",
                    evidence="; ".join(worse)
                    if worse
                    else f"at {top['budget']} flips PGD topology leaves {100 * acc['pgd-topology']:.1f}% accurate, DICE {100 * acc['dice']:.1f}%",
                    explanation="A gradient attack that does worse than random flips at the same budget is not converging "
                    "(step size, loss, rounding) or the model hides its gradients; its numbers understate the threat.",
                    threat=t["key"],
                )
            )
        rises = []
        for name in names:
            accs = [next(e["accuracy"] for e in r["per_attack"] if e["attack"] == name) for r in t["results"]]
            for k in range(1, len(accs)):
                if accs[k] > accs[k - 1] + tol:
                    rises.append((name, t["eps"][k - 1], t["eps"][k], accs[k - 1], accs[k]))
        bad = [r for r in rises if r[0] != "dice" and r[4] - r[3] > MASK_SHARE]
        out.append(
            Check(
                id="graph-budget-monotone",
                title="accuracy does not rise with the budget",
                verdict="fail" if bad else ("warn" if rises else "pass"),
                evidence="; ".join(f"{a}: {100 * x:.1f}% at {b0:g} -> {100 * z:.1f}% at {b1:g}" for a, b0, b1, x, z in rises)
                if rises
                else "every attack's accuracy falls or stays as the budget grows",
                explanation="A larger budget allows every smaller perturbation, so the true accuracy can only fall; the reported "
                "robust accuracy carries smaller-budget results over. A gradient attack whose accuracy rises is not finding the worst case.",
                threat=t["key"],
            )
        )
        if t["goal"] == "evasion" and t["kind"] != "features" and t["eps"] and t["eps"][0] == 0:
            zero = t["results"][0]
            off = [e["attack"] for e in zero["per_attack"] if abs(e["accuracy"] - t["clean_accuracy"]) > 1e-9]
            out.append(
                Check(
                    id="graph-zero-budget",
                    title="no flips, no change",
                    verdict="fail" if off else "pass",
                    evidence=f"at 0 flips {', '.join(off)} changed the accuracy" if off else f"at 0 flips every attack leaves the clean {100 * t['clean_accuracy']:.1f}%",
                    explanation="Without a budget the evasion predictions must equal the clean ones; a difference means the model is "
                    "random at test time (dropout left on) or the attack changed something it may not.",
                    threat=t["key"],
                )
            )
    return out


def _examples(graph: Any, blocks: list[dict[str, Any]], units: dict[str, Any], clean_pred: np.ndarray, count: int) -> list[dict[str, Any]]:
    """Neighbourhoods of a few attacked nodes with the flips made for them (the targeted attack
    at its largest budget; else the strongest global structure attack's flips around test nodes
    it broke)."""
    if count == 0:
        return []
    y = graph.y.numpy()
    edges = graph.edges.numpy().T
    neighbours: dict[int, set[int]] = {}
    for i, j in edges:
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    chosen: list[tuple[int, np.ndarray, np.ndarray, str, Any, str]] = []  # node, flips, adv_pred row, attack, budget, key
    preferred = sorted(blocks, key=lambda t: t["kind"] != "edges-per-target")  # the targeted attack first
    for t in preferred:
        if t["kind"] == "features" or not t["results"] or t["results"][-1]["budget"] == 0:
            continue
        top = t["results"][-1]
        name = top["strongest"] if t["kind"] == "edges" else t["attacks"][0]
        u = units[f"graph/{t['goal']}/{t['kind']}/{name}/{top['budget']!r}"]
        flips, owner, pred = np.asarray(u["flips"]).reshape(-1, 2), np.asarray(u["flip_owner"]), np.asarray(u["adv_pred"])
        idx = np.asarray(t["nodes"])
        order = sorted(range(len(idx)), key=lambda k: (not (pred[k] != y[idx[k]] and clean_pred[idx[k]] == y[idx[k]]), k))
        for k in order:
            v = int(idx[k])
            if t["kind"] == "edges-per-target":
                mine = flips[owner == k]
            else:
                near = {v} | neighbours.get(v, set())
                mine = flips[[int(a) in near or int(b) in near for a, b in flips]] if len(flips) else flips
            if len(mine):
                chosen.append((v, mine, pred[k], name, top["budget"], t["key"]))
            if len(chosen) >= count:
                break
        if chosen:
            break
    out = []
    for v, flips, after, name, budget, key in chosen:
        ends = {int(a) for a, b in flips} | {int(b) for a, b in flips}
        keep = [v] + sorted(ends - {v})
        for u in sorted(neighbours.get(v, set())):
            if len(keep) >= MAX_DRAWN_NODES:
                break
            if u not in keep:
                keep.append(u)
        inside = set(keep)
        sub = [[int(a), int(b)] for a, b in edges if int(a) in inside and int(b) in inside]
        clean_set = {(int(a), int(b)) for a, b in edges}
        out.append(
            {
                "kind": "graph-node",
                "threat": key,
                "attack": name,
                "budget": budget,
                "node": v,
                "label": int(y[v]),
                "clean_pred": int(clean_pred[v]),
                "adv_pred": int(after),
                "nodes": keep,
                "node_labels": [int(y[u]) for u in keep],
                "edges": sub,
                "flips": [[int(min(a, b)), int(max(a, b))] for a, b in flips],
                "added": [(int(min(a, b)), int(max(a, b))) not in clean_set for a, b in flips],
            }
        )
    return out


def _summary(results: dict[str, Any]) -> str:
    d = results["data"]
    text = (
        f"On the {len(results['samples']['index'])} test nodes of {d['name']} ({d['nodes']} nodes, {d['edges']} edges) "
        f"the model is {100 * results['clean_accuracy']:.1f}% accurate."
    )
    for t in results["threats"]:
        top = t["results"][-1]
        acc = {e["attack"]: e["accuracy"] for e in top["per_attack"]}
        if t["kind"] == "edges":
            share = f" ({100 * top['budget'] / max(1, t['edges_total']):.0f}% of the edges)"
            text += f" Against {t['threat_model']}{share} its accuracy is {100 * top['robust_accuracy']:.1f}% ({top['strongest']})"
            text += f"; random flips (DICE) leave {100 * acc['dice']:.1f}%." if "dice" in acc and top["strongest"] != "dice" else "."
        elif t["kind"] == "edges-per-target":
            text += (
                f" With {top['budget']} flips per target ({t['goal']}), {', '.join(t['attacks'])} leaves "
                f"{100 * top['robust_accuracy']:.1f}% of {len(t['nodes'])} target nodes correct."
            )
        else:
            text += f" Against {t['threat_model']} its accuracy is {100 * top['robust_accuracy']:.1f}%."
    failed = sorted({c["id"] for c in results["audit"]["checks"] if c["verdict"] == "fail"})
    return text + (f" The audit found problems ({', '.join(failed)})." if failed else " The audit found no problem.")


def build_graph_results(
    *,
    plan: GraphPlan,
    graph: Any,
    victim: nn.Module,
    model_name: str,
    attacks: list[Any],
    budgets: dict[str, list[Any]],
    nodes: dict[str, np.ndarray],
    clean_pred: np.ndarray,
    units: dict[str, Any],
    wall_seconds: float,
) -> dict[str, Any]:
    """The ``results.json`` dict of a graph evaluation (same schema, ``"kind": "graph"``)."""
    blocks = []
    for goal in plan.goals:
        for kind in GRAPH_KINDS:
            mine = [a for a in attacks if _block_of(a) == kind]
            if mine:
                blocks.append(_block(kind, goal, plan, graph, mine, budgets[kind], nodes[kind], clean_pred, units))
    checks = _checks(blocks)
    test = nodes["edges"]
    y = graph.y.numpy()
    cost_rows = []
    for t in blocks:
        for a in t["attacks"]:
            secs = sum(e["seconds"] for r in t["results"] for e in r["per_attack"] if e["attack"] == a)
            cost_rows.append({"stage": f"{t['key']} / {a}", "kind": "graph attack", "forwards": None, "backwards": None, "seconds": secs})
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "graph",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan": plan.to_dict(),
        "seeds": {"plan": plan.seed, "attacks": {a.name: a.seed for a in attacks}},
        "environment": environment(torch.device("cpu"), 1),
        "model": {"name": model_name, "class": type(victim).__name__, "declares_adaptive": False, "input_kind": "graph"},
        "data": {
            "name": graph.name,
            "split": "test",
            "samples": int(len(test)),
            "classes": list(graph.classes),
            "nodes": graph.num_nodes,
            "edges": graph.num_edges,
            "features": graph.num_features,
            "feature_box": list(graph.feature_box),
            "info": {k: v for k, v in graph.info.items() if isinstance(v, (int, float, str))},
        },
        "clean_accuracy": float((clean_pred[test] == y[test]).mean()),
        "threats": [{k: v for k, v in t.items() if k != "outcomes"} for t in blocks],
        "audit": {
            "clean": not any(c.verdict == "fail" for c in checks),
            "checks": [c.to_dict() for c in checks],
            "escalation": {"actions": [], "wanted": [], "descriptions": [], "attacks": {}, "robust_accuracy_before": {}, "robust_accuracy_after": {}},
        },
        "cost": {
            "wall_seconds": wall_seconds,
            "attack_seconds": sum(r["seconds"] for r in cost_rows),
            "forwards": None,
            "backwards": None,
            "queries": None,
            "by_stage": cost_rows,
        },
        "samples": {
            "index": [int(v) for v in test],
            "label": [int(y[v]) for v in test],
            "clean_pred": [int(clean_pred[v]) for v in test],
            "outcomes": {t["key"]: {"nodes": t["nodes"], **t["outcomes"]} for t in blocks},
            "minimal_norm": {},
        },
        "examples": _examples(graph, blocks, units, clean_pred, plan.examples),
    }
    results["summary"] = _summary(results)
    return results
