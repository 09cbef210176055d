"""Victims beyond image networks: scikit-learn classifiers, a row-by-row LSTM and a GCN.

Prints (1) for scikit-learn classifiers fitted on MNIST-sample digits: whether the torch
wrapper's predictions equal scikit-learn's on the test digits, and PGD / C&W success with
perturbation norms (Biggio et al. 2013, arXiv:1708.06131); (2) the LSTM's clean accuracy and
robust accuracy under PGD at Linf 0.1 and 0.3; (3) GCN accuracy against the edge-flip budget
for DICE, PGD topology (Xu et al. 2019) and the Nettack-style targeted attack, for evasion
and poisoning, on Zachary's karate club and a CSBM graph, plus feature PGD.

    OMP_NUM_THREADS=1 python benchmarks/victims.py --n 500
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch

from advlab.attacks import UnknownAttackError, get_attack
from advlab.data import load_data
from advlab.models import from_sklearn, trained_model
from advlab.threat import ThreatModel


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for k, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _attack(name: str, **params: Any):  # type: ignore[no-untyped-def]
    try:
        return get_attack(name, **params)
    except UnknownAttackError:
        return None


def sklearn_section(n: int, n_fit: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.svm import SVC, LinearSVC

    data = load_data("mnist-sample")
    x_fit = data.x_train[:n_fit].reshape(n_fit, -1).numpy()
    y_fit = data.y_train[:n_fit].numpy()
    x, y = data.x_test[:n], data.y_test[:n]
    estimators = {
        "logistic regression": LogisticRegression(max_iter=200),
        "linear SVM": LinearSVC(),
        "RBF SVM": SVC(),
        "Gaussian NB": GaussianNB(),
    }
    equal_rows, attack_rows = [], []
    pgd_inf, pgd_l2 = _attack("pgd", steps=40), _attack("pgd", steps=40)
    cw = _attack("cw-l2")
    for label, est in estimators.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(x_fit, y_fit)
        victim = from_sklearn(est)
        flat = data.x_test.reshape(len(data.x_test), -1).numpy()
        classes = np.asarray(est.classes_)
        mismatch = int((classes[victim(data.x_test).argmax(dim=1).numpy()] != est.predict(flat)).sum())
        equal_rows.append([label, len(flat), mismatch, float((est.predict(flat) == data.y_test.numpy()).mean())])
        if label not in ("logistic regression", "linear SVM"):
            continue
        runs = []
        if pgd_inf is not None:
            runs += [("PGD-40 Linf", pgd_inf, ThreatModel("linf", eps=eps)) for eps in (0.05, 0.1, 0.15)]
            runs += [("PGD-40 L2", pgd_l2, ThreatModel("l2", eps=eps)) for eps in (1.0, 2.0)]
        if cw is not None:
            runs.append(("C&W L2 (minimal)", cw, ThreatModel("l2")))
        else:
            cwinf = _attack("cw-linf", steps=40)
            if cwinf is not None:
                runs.append(("C&W-Linf (PGD, margin loss)", cwinf, ThreatModel("linf", eps=0.1)))
        for name, atk, tm in runs:
            r = atk(victim, x, y, tm)
            s = r.summary()
            sk = est.predict(r.x_adv.reshape(n, -1).numpy())
            agree = float((torch.from_numpy(sk != y.numpy()) == r.success).float().mean())
            med = s["median_norm"]
            attack_rows.append(
                [label, name, "-" if tm.eps is None else f"{tm.eps:g}", r.clean_accuracy, s["success_rate_on_correct"],
                 r.robust_accuracy, _fmt(med["l2"]), _fmt(med["linf"]), agree, f"{r.seconds:.2f}"]
            )
    _table(
        f"scikit-learn victims (fitted on {n_fit} MNIST-sample digits): torch wrapper vs scikit-learn predict",
        ["estimator", "test digits", "mismatches", "test accuracy"],
        equal_rows,
    )
    _table(
        f"white-box evasion of linear models, {n} test digits (success on clean-correct digits; median norms of successes)",
        ["victim", "attack", "eps", "clean acc", "success", "robust acc", "median L2", "median Linf", "sklearn agrees", "seconds"],
        attack_rows,
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def lstm_section(n: int, cache: str | None) -> None:
    data = load_data("mnist-sample")
    start = time.perf_counter()
    model = trained_model("lstm", cache_dir=cache)
    load_s = time.perf_counter() - start
    x, y = data.x_test[:n], data.y_test[:n]
    pgd = _attack("pgd", steps=40)
    rows = []
    if pgd is None:
        print("\n(no pgd attack registered: LSTM robust accuracy skipped)")
        return
    for eps in (0.1, 0.3):
        r = pgd(model, x, y, ThreatModel("linf", eps=eps))
        rows.append([f"{eps:g}", r.clean_accuracy, r.robust_accuracy, f"{r.seconds:.2f}"])
    _table(
        f"LSTM reading rows (sequential MNIST), {n} test digits, PGD-40 Linf (model ready in {load_s:.1f} s)",
        ["eps", "clean acc", "robust acc", "seconds"],
        rows,
    )


def graph_section(csbm_nodes: int, targets: int) -> None:
    from advlab.graphs import (
        DICE,
        FeaturePGD,
        GraphThreatModel,
        Nettack,
        PGDTopology,
        accuracy_vs_budget,
        csbm,
        fit_gcn,
        karate_club,
        node_accuracy,
    )

    for graph in (karate_club(), csbm(nodes=csbm_nodes)):
        model = fit_gcn(graph)
        print(f"\n{graph}: GCN test accuracy {node_accuracy(model, graph):.3f}")
        fractions = (0.0, 0.05, 0.1, 0.2)
        budgets = sorted({GraphThreatModel.edge_fraction(graph, f).edges for f in fractions})
        for goal in ("evasion", "poisoning"):
            start = time.perf_counter()
            curve = accuracy_vs_budget(model, graph, [DICE(), PGDTopology()], budgets, goal=goal)
            table = curve.table()
            _table(
                f"{graph.name} {goal}: accuracy of {curve.nodes} test nodes vs edge flips "
                f"(of {graph.num_edges} edges; {time.perf_counter() - start:.1f} s)",
                table[0],
                table[1:],
            )
        idx = graph.test[:targets]
        curve = accuracy_vs_budget(model, graph, [DICE(), Nettack()], [0, 1, 2, 3, 4], nodes=idx)
        table = curve.table()
        _table(
            f"{graph.name} evasion: accuracy of {len(idx)} target nodes vs flips (nettack: per target; dice: in total)",
            table[0],
            table[1:],
        )
        rows = []
        for eps in (0.1, 0.3, 1.0):
            tm = GraphThreatModel(features=ThreatModel("linf", eps=eps, box=graph.feature_box))
            rows.append([f"{eps:g}", FeaturePGD()(model, graph, tm).robust_accuracy])
        _table(f"{graph.name} evasion: feature PGD (every node's features, Linf)", ["eps", "accuracy"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="test digits attacked")
    ap.add_argument("--fit", type=int, default=1000, help="digits the scikit-learn models are fitted on")
    ap.add_argument("--csbm-nodes", type=int, default=1000)
    ap.add_argument("--targets", type=int, default=20, help="target nodes for the targeted attack")
    ap.add_argument("--cache", default=None, help="model cache folder (default: ADVLAB_CACHE)")
    ap.add_argument("--only", nargs="*", choices=["sklearn", "lstm", "graphs"], default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    sections = args.only or ["sklearn", "lstm", "graphs"]
    if "sklearn" in sections:
        sklearn_section(args.n, args.fit)
    if "lstm" in sections:
        lstm_section(args.n, args.cache)
    if "graphs" in sections:
        graph_section(args.csbm_nodes, args.targets)


if __name__ == "__main__":
    main()
