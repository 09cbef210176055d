"""The evaluation's ``report.html``, rendered from ``results.json`` alone.

Sections: the summary sentence, the threat model, the robust-accuracy curve (measured budgets
and the curve the minimal-norm distribution implies), the minimal-norm histogram, examples
(original, adversarial, amplified perturbation, confidences before and after), per-attack,
per-class and cost tables, and the audit with its verdicts.  Figures are matplotlib PNGs
embedded in one self-contained file (:mod:`advlab.report`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["render_report", "sections"]

GOOD, BAD, NEUTRAL, ACCENT, WARN = "#1d7a46", "#b42318", "#1f2430", "#2f5fd0", "#b7791f"


def _api() -> Any:
    import advlab.report as api

    return api


def _png(fig: Any) -> bytes:
    from advlab.report import to_png

    return to_png(fig, tight=False)  # every figure here lays itself out: one draw each


def _figure(w: float, h: float, layout: Any = "constrained") -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(w, h), layout=layout)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def curve_figure(api: Any, threat: dict[str, Any], clean: float, name: str) -> Any:
    fig = _figure(5.6, 3.4)
    ax = fig.add_subplot()
    eps = [0.0] + [r["eps"] for r in threat["results"]]
    acc = [clean] + [r["robust_accuracy"] for r in threat["results"]]
    ax.plot(eps, acc, "-o", color=BAD, label="worst case over the attacks", zorder=2)
    raw = [clean] + [r["raw_robust_accuracy"] for r in threat["results"]]
    # Drawn above the worst case, hollow and dashed, so that it stays visible where the two
    # coincide (the common case: later stages of the cascade broke nothing more).
    same = all(abs(a - b) < 1e-12 for a, b in zip(raw, acc, strict=True))
    ax.plot(
        eps, raw, "--s", color="#56607a", markerfacecolor="none", markersize=9, linewidth=1.4, zorder=3,
        label="first pass of the cascade" + (" (= worst case)" if same else ""),
    )
    minimal = threat.get("minimal")
    if minimal:
        c = np.asarray(minimal["curve"], dtype=float)
        ax.plot(c[:, 0], c[:, 1], "-", color=ACCENT, label=f"implied by {minimal['attack']}")
    draw_certified(ax, threat, clean)
    ax.set_xlabel(f"eps ({threat['norm']})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(threat["threat_model"].split(",")[0] + f" ({threat['norm']})", fontsize=10)
    caption = f"Robust accuracy against {threat['key']} perturbations as the budget grows."
    if (threat.get("certified") or {}).get("available"):
        caption += (
            f" Green: certified accuracy ({threat['certified']['method']}), a lower bound; red: the attacks' robust accuracy, "
            "an upper bound; the true robust accuracy lies in the shaded gap."
        )
    return api.Figure(name, _png(fig), caption)


def draw_certified(ax: Any, threat: dict[str, Any], clean: float) -> None:
    """The certified-accuracy curve under the attacked one, the gap between them shaded."""
    cert = threat.get("certified") or {}
    if not cert.get("available"):
        return
    rows = cert["per_eps"]
    eps = [0.0] + [r["eps"] for r in rows]
    lower = [clean] + [r["certified_accuracy"] for r in rows]
    upper = [clean] + [r["robust_accuracy"] for r in rows]
    ax.plot(eps, lower, "-s", color=GOOD, label=f"certified ({cert['method']})", zorder=3)
    ax.fill_between(eps, lower, upper, color=WARN, alpha=0.18, label="gap: true robust accuracy lies here")
    radius = cert.get("radius")
    if radius and radius.get("curve"):
        c = np.asarray(radius["curve"], dtype=float)
        ax.plot(c[:, 0], c[:, 1], "--", color=GOOD, label=f"implied by certified radii ({cert['method']})")


def certified_text(threat: dict[str, Any]) -> str:
    """The threat section's paragraph on the certified bounds (or why there are none)."""
    cert = threat.get("certified")
    if not cert:
        return ""
    if not cert["available"]:
        return f"\n\nNo certified bound: {cert['reason']}."
    text = "\n\nCertified accuracy ≤ true robust accuracy ≤ attacked robust accuracy (" + cert["method"] + "): " + "; ".join(
        f"eps {r['eps']:g}: {_pct(r['certified_accuracy'])} ≤ … ≤ {_pct(r['robust_accuracy'])} (gap {100 * r['gap']:.1f} points; "
        f"{r['status']['certified']} certified, {r['status']['broken']} broken, {r['status']['unknown']} unknown)"
        for r in cert["per_eps"]
    ) + "."
    rad = cert.get("radius")
    if rad:
        text += (
            f" Per sample, certified radius ≤ true minimal perturbation ≤ the one {rad['attack']} found: on {rad['samples_with_both']} "
            f"samples with both ends, median ratio found/certified {_fmt(rad['median_ratio'])}, {_pct(rad['tight_share'])} tight within 10%, "
            f"{rad['violations']} violations."
        )
    return text


