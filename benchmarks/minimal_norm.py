"""Strength and speed of the minimal-norm and sparse attacks on the seed MLP and the CNN.

Every attack runs unbounded (``eps=None``) on the same test images with its default
hyperparameters.  For the images the model classifies correctly it reports the success rate,
the median perturbation of the successes (L2, Linf, L1, L0), the mean forward and backward
passes per image, the wall time of the attack (``AttackResult.seconds``: verification
excluded) and images per second.

    OMP_NUM_THREADS=1 python benchmarks/minimal_norm.py --n 1000 --models seed-mlp cnn
"""

from __future__ import annotations

import argparse

from advlab.attacks import get_attack
from advlab.data import load_data
from advlab.models import trained_model
from advlab.threat import ThreatModel

# (label, attack name, norm, targeted, params)
ATTACKS = [
    ("deepfool-l2", "deepfool", "l2", False, {}),
    ("deepfool-linf", "deepfool", "linf", False, {}),
    ("cw-l2", "cw-l2", "l2", False, {}),
    ("cw-l2-paper", "cw-l2", "l2", False, {"step_size": 0.01, "initial_const": 1e-3, "search_steps": 9, "warm_start": False}),
    ("ddn", "ddn", "l2", False, {}),
    ("fmn-l2", "fmn", "l2", False, {}),
    ("fmn-linf", "fmn", "linf", False, {}),
    ("fmn-l1", "fmn", "l1", False, {}),
    ("fmn-l0", "fmn", "l0", False, {}),
    ("jsma", "jsma", "l0", False, {}),
    ("jsma-targeted", "jsma", "l0", True, {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--models", nargs="+", default=["seed-mlp", "cnn"])
    ap.add_argument("--attacks", nargs="*", default=None, help="labels to run (default: all but cw-l2-paper)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--cache", default=None, help="model cache folder (default: ADVLAB_CACHE)")
    args = ap.parse_args()

    data = load_data("mnist-sample")
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    wanted = args.attacks or [a[0] for a in ATTACKS if a[0] != "cw-l2-paper"]
    print(
        f"{'model':9} {'attack':14} {'success':>7} {'med L2':>7} {'med Linf':>8} {'med L1':>7} {'med L0':>6} "
        f"{'fwd':>6} {'bwd':>6} {'seconds':>8} {'img/s':>7}",
        flush=True,
    )
    for model_name in args.models:
        model = trained_model(model_name, cache_dir=args.cache).eval()
        for label, name, norm, targeted, params in ATTACKS:
            if label not in wanted:
                continue
            attack = get_attack(name, **params)
            threat = ThreatModel(norm, targeted=targeted)
            targets = "next" if targeted else None
            attack(model, x[:8], y[:8], threat, targets=targets)  # warm-up
            res = attack(model, x, y, threat, targets=targets, batch_size=args.batch_size)
            correct = res.clean_pred == res.y
            won = res.success[correct]
            med = {k: float(v[correct][won].median()) if won.any() else float("nan") for k, v in res.norms.items()}
            fwd = float(res.forwards[correct].float().mean())
            bwd = float(res.backwards[correct].float().mean())
            print(
                f"{model_name:9} {label:14} {float(won.float().mean()):7.3f} {med['l2']:7.3f} {med['linf']:8.3f} "
                f"{med['l1']:7.2f} {med['l0']:6.0f} {fwd:6.0f} {bwd:6.0f} {res.seconds:8.2f} {len(x) / res.seconds:7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
