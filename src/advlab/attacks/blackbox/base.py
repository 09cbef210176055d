"""The base class of query-only attacks: they see the victim through a :class:`BlackBox`.

Two ways in:

* ``attack(model, x, y, threat)`` — the standard entry point. The library wraps the model in
  a :class:`~advlab.blackbox.BlackBox` answering what the attack needs (``scores`` or
  ``labels``) with a per-sample budget of ``max_queries``; the attack's code only ever sees
  that box. ``model`` may also be a user's ``BlackBox`` (its output kind and budget apply).
  The result's ``forwards`` are the queries, ``backwards`` are zero.
* ``attack.run(box, x, y, threat)`` — the query-level API for a box you built yourself; it
  refuses anything that is not a ``BlackBox``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack, AttackError, Batch
from advlab.blackbox import BlackBox, BlackBoxError, as_module
from advlab.losses import get_loss
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import as_input_tensor, as_label_tensor
from advlab.victim import Victim

__all__ = ["BlackBoxAttack", "score_loss", "require_box", "bulk_noise"]


def bulk_noise(
    rng: CounterRNG,
    index: Tensor,
    stream: int,
    shape: tuple[int, ...],
    like: Tensor,
    kind: str = "normal",
) -> Tensor:
    """Many noise numbers per sample, fast: shape ``(len(index), *shape)``.

    :class:`CounterRNG` hashes every number (about a microsecond each on a CPU core), too
    slow for the thousands of probe images a gradient estimate draws per sample. Here the
    counter RNG only draws one seed per (sample, stream), and a CPU ``torch.Generator``
    seeded with it draws the bulk; the noise still depends only on (seed, sample index,
    stream), never on the batch, and is the same on every device.
    """
    hi = rng.randint(index.cpu(), stream, 1 << 24)
    lo = rng.randint(index.cpu(), stream + 1_000_003_001, 1 << 24)
    seeds = hi * (1 << 24) + lo
    out = torch.empty((len(seeds),) + tuple(shape), dtype=like.dtype)
    for i, s in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(s)
        if kind == "normal":
            torch.randn(shape, generator=g, out=out[i])
        else:
            torch.rand(shape, generator=g, out=out[i])
    return out.to(like.device)


def require_box(box: Any, attack: str, output: str) -> BlackBox:
    """``box`` if it is a :class:`BlackBox` that can answer ``output``, else a clear error."""
    if not isinstance(box, BlackBox):
        kind = type(box).__name__
        hint = " (a model: wrap it with advlab.blackbox.BlackBox(model, output=...))" if isinstance(box, nn.Module) else ""
        raise AttackError(
            f"{attack!r} is a black-box attack and only talks to an advlab.blackbox.BlackBox, got {kind}{hint}; "
            f"or call {attack}(model, x, y, threat), which wraps the model for you"
        )
    if output == "scores" and box.output != "scores":
        raise BlackBoxError(f"{attack!r} is score-based and needs a box with output='scores'; this one answers labels only")
    return box


def score_loss(scores: Tensor, y: Tensor, targeted: bool, loss: str = "margin") -> Tensor:
    """A per-sample loss (to maximise) from probabilities: ``loss`` applied to the
    log-probabilities, which differ from the logits by a per-sample constant, so the margin
    equals the logit margin and cross-entropy is unchanged."""
    logp = torch.log(scores.clamp_min(1e-300))
    return get_loss(loss)(logp, y, targeted=targeted)


@dataclass(frozen=True)
class BlackBoxAttack(Attack):
    """Base class of score- and decision-based attacks.

    Subclasses set ``output`` (``"scores"`` or ``"labels"``: what they need to see) and
    implement :meth:`_attack`, which receives a :class:`BlackBox` and must never query a
    sample past ``box.remaining``. ``max_queries`` is the per-sample query budget.
    """

    knowledge: ClassVar[str] = "black"
    uses_gradients: ClassVar[bool] = False
    cost_per_step: ClassVar[tuple[int, int]] = (1, 0)
    output: ClassVar[str] = "scores"

    max_queries: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.max_queries, bool) or not isinstance(self.max_queries, int) or self.max_queries < 1:
            raise ValueError(f"max_queries must be a positive int, got {self.max_queries!r}")

    # ------------------------------------------------------------------ to implement
    def _attack(self, box: BlackBox, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        """Adversarial inputs for ``batch``, found through ``box`` alone."""
        raise NotImplementedError

    # ------------------------------------------------------------------ entry points
    def __call__(self, model: Any, x: Any, y: Any, threat: ThreatModel, **kwargs: Any) -> AttackResult:
        """The standard entry point (see :meth:`Attack.__call__`); ``model`` may be a plain
        model or a :class:`BlackBox`, whose output kind and budget then apply."""
        if isinstance(model, BlackBox):
            require_box(model, self.name, self.output)
            atk: Attack = self
            if model.budget is not None and model.budget < self.max_queries:
                atk = self.replace(max_queries=model.budget)
            return Attack.__call__(atk, as_module(model), x, y, threat, **kwargs)
        return Attack.__call__(self, model, x, y, threat, **kwargs)

    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        box = BlackBox._for_victim(victim, self.output, self.max_queries)
        return self._attack(box, batch, threat, rng)

    def run(
        self,
        box: BlackBox,
        x: Any,
        y: Any,
        threat: ThreatModel,
        *,
        index: Tensor | None = None,
    ) -> Tensor:
        """Attack ``x`` (labels ``y``: true labels, or targets if ``threat.targeted``) through
        ``box`` only; rows of ``x`` are samples ``0..n-1`` of the box. Returns ``x_adv``
        inside the threat model. ``index`` (global sample ids) seeds the per-sample noise."""
        require_box(box, self.name, self.output)
        self.check_threat(threat)
        x_t = as_input_tensor(x, threat.box)
        n = x_t.shape[0]
        y_t = as_label_tensor(y, n, device=x_t.device)
        idx = torch.arange(n, device=x_t.device) if index is None else torch.as_tensor(index, device=x_t.device).long()
        view = box.restricted(output=self.output, budget=self.max_queries)
        batch = Batch(x=x_t, y=y_t, y_true=y_t, index=idx, num_classes=box.num_classes or 0)
        out = self._attack(view, batch, threat, CounterRNG(self.seed))
        return threat.project(out.detach(), x_t)
