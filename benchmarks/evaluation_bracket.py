"""The bracket certified <= true <= attacked as ``advlab.evaluate`` reports it (issue 17, item 4).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/evaluation_bracket.py seed-mlp --norm linf --eps 0.005 0.01 0.02
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/evaluation_bracket.py cnn --norm linf --eps 0.002 0.005 0.01

Runs the default cascade, audit and minimal-norm attack on the first ``--samples`` images of
the embedded MNIST sample and prints, per budget, certified and attacked robust accuracy with
the per-sample status counts, the radius bracket, and the bounds' cost beside the attacks'.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import advlab
from advlab.evaluation import EvaluationPlan, ThreatSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--norm", default="linf")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--certify", default="auto")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    plan = EvaluationPlan(threats=(ThreatSpec(args.norm, tuple(args.eps)),), samples=args.samples, certify=args.certify)
    with tempfile.TemporaryDirectory() as tmp:
        result = advlab.evaluate(args.model, "mnist-sample", plan, out=args.out or tmp, report=False)
    block = result.threat()
    cert = block["certified"]
    cost = result.data["cost"]
    row = {
        "model": args.model,
        "norm": args.norm,
        "method": cert["method"],
        "clean": result.clean_accuracy,
        "per_eps": [
            {k: r[k] for k in ("eps", "certified_accuracy", "robust_accuracy", "gap", "status")} for r in cert.get("per_eps", [])
        ],
        "radius": {k: v for k, v in (cert.get("radius") or {}).items() if k != "curve"},
        "certify_seconds": round(cost["certify"]["seconds"], 3),
        "certify_model_rows": cost["certify"]["model_forwards"],
        "attack_seconds": round(cost["attack_seconds"], 3),
        "attack_forwards": cost["forwards"],
        "wall_seconds": round(cost["wall_seconds"], 3),
    }
    print(json.dumps(row, indent=1))
    print(result.summary)


if __name__ == "__main__":
    main()
