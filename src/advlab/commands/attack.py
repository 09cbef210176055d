"""``advlab attack NAME`` and ``advlab list attacks``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from advlab.commands._common import HELP, console, load_inputs, progress_bar, user_errors


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["steps=10", "loss=dlr", 'attacks=[{"name": "apgd"}]']`` -> a dict; values are read as
    JSON when they parse (numbers, true/false, lists, objects), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--param {item!r}: expected key=value")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def register(app: typer.Typer, list_app: typer.Typer) -> None:
    @app.command("attack")
    def attack_cmd(
        name: str = typer.Argument(..., help="Attack name (see `advlab list attacks`)."),
        model: str = typer.Option(..., "--model", help=HELP["model"]),
        data: str = typer.Option("mnist-sample", "--data", help=HELP["data"] + " The attack runs on its test split (all of a file)."),
        weights: str = typer.Option(None, "--weights", help=HELP["weights"]),
        mean: str = typer.Option(None, "--mean", help=HELP["mean"]),
        std: str = typer.Option(None, "--std", help=HELP["std"]),
        box: str = typer.Option(None, "--box", help=HELP["box"]),
        norm: str = typer.Option("linf", "--norm", help="linf, l2, l1 or l0."),
        eps: float = typer.Option(None, "--eps", help="Perturbation budget; omit for a minimal-norm attack."),
        targeted: bool = typer.Option(False, "--targeted", help="Aim for chosen target classes."),
        targets: str = typer.Option("random", "--targets", help="Target rule when --targeted: random, next, least-likely."),
        n: int = typer.Option(None, "--n", help="Number of test images (default: all of the test split, at most 1000)."),
        steps: int = typer.Option(None, "--steps", help="Gradient steps (attacks that have them)."),
        step_size: float = typer.Option(None, "--step-size", help="Step size in the threat model's norm."),
        restarts: int = typer.Option(None, "--restarts", help="Random restarts."),
        loss: str = typer.Option(None, "--loss", help="Objective: ce, margin (cw) or dlr."),
        seed: int = typer.Option(0, "--seed", help="Random seed of the attack."),
        param: list[str] = typer.Option([], "--param", "-p", help="Any hyperparameter as key=value (JSON values), repeatable."),
        batch_size: int = typer.Option(500, "--batch-size", help="Images per batch (results do not depend on it)."),
        device: str = typer.Option(None, "--device", help="cpu or cuda (default: where the model is)."),
        out: Path = typer.Option(None, "--out", help="Folder for adv.npz, adv.json (AttackResult.save) and summary.json."),
    ) -> None:
        """Run an attack on a model's test images and print success, accuracy, norms and speed."""
        with user_errors():
            from advlab.attacks import get_attack
            from advlab.threat import ThreatModel
            from advlab.validation import InputError

            params = parse_params(param)
            options = {"steps": steps, "step_size": step_size, "restarts": restarts, "loss": loss}
            params.update({k: v for k, v in options.items() if v is not None})
            params["seed"] = seed
            atk = get_attack(name, **params)
            if eps is not None and eps == float("inf") and not atk.minimal:
                raise InputError(
                    f"--eps inf is an unbounded budget, which only minimal-norm attacks take ({', '.join(_minimal_names())}); "
                    f"{atk.name} is a fixed-budget attack: give a finite --eps, or omit --eps with a minimal-norm attack"
                )
            threat = ThreatModel(norm, eps=eps, targeted=targeted)
            atk.check_threat(threat)
            if n is not None and n < 1:
                raise InputError(f"--n must be positive, got {n}")
            resolved, dataset = load_inputs(model, data, weights=weights, mean=mean, std=std, box=box)
            available = len(dataset.x_test)
            if n is not None and n > available:
                raise InputError(f"--n {n}: the test split of {data} holds {available} images; use --n {available} or less (or a larger dataset, e.g. --data mnist)")
            count = n if n is not None else min(available, 1000)
            x, y = dataset.x_test[:count], dataset.y_test[:count]
            net = resolved.module
            if resolved.preprocessing:
                console().print(resolved.preprocessing, style="dim", markup=False)
            if device is not None:
                net = net.to(device)
            chosen = targets if targeted else None
            if atk.knowledge == "white":
                with progress_bar(f"{atk.name} on {len(x)} images", total=len(x)) as advance:
                    result = atk(net, x, y, threat, targets=chosen, batch_size=batch_size, device=device, progress=advance)
            else:  # query-based: advlab.attack counts the progress in queries
                from advlab.api import attack as run_attack

                result = run_attack(atk, net, x, y, threat, targets=chosen, batch_size=batch_size, device=device)
            summary = result.summary()
            summary.update({"model": resolved.name, "data": data, "preprocessing": resolved.preprocessing})
            console().print(summary_table(summary, threat.describe()))
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                result.save(out / "adv.npz")
                (out / "summary.json").write_text(json.dumps(summary, indent=2))
                console().print(f"[green]wrote[/] {out / 'adv.npz'}, {out / 'summary.json'}")

    @list_app.command("attacks")
    def list_attacks() -> None:
        """Attacks: name, norms, targeted, family and paper."""
        from rich import box
        from rich.table import Table
        from rich.text import Text

        from advlab.attacks import available_attacks

        attacks = available_attacks()
        out = console()
        # The name is never cut and nothing is dropped: below 120 columns the paper goes on a
        # second line under the family, and long cells wrap at word boundaries.
        narrow = out.width < 120
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("name", no_wrap=True, min_width=max(len(k) for k in attacks))
        table.add_column("norms", min_width=7)
        table.add_column("targeted", no_wrap=True)
        table.add_column("family / paper" if narrow else "family", ratio=1 if narrow else None, overflow="fold")
        if not narrow:
            table.add_column("paper")
        for key, cls in attacks.items():
            kind = "yes" if cls.supports_targeted and cls.supports_untargeted else "only" if cls.supports_targeted else "no"
            family = cls.family + (", minimal" if cls.minimal else "") + ("" if cls.knowledge == "white" else f", {cls.knowledge} box")
            paper = short_paper(cls.paper)
            cells = [Text(family + "\n") + Text(paper, style="dim")] if narrow else [Text(family), Text(paper)]
            table.add_row(key, " ".join(cls.norms), kind, *cells)
        out.print(table)


