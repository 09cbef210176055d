"""The report's layout for a graph evaluation (``results.json`` with ``"kind": "graph"``).

Sections: the summary, the graph threat model in words (goal, knowledge, budgets), for each
threat block the accuracy against the budget (one line per attack: PGD topology next to
random DICE flips) with a table per budget, drawings of attacked nodes' neighbourhoods with
the flipped edges highlighted, per class, cost, and the audit.  No image grids: a node is not
a 28x28 picture.
"""

from __future__ import annotations

from typing import Any

from advlab.evaluation.report import (
    ACCENT,
    BAD,
    NEUTRAL,
    _api,
    _figure,
    _pct,
    _png,
    audit_section,
    per_class_section,
)

__all__ = ["graph_sections", "budget_figure", "neighbourhood_figure"]

# A fixed colour per attack so every figure of a report agrees.
STYLE = {
    "dice": {"color": "#8a94a6", "linestyle": "--", "marker": "s"},
    "pgd-topology": {"color": BAD, "linestyle": "-", "marker": "o"},
    "nettack": {"color": ACCENT, "linestyle": "-", "marker": "o"},
    "feature-pgd": {"color": "#b7791f", "linestyle": "-", "marker": "^"},
}
CLASS_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#bab0ac")
TITLES = {"edges": "Edge flips", "edges-per-target": "Targeted edge flips", "features": "Node features"}
GOAL_TEXT = {
    "evasion": "evasion: the trained model classifies the perturbed graph",
    "poisoning": "poisoning: a fresh model is retrained from scratch on the perturbed graph, then classifies it",
}


def _x_label(t: dict[str, Any]) -> str:
    if t["kind"] == "features":
        return f"feature budget eps ({t['budget_unit'].split()[-1]})"
    return "edge flips per target node" if t["kind"] == "edges-per-target" else f"edge flips (of {t['edges_total']} edges)"


def budget_figure(api: Any, t: dict[str, Any], name: str) -> Any:
    """Accuracy against the budget, one line per attack (and the worst case)."""
    fig = _figure(5.6, 3.4)
    ax = fig.add_subplot()
    xs = [r["budget"] for r in t["results"]]
    if t["kind"] == "features":
        xs = [0.0, *xs]
    for a in t["attacks"]:
        acc = [next(e["accuracy"] for e in r["per_attack"] if e["attack"] == a) for r in t["results"]]
        if t["kind"] == "features":
            acc = [t["clean_accuracy"], *acc]
        ax.plot(xs, acc, label=a, zorder=3, **STYLE.get(a, {"marker": "o"}))
    if len(t["attacks"]) > 1:
        worst = [r["robust_accuracy"] for r in t["results"]]
        ax.plot(xs[-len(worst):], worst, ":", color=NEUTRAL, linewidth=1, label="worst case")
    if t["kind"] != "features":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(_x_label(t))
    ax.set_ylabel(f"accuracy ({len(t['nodes'])} {'target' if t['targeted'] else 'test'} nodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{TITLES[t['kind']]}, {t['goal']}", fontsize=10)
    caption = f"Accuracy of the {'target' if t['targeted'] else 'test'} nodes as the budget grows ({t['threat_model']})."
    if "dice" in t["attacks"] and "pgd-topology" in t["attacks"]:
        caption += " PGD topology (gradient) against DICE (random flips) at the same budget."
    return api.Figure(name, _png(fig), caption)


