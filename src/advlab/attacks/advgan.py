"""AdvGAN: a generator trained once against the victim makes adversarial examples in one pass.

Xiao, Li, Zhu, He, Liu, Song, "Generating Adversarial Examples with Adversarial Networks",
IJCAI 2018, arXiv:1801.02610.

Gray box: training uses the victim's gradients (the paper's semi-white-box setting); after
that the generator is saved (safetensors + JSON) and attacks new inputs with one forward
pass, without any access to the victim.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.attacks.registry import register
from advlab.losses import margin
from advlab.progress import track
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError, as_input_tensor, as_label_tensor
from advlab.victim import Victim, frozen

__all__ = ["Generator", "Discriminator", "AdvGANTraining", "train_advgan", "save_generator", "load_generator", "AdvGAN"]

log = logging.getLogger(__name__)
FORMAT = "advlab-advgan"


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """The paper's image-to-image generator, scaled down: two stride-2 convolutions,
    ``res_blocks`` residual blocks, two transposed convolutions. ``forward`` returns the
    perturbation ``eps * tanh(h)``, inside the Linf ball of radius ``eps`` by construction."""

    def __init__(self, in_channels: int = 1, width: int = 8, res_blocks: int = 4, eps: float = 0.3) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "width": width, "res_blocks": res_blocks, "eps": eps}
        self.eps = eps
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.InstanceNorm2d(w, affine=True), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False), nn.InstanceNorm2d(4 * w, affine=True), nn.ReLU(),
            *[_Residual(4 * w) for _ in range(res_blocks)],
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.InstanceNorm2d(w, affine=True), nn.ReLU(),
            nn.Conv2d(w, in_channels, 3, padding=1),
        )

    def forward(self, x: Tensor, eps: float | None = None) -> Tensor:
        h = self.net(x)
        if h.shape[-2:] != x.shape[-2:]:
            h = F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (self.eps if eps is None else eps) * torch.tanh(h)


class Discriminator(nn.Module):
    """C8-C16-C32 convolutions (stride 2, leaky ReLU) and a linear score (real vs adversarial)."""

    def __init__(self, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * w, affine=True), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(4 * w, affine=True), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


@dataclass
class AdvGANTraining:
    """A trained AdvGAN: the generator, the discriminator and the training record."""

    generator: Generator
    discriminator: Discriminator
    history: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path, **extra: Any) -> Path:
        return save_generator(self.generator, directory, discriminator=self.discriminator, history=self.history, **extra)


def train_advgan(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    eps: float = 0.3,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    alpha: float = 1.0,
    beta: float = 1.0,
    c: float = 6.0,
    kappa: float = 5.0,
    width: int = 8,
    res_blocks: int = 4,
    box: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    progress: bool = True,
) -> AdvGANTraining:
    """Train an AdvGAN generator (and discriminator) against ``model`` (untargeted).

    Xiao et al. 2018, arXiv:1801.02610: minimise ``L_adv + alpha * L_GAN + beta * L_hinge``
    over the generator, where ``L_adv = max(z_y - max_{j != y} z_j, -kappa)`` (C&W margin on
    the victim's logits), ``L_GAN`` is the least-squares GAN loss against the discriminator,
    and ``L_hinge = max(0, ||G(x)||_2 - c)`` softly bounds the perturbation's L2 size. The
    Linf bound ``eps`` is exact: the generator outputs ``eps * tanh(h)``.

    Defaults for 28-pixel MNIST: ``c = 6`` (a full Linf-0.3 perturbation has L2 norm 8.4)
    and ``kappa = 5``: a margin beyond the boundary makes the generator's examples hold on
    images it never saw (``kappa = 0``, the paper's usual choice, stops pushing at the
    boundary of the training images).

    Returns an :class:`AdvGANTraining`; its ``history`` records losses per epoch, training
    success, seconds and the victim's forward/backward passes.  ``progress`` shows the
    training's progress (:mod:`advlab.progress`).
    """
    x_t = as_input_tensor(x, box)
    if x_t.dim() != 4:
        raise InputError(f"AdvGAN needs image inputs (N, C, H, W), got shape {tuple(x_t.shape)}")
    y_t = as_label_tensor(y, x_t.shape[0], device=x_t.device)
    device = next(iter(model.parameters()), torch.empty(0)).device
    torch.manual_seed(seed)
    gen = Generator(x_t.shape[1], width, res_blocks, eps).to(device)
    disc = Discriminator(x_t.shape[1], width).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    n = x_t.shape[0]
    history: dict[str, Any] = {"epochs": [], "settings": {
        "eps": eps, "epochs": epochs, "batch_size": batch_size, "lr": lr, "alpha": alpha, "beta": beta,
        "c": c, "kappa": kappa, "seed": seed, "train_size": n,
    }}
    passes = 0
    start = time.perf_counter()
    steps = epochs * -(-n // batch_size)
    with frozen(model), track(None if progress else False, f"AdvGAN training ({epochs} epochs)", steps) as advance:
        for epoch in range(epochs):
            gen.train()
            disc.train()
            totals = {"adv": 0.0, "gan": 0.0, "hinge": 0.0, "disc": 0.0, "fooled": 0.0}
            for idx in torch.randperm(n, generator=g).split(batch_size):
                xb, yb = x_t[idx].to(device), y_t[idx].to(device)
                x_adv = (xb + gen(xb)).clamp(box[0], box[1])
                # discriminator: real -> 1, adversarial -> 0 (least squares)
                d_loss = (disc(xb) - 1).pow(2).mean() + disc(x_adv.detach()).pow(2).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                # generator
                logits = model(x_adv)
                passes += len(idx)
                adv_loss = (-margin(logits, yb)).clamp_min(-kappa).mean()
                gan_loss = (disc(x_adv) - 1).pow(2).mean()
                hinge = ((x_adv - xb).reshape(len(idx), -1).norm(dim=1) - c).clamp_min(0).mean()
                loss = adv_loss + alpha * gan_loss + beta * hinge
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                totals["adv"] += float(adv_loss.detach()) * len(idx)
                totals["gan"] += float(gan_loss.detach()) * len(idx)
                totals["hinge"] += float(hinge.detach()) * len(idx)
                totals["disc"] += float(d_loss.detach()) * len(idx)
                totals["fooled"] += float((logits.argmax(1) != yb).sum())
                advance(1)
            record = {k: v / n for k, v in totals.items()}
            history["epochs"].append(record)
            log.info("advgan epoch %d: %s", epoch + 1, record)
    gen.eval()
    disc.eval()
    history["seconds"] = time.perf_counter() - start
    history["victim_forwards"] = passes
    history["victim_backwards"] = passes
    history["train_success"] = history["epochs"][-1]["fooled"] if history["epochs"] else 0.0
    return AdvGANTraining(gen, disc, history)


def save_generator(
    generator: Generator, directory: str | Path, *, discriminator: Discriminator | None = None, **extra: Any
) -> Path:
    """Write ``generator.safetensors`` (and ``discriminator.safetensors``) plus ``config.json``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}, str(d / "generator.safetensors"))
    config: dict[str, Any] = {"format": FORMAT, "format_version": 1, "generator": generator.config}
    if discriminator is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in discriminator.state_dict().items()}, str(d / "discriminator.safetensors"))
        config["discriminator"] = {"in_channels": generator.config["in_channels"], "width": generator.config["width"]}
    config.update(extra)
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return d


