"""Speed of the gradient attacks against the floor: k plain forward+backward passes.

For each attack and model, on the same images: the attack's wall time (``AttackResult.seconds``)
and the time of exactly k forward + backward passes of the same model in plain torch, where
k = the attack's gradient steps per sample (steps * restarts). Ratio = attack / floor.
Run with early stopping on (the default: cheaper than the floor when samples break early)
and off (every sample runs every step: this isolates the loop's own overhead).

    OMP_NUM_THREADS=1 python benchmarks/attacks.py --n 1000 --models seed-mlp cnn
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from advlab.attacks import get_attack
from advlab.data import load_data
from advlab.models import trained_model
from advlab.threat import ThreatModel

# (name, params, gradient steps per sample when nothing stops early)
ATTACKS = [
    ("fgsm", {}, 1),
    ("bim", {"steps": 10}, 10),
    ("pgd", {"steps": 40}, 40),
    ("mi-fgsm", {"steps": 10}, 10),
    ("cw-linf", {"steps": 40}, 40),
    ("apgd", {"steps": 40}, 40),
]


def floor_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, batch_size: int) -> float:
    """Exactly k forward+backward passes (gradient w.r.t. the input) on every image."""
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        for _ in range(k):
            xr = xb.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xr), yb, reduction="none")
            torch.autograd.grad(loss.sum(), xr)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--models", nargs="+", default=["seed-mlp", "cnn"])
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="median of this many runs")
    ap.add_argument("--attacks", nargs="*", default=None)
    ap.add_argument("--cache", default=None, help="model cache folder (default: ADVLAB_CACHE)")
    args = ap.parse_args()

    data = load_data("mnist-sample")
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    threat = ThreatModel("linf", eps=args.eps)
    print(f"{'model':9} {'attack':8} {'early':5} {'k':>4} {'robust':>7} {'img/s':>9} {'attack s':>9} {'floor s':>8} {'ratio':>6}")
    for model_name in args.models:
        model = trained_model(model_name, cache_dir=args.cache).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for name, params, k in ATTACKS:
            if args.attacks and name not in args.attacks:
                continue
            for early in (True, False):
                p = dict(params)
                if name != "fgsm":
                    p["early_stop"] = early
                elif not early:
                    continue
                atk = get_attack(name, **p)
                atk(model, x[:8], y[:8], threat)  # warm-up
                times, floors = [], []
                for _ in range(args.repeat):  # interleaved, median
                    res = atk(model, x, y, threat, batch_size=args.batch_size)
                    times.append(res.seconds)
                    floors.append(floor_seconds(model, x, y, k, args.batch_size))
                t, f = statistics.median(times), statistics.median(floors)
                print(
                    f"{model_name:9} {name:8} {str(early):5} {k:>4} {res.robust_accuracy:7.3f} {len(x) / t:9.0f} "
                    f"{t:9.3f} {f:8.3f} {t / f:6.2f}"
                )


if __name__ == "__main__":
    main()
