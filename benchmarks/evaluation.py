"""The default evaluation's cost and strength against one APGD-CE run (issue 14's targets).

For each victim (the standard CNN at Linf 0.1, a PGD-trained CNN and a defensively distilled
CNN at Linf 0.3) on the first ``--samples`` test images of the MNIST sample, in one process
and one thread:

- APGD-CE (Croce & Hein 2020, arXiv:2003.01690), 100 steps, no early stop: seconds and robust
  accuracy (the yardstick);
- ``advlab.evaluate`` with the default plan at that one budget, audit on, report written:
  seconds (wall, and the share spent rendering the report), robust accuracy with its 95%
  interval, forward and backward rows per stage.

The ratio ``evaluate seconds / APGD-CE seconds`` is the figure the issue bounds by 3; the
robust accuracy must not exceed APGD-CE's.  ``--torchattacks`` also runs torchattacks'
AutoAttack (standard version) on the PGD-trained CNN and counts its passes with a forward
hook (needs ``make compare-deps``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation.py --samples 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

SETTINGS = (("standard", 0.1), ("pgd", 0.3), ("distilled", 0.3))


def victims(cache: Path, which: list[str]) -> dict[str, Any]:
    """The three CNNs, trained once and cached under ``cache``."""
    from advlab.models import TrainConfig, load_model, save_model, trained_model

    out: dict[str, Any] = {}
    if "standard" in which:
        out["standard"] = trained_model("cnn", cache_dir=cache)
    if "pgd" in which:
        out["pgd"] = trained_model(
            "cnn", cache_dir=cache, training={"epochs": 10, "batch_size": 64, "lr": 1e-3},
            adversarial={"method": "pgd", "eps": 0.3, "steps": 10, "warmup": 3},
        )
    if "distilled" in which:
        folder = cache / "distilled-cnn-T100"
        if not (folder / "config.json").is_file():
            from advlab.data import load_data
            from advlab.defenses import distill

            d = load_data("mnist-sample")
            student, _ = distill("cnn", d.x_train, d.y_train, 100.0, TrainConfig(epochs=5, batch_size=64, lr=3e-3))
            save_model(student, folder, dataset="mnist-sample")
        out["distilled"] = load_model(folder)
    return out


def apgd_reference(model: Any, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    from advlab import ThreatModel
    from advlab.attacks import get_attack

    atk = get_attack("apgd", steps=100, loss="ce", early_stop=False)
    start = time.perf_counter()
    res = atk(model, x, y, ThreatModel("linf", eps=eps), batch_size=500)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "robust_accuracy": res.robust_accuracy, "forwards": int(res.forwards.sum()), "backwards": int(res.backwards.sum())}


def default_evaluation(model: Any, samples: int, eps: float, batch_size: int) -> dict[str, Any]:
    import advlab
    from advlab.evaluation import ThreatSpec

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = advlab.evaluate(model, "mnist-sample", samples=samples, batch_size=batch_size, out=out,
                                 threats=[ThreatSpec("linf", (eps,))])
        seconds = time.perf_counter() - start
        data = result.data
    head = data["threats"][0]["results"][-1]
    cost = data["cost"]
    return {
        "seconds": seconds,
        "report_seconds": cost.get("report_seconds"),
        "robust_accuracy": head["robust_accuracy"],
        "interval": head.get("interval"),
        "forwards": cost["forwards"],
        "backwards": cost["backwards"],
        "stages": [[s["label"], s["broken"]] for s in head["stages"]],
        "by_stage": [[r["stage"], r["forwards"], r["backwards"], round(r["seconds"], 2)] for r in cost["by_stage"]],
        "audit_failed": [c["id"] for c in data["audit"]["checks"] if c["verdict"] == "fail"],
    }


def autoattack(model: Any, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, Any]:
    """torchattacks' AutoAttack (standard), passes counted with a forward hook."""
    import torchattacks

    rows = {"forwards": 0, "backwards": 0}

    def forward_hook(_m: Any, inputs: Any, _o: Any) -> None:
        rows["forwards"] += int(inputs[0].shape[0])

    def backward_hook(_m: Any, _gi: Any, grad_output: Any) -> None:
        rows["backwards"] += int(grad_output[0].shape[0])

    model.eval()
    handles = [model.register_forward_hook(forward_hook), model.register_full_backward_hook(backward_hook)]
    try:
        atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        start = time.perf_counter()
        x_adv = atk(x, y)
        seconds = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        robust = float((model(x_adv).argmax(1) == y).float().mean())
    return {"seconds": seconds, "robust_accuracy": robust, "forwards": rows["forwards"], "backwards": rows["backwards"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--models", default="standard,pgd,distilled")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "advlab-bench-models")
    ap.add_argument("--skip-evaluate", action="store_true", help="only the APGD-CE yardstick")
    ap.add_argument("--torchattacks", action="store_true", help="also AutoAttack on the PGD-trained CNN")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from advlab.data import load_data

    which = [m.strip() for m in args.models.split(",") if m.strip()]
    models = victims(args.cache, which)
    data = load_data("mnist-sample")
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    rows = []
    for name, eps in SETTINGS:
        if name not in models:
            continue
        model = models[name]
        row: dict[str, Any] = {"model": name, "eps": eps, "samples": args.samples}
        row["apgd_ce_100"] = apgd_reference(model, x, y, eps)
        if not args.skip_evaluate:
            row["evaluate"] = default_evaluation(model, args.samples, eps, args.batch_size)
            row["ratio"] = row["evaluate"]["seconds"] / row["apgd_ce_100"]["seconds"]
        if args.torchattacks and name == "pgd":
            row["autoattack"] = autoattack(model, x, y, eps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
