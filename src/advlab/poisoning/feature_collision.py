"""Clean-label poisoning by feature collision (Shafahi et al. 2018, "Poison frogs!",
arXiv:1804.00792).

The attacker wants one test instance (the *target*, of class A) classified as class B
without touching any label.  It takes base images of class B and nudges them until their
features (the network's penultimate layer) collide with the target's while the images stay
close to the bases:

``p = argmin_p ||f(p) - f(t)||^2 + beta ||p - b||^2``

solved by forward-backward splitting (a gradient step on the feature term, then the closed
form proximal step of the image term).  The poisons keep their correct label B; a model
fine-tuned on them learns to put the target's features on B's side.  With ``watermark`` > 0
a faint copy of the target is blended into each base first (the paper's "watermarking",
needed when the whole network is retrained).

Example
-------
>>> fc = FeatureCollision(target_index=0, base_class=4, poisons=20)
>>> data = fc.poison(model, load_data("mnist-sample"))
>>> tuned = fine_tune(model, data, TrainConfig(epochs=5))
>>> poison_report(tuned, data).attack_success
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advlab.data.dataset import Dataset
from advlab.models.training import TrainConfig, train_model
from advlab.poisoning.base import PoisonedData, choose_rows
from advlab.victim import frozen

__all__ = ["FeatureCollision", "penultimate", "fine_tune"]


def _last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("feature collision needs a model whose last layer is an nn.Linear (features = its input)")
    return layers[-1]


def penultimate(model: nn.Module, x: Tensor) -> Tensor:
    """The input of the model's last linear layer (its feature representation), with graph."""
    store: list[Tensor] = []
    handle = _last_linear(model).register_forward_hook(lambda _m, inp, _out: store.append(inp[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return store[0]


@dataclass(frozen=True)
class FeatureCollision:
    """Craft clean-label poisons whose features collide with one target instance.

    Parameters
    ----------
    target_index:
        Index in the *test* split of the instance to be misclassified.
    base_class:
        The class B it should be classified as (the poisons' true and given label).
    poisons:
        Number of poison images (bases drawn from the training rows of ``base_class``).
    beta:
        Weight of the image-similarity term (the paper's 0.25, without its rescaling for
        299x299 colour images).  On 28x28 digits against the small CNN the poisons then move
        far from their bases (mean L2 about 7 on images of norm about 9) and succeed on
        every target tried; ``beta=10`` keeps them closer (L2 about 6) but succeeds less often.
    steps, step_size:
        Forward-backward splitting iterations and gradient step.
    watermark:
        Opacity of the target blended into each base before optimising (0 = none, the paper
        uses 0.3 for end-to-end training).
    eps:
        Optional hard Linf budget around the (watermarked) base, so that the poisons provably
        look like their bases; ``None``: only ``beta`` keeps them close.
    replace:
        ``True``: poisons replace their bases in the training set; ``False``: appended.
    seed:
        Seeds the choice of bases.
    """

    target_index: int = 0
    base_class: int = 0
    poisons: int = 50
    beta: float = 0.25
    steps: int = 200
    step_size: float = 0.001
    watermark: float = 0.0
    eps: float | None = None
    replace: bool = True
    seed: int = 0

    def craft(self, model: nn.Module, bases: Tensor, target: Tensor) -> Tensor:
        """Poisons for ``bases`` (``N, ...``) colliding with ``target`` (``1, ...``), in [0, 1]."""
        dev = next(model.parameters()).device
        bases, target = bases.to(dev), target.to(dev)
        with frozen(model), torch.no_grad():
            f_t = penultimate(model, target)
        beta = self.beta
        start = (1 - self.watermark) * bases + self.watermark * target
        p = start.clone()
        with frozen(model):
            for _ in range(self.steps):
                pp = p.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = ((penultimate(model, pp) - f_t) ** 2).sum()
                    (grad,) = torch.autograd.grad(loss, pp)
                p = pp.detach() - self.step_size * grad  # forward step
                p = (p + self.step_size * beta * start) / (1 + self.step_size * beta)  # backward (proximal) step
                if self.eps is not None:  # hard budget: stay within eps (Linf) of the base
                    p = start + (p - start).clamp(-self.eps, self.eps)
                p = p.clamp(0, 1)
        return p.detach()

    def poison(self, model: nn.Module, dataset: Dataset) -> PoisonedData:
        """The training set with the poisons (labelled ``base_class``); the test split as is."""
        if not 0 <= self.target_index < len(dataset.y_test):
            raise ValueError(f"target_index must index the test split (0..{len(dataset.y_test) - 1})")
        target_x = dataset.x_test[self.target_index : self.target_index + 1]
        target_y = int(dataset.y_test[self.target_index])
        if target_y == self.base_class:
            raise ValueError(f"the target instance is already of the base class {self.base_class}")
        rows = choose_rows(dataset.y_train == self.base_class, self.poisons, self.seed)
        poisons = self.craft(model, dataset.x_train[rows], target_x).cpu()
        x, y = dataset.x_train.clone(), dataset.y_train.clone()
        if self.replace:
            x[rows] = poisons
            poisoned = torch.zeros(len(y), dtype=torch.bool)
            poisoned[rows] = True
        else:
            x = torch.cat([x, poisons])
            y = torch.cat([y, torch.full((len(poisons),), self.base_class, dtype=y.dtype)])
            poisoned = torch.cat([torch.zeros(len(dataset.y_train), dtype=torch.bool), torch.ones(len(poisons), dtype=torch.bool)])
        ds = dataclasses.replace(dataset, x_train=x, y_train=y, info=dict(dataset.info, poisoning="feature-collision"))
        extra = {
            "target_x": target_x,
            "target_label": target_y,
            "poison_distance_linf": float((poisons - dataset.x_train[rows]).abs().amax()),
            "poison_distance_l2": float((poisons - dataset.x_train[rows]).flatten(1).norm(dim=1).mean()),
        }
        return PoisonedData(ds, poisoned, "feature-collision", dataclasses.asdict(self), target=self.base_class, source=target_y, extra=extra)


def fine_tune(model: nn.Module, data: PoisonedData, config: TrainConfig | None = None, layers: str = "last") -> nn.Module:
    """A copy of ``model`` fine-tuned on the poisoned training set: only the last linear
    layer (``layers="last"``, the transfer-learning setting of the paper; the frozen features
    are computed once) or the whole network (``layers="all"``)."""
    if layers not in ("last", "all"):
        raise ValueError(f"layers must be 'last' or 'all', got {layers!r}")
    tuned = copy.deepcopy(model)
    cfg = config or TrainConfig(epochs=10)
    x, y = data.dataset.x_train, data.dataset.y_train
    if layers == "all":
        train_model(tuned, x, y, cfg)
        return tuned
    dev = next(tuned.parameters()).device
    with frozen(tuned), torch.no_grad():
        feats = torch.cat([penultimate(tuned, x[i : i + 1000].to(dev)) for i in range(0, len(x), 1000)])
    train_model(_last_linear(tuned), feats, y.to(dev), cfg)
    return tuned.eval()
