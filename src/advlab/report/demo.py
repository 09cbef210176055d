"""The sections of the demo's report (see :mod:`advlab.demo`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from advlab.report.figures import BAD, GOOD, NEUTRAL, activation_plots, image_pairs, tradeoff_curve
from advlab.report.html import Section, Table

__all__ = ["build_sections"]


def build_sections(
    results: dict[str, Any],
    *,
    model: nn.Module,
    data: Any,
    fool: Any,
    fool_act: dict[str, Tensor],
    main: Any,
    x: Tensor,
    y: Tensor,
    goals: Tensor,
    p_clean: Tensor,
    thr_pred: Tensor,
    defended: nn.Module,
    advance: Callable[[int], None],
) -> list[Section]:
    """Summary, network, fooling images, targeted attack, lambda sweep, thresholding, run."""
    cfg = results["config"]
    sections = [_summary(results), _network(results)]
    sections.append(_fooling(results, fool, fool_act))
    advance(1)
    sections.append(_targeted(results, model, main, x, y, goals, p_clean, cfg["pairs_shown"]))
    advance(1)
    sections.append(_sweep(results))
    advance(1)
    sections.append(_thresholding(results, main, y, thr_pred, defended))
    advance(1)
    return sections


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _summary(results: dict[str, Any]) -> Section:
    exp = results["expectations"]
    passed = sum(e["passed"] for e in exp)
    t = results["targeted"]
    text = (
        "This run reproduces the seed report's experiment on the MNIST sample embedded in advlab: "
        "a 784-20-10 network with a sigmoid hidden layer, attacked by gradient descent on its input "
        "so that its softmax output matches a chosen one-hot vector, with and without a prior that "
        "keeps the image close to a real digit, and defended by binary thresholding.\n\n"
        f"{passed} of {len(exp)} expectations hold. With the report's lambda = {t['lam']:g}, "
        f"{_pct(t['goal_reached'])} of the {t['n']} images reach their goal class and "
        f"{_pct(t['true_confidence_dropped'])} lose confidence in their true class (the report's own "
        "criterion); a smaller lambda reaches the goal more often at the price of a larger change."
    )
    table = Table(
        ["expectation", "measured", "floor", "result"],
        [[e["description"], e["value"], e["floor"], "pass" if e["passed"] else "FAIL"] for e in exp],
    )
    checks = {f"{e['description']} (>= {e['floor']:g})": bool(e["passed"]) for e in exp}
    return Section("Summary", text, tables=[table], checks=checks)


def _network(results: dict[str, Any]) -> Section:
    m = results["model"]
    text = (
        "The victim is the report's network: 784 inputs, one hidden layer of 20 sigmoid units and 10 "
        "outputs, trained with a fixed seed on the 4,000 training digits and tested on the 1,000 "
        "held-out ones. Its weights are saved next to this report (model/model.safetensors and "
        "model/config.json)."
    )
    metrics: dict[str, Any] = {"test accuracy": m["test_accuracy"]}
    if m["train_seconds"] is not None:
        metrics["training time (s)"] = m["train_seconds"]
    return Section("The network", text, metrics=metrics)


def _fooling(results: dict[str, Any], fool: Any, act: dict[str, Tensor]) -> Section:
    f = results["fooling"]
    text = (
        "Section 5.1 of the report: starting from noise, minimise 1/2 ||y_goal - y_hat(x)||^2 by "
        "gradient descent on the input with the weights frozen, one image per goal class. The "
        "images look like nothing to a person, yet the network assigns each to its goal class. "
        "Beside each image: the 20 hidden activations and the 10 output probabilities (the goal in "
        "red), as in the report's figure 5.1."
    )
    goals = fool.target.tolist()
    conf = f["goal_confidence"]
    titles = [f"goal {g}: {p:.0%}" for g, p in zip(goals, conf, strict=True)]
    fig = activation_plots(
        fool.x_adv, act.get("hidden", act["probabilities"]), act["probabilities"], titles,
        name="fooling-activations", highlight=goals,
        caption="Fooling images generated from noise, with the network's hidden and output activations.",
    )
    table = Table(
        ["goal class", "predicted", "goal confidence", "label of the starting noise"],
        [[g, p, c, n] for g, p, c, n in zip(goals, f["predicted"], conf, f["noise_predicted"], strict=True)],
    )
    metrics = {"classified as goal": f["goal_reached"], "mean goal confidence": sum(conf) / len(conf)}
    return Section("Fooling images from noise (report section 5.1)", text, figures=[fig], tables=[table], metrics=metrics)


def _targeted(
    results: dict[str, Any], model: nn.Module, main: Any, x: Tensor, y: Tensor, goals: Tensor, p_clean: Tensor, shown: int
) -> Section:
    t = results["targeted"]
    text = (
        f"Section 5.2 of the report: starting from a real test image x_0, minimise 1/2 ||y_goal - "
        f"y_hat(x)||^2 + lambda ||x - x_0||^2 with lambda = {t['lam']:g}, so that the result still looks "
        f"like x_0. {t['n']} correctly classified test images (all ten classes) are each sent to "
        f"another class, every goal class appearing about equally often. The report judged success by "
        "whether the network's confidence in the true class drops; reaching the goal class is the "
        "stricter test."
    )
    metrics = {
        "goal class reached": t["goal_reached"],
        "misclassified": t["misclassified"],
        "true-class confidence dropped": t["true_confidence_dropped"],
        "mean goal confidence": t["mean_goal_confidence"],
        "mean L2 distance": t["mean_l2"],
    }
    k = min(shown, len(x))
    with torch.no_grad():
        p_adv = torch.softmax(model(main.x_adv[:k]), dim=1)
    pred = p_adv.argmax(dim=1)
    left = [f"true {int(c)}: {float(p_clean[i, c]):.0%}" for i, c in enumerate(y[:k])]
    right = [f"{int(pred[i])}: {float(p_adv[i, pred[i]]):.0%} (goal {int(goals[i])})" for i in range(k)]
    colors = [GOOD if int(pred[i]) == int(goals[i]) else (BAD if int(pred[i]) != int(y[i]) else NEUTRAL) for i in range(k)]
    fig = image_pairs(
        x[:k], main.x_adv[:k], left, right, right_colors=colors, name="targeted-pairs", headers=("original", "adversarial"),
        caption="Originals (left: true label and the network's confidence in it) next to their adversarial twins "
        "(right: prediction, confidence, goal). Green: goal reached; red: misclassified but not as the goal; "
        "black: still correct.",
    )
    table = Table(
        ["", "before", "after"],
        [["mean confidence in the true class", t["mean_true_confidence_before"], t["mean_true_confidence_after"]],
         ["mean confidence in the goal class", None, t["mean_goal_confidence"]]],
    )
    return Section(f"Targeted attack with a prior, lambda = {t['lam']:g} (report section 5.2)", text,
                   figures=[fig], tables=[table], metrics=metrics)


def _sweep(results: dict[str, Any]) -> Section:
    rows = results["lambda_sweep"]
    text = (
        "The prior's weight lambda trades success against visibility: the smaller it is, the more "
        "images reach their goal class and the further they move from the original. Same images and "
        "goals as above; each point is one run of the attack."
    )
    table = Table(
        ["lambda", "goal reached", "misclassified", "true conf. dropped", "mean goal conf.", "mean L2", "median L2"],
        [[r["lam"], r["goal_reached"], r["misclassified"], r["true_confidence_dropped"], r["mean_goal_confidence"],
          r["mean_l2"], r["median_l2"]] for r in rows],
    )
    fig = tradeoff_curve(
        [r["lam"] for r in rows], [r["goal_reached"] for r in rows], [r["mean_l2"] for r in rows],
        name="lambda-sweep", floor=0.9,
        caption="Goal class reached against the mean L2 distance to the original, along the lambda sweep.",
    )
    return Section("The price of looking real: a sweep over lambda", text, figures=[fig], tables=[table])


def _thresholding(results: dict[str, Any], main: Any, y: Tensor, thr_pred: Tensor, defended: nn.Module) -> Section:
    th = results["thresholding"]
    text = (
        f"Section 6.1 of the report: set every pixel above {th['threshold']:g} to 1 and the others to 0 "
        "before the network sees the image. The adversarial images' grey background disappears and "
        "most of them go back to their true label, at a small cost in clean accuracy. This only holds "
        "against an attacker who ignores the defense: thresholding has no useful gradient, and an "
        "adaptive attack (BPDA) goes around it."
    )
    metrics = {
        "adversarial images back to true label": th["recovered"],
        "of those that fooled the network": th["recovered_of_fooled"],
        "clean accuracy, thresholded": th["clean_accuracy"],
        "clean accuracy, undefended": th["clean_accuracy_undefended"],
        "fooling images keeping their goal": th["fooling_images_keep_goal"],
    }
    fooled = (main.adv_pred != y).nonzero().squeeze(1)[:12]
    figures = []
    if fooled.numel():
        adv = main.x_adv[fooled]
        binar = defended.preprocess(adv)  # type: ignore[operator]
        left = [f"adversarial: {int(p)}" for p in main.adv_pred[fooled]]
        right = [f"thresholded: {int(p)} (true {int(t)})" for p, t in zip(thr_pred[fooled], y[fooled], strict=True)]
        colors = [GOOD if int(p) == int(t) else BAD for p, t in zip(thr_pred[fooled], y[fooled], strict=True)]
        figures.append(image_pairs(
            adv, binar, left, right, right_colors=colors, name="thresholding", headers=("adversarial", "thresholded"),
            caption="Adversarial images (left, with the network's prediction) and the same images after binary "
            "thresholding (right). Green: back to the true label.",
        ))
    return Section("Binary thresholding (report section 6.1)", text, figures=figures, metrics=metrics)


def run_section(results: dict[str, Any]) -> Section:
    """Where the time went, and the settings of the run."""
    s = results["seconds"]
    cfg = results["config"]
    text = (
        "Timings of this run (seconds of wall-clock time) and its settings. Everything is seeded: the "
        "same command on the same machine gives the same numbers."
    )
    timing = Table(["stage", "seconds"], [[k.replace("_", " "), v] for k, v in s.items()])
    settings = Table(["setting", "value"], [[k, ", ".join(f"{v:g}" for v in val) if isinstance(val, list) else val]
                                            for k, val in cfg.items()])
    return Section("Run", text, tables=[timing, settings], metrics={"total time (s)": s["total"]})
