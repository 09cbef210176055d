"""Speed of the gradient attacks against the floor: k plain forward+backward passes.

For each attack and model, on the same images, three timings (CPU time of this process, best
of ``--repeat`` interleaved runs, so that other load on the machine does not count):

* floor: exactly k forward + backward passes (gradient w.r.t. the input) of the same model
  in plain torch, k = the attack's gradient steps per sample (steps * restarts), at the
  fastest batch shape for this model (one piece or chunks, measured here with
  ``advlab.chunking.calibrate``);
* loop: the attack's own work (``Attack._run`` on every batch);
* call: the whole ``attack(model, x, y, threat)`` call, which adds input validation, a clean
  forward pass (for attacks that start with a gradient at the clean input, that pass is
  their first step's forward pass), the projection of the output and a verification
  forward pass on the attacked rows.

The peers, in the same run and against the same floor: ``benchmarks/compare.py``.

Run with early stopping on (the default: cheaper than the floor when samples break early)
and off (every sample runs every step: this isolates the per-step overhead).

    OMP_NUM_THREADS=1 python benchmarks/attacks.py --n 1000 --models seed-mlp cnn
"""

from __future__ import annotations

import argparse
import time

import torch

from advlab.attacks import Batch, get_attack
from advlab.chunking import calibrate, chunk_rows, time_passes
from advlab.data import load_data
from advlab.models import trained_model
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.victim import Victim

# (name, params, gradient steps per sample when nothing stops early)
ATTACKS = [
    ("fgsm", {}, 1),
    ("bim", {"steps": 10}, 10),
    ("pgd", {"steps": 40}, 40),
    ("mi-fgsm", {"steps": 10}, 10),
    ("cw-linf", {"steps": 40}, 40),
    ("apgd", {"steps": 40}, 40),
]
clock = time.process_time  # the same clock as advlab.chunking.time_passes


def floor_seconds(model, x, k: int, batch_size: int, rows: int | None) -> float:
    """Exactly k forward+backward passes (gradient w.r.t. the input) on every image, in
    chunks of ``rows`` (``None``: one piece)."""
    return sum(time_passes(model, x[i : i + batch_size], rows, k) for i in range(0, len(x), batch_size))


def loop_seconds(atk, model, x, y, threat, batch_size: int) -> float:
    """The attack's own work: ``_run`` on every batch, as ``Attack.__call__`` drives it."""
    rng = CounterRNG(atk.seed)
    num_classes = int(model(x[:1]).shape[1])
    start = clock()
    for i in range(0, len(x), batch_size):
        sel = torch.arange(i, min(i + batch_size, len(x)))
        batch = Batch(x=x[sel], y=y[sel], y_true=y[sel], index=sel, num_classes=num_classes)
        atk._run(Victim(model, len(sel), x.device), batch, threat, rng)
    return clock() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--models", nargs="+", default=["seed-mlp", "cnn"])
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5, help="best of this many interleaved runs")
    ap.add_argument("--attacks", nargs="*", default=None)
    ap.add_argument("--cache", default=None, help="model cache folder (default: ADVLAB_CACHE)")
    args = ap.parse_args()

    data = load_data("mnist-sample")
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    threat = ThreatModel("linf", eps=args.eps)
    print(f"torch threads: {torch.get_num_threads()}, {args.n} images, Linf eps {args.eps}, batch {args.batch_size}")
    print(f"{'model':9} {'attack':8} {'early':5} {'k':>4} {'robust':>7} {'img/s':>8} {'floor s':>8} {'loop s':>8} {'call s':>8} {'loop/floor':>10} {'call/floor':>10}")
    for model_name in args.models:
        model = trained_model(model_name, cache_dir=args.cache).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        shape_times = calibrate(model, x[: args.batch_size], repeats=3, keep=False)
        best_rows = min(shape_times, key=lambda r: shape_times[r])
        print(f"{model_name}: floor at {'one piece' if best_rows is None else f'chunks of {best_rows}'} "
              f"(advlab's rule: {chunk_rows(model, x[: args.batch_size]) or 'one piece'})")
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
                floors, loops, calls = [], [], []
                for _ in range(args.repeat):  # interleaved; the minimum filters out other load
                    floors.append(floor_seconds(model, x, k, args.batch_size, best_rows))
                    loops.append(loop_seconds(atk, model, x, y, threat, args.batch_size))
                    start = clock()
                    res = atk(model, x, y, threat, batch_size=args.batch_size)
                    calls.append(clock() - start)
                f, lo, c = min(floors), min(loops), min(calls)
                print(
                    f"{model_name:9} {name:8} {str(early):5} {k:>4} {res.robust_accuracy:7.3f} {len(x) / c:8.0f} "
                    f"{f:8.3f} {lo:8.3f} {c:8.3f} {lo / f:10.2f} {c / f:10.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
