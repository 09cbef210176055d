"""advlab against torchattacks, Foolbox, ART and adv-lib: same model, images and settings.

Every row is one attack at one budget (or a minimal-norm attack).  For each library that has
the attack, the rows are run interleaved in this one process (the library order rotates
between repeats), on the same trained model and the same test images, in batches of the same
size.  Nothing a library says about its own output is believed: for every returned batch this
script recomputes, with its own forward pass,

* invalid: outputs that are NaN, outside the box [0, 1] or outside the eps-ball (tolerance
  1e-6 absolute, 1e-5 relative); an invalid output counts as a failed attack (the clean image
  stands in for it);
* success: the prediction differs from the label, over the images the model classifies
  correctly; robust accuracy: accuracy on the (valid) outputs over all images;
* median L2 / Linf of the successful perturbations;
* claimed: where a library returns its own success flags (Foolbox), how many it claims that
  this check does not confirm.

Time is CPU time of this process (``time.process_time``), best of ``--repeat`` runs, with torch
on one thread; it includes each library's own input handling.  advlab stops each sample as soon
as it is adversarial (its default) and runs CPU passes in cache-sized chunks
(``advlab.victim.run_model``); the peers run every step on the batch they are given.  Another
process sharing the CPU's cache slows the big-batch libraries more than advlab: compare speed
on a quiet machine.

    make compare-deps   # the optional peers, with torch pinned
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare.py --models seed-mlp cnn --n 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import LIBRARIES, Setting, installed, supports  # noqa: E402

from advlab.chunking import calibrate, chunk_rows, time_passes  # noqa: E402
from advlab.data import load_data  # noqa: E402
from advlab.models import trained_model  # noqa: E402


def settings(eps_linf: float, eps_l2: float, cw_search: int, cw_iterations: int, early_stop: bool = True) -> list[Setting]:
    e, e2 = eps_linf, eps_l2
    cw = {"cw_search": cw_search, "cw_iterations": cw_iterations}
    es = {"early_stop": early_stop}
    return [
        Setting("FGSM Linf", "fgsm", "linf", e),
        Setting("BIM Linf 10", "bim", "linf", e, 10, 1.25 * e / 10, es),
        Setting("PGD Linf 40", "pgd", "linf", e, 40, 2.5 * e / 40, es),
        Setting("MI-FGSM Linf 10", "mi-fgsm", "linf", e, 10, e / 10, es),
        Setting("APGD-CE Linf 100", "apgd-ce", "linf", e, 100, extra=es),
        Setting("APGD-DLR Linf 100", "apgd-dlr", "linf", e, 100, extra=es),
        Setting("PGD L2 40", "pgd", "l2", e2, 40, 2.5 * e2 / 40, es),
        Setting("APGD-CE L2 100", "apgd-ce", "l2", e2, 100, extra=es),
        Setting("ensemble/AutoAttack Linf", "ensemble", "linf", e),
        Setting("DeepFool L2", "deepfool", "l2", None, 50),
        Setting("DeepFool Linf", "deepfool", "linf", None, 50),
        Setting("C&W L2", "cw-l2", "l2", None, extra=cw),
        Setting("DDN L2 100", "ddn", "l2", None, 100),
        Setting("FMN L2 100", "fmn", "l2", None, 100),
        Setting("FMN Linf 100", "fmn", "linf", None, 100),
    ]


def check(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: Any, s: Setting) -> dict[str, torch.Tensor]:
    """Recompute validity, predictions and norms of ``x_adv`` from scratch."""
    x_adv = torch.as_tensor(x_adv, dtype=x.dtype, device=x.device).reshape(x.shape)
    delta = (x_adv - x).flatten(1)
    finite = torch.isfinite(x_adv.flatten(1)).all(1)
    in_box = ((x_adv >= -1e-6) & (x_adv <= 1 + 1e-6)).flatten(1).all(1)
    l2, linf = delta.norm(dim=1), delta.abs().amax(1)
    size = linf if s.norm == "linf" else l2
    in_ball = torch.ones_like(finite) if s.eps is None else size <= s.eps * (1 + 1e-5) + 1e-6
    valid = finite & in_box & in_ball
    used = torch.where(valid.view(-1, *[1] * (x.dim() - 1)), x_adv, x)
    with torch.no_grad():
        pred = model(used).argmax(1)
    return {"valid": valid, "pred": pred, "l2": l2, "linf": linf}


def summarise(parts: list[dict[str, torch.Tensor]], correct: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    c = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    success = (c["pred"] != y) & correct & c["valid"]
    n_correct = int(correct.sum())
    out = {
        "robust_accuracy": float((c["pred"] == y).float().mean()),
        "success": float(success.sum()) / max(n_correct, 1),
        "invalid": int((~c["valid"]).sum()),
        "median_l2": float(c["l2"][success].median()) if success.any() else float("nan"),
        "median_linf": float(c["linf"][success].median()) if success.any() else float("nan"),
    }
    if "claimed" in c:
        out["claimed_unconfirmed"] = int((c["claimed"] & correct & ~success).sum())
    return out


class Counting(torch.nn.Module):
    """The model, counting the rows of every forward pass and of every gradient that flows back
    through its output (one backward pass per row and vector-Jacobian product)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forwards = self.backwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.forwards += x.shape[0]
        if out.requires_grad:
            out.register_hook(self._backward)
        return out

    def _backward(self, grad: torch.Tensor) -> None:
        self.backwards += grad.shape[0]


