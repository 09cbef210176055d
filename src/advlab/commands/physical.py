"""``advlab universal``, ``advlab patch`` and ``advlab apply-patch``: input-agnostic attacks
crafted once, saved as artifacts, and applied to any images later."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from advlab.commands._common import console, load_victim, progress_bar, user_errors


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command()
    def universal(
        model: str = typer.Option("cnn", "--model", help="Saved model folder or architecture name (reference model)."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset: crafted on its train split, measured on its test split."),
        norm: str = typer.Option("linf", help="linf or l2."),
        eps: float = typer.Option(0.3, help="Radius of the perturbation."),
        method: str = typer.Option("sgd", help="sgd (Shafahi et al. 2020) or deepfool (Moosavi-Dezfooli et al. 2017)."),
        target: int = typer.Option(None, help="Target class (targeted perturbation, sgd only)."),
        epochs: int = typer.Option(10, help="Passes over the crafting images."),
        batch_size: int = typer.Option(32, help="Minibatch size (sgd)."),
        step_size: float = typer.Option(None, help="Step size (default eps / 10, cosine decay)."),
        fit_samples: int = typer.Option(None, help="Craft on the first N training images only."),
        seed: int = typer.Option(0, help="Random seed."),
        out: Path = typer.Option(..., "--out", help="Folder for perturbation.{png,json,safetensors}, figures, results.json."),
    ) -> None:
        """Craft a universal adversarial perturbation and measure its fooling rate on held-out images."""
        with user_errors():
            from advlab.attacks.universal import Universal
            from advlab.data import load_data
            from advlab.models import predict
            from advlab.report.physical import image_grid, perturbation_figure
            from advlab.threat import ThreatModel

            ds = load_data(data)
            net = load_victim(model, data)
            threat = ThreatModel(norm, eps=eps, targeted=target is not None)
            crafter = Universal(method=method, epochs=epochs, batch_size=batch_size, step_size=step_size, seed=seed)
            x_fit = ds.x_train[:fit_samples]
            with progress_bar(f"universal {method}", epochs) as advance:
                uap = crafter.fit(net, x_fit, threat, target=target, progress=advance)
            held_out = uap.evaluate(net, ds.x_test, ds.y_test)
            uap.save(out)
            perturbation_figure(uap.delta, out / "universal.png", title=f"universal perturbation ({threat.describe()})")
            xs = ds.x_test[:8]
            adv = uap.apply(xs)
            before, after = predict(net, xs), predict(net, adv)
            titles = [f"{int(a)} -> {int(b)}" for a, b in zip(before, after, strict=True)]
            image_grid(adv, titles, out / "examples.png", suptitle="test images with the perturbation (clean -> perturbed prediction)")
            results = {"threat": threat.to_dict(), "method": method, "fit_images": len(x_fit), "fit": uap.info, "held_out": held_out}
            (out / "results.json").write_text(json.dumps(results, indent=2))
            c = console()
            c.print(f"fooling rate on {int(held_out['n'])} held-out test images: [bold]{held_out['fooling_rate']:.1%}[/]"
                    f"  (crafting set {uap.info['fit_fooling_rate']:.1%}; accuracy {held_out['clean_accuracy']:.1%} -> {held_out['perturbed_accuracy']:.1%})")
            if target is not None:
                c.print(f"sent to target {target}: {held_out['target_success']:.1%}")
            c.print(f"[green]saved[/] {out}")

    @app.command()
    def patch(
        target: int = typer.Option(..., help="The class the patch should send every image to."),
        size: list[float] = typer.Option([12], help="Patch side in pixels (>= 1) or share of the image area (< 1); repeat for a sweep."),
        model: str = typer.Option("cnn", "--model", help="Saved model folder or architecture name."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset: trained on its train split, measured on its test split."),
        shape: str = typer.Option("square", help="square or circle."),
        epochs: int = typer.Option(10, help="Passes over the training images."),
        batch_size: int = typer.Option(64, help="Images per step."),
        step_size: float = typer.Option(0.05, help="Adam learning rate."),
        loss: str = typer.Option("margin", help="ce or margin."),
        rotation: float = typer.Option(20.0, help="Random rotation range in degrees."),
        draws: int = typer.Option(4, help="Random placements per test image when measuring."),
        seed: int = typer.Option(0, help="Random seed."),
        out: Path = typer.Option(..., "--out", help="Output folder (one patch folder per size)."),
    ) -> None:
        """Train adversarial patches (Brown et al. 2017) and measure targeted success against patch area."""
        with user_errors():
            from advlab.attacks.patch import Patch, PatchAttack
            from advlab.data import load_data
            from advlab.report.physical import curve_figure, image_grid

            ds = load_data(data)
            net = load_victim(model, data)
            rows: list[dict] = []
            patched, titles = [], []
            for s in size:
                side_or_area: float | int = int(s) if s >= 1 else float(s)
                attack = PatchAttack(target=target, size=side_or_area, shape=shape, epochs=epochs, batch_size=batch_size,
                                     step_size=step_size, loss=loss, rotation=rotation, seed=seed)
                with progress_bar(f"patch size {s:g}", epochs) as advance:
                    trained = attack.fit(net, ds.x_train, ds.y_train, progress=advance)
                folder = out if len(size) == 1 else out / f"size-{trained.side}"
                trained.save(folder)
                res = trained.evaluate(net, ds.x_test, ds.y_test, draws=draws)
                rnd = Patch.random(trained.side, target, channels=ds.x_test.shape[1], seed=seed + 1, shape=shape).evaluate(net, ds.x_test, ds.y_test, draws=draws)
                rows.append({"side": trained.side, "area": res["area"], "success": res["success"], "random_patch_success": rnd["success"], "folder": str(folder)})
                console().print(f"side {trained.side} (area {res['area']:.1%}): target {target} success [bold]{res['success']:.1%}[/], random patch {rnd['success']:.1%}")
                patched.append(trained.apply(ds.x_test[:4], seed=seed))
                titles += [f"side {trained.side}"] * 4
            import torch

            image_grid(torch.cat(patched), titles, out / "patched_examples.png", columns=4, suptitle=f"patches for target {target} at random places")
            curve_figure([r["area"] for r in rows], {"trained patch": [r["success"] for r in rows], "random patch": [r["random_patch_success"] for r in rows]},
                         out / "success_vs_area.png", xlabel="patch area (% of image)", ylabel=f"classified as {target} (%)", percent_x=True,
                         title="adversarial patch: targeted success on held-out images")
            (out / "results.json").write_text(json.dumps({"target": target, "model": model, "data": data, "patches": rows}, indent=2))
            console().print(f"[green]saved[/] {out}")

    @app.command("apply-patch")
    def apply_patch(
        patch_dir: Path = typer.Argument(..., help="A patch folder written by `advlab patch` (patch.json + patch.png)."),
        images: Path = typer.Option(None, help="A .npy file of images (N, C, H, W) in [0, 1]; default: the test split of --data."),
        data: str = typer.Option("mnist-sample", "--data", help="Dataset whose test split is used when --images is not given."),
        model: str = typer.Option(None, "--model", help="Also measure targeted success on this model."),
        location: str = typer.Option(None, help="ROW,COL of the top-left corner (default: random placement)."),
        rotation: float = typer.Option(0.0, help="Rotation in degrees (with --location)."),
        scale: float = typer.Option(1.0, help="Scale (with --location)."),
        limit: int = typer.Option(None, help="Only the first N images."),
        seed: int = typer.Option(0, help="Seed of the random placement."),
        out: Path = typer.Option(..., "--out", help="Output .npy file of patched images (a PNG preview is written beside it)."),
    ) -> None:
        """Paste a saved patch onto images (no attack object needed)."""
        with user_errors():
            import numpy as np
            import torch

            from advlab.attacks.patch import Patch
            from advlab.models import predict
            from advlab.report.physical import image_grid

            p = Patch.load(patch_dir)
            labels = None
            if images is not None:
                x = torch.from_numpy(np.load(images, allow_pickle=False))
            else:
                from advlab.data import load_data

                ds = load_data(data)
                x, labels = ds.x_test, ds.y_test
            x, labels = x[:limit], (labels[:limit] if labels is not None else None)
            loc = tuple(int(v) for v in location.split(",")) if location else None
            if loc is not None and len(loc) != 2:
                raise ValueError("--location must be ROW,COL")
            xp = p.apply(x.float(), seed=seed, location=loc, rotation=rotation, scale=scale)  # type: ignore[arg-type]
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, xp.numpy())
            titles = [f"#{i}" for i in range(min(8, len(xp)))]
            summary: dict = {"patch": str(patch_dir), "target": p.target, "images": len(xp), "out": str(out)}
            if model is not None:
                net = load_victim(model, data)
                pred = predict(net, xp)
                titles = [f"pred {int(v)}" for v in pred[:8]]
                keep = labels != p.target if labels is not None else torch.ones(len(xp), dtype=torch.bool)
                summary["target_success"] = float((pred[keep] == p.target).float().mean())
                console().print(f"classified as target {p.target}: [bold]{summary['target_success']:.1%}[/] of {int(keep.sum())} images")
            image_grid(xp[:8], titles, out.with_suffix(".png"), suptitle=f"patch for target {p.target}")
            out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
            console().print(f"[green]saved[/] {out}")
