"""Strength runs for input-agnostic, physical and poisoning attacks (longer than the tests).

    OMP_NUM_THREADS=2 python benchmarks/physical.py --out runs/physical-bench [--only universal,patch,...]

Sections: ``universal`` (SGD and DeepFool UAPs, Linf 0.3 against the CNN, fooling rate on the
1,000 held-out test images), ``patch`` (targeted success against patch area, trained vs random
patch), ``eot`` (plain vs EOT attacks judged under fresh print-and-photograph transformations),
``badnets`` (5% poison), ``labelflip`` (clean accuracy against poison rate 0..50%), ``collision``
(feature-collision poisons, last-layer fine-tuning).  Writes ``results.json`` and PNG figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from advlab.attacks import EOT, available_attacks, get_attack, transformed_success
from advlab.attacks.patch import Patch, PatchAttack
from advlab.attacks.universal import Universal
from advlab.data import load_data
from advlab.models import DEFAULT_TRAINING, TrainConfig, build_model, predict, trained_model
from advlab.poisoning import (
    BadNets,
    FeatureCollision,
    LabelFlip,
    fine_tune,
    poison_report,
    train_poisoned,
)
from advlab.report.physical import curve_figure, image_grid, perturbation_figure
from advlab.threat import ThreatModel

SECTIONS = ("universal", "patch", "eot", "badnets", "labelflip", "collision")


def universal(out: Path, data, cnn) -> dict:
    res = {}
    tm = ThreatModel("linf", eps=0.3)
    for name, crafter, x_fit in [
        ("sgd", Universal(method="sgd", epochs=10, batch_size=32), data.x_train),
        ("deepfool", Universal(method="deepfool", epochs=3, fooling_goal=0.9), data.x_train[:500]),
    ]:
        t = time.time()
        uap = crafter.fit(cnn, x_fit, tm)
        ev = uap.evaluate(cnn, data.x_test, data.y_test)
        res[name] = {**ev, "fit_fooling_rate": uap.info["fit_fooling_rate"], "fit_images": len(x_fit), "seconds": time.time() - t}
        uap.save(out / f"uap-{name}")
        perturbation_figure(uap.delta, out / f"uap-{name}.png", title=f"universal perturbation ({name}, Linf 0.3): fooling {ev['fooling_rate']:.0%}")
        print(name, res[name], flush=True)
    return res


def patch(out: Path, data, cnn, target: int = 3, sides=(6, 9, 12, 14), epochs: int = 8) -> dict:
    rows = []
    examples = []
    for side in sides:
        t = time.time()
        p = PatchAttack(target=target, size=side, epochs=epochs, loss="margin").fit(cnn, data.x_train, data.y_train)
        ev = p.evaluate(cnn, data.x_test, data.y_test, draws=4)
        rnd = Patch.random(side, target, seed=1).evaluate(cnn, data.x_test, data.y_test, draws=4)
        rows.append({"side": side, "area": ev["area"], "success": ev["success"], "random_patch_success": rnd["success"], "seconds": time.time() - t})
        p.save(out / f"patch-{side}")
        examples.append(p.apply(data.x_test[:4], seed=7))
        print(rows[-1], flush=True)
    curve_figure([r["area"] for r in rows], {"trained patch": [r["success"] for r in rows], "random patch": [r["random_patch_success"] for r in rows]},
                 out / "patch_success_vs_area.png", xlabel="patch area (% of image)", ylabel=f"classified as {target} (%)", percent_x=True,
                 title=f"adversarial patch, target {target}, held-out test images, random placement")
    image_grid(torch.cat(examples), [f"side {s}" for s in sides for _ in range(4)], out / "patch_examples.png", columns=4)
    return {"target": target, "epochs": epochs, "rows": rows}


def eot(out: Path, data, cnn, n: int = 100) -> dict:
    x, y = data.x_test[:n], data.y_test[:n]
    res = {}
    draws = 20
    runs = [("masked frame:4", get_attack("masked", mask="frame:4", steps=50, step_size=0.1), ThreatModel("linf", eps=None), True)]
    if "pgd" in available_attacks():
        for eps, early in [(0.3, True), (0.3, False), (0.15, False)]:
            name = f"pgd linf {eps} early_stop={early}"
            runs.append((name, get_attack("pgd", steps=50, early_stop=early), ThreatModel("linf", eps=eps), False))
    for name, attack, threat, is_masked in runs:
        t = time.time()
        plain = attack(cnn, x, y, threat)
        if is_masked:
            robust = attack.replace(eot="print-photo", eot_samples=8)(cnn, x, y, threat)
        else:
            robust = attack(EOT(cnn, "print-photo", samples=8, seed=0), x, y, threat)
        res[name] = {
            "plain_success_no_transform": plain.success_rate,
            "plain_success_under_transforms": float(transformed_success(cnn, plain.x_adv, y, "print-photo", draws=draws).mean()),
            "eot_success_no_transform": float((predict(cnn, robust.x_adv) != y).float().mean()),
            "eot_success_under_transforms": float(transformed_success(cnn, robust.x_adv, y, "print-photo", draws=draws).mean()),
            "n": n,
            "draws": draws,
            "seconds": time.time() - t,
        }
        print(name, res[name], flush=True)
    return res


def badnets(out: Path, data, cnn) -> dict:
    res = {}
    for name, ref in [("cnn", cnn), ("seed-mlp", trained_model("seed-mlp"))]:
        pdata = BadNets(target=0, rate=0.05).poison(data)
        model, rep = train_poisoned(pdata, lambda n=name: build_model(n), TrainConfig(**DEFAULT_TRAINING[name]), reference=ref)
        res[name] = rep.to_dict()
        xs = data.x_test[data.y_test != 0][:8]
        xt = pdata.trigger(xs)
        image_grid(xt, [f"pred {int(v)}" for v in predict(model, xt)], out / f"badnets_{name}.png", suptitle="triggered test images (target 0)")
        print(name, res[name], flush=True)
    return res


def labelflip(out: Path, data, rates=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5)) -> dict:
    res = {}
    for kind, kw in [("random", {}), ("targeted 7->1", {"source": 7, "target": 1})]:
        reps = []
        for r in rates:
            pdata = LabelFlip(rate=r, **kw).poison(data)
            _, rep = train_poisoned(pdata, lambda: build_model("seed-mlp"), TrainConfig(**DEFAULT_TRAINING["seed-mlp"]))
            reps.append(rep.to_dict())
            print(kind, reps[-1], flush=True)
        res[kind] = reps
    series = {"random flips: clean accuracy": [r["clean_accuracy"] for r in res["random"]],
              "7->1 flips: clean accuracy": [r["clean_accuracy"] for r in res["targeted 7->1"]],
              "7->1 flips: accuracy on 7s": [r["target_class_accuracy"] for r in res["targeted 7->1"]]}
    curve_figure(list(rates), series, out / "label_flip_curve.png", xlabel="poison rate (% of eligible rows)", ylabel="test accuracy (%)",
                 percent_x=True, title="label flipping, seed MLP on mnist-sample")
    return res


def collision(out: Path, data, cnn, targets: int = 10) -> dict:
    rows = []
    for i in range(targets):
        if int(predict(cnn, data.x_test[i : i + 1])) != int(data.y_test[i]):
            continue  # only targets the clean model gets right
        fc = FeatureCollision(target_index=i, base_class=(int(data.y_test[i]) + 1) % 10)
        pdata = fc.poison(cnn, data)
        rep = poison_report(fine_tune(cnn, pdata, TrainConfig(epochs=10)), pdata, cnn)
        rows.append({"target_index": i, **rep.to_dict(), "poison_distance_l2": pdata.extra["poison_distance_l2"]})
        print(rows[-1], flush=True)
        if len(rows) == 1:
            sel = pdata.poisoned.nonzero().squeeze(1)[:7]
            image_grid(torch.cat([data.x_test[i : i + 1], pdata.dataset.x_train[sel]]), ["target"] + [f"poison (label {fc.base_class})"] * 7,
                       out / "collision_poisons.png")
    return {"rows": rows, "success_rate": sum(r["attack_success"] for r in rows) / max(1, len(rows))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/physical-bench"))
    ap.add_argument("--only", default=",".join(SECTIONS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data("mnist-sample")
    cnn = trained_model("cnn")
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for section in args.only.split(","):
        t = time.time()
        if section in ("universal", "patch", "eot", "collision"):
            results[section] = globals()[section](args.out, data, cnn)
        elif section == "badnets":
            results[section] = badnets(args.out, data, cnn)
        elif section == "labelflip":
            results[section] = labelflip(args.out, data)
        else:
            raise SystemExit(f"unknown section {section!r}; expected {SECTIONS}")
        results[section + "_seconds"] = time.time() - t
        path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