def run_library(lib: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting, batch_size: int,
                counter: Counting | None = None) -> tuple[float, list[dict]]:
    """Run one library on every batch; with ``counter`` (wrapping ``model``) the library is
    given the counting model instead, and its counts start from zero."""
    runner = LIBRARIES[lib][1]
    parts, seconds = [], 0.0
    attacked: torch.nn.Module = model
    if counter is not None:
        counter.forwards = counter.backwards = 0
        attacked = counter
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        start = time.process_time()
        out = runner(attacked, xb.clone(), yb.clone(), s)
        seconds += time.process_time() - start
        claimed = None
        if isinstance(out, tuple):
            out, claimed = out
        part = check(model, xb, yb, out.detach(), s)
        if claimed is not None:
            part["claimed"] = torch.as_tensor(claimed, dtype=torch.bool).reshape(-1)
        parts.append(part)
    return seconds, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["seed-mlp", "cnn"])
    ap.add_argument("--n", type=int, default=500, help="test images for the fixed-budget rows")
    ap.add_argument("--n-minimal", type=int, default=200, help="test images for the minimal-norm rows")
    ap.add_argument("--eps", type=float, default=0.1, help="Linf budget")
    ap.add_argument("--eps-l2", type=float, default=1.5, help="L2 budget")
    ap.add_argument("--cw-search", type=int, default=9, help="peers' C&W binary-search steps")
    ap.add_argument("--cw-iterations", type=int, default=1000, help="peers' C&W iterations per search step")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2, help="fixed-budget rows: best time of this many runs")
    ap.add_argument("--rows", nargs="*", default=None, help="row labels (substring match) to run")
    ap.add_argument("--libraries", nargs="*", default=list(LIBRARIES), choices=list(LIBRARIES))
    ap.add_argument("--exclude", nargs="*", default=[], metavar="LIB:ROW",
                    help="skip a library on rows whose label contains ROW (e.g. art:C&W: ART's C&W runs ~150x slower)")
    ap.add_argument("--cache", default=None, help="model cache folder (default: ADVLAB_CACHE)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-early-stop", action="store_true", help="advlab runs every step of the fixed-budget attacks (as the peers do)")
    ap.add_argument("--count-passes", action="store_true",
                    help="give every library a model that counts forward and backward rows (columns fwd/img, bwd/img)")
    args = ap.parse_args()
    for e in args.exclude:
        lib, sep, row = e.partition(":")
        if not sep or not row or lib not in LIBRARIES:
            ap.error(f"--exclude takes LIB:ROW with LIB one of {', '.join(LIBRARIES)}, got {e!r}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)

    libs = [lib for lib in args.libraries if installed(lib)]
    missing = [lib for lib in args.libraries if lib not in libs]
    print(f"libraries: {', '.join(libs)}" + (f" (not installed: {', '.join(missing)})" if missing else ""))
    data = load_data("mnist-sample")
    rows: list[dict[str, Any]] = []
    header = f"{'model':8} {'attack':26} {'library':12} {'seconds':>8} {'img/s':>7} {'robust':>6} {'success':>7} {'med L2':>7} {'med Linf':>8} {'invalid':>7} {'claimed?':>8}"
    header += " ÷floor ÷fastest-peer" + (f" {'fwd/img':>7} {'bwd/img':>7}" if args.count_passes else "")
    for model_name in args.models:
        model = trained_model(model_name, cache_dir=args.cache).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        counter = Counting(model).eval() if args.count_passes else None
        # the best batch shape for this model: one piece or chunks, whichever is faster here
        shape_times = calibrate(model, data.x_test[: min(args.batch_size, args.n)], repeats=3, keep=False)
        best_rows = min(shape_times, key=lambda r: shape_times[r])
        print(f"{model_name}: one forward+backward pass on {min(args.batch_size, args.n)} images: "
              + ", ".join(f"{'one piece' if r is None else f'chunks of {r}'} {t * 1000:.1f} ms" for r, t in shape_times.items())
              + f"; floor at {'one piece' if best_rows is None else f'chunks of {best_rows}'}"
              + f" (advlab's rule: {chunk_rows(model, data.x_test[: args.batch_size]) or 'one piece'})")
        print(f"\n{header}")
        for s in settings(args.eps, args.eps_l2, args.cw_search, args.cw_iterations, not args.no_early_stop):
            if args.rows and not any(r.lower() in s.label.lower() for r in args.rows):
                continue
            n = args.n_minimal if s.minimal else args.n
            x, y = data.x_test[:n], data.y_test[:n]
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            skip = {e.partition(":")[0] for e in args.exclude if e.partition(":")[2].lower() in s.label.lower()}
            here = [lib for lib in libs if supports(lib, s) and lib not in skip]
            repeat = 1 if s.minimal or s.kind == "ensemble" else args.repeat
            times: dict[str, list[float]] = {lib: [] for lib in here}
            results: dict[str, dict] = {}
            # the floor: exactly k forward+backward passes per image at the best batch shape
            k = 0 if s.minimal or s.kind == "ensemble" else s.steps
            floor: list[float] = []
            for r in range(repeat):
                order = here[r % len(here):] + here[: r % len(here)]
                if k:
                    floor.append(sum(time_passes(model, x[i : i + args.batch_size], best_rows, k) for i in range(0, n, args.batch_size)))
                for lib in order:
                    try:
                        seconds, parts = run_library(lib, model, x, y, s, args.batch_size, counter)
                    except Exception as exc:  # a peer failing is a finding, not a crash
                        results[lib] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                        continue
                    times[lib].append(seconds)
                    results[lib] = summarise(parts, correct, y)
                    if counter is not None:
                        results[lib]["forwards_per_image"] = counter.forwards / n
                        results[lib]["backwards_per_image"] = counter.backwards / n
            fastest_peer = min((min(times[lib]) for lib in here if lib != "advlab" and times[lib]), default=float("nan"))
            if k:
                print(f"{model_name:8} {s.label:26} {f'floor k={k}':12} {min(floor):8.2f}", flush=True)
                rows.append({"model": model_name, "attack": s.label, "library": "floor", "k": k, "seconds": min(floor)})
            for lib in here:
                res = results[lib]
                if "error" in res:
                    print(f"{model_name:8} {s.label:26} {lib:12} error: {res['error']}", flush=True)
                    rows.append({"model": model_name, "attack": s.label, "library": lib, **res})
                    continue
                sec = min(times[lib])
                claimed = str(res.get("claimed_unconfirmed", "-"))
                res["per_floor"] = sec / min(floor) if k else None
                res["per_fastest_peer"] = sec / fastest_peer
                ratios = f" {res['per_floor'] if k else float('nan'):6.2f} {res['per_fastest_peer']:13.2f}"
                print(
                    f"{model_name:8} {s.label:26} {lib:12} {sec:8.2f} {n / sec:7.0f} {res['robust_accuracy']:6.3f} {res['success']:7.3f} "
                    f"{res['median_l2']:7.3f} {res['median_linf']:8.4f} {res['invalid']:7d} {claimed:>8}" + ratios
                    + (f" {res['forwards_per_image']:7.1f} {res['backwards_per_image']:7.1f}" if counter else ""),
                    flush=True,
                )
                rows.append({"model": model_name, "attack": s.label, "library": lib, "n": n, "seconds": sec,
                             "eps": s.eps, "norm": s.norm, **res})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