def load_generator(directory: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator saved by :func:`save_generator` (JSON config, safetensors weights)."""
    d = Path(directory)
    cfg_path, weights = d / "config.json", d / "generator.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise InputError(f"{d} is not a saved AdvGAN generator (needs config.json and generator.safetensors)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT:
        raise InputError(f"{cfg_path} is not an AdvGAN config (format {cfg.get('format')!r})")
    gen = Generator(**cfg["generator"])
    gen.load_state_dict(load_file(str(weights), device=str(device)))
    return gen.to(device).eval()


@register
@dataclass(frozen=True)
class AdvGAN(Attack):
    """AdvGAN (gray box, generative): ``x_adv = clip(x + G(x))`` with a trained generator.

    Xiao et al. 2018, arXiv:1801.02610. Train the generator once with
    :func:`train_advgan` and save it (:meth:`AdvGANTraining.save`); this attack then needs no
    access to the victim: one generator forward pass per batch, zero victim queries. The
    perturbation is ``eps * tanh(h)`` with the threat model's Linf ``eps``.

    Parameters
    ----------
    generator: a saved generator folder or a :class:`Generator`.

    Examples
    --------
    >>> trained = train_advgan(model, x_train, y_train, eps=0.3); trained.save("runs/advgan")  # doctest: +SKIP
    >>> res = AdvGAN(generator="runs/advgan")(model, x_test, y_test, ThreatModel("linf", eps=0.3))  # doctest: +SKIP
    """

    name = "advgan"
    norms = ("linf",)
    paper = "Xiao et al. 2018, Generating Adversarial Examples with Adversarial Networks, arXiv:1801.02610"
    knowledge = "gray"
    family = "generative"
    uses_gradients = False
    supports_targeted = False

    generator: Any = None

    def params(self) -> dict[str, Any]:
        p = super().params()
        if isinstance(self.generator, nn.Module):
            p["generator"] = f"<{type(self.generator).__name__}>"
        elif self.generator is not None:
            p["generator"] = str(self.generator)
        return p

    def generator_model(self, device: torch.device | str = "cpu") -> Generator:
        if isinstance(self.generator, Generator):
            return self.generator.to(device)
        if isinstance(self.generator, (str, Path)):
            return load_generator(self.generator, device)
        raise AttackError("advgan needs generator=: a folder written by train_advgan(...).save(folder), or a Generator")

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        gen = self.generator_model(batch.x.device)
        with torch.no_grad():
            return threat.clip(batch.x + gen(batch.x, eps=threat.eps))
