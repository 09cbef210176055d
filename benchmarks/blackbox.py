"""Black-box and gray-box attacks at full size on the undefended CNN (embedded MNIST sample).

Prints what issue 4 asks for:

* Square Linf eps=0.3: success within 1,000 queries and the median queries;
* HopSkipJump L2 (5,000-query budget): success, median L2 against queries, and the
  white-box minimal-norm reference (C&W when registered, else PGD-L2 with bisection on eps);
* AdvGAN Linf 0.3: success on held-out test images and the time per image;
* the Papernot substitute: label queries and the transfer rate at Linf 0.3.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/blackbox.py`` (``--quick`` for a
smaller run, ``--only square,hsj`` to pick parts).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from advlab.attacks import available_attacks, get_attack
from advlab.attacks.advgan import AdvGAN, train_advgan
from advlab.attacks.substitute import train_substitute
from advlab.attacks.transfer import transfer_rate
from advlab.data import load_data
from advlab.losses import margin
from advlab.models import accuracy, trained_model
from advlab.threat import ThreatModel


def min_l2_reference(model, x, y) -> tuple[torch.Tensor, str]:
    """Per-sample minimal L2 found with white-box access."""
    if "cw-l2" in available_attacks():
        res = get_attack("cw-l2")(model, x, y, ThreatModel("l2"))
        return res.norms["l2"][res.success], "C&W L2"
    lo, hi = torch.zeros(len(x)), torch.full((len(x),), 8.0)
    for _ in range(12):
        eps = (lo + hi) / 2
        delta = torch.zeros_like(x)
        hit = torch.zeros(len(x), dtype=torch.bool)
        for _ in range(60):
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(margin(model((x + d).clamp(0, 1)), y).sum(), d)
            g = g / g.reshape(len(x), -1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = delta + (eps / 10)[:, None, None, None] * g
            n = delta.reshape(len(x), -1).norm(dim=1)
            delta = delta * (eps / n.clamp_min(1e-12)).clamp(max=1)[:, None, None, None]
            delta = (x + delta).clamp(0, 1) - x
            with torch.no_grad():
                hit |= model(x + delta).argmax(1) != y
        hi, lo = torch.where(hit, eps, hi), torch.where(hit, lo, eps)
    return hi, "PGD-L2 + bisection (C&W not registered yet)"


def bench_square(model, x, y, out):
    res = get_attack("square", max_queries=1000)(model, x, y, ThreatModel("linf", eps=0.3))
    s = res.summary()
    out["square_linf_0.3"] = {
        "n": len(x), "success": s["success_rate_on_correct"], "median_queries": s["median_forwards_successful"],
        "mean_queries": float(res.forwards[res.success & res.clean_correct].float().mean()),
        "max_queries": int(res.forwards.max()), "seconds": res.seconds,
    }
    print(f"Square Linf 0.3, 1000 queries, {len(x)} images: success {s['success_rate_on_correct']:.3f}, "
          f"median queries {s['median_forwards_successful']:.0f}, mean {out['square_linf_0.3']['mean_queries']:.1f} ({res.seconds:.1f} s)")


def bench_hsj(model, x, y, out, budgets):
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    ref, how = min_l2_reference(model, x, y)
    curve = []
    for q in budgets:
        res = get_attack("hopskipjump", max_queries=q)(model, x, y, ThreatModel("l2"))
        curve.append({"queries": q, "median_l2": res.median_norm(), "success": res.success_rate, "seconds": res.seconds})
        print(f"HopSkipJump L2, budget {q:5d}: success {res.success_rate:.3f}, median L2 {res.median_norm():.3f} ({res.seconds:.1f} s)")
    ratio = curve[-1]["median_l2"] / float(ref.median())
    out["hopskipjump_l2"] = {"n": len(x), "curve": curve, "reference": how, "reference_median_l2": float(ref.median()), "ratio": ratio}
    print(f"  white-box reference ({how}): median L2 {float(ref.median()):.3f}; HSJ@{budgets[-1]} / reference = {ratio:.2f}")


def bench_advgan(model, data, out, n_train, epochs):
    trained = train_advgan(model, data.x_train[:n_train], data.y_train[:n_train], epochs=epochs, seed=0)
    trained.save("runs/bench-advgan", victim="cnn")
    atk = AdvGAN(generator="runs/bench-advgan")
    res = atk(model, data.x_test, data.y_test, ThreatModel("linf", eps=0.3))
    gen = atk.generator_model()
    with torch.no_grad():
        gen(data.x_test[:10])
        t = time.perf_counter()
        gen(data.x_test)
        per_image = (time.perf_counter() - t) / len(data.x_test)
    s = res.summary()
    out["advgan_linf_0.3"] = {
        "train_images": n_train, "epochs": epochs, "train_seconds": trained.history["seconds"],
        "train_success": trained.history["train_success"], "held_out_n": len(res),
        "held_out_success": s["success_rate_on_correct"], "seconds_per_image": per_image,
    }
    print(f"AdvGAN Linf 0.3: trained on {n_train} images x {epochs} epochs in {trained.history['seconds']:.1f} s; "
          f"held-out success {s['success_rate_on_correct']:.3f} on {len(res)} test images; "
          f"{per_image * 1e3:.3f} ms per image (generator forward, batch of {len(data.x_test)})")


def bench_substitute(model, data, out, n_seed, rounds, epochs):
    sub = train_substitute(model, data.x_test[:n_seed], rounds=rounds, epochs=epochs, model_kwargs={"width": 16}, seed=0)
    x, y = data.x_test[n_seed:], data.y_test[n_seed:]
    rep = transfer_rate(sub.model, model, x, y, ThreatModel("linf", eps=0.3), "pgd")
    agree = accuracy(sub.model, x, model(x).argmax(1).detach())
    out["substitute"] = {
        "seed_images": n_seed, "rounds": rounds, "label_queries": sub.queries, "agreement_with_victim": agree,
        **rep.summary(),
    }
    out["substitute"].pop("params", None)
    print(f"Papernot substitute: {sub.queries} label queries ({n_seed} seed images, {rounds} rounds), "
          f"agrees with the victim on {agree:.3f} of {len(x)} held-out images; Linf 0.3 transfer: "
          f"victim success {rep.victim_success:.3f}, transfer rate {rep.transfer_rate:.3f} "
          f"(surrogate success {rep.surrogate_success:.3f}, n={rep.n})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run")
    ap.add_argument("--only", default="square,hsj,advgan,substitute")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = load_data("mnist-sample")
    model = trained_model("cnn")
    for p in model.parameters():
        p.requires_grad_(False)
    parts = set(args.only.split(","))
    out: dict = {"victim": "cnn (mnist-sample)", "clean_accuracy": accuracy(model, data.x_test, data.y_test)}
    print(f"victim: cnn, clean test accuracy {out['clean_accuracy']:.3f}")
    if "square" in parts:
        n = 100 if args.quick else 500
        bench_square(model, data.x_test[:n], data.y_test[:n], out)
    if "hsj" in parts:
        n = 10 if args.quick else 20
        budgets = [250, 1000] if args.quick else [500, 1000, 2000, 5000]
        bench_hsj(model, data.x_test[:n], data.y_test[:n], out, budgets)
    if "advgan" in parts:
        bench_advgan(model, data, out, 1000 if args.quick else 4000, 3 if args.quick else 5)
    if "substitute" in parts:
        bench_substitute(model, data, out, 100 if args.quick else 150, 4 if args.quick else 6, 10)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