def neighbourhood_figure(api: Any, examples: list[dict[str, Any]], classes: list[str], name: str) -> Any:
    """Each attacked node with its neighbours: clean edges grey, removed edges dashed red,
    added edges solid red; nodes coloured by their true class, the attacked node ringed."""
    import networkx as nx
    from matplotlib.lines import Line2D

    n = len(examples)
    fig = _figure(3.1 * n, 3.3)
    for i, ex in enumerate(examples):
        ax = fig.add_subplot(1, n, i + 1)
        g = nx.Graph()
        g.add_nodes_from(ex["nodes"])
        g.add_edges_from(map(tuple, ex["edges"]))
        g.add_edges_from(map(tuple, ex["flips"]))
        pos = nx.spring_layout(g, seed=0)
        flipped = {tuple(f) for f in ex["flips"]}
        kept = [tuple(e) for e in ex["edges"] if tuple(e) not in flipped]
        added = [tuple(f) for f, a in zip(ex["flips"], ex["added"], strict=True) if a]
        removed = [tuple(f) for f, a in zip(ex["flips"], ex["added"], strict=True) if not a]
        nx.draw_networkx_edges(g, pos, edgelist=kept, ax=ax, edge_color="#c9ced6", width=1.0)
        nx.draw_networkx_edges(g, pos, edgelist=removed, ax=ax, edge_color=BAD, width=2.0, style="dashed")
        nx.draw_networkx_edges(g, pos, edgelist=added, ax=ax, edge_color=BAD, width=2.2)
        colors = [CLASS_COLORS[c % len(CLASS_COLORS)] for c in ex["node_labels"]]
        sizes = [260 if v == ex["node"] else 70 for v in ex["nodes"]]
        edgecolors = [NEUTRAL if v == ex["node"] else "white" for v in ex["nodes"]]
        nx.draw_networkx_nodes(g, pos, nodelist=ex["nodes"], node_color=colors, node_size=sizes, edgecolors=edgecolors, linewidths=1.5, ax=ax)
        nx.draw_networkx_labels(g, pos, labels={ex["node"]: str(ex["node"])}, font_size=7, font_color="white", ax=ax)
        fooled = ex["adv_pred"] != ex["label"]
        ax.set_title(
            f"node {ex['node']}: {classes[ex['label']]}\nbefore {classes[ex['clean_pred']]}, after {classes[ex['adv_pred']]}",
            fontsize=8,
            color=BAD if fooled else NEUTRAL,
        )
        ax.set_axis_off()
    handles = [
        Line2D([], [], color="#c9ced6", label="edge"),
        Line2D([], [], color=BAD, linewidth=2.2, label="added by the attack"),
        Line2D([], [], color=BAD, linewidth=2.0, linestyle="dashed", label="removed by the attack"),
    ] + [Line2D([], [], marker="o", linestyle="", color=CLASS_COLORS[c % len(CLASS_COLORS)], label=f"class {classes[c]}") for c in range(len(classes))]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    first = examples[0]
    caption = (
        f"Neighbourhoods of attacked nodes and the edges {first['attack']} flipped for them at {first['budget']} "
        f"{'flips per target' if first['threat'].startswith('edges-per-target') else 'flips'} ({first['threat']}); "
        "the ringed node is the attacked one, colours are true classes."
    )
    return api.Figure(name, _png(fig), caption)


def _budget_table(api: Any, t: dict[str, Any]) -> Any:
    cols = ["budget"]
    if t["kind"] == "edges":
        cols.append("share of edges")
    cols += [f"{a} accuracy" for a in t["attacks"]]
    if t["kind"] != "features":
        cols += [f"{a} flips{' (all targets)' if t['targeted'] else ''}" for a in t["attacks"]]
    cols.append("robust accuracy (worst case)")
    rows = []
    for r in t["results"]:
        by = {e["attack"]: e for e in r["per_attack"]}
        row: list[Any] = [f"{r['budget']:g}"]
        if t["kind"] == "edges":
            row.append(f"{100 * r['budget'] / max(1, t['edges_total']):.1f}%")
        row += [_pct(by[a]["accuracy"]) for a in t["attacks"]]
        if t["kind"] != "features":
            row += [by[a]["flips"] for a in t["attacks"]]
        row.append(_pct(r["robust_accuracy"]))
        rows.append(row)
    how = "per node over the attacks (each target has its own perturbed graph)" if t["targeted"] else "the lowest accuracy any attack reached at this or a smaller budget"
    return api.Table(cols, rows, f"Per budget: accuracy under each attack, flips actually used, and the worst case ({how}).")