def histogram_figure(api: Any, threat: dict[str, Any], norms: list[float | None], name: str) -> Any:
    fig = _figure(5.6, 3.2)
    ax = fig.add_subplot()
    values = np.asarray([v for v in norms if v is not None and v > 0], dtype=float)
    if values.size:
        ax.hist(values, bins=min(30, max(5, values.size // 3)), color=ACCENT, alpha=0.85)
        med = threat["minimal"]["median"]
        if med is not None:
            ax.axvline(med, color=BAD, linestyle="--", label=f"median {med:.3g}")
        for e in threat["eps"]:
            ax.axvline(e, color="#c9ced6", linewidth=1)
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no adversarial example found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"smallest adversarial perturbation ({threat['norm']})")
    ax.set_ylabel("samples")
    caption = (
        f"Distribution of the smallest perturbation {threat['minimal']['attack']} needed per sample "
        f"({threat['minimal']['found']} of {threat['minimal']['evaluated']} found); grey lines mark the evaluated budgets."
    )
    return api.Figure(name, _png(fig), caption)


def example_kind(ex: dict[str, Any]) -> str:
    """How an example's input is drawn: its recorded ``input_kind``, else inferred from its shape
    (results written before input kinds were recorded)."""
    from advlab.models.kinds import input_kind

    return str(ex.get("input_kind") or input_kind(None, ex["shape"]))


def _as_sequence(a: np.ndarray, ex: dict[str, Any]) -> np.ndarray:
    """One input as ``(time steps, features)``: image rows are time steps (``(C, H, W)`` -> ``(H, C*W)``)."""
    shape = ex["shape"]
    if len(shape) == 3:
        return a.reshape(shape).transpose(1, 0, 2).reshape(shape[1], shape[0] * shape[2])
    steps, feats = ex.get("sequence_shape") or (shape if len(shape) == 2 else (1, a.size))
    return a.reshape(steps, feats)


def _draw_image(fig: Any, cell: Any, ex: dict[str, Any], x: np.ndarray, xa: np.ndarray, classes: list[str]) -> None:
    shape = ex["shape"]
    x, xa = x.reshape(shape), xa.reshape(shape)
    delta = xa - x
    amp = float(np.abs(delta).max()) or 1.0
    imgs = [_img(x), _img(xa), _img(0.5 + 0.5 * delta / amp)]
    titles = [
        f"#{ex['index']}: {classes[ex['label']]}",
        f"adversarial: {classes[ex['adv_pred']]}",
        f"perturbation x{0.5 / amp:.1f}",
    ]
    sub = cell.subgridspec(1, 3)
    for j in range(3):
        ax = fig.add_subplot(sub[j])
        ax.imshow(imgs[j], cmap="gray" if imgs[j].ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(titles[j], fontsize=7, color=_adv_color(ex) if j == 1 else NEUTRAL, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])


def _draw_sequence(fig: Any, cell: Any, ex: dict[str, Any], x: np.ndarray, xa: np.ndarray, classes: list[str]) -> None:
    seq, seq_adv = _as_sequence(x, ex), _as_sequence(xa, ex)
    delta = seq_adv - seq
    amp = float(np.abs(delta).max()) or 1.0
    lo, hi = float(min(seq.min(), seq_adv.min())), float(max(seq.max(), seq_adv.max()))
    panels = [
        (seq, "viridis", lo, hi, f"#{ex['index']}: {classes[ex['label']]}"),
        (seq_adv, "viridis", lo, hi, f"adversarial: {classes[ex['adv_pred']]}"),
        (delta, "RdBu_r", -amp, amp, f"perturbation (±{amp:.2g})"),
    ]
    sub = cell.subgridspec(1, 3, wspace=0.25)
    for j, (a, cmap, vmin, vmax, title) in enumerate(panels):
        ax = fig.add_subplot(sub[j])
        ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=7, color=_adv_color(ex) if j == 1 else NEUTRAL, pad=2)
        ax.tick_params(labelsize=5, length=2)
        ax.set_xlabel("feature", fontsize=6, labelpad=1)
        if j == 0:
            ax.set_ylabel("time step", fontsize=6, labelpad=1)


def _draw_vector(fig: Any, cell: Any, ex: dict[str, Any], x: np.ndarray, xa: np.ndarray, classes: list[str]) -> None:
    k = np.arange(x.size)
    delta = xa - x
    sub = cell.subgridspec(1, 2, wspace=0.3)
    ax = fig.add_subplot(sub[0])
    ax.plot(k, x, "-", color="#8a94a6", linewidth=1, label="original")
    ax.plot(k, xa, "-", color=BAD, linewidth=1, label="adversarial")
    ax.set_title(f"#{ex['index']}: {classes[ex['label']]} -> {classes[ex['adv_pred']]}", fontsize=7, color=_adv_color(ex), pad=2)
    ax.legend(fontsize=5, frameon=False)
    ax = fig.add_subplot(sub[1])
    ax.bar(k, delta, width=0.9, color=np.where(delta >= 0, BAD, ACCENT))
    ax.axhline(0, color="#c9ced6", linewidth=0.8)
    ax.set_title("perturbation per feature", fontsize=7, pad=2)
    for a in fig.axes[-2:]:
        a.tick_params(labelsize=5, length=2)
        a.set_xlabel("feature", fontsize=6, labelpad=1)
        a.spines[["top", "right"]].set_visible(False)


def _adv_color(ex: dict[str, Any]) -> str:
    return BAD if ex["adv_pred"] != ex["label"] else NEUTRAL


_DRAW = {"image": _draw_image, "sequence": _draw_sequence, "vector": _draw_vector}
_EXAMPLE_CAPTIONS = {
    "image": "Original, adversarial input, perturbation (amplified to the full grey range) and the model's "
    "confidences before and after, at the largest budget of the first threat model.",
    "sequence": "The model reads its input as a sequence: each input, its adversarial version and the perturbation "
    "are drawn as time step x feature heatmaps (rows are time steps; the perturbation on a diverging scale), with "
    "the model's confidences before and after, at the largest budget of the first threat model.",
    "vector": "Flat feature vectors: the original and adversarial values per feature, the perturbation per feature "
    "(red up, blue down), and the model's confidences before and after, at the largest budget of the first threat model.",
}


def examples_figure(api: Any, examples: list[dict[str, Any]], classes: list[str], name: str) -> Any:
    """Examples drawn the way the model reads them (:func:`example_kind`): images, time step x
    feature heatmaps for sequences, per-feature plots for flat vectors."""
    kind = example_kind(examples[0])
    if kind not in _DRAW:
        raise ValueError(f"cannot draw examples of input kind {kind!r}")
    rows = len(examples)
    # a fixed grid rather than a constrained layout: the solver's cost grows with the number
    # of axes (four per example), and it dominated the report's rendering time
    if kind == "image":
        height = 1.55 * rows + 0.2
        fig = _figure(8.6, height, None)
        grid = fig.add_gridspec(rows, 4, width_ratios=[1, 1, 1, 2.2], left=0.02, right=0.98, top=1 - 0.3 / height, bottom=0.25 / height, hspace=0.45, wspace=0.15)
    else:
        height = 2.0 * rows + 0.2
        fig = _figure(10.5, height, None)
        grid = fig.add_gridspec(rows, 4, width_ratios=[1, 1, 1, 1.5], left=0.05, right=0.98, top=1 - 0.3 / height, bottom=0.35 / height, hspace=0.6, wspace=0.3)
    for i, ex in enumerate(examples):
        x = np.asarray(ex["x"], dtype=float)
        xa = np.asarray(ex["x_adv"], dtype=float)
        _DRAW[kind](fig, grid[i, :3], ex, x, xa, classes)
        ax = fig.add_subplot(grid[i, 3])
        k = np.arange(len(ex["clean_probabilities"]))
        ax.bar(k - 0.2, ex["clean_probabilities"], width=0.4, color="#8a94a6", label="before")
        ax.bar(k + 0.2, ex["adv_probabilities"], width=0.4, color=BAD, label="after")
        ax.set_ylim(0, 1)
        ax.set_xticks(k)
        ax.set_xticklabels([classes[c] for c in k], fontsize=6)
        ax.tick_params(labelsize=6, length=2)
        ax.spines[["top", "right"]].set_visible(False)
        if i == 0:
            ax.legend(fontsize=6, frameon=False, ncol=2)
            ax.set_title("confidence", fontsize=7, pad=2)
    return api.Figure(name, _png(fig), _EXAMPLE_CAPTIONS[kind])


def _img(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0, 1)
    if a.ndim == 3 and a.shape[0] == 1:
        return a[0]
    if a.ndim == 3 and a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    if a.ndim == 1:
        side = math.isqrt(a.size)
        return a.reshape(side, side) if side * side == a.size else a[None]
    return a


def sections(results: dict[str, Any]) -> list[Any]:
    """The report's sections (figures, tables and text) from a ``results.json`` dict."""
    api = _api()
    classes = results["data"]["classes"]
    out = []
    audit = results["audit"]
    verdicts = [c["verdict"] for c in audit["checks"]]
    metrics = {"clean accuracy": _pct(results["clean_accuracy"])}
    for t in results["threats"]:
        head = t["results"][-1]
        metrics[f"robust accuracy, {t['norm']} {head['eps']:g}"] = _pct(head["robust_accuracy"]) + _interval(head)
        if (t.get("certified") or {}).get("available"):
            metrics[f"certified accuracy, {t['norm']} {head['eps']:g}"] = _pct(t["certified"]["per_eps"][-1]["certified_accuracy"])
    metrics["audit"] = "clean" if audit["clean"] else f"{verdicts.count('fail')} check(s) failed"
    out.append(api.Section("Summary", results["summary"], metrics=metrics))

    for i, t in enumerate(results["threats"]):
        figs = [curve_figure(api, t, results["clean_accuracy"], f"curve-{i}")]
        if t.get("minimal"):
            figs.append(histogram_figure(api, t, results["samples"]["minimal_norm"][t["key"]], f"minimal-{i}"))
        rows = []
        text_ci = "; ".join(f"eps {r['eps']:g}: {_pct(r['robust_accuracy'])}{_interval(r)}" for r in t["results"])
        for r in t["results"]:
            for s in r["stages"]:
                rows.append([f"{r['eps']:g}", s["label"], s["kind"], s["broken"], _pct(s["robust_accuracy_after"])])
        tables = [api.Table(["eps", "stage", "kind", "samples broken", "robust accuracy after"], rows, "Per attack: robust accuracy after each stage of the cascade (worst case so far).")]
        m = t.get("minimal")
        text = (
            f"Threat model: {t['threat_model']}; budgets {', '.join(f'{e:g}' for e in t['eps'])}. "
            f"Robust accuracy (Clopper-Pearson 95% intervals): {text_ci}. "
            f"Cascade: {', '.join(t['attacks'])}; each attack runs only on the samples the previous ones left robust, "
            "and a sample counts as robust only if every attack (and every success at a smaller budget) failed."
        )
        if m:
            q = m["quantiles"]
            text += (
                f"\n\nMinimal-norm distribution ({m['attack']}): median {_fmt(m['median'])}, "
                f"10%-90% quantiles {_fmt(q.get('0.1'))} to {_fmt(q.get('0.9'))}; found for {m['found']} of {m['evaluated']} samples."
            )
        if t.get("escalation"):
            text += f"\n\nEscalation attacks run here: {', '.join(t['escalation'])}."
        text += certified_text(t)
        out.append(api.Section(f"Threat model: {t['key']}", text, figures=figs, tables=tables))

    if results.get("examples"):
        out.append(api.Section("Examples", "", figures=[examples_figure(api, results["examples"], classes, "examples")]))

    out.append(per_class_section(api, results["threats"][0], "samples", "eps"))

    cost = results["cost"]
    rows = [[r["stage"], r["kind"], r["forwards"], r["backwards"], "-" if r["seconds"] is None else round(r["seconds"], 2)] for r in cost["by_stage"]]
    out.append(
        api.Section(
            "Cost",
            f"Wall time {cost['wall_seconds']:.1f} s; {cost['forwards']} forward passes (queries) and {cost['backwards']} backward passes in all."
            + _certify_cost(cost.get("certify")),
            tables=[api.Table(["stage", "kind", "forward passes", "backward passes", "seconds"], rows)],
        )
    )

    out.append(audit_section(api, audit))
    return out


def per_class_section(api: Any, t: dict[str, Any], what: str, budget: str) -> Any:
    """Robust accuracy per true class and budget of one threat block."""
    rows = []
    for j, c in enumerate(t["results"][-1]["per_class"]):
        rows.append([c["class"], c["n"]] + [_pct(r["per_class"][j]["robust_accuracy"]) for r in t["results"]])
    columns = ["class", what] + [f"{budget} {r['eps']:g}" for r in t["results"]]
    return api.Section("Per class", f"Robust accuracy per true class ({t['key']}).", tables=[api.Table(columns, rows)])


def audit_section(api: Any, audit: dict[str, Any]) -> Any:
    """The audit's verdicts, evidence and escalation (shared by every kind of evaluation)."""
    rows = [[c["verdict"].upper(), c["title"], c["threat"] or "model", c["evidence"], c["docs"]] for c in audit["checks"]]
    esc = audit["escalation"]
    text = (
        "Automatic checks for gradient masking and weak attacks (Carlini et al. 2019, arXiv:1902.06705; Athalye et al. 2018, "
        "arXiv:1802.00420; Croce & Hein 2020, arXiv:2003.01690; the binarization test of Zimmermann et al. 2022, "
        "arXiv:2206.13991). Each entry of docs/audit.md explains a check and what to do when it fails."
    )
    if esc["actions"]:
        changes = []
        for key, before in esc["robust_accuracy_before"].items():
            after = esc["robust_accuracy_after"][key]
            changes += [f"{key} eps {float(e):g}: {_pct(before[e])} -> {_pct(after[e])}" for e in before]
        text += "\n\nEscalation: " + "; ".join(esc["descriptions"]) + ". Robust accuracy before -> after: " + "; ".join(changes) + "."
    return api.Section(
        "Audit",
        text,
        tables=[api.Table(["verdict", "check", "threat", "evidence", "docs"], rows)],
        checks={f"{c['title']} ({c['threat'] or 'model'})": c["verdict"] != "fail" for c in audit["checks"] if c["verdict"] != "skipped"},
    )


def _certify_cost(c: dict[str, Any] | None) -> str:
    if not c or not c.get("method"):
        return ""
    return (
        f" Certified bounds ({c['method']}): {c['seconds']:.2f} s, counted apart from the attacks; they propagate bounds through "
        f"the layers and run no attack passes (the model was called on {c['model_forwards']} rows for clean logits and the chain check)."
    )


def _interval(r: dict[str, Any]) -> str:
    """`` (95% CI a-b%, n = N)`` for a result block that has an interval."""
    if not r.get("interval"):
        return ""
    lo, hi = r["interval"]
    return f" (95% CI {100 * lo:.1f}-{100 * hi:.1f}%, n = {r['n']})"


def _fmt(v: float | None) -> str:
    return "not found" if v is None else f"{v:.3g}"


def render_report(results: dict[str, Any], folder: str | Path) -> Path:
    """Write ``folder/report.html`` from a ``results.json`` dict; returns its path.

    Other kinds of evaluation (``"kind": "graph"``) get the layout of their evaluator
    (:mod:`advlab.evaluation.evaluators`)."""
    from advlab.evaluation.evaluators import evaluator_of_kind

    api = _api()
    env = results["environment"]
    facts = {
        "model": results["model"]["name"],
        "data": f"{results['data']['name']} ({results['data']['split']}, {results['data']['samples']} samples)"
        if results.get("kind") != "graph"
        else f"{results['data']['name']} ({results['data']['nodes']} nodes, {results['data']['edges']} edges; {results['data']['samples']} test nodes)",
        "plan seed": results["plan"]["seed"],
        "device": env["device"],
        "advlab / torch": f"{env['advlab']} / {env['torch']}",
        "git revision": env.get("git_revision") or "-",
        "created": results["created"],
    }
    if results.get("kind") != "graph":
        facts["preprocessing"] = results["model"].get("preprocessing") or "none: the model takes [0, 1] pixels"
    return Path(
        api.write_report(
            folder,
            "Robustness evaluation",
            evaluator_of_kind(results["kind"]).sections(results) if results.get("kind", "inputs") != "inputs" else sections(results),
            subtitle=f"{results['model']['name']} on {results['data']['name']}: {results['threats'][0]['threat_model']}",
            facts=facts,
            save_figures=False,
        )
    )