def _minimal_names() -> list[str]:
    from advlab.attacks import available_attacks

    return [k for k, c in available_attacks().items() if c.minimal]


def short_paper(paper: str) -> str:
    """``"Madry et al. 2017, Towards ..., arXiv:1706.06083"`` -> ``"Madry et al. 2017, arXiv:1706.06083"``."""
    parts = [p.strip() for p in paper.split(",")]
    arxiv = [p for p in parts if "arXiv" in p]
    head = parts[0] if parts else ""
    return ", ".join([head] + [a for a in arxiv if a != head]) if arxiv else head


def summary_table(s: dict[str, Any], threat: str) -> Any:
    """The CLI's summary of one attack run (a rich Table)."""
    from rich.table import Table

    def num(v: Any, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    table = Table(title=f"{s['attack']}: {threat}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    norm = s["threat"]["norm"]
    rows = [
        ("images", str(s["n"])),
        ("clean accuracy", num(s["clean_accuracy"])),
        ("robust accuracy", num(s["robust_accuracy"])),
        ("success rate", num(s["success_rate"])),
        ("success on correct", num(s["success_rate_on_correct"])),
        (f"median {norm} (successful)", num(s["median_norm"][norm])),
        ("median l2 / linf", f"{num(s['median_norm']['l2'])} / {num(s['median_norm']['linf'])}"),
        ("mean forward / backward passes", f"{s['mean_forwards']:.1f} / {s['mean_backwards']:.1f}"),
        ("time", f"{s['seconds']:.2f} s"),
        ("images/s", num(s["images_per_second"], ".1f")),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


__all__ = ["register", "parse_params", "summary_table", "short_paper"]