def _threat_text(results: dict[str, Any]) -> str:
    d = results["data"]
    plan = results["plan"]
    lines = [
        f"Victim: {results['model']['name']} ({results['model']['class']}), node classification on {d['name']} "
        f"({d['nodes']} nodes, {d['edges']} undirected edges, {d['features']} features, {len(d['classes'])} classes).",
        "Goal: " + "; ".join(GOAL_TEXT[g] for g in plan["goals"]) + ".",
        f"Knowledge: {plan['knowledge']} box: the adversary knows the graph, the labels, the model's weights and gradients "
        "(DICE uses only the labels).",
    ]
    budget = []
    for t in results["threats"]:
        if t["goal"] != plan["goals"][0]:
            continue
        eps = ", ".join(f"{e:g}" for e in t["eps"])
        if t["kind"] == "edges":
            budget.append(f"up to {max(t['eps'])} undirected edge flips (add or remove) anywhere in the graph, one perturbation for all {len(t['nodes'])} test nodes (budgets {eps})")
        elif t["kind"] == "edges-per-target":
            budget.append(f"up to {max(t['eps'])} flips of edges incident to each of {len(t['nodes'])} target nodes, attacked one at a time (budgets {eps})")
        else:
            lo, hi = d["feature_box"]
            budget.append(f"every node's feature vector within {t['budget_unit'].split()[-1]} eps of its own (eps {eps}), inside the box [{lo:g}, {hi:g}]")
    lines.append("Budget: " + "; ".join(budget) + ".")
    papers = {}
    for t in results["threats"]:
        papers.update(t.get("papers", {}))
    lines.append("Attacks: " + "; ".join(f"{a} ({p})" for a, p in papers.items()) + ".")
    return "\n\n".join(lines)


def graph_sections(results: dict[str, Any]) -> list[Any]:
    """The report's sections for a graph evaluation."""
    api = _api()
    classes = results["data"]["classes"]
    audit = results["audit"]
    metrics = {"clean accuracy": _pct(results["clean_accuracy"])}
    for t in results["threats"]:
        top = t["results"][-1]
        unit = "flips/target" if t["kind"] == "edges-per-target" else ("flips" if t["kind"] == "edges" else "eps")
        metrics[f"{t['goal']}, {top['budget']:g} {unit}"] = _pct(top["robust_accuracy"])
    fails = [c for c in audit["checks"] if c["verdict"] == "fail"]
    metrics["audit"] = "clean" if not fails else f"{len(fails)} check(s) failed"
    out = [api.Section("Summary", results["summary"], metrics=metrics)]
    out.append(api.Section("Threat model", _threat_text(results)))
    examples = results.get("examples") or []
    for i, t in enumerate(results["threats"]):
        figs = [budget_figure(api, t, f"graph-curve-{i}")]
        mine = [ex for ex in examples if ex.get("threat") == t["key"]]
        if mine:
            figs.append(neighbourhood_figure(api, mine, classes, f"graph-neighbourhoods-{i}"))
        text = f"Threat model: {t['threat_model']}. Attacks: {', '.join(t['attacks'])}."
        if t["kind"] == "edges-per-target":
            text += " Each target node is attacked on its own copy of the graph; a target counts as robust only if every attack failed at every budget up to this one."
        out.append(api.Section(f"{TITLES[t['kind']]} ({t['goal']})", text, figures=figs, tables=[_budget_table(api, t)]))

    out.append(per_class_section(api, results["threats"][0], "nodes", "budget"))
    cost = results["cost"]
    rows = [[r["stage"], round(r["seconds"], 3)] for r in cost["by_stage"]]
    out.append(
        api.Section(
            "Cost",
            f"Wall time {cost['wall_seconds']:.1f} s, of which {cost['attack_seconds']:.1f} s in the attacks (retraining under poisoning not included). "
            "Graph attacks run on the whole graph at once; forward and backward passes are not counted per node.",
            tables=[api.Table(["attack", "seconds"], rows)],
        )
    )
    out.append(audit_section(api, audit))
    return out

