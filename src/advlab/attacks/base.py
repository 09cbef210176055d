"""The attack base class: one entry point that validates, batches, projects and verifies.

Subclasses implement only :meth:`Attack._run` (craft adversarial inputs for one batch).
:meth:`Attack.__call__` is never overridden: it checks the inputs, runs the attack only on
the samples that are not already adversarial, clips the output to the threat model's ball
and box, and recomputes success and norms with its own forward pass, so no attack can
report a perturbation it did not respect or a success it did not achieve.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.attacks.metadata import Role
from advlab.expectation import DEFAULT_DRAWS, VERIFY_FACTOR, Expected, is_randomized
from advlab.model_check import model_dtype, model_logits
from advlab.norms import NORM_NAMES, get_norm
from advlab.result import AttackResult
from advlab.rng import CounterRNG
from advlab.threat import ThreatModel
from advlab.validation import InputError, as_input_tensor, as_label_tensor
from advlab.victim import Victim, frozen, run_model

__all__ = ["Attack", "Batch", "AttackError", "model_device", "choose_targets", "TARGET_RULES"]

TARGET_RULES = ("random", "next", "least-likely")


class AttackError(ValueError):
    """An attack was asked for something its threat model or its design does not allow."""


@dataclass
class Batch:
    """One batch as an attack's ``_run`` receives it.

    Attributes
    ----------
    x: inputs, shape (B, ...), inside the box.
    y: the label the objective is about: the true label (untargeted) or the target (targeted).
    y_true: the true labels.
    index: global sample indices (for :class:`~advlab.rng.CounterRNG`).
    num_classes: number of classes of the model.
    logits: the model's clean logits on ``x`` (already paid for by the base class), when known.
    """

    x: Tensor
    y: Tensor
    y_true: Tensor
    index: Tensor
    num_classes: int
    logits: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device(default)


def choose_targets(rule: str, logits: Tensor, y: Tensor, index: Tensor, seed: int) -> Tensor:
    """Target labels different from ``y``: ``random`` (seeded per sample), ``next`` ((y+1) mod C)
    or ``least-likely`` (the class with the smallest logit)."""
    c = logits.shape[1]
    if rule == "next":
        return (y + 1) % c
    if rule == "random":
        offset = CounterRNG(seed).randint(index, 999_983, c - 1, device=y.device)
        return (y + 1 + offset) % c
    if rule == "least-likely":
        masked = logits.scatter(1, y[:, None], float("inf"))
        return masked.argmin(dim=1)
    raise InputError(f"unknown target rule {rule!r}; expected a label tensor or one of {TARGET_RULES}")


@dataclass(frozen=True)
class Attack:
    """Base class of every attack: a frozen dataclass of hyperparameters.

    Class attributes describe the attack for the registry, the CLI and the docs:
    ``name`` (registry key), ``norms`` (supported threat-model norms), ``paper`` (citation),
    ``minimal`` (minimal-norm attack: ``eps`` may be ``None``), ``targeted`` support,
    ``knowledge`` needed, and ``family``; ``cost_per_step`` (forward and backward passes per
    sample and step), ``supports_adaptive`` (can attack the adaptive form a defense declares) and
    ``roles`` (:class:`~advlab.attacks.metadata.Role`: where the library's defaults use it).
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = NORM_NAMES
    paper: ClassVar[str] = ""
    minimal: ClassVar[bool] = False
    supports_targeted: ClassVar[bool] = True
    supports_untargeted: ClassVar[bool] = True
    knowledge: ClassVar[str] = "white"
    family: ClassVar[str] = "other"
    uses_gradients: ClassVar[bool] = True
    cost_per_step: ClassVar[tuple[int, int]] = (1, 1)
    supports_adaptive: ClassVar[bool] = True
    roles: ClassVar[tuple[Role, ...]] = ()
    # The first pass of ``_run`` is a forward pass (with graph) on exactly the clean inputs:
    # the base class then keeps the graph of its own clean pass and hands it over (the Victim
    # checks that the inputs match before reusing it).
    starts_at_clean: ClassVar[bool] = False

    seed: int = 0

    # ------------------------------------------------------------------ to implement
    def _run(self, victim: Victim, batch: Batch, threat: ThreatModel, rng: CounterRNG) -> Tensor:
        """Return adversarial inputs for ``batch`` (shape of ``batch.x``)."""
        raise NotImplementedError

    def opens_at_clean(self, threat: ThreatModel) -> bool:
        """Whether this run's first pass is a gradient pass at the clean inputs
        (:attr:`starts_at_clean`; attacks whose start depends on a parameter override this)."""
        return self.starts_at_clean

    # ------------------------------------------------------------------ parameters
    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Attack:
        return dataclasses.replace(self, **changes)

    def check_threat(self, threat: ThreatModel) -> None:
        """Raise :class:`AttackError` if this attack cannot run under ``threat``."""
        if not isinstance(threat, ThreatModel):
            raise AttackError(f"threat must be a ThreatModel, got {type(threat).__name__}")
        if threat.norm not in self.norms:
            raise AttackError(
                f"attack {self.name!r} supports norms {', '.join(self.norms)}, not {threat.norm!r}"
            )
        if threat.eps is None and not self.minimal:
            raise AttackError(
                f"attack {self.name!r} is a fixed-budget attack: give the threat model a finite eps "
                f"(e.g. ThreatModel({threat.norm!r}, eps=...)); eps=None or inf means unbounded, which only "
                "minimal-norm attacks take"
            )
        if threat.targeted and not self.supports_targeted:
            raise AttackError(f"attack {self.name!r} has no targeted version")
        if not threat.targeted and not self.supports_untargeted:
            raise AttackError(f"attack {self.name!r} is targeted only: use ThreatModel(..., targeted=True)")

    # ------------------------------------------------------------------ the entry point
    def __call__(
        self,
        model: nn.Module,
        x: Any,
        y: Any,
        threat: ThreatModel,
        *,
        targets: Any = None,
        batch_size: int | None = 500,
        device: torch.device | str | None = None,
        progress: Callable[[int], None] | None = None,
        adaptive: bool = True,
        clean_logits: Any = None,
        draws: int | None = None,
    ) -> AttackResult:
        """Attack ``model`` on inputs ``x`` with true labels ``y`` under ``threat``.

        Parameters
        ----------
        model:
            Any ``torch.nn.Module`` mapping inputs in ``threat.box`` to logits ``(N, C)``.
        x, y:
            Inputs (batch first, floats in the box) and integer labels, NumPy or torch.
        threat:
            The threat model; the result is guaranteed to respect it.
        targets:
            For a targeted threat model: target labels, or a rule ``"random"``, ``"next"``,
            ``"least-likely"``.
        batch_size:
            Samples per batch (results per sample do not depend on it).
        device:
            Where to run; by default the model's device.
        progress:
            Called with the number of samples finished after each batch.
        adaptive:
            Attack a defense the way it declares it must be attacked (BPDA, EOT, a loss on
            logits; see :mod:`advlab.defenses.adaptive`).  ``False`` attacks the deployed
            model naively, to show what gradient masking hides.  Success is always judged
            on the deployed model.
        clean_logits:
            The model's logits on ``x`` (shape ``(N, C)``) when the caller already has them
            (an evaluation running several attacks): the clean pass is then skipped.  They
            decide which samples are already adversarial and the reported clean predictions,
            so they must come from this model on these inputs.

        draws:
            Judge success by the model's expected prediction over this many forward passes
            (:mod:`advlab.expectation`): for a randomized model one pass is one random answer.
            Default: 1, or :data:`~advlab.expectation.DEFAULT_DRAWS` for a model that declares
            ``randomized = True``.  With ``draws > 1`` the clean pass, the attack's every step
            (EOT: it optimises the expectation, and its early stopping is the vote) and the
            verification all see the vote (the verification with
            :data:`~advlab.expectation.VERIFY_FACTOR` times the draws, so the reported success
            is not one more coin flip); every sample is attacked (a noisy clean vote is no
            reason to skip one); each row costs ``draws`` rows of the model, and the counts say
            so.

        Cost: one clean forward pass per batch (skipped with ``clean_logits``; for an attack
        whose first step is a gradient at the clean inputs, it *is* that step's forward pass,
        handed over with its graph), the attack's own passes (``result.forwards`` /
        ``result.backwards`` per sample; samples adversarial from the start are charged
        nothing), and one forward pass on the attacked rows' outputs to verify them
        (``result.checks`` counts the library's own passes, so ``forwards + checks`` is every
        row pushed through the model).  Batches are checked and attacked one after another:
        a model returning non-finite logits on a later batch is refused when that batch is
        reached.  ``result.seconds`` covers the clean passes and the attack, not the
        verification.
        """
        self.check_threat(threat)
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        dev = torch.device(device) if device is not None else model_device(model)
        x_t = as_input_tensor(x, threat.box, device=dev, dtype=model_dtype(model))
        n = x_t.shape[0]
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive int or None, got {batch_size!r}")
        bs = n if batch_size is None else batch_size
        rng = CounterRNG(self.seed)
        k = _draws(model, draws)
        judge: nn.Module = model if k == 1 else Expected(model, k)
        runner, attacked = (self, judge)
        if adaptive:
            from advlab.attacks.adaptive import adapt

            runner, attacked = adapt(self, model)
            if attacked is model:  # no adaptive form of its own: attack what judges success
                attacked = judge
        if k > 1 and "early_stop" in {f.name for f in dataclasses.fields(runner)}:
            # A vote that just flipped is a coin flip: stopping there leaves a point the next
            # vote calls robust half the time. The attack keeps pushing the expectation instead.
            runner = runner.replace(early_stop=False)

        with frozen(model):
            given = None if clean_logits is None else _given_logits(clean_logits, n, dev)
            share = given is None and attacked is judge and runner.opens_at_clean(threat)
            clean = torch.empty(0)
            y_t = goal = target_t = None
            x_adv = x_t.clone()
            forwards = torch.zeros(n, dtype=torch.long, device=dev)
            backwards = torch.zeros(n, dtype=torch.long, device=dev)
            # the library's own passes per row: the clean pass (unless the caller gave the
            # logits, or the attack's first pass was that pass) and the verification
            checks = torch.full((n,), 0 if given is not None else k, dtype=torch.long, device=dev)
            attacked_rows = []
            trace: dict[str, Tensor] = {}
            start = time.perf_counter()
            for i in range(0, n, bs):
                xb = x_t[i : i + bs]
                logits_b, graph = (given[i : i + bs], None) if given is not None else _clean_pass(judge, xb, share, i)
                if i == 0:  # the labels and targets are checked before any attack runs
                    clean = logits_b.new_empty((n, logits_b.shape[1])) if given is None else given
                    y_t = as_label_tensor(y, n, clean.shape[1], device=dev)
                    target_t = self._targets(threat, targets, y_t, n, clean.shape[1], dev)
                    goal = target_t if target_t is not None else y_t
                assert y_t is not None and goal is not None
                if given is None:
                    clean[i : i + bs] = logits_b
                rows = torch.arange(i, i + len(xb), device=dev)
                if isinstance(targets, str) and target_t is not None:
                    target_t[rows] = choose_targets(targets, logits_b, y_t[rows], rows, self.seed)
                pred_b = logits_b.argmax(dim=1)
                already = pred_b == goal[rows] if threat.targeted else pred_b != goal[rows]
                if k > 1:
                    already = torch.zeros_like(already)
                pos = (~already).nonzero().squeeze(1)
                if pos.numel():
                    sel = rows[pos]
                    attacked_rows.append(sel)
                    batch = Batch(x=xb[pos], y=goal[sel], y_true=y_t[sel], index=sel, num_classes=clean.shape[1], logits=logits_b[pos])
                    victim = Victim(attacked, len(sel), dev, rows_per_row=k if attacked is judge else 1)
                    if graph is not None and pos.numel() >= _SHARE_MIN * len(xb):
                        victim.share_clean_pass(batch.x, graph[0], graph[1], None if pos.numel() == len(xb) else pos)
                    del graph
                    out = runner._run(victim, batch, threat, rng)
                    if not isinstance(out, Tensor) or out.shape != batch.x.shape:
                        raise AttackError(f"attack {self.name!r} returned {getattr(out, 'shape', out)!r}, expected {tuple(batch.x.shape)}")
                    out = torch.nan_to_num(out.detach().to(x_t.dtype), nan=0.0)
                    x_adv[sel] = threat.project(out, batch.x)
                    forwards[sel] = victim.forwards
                    backwards[sel] = victim.backwards
                    for key, values in victim.trace.items():
                        if key not in trace:
                            trace[key] = torch.zeros((n, *values.shape[1:]), dtype=values.dtype, device=dev)
                        trace[key][sel] = values.to(dev)
                    if victim.reused_clean_pass:
                        checks[sel] -= k  # counted in forwards, as the attack's first pass
                if progress is not None:
                    progress(len(xb))
            seconds = time.perf_counter() - start
            assert y_t is not None and goal is not None
            clean_pred = clean.argmax(dim=1)
            todo = torch.cat(attacked_rows) if attacked_rows else torch.zeros(0, dtype=torch.long, device=dev)

            # Verification: only the attacked rows changed; the others keep their clean logits.
            adv_logits = clean.clone()
            if todo.numel():
                verifier = judge if k == 1 else Expected(model, VERIFY_FACTOR * k)
                verified = model_logits(verifier, x_adv[todo], run_model, batch_size=bs, where="the adversarial inputs")
                adv_logits[todo] = verified.to(adv_logits.dtype)  # given clean logits may be float32 for a float64 model
        checks[todo] += k if k == 1 else VERIFY_FACTOR * k
        adv_pred = adv_logits.argmax(dim=1)
        success = adv_pred == goal if threat.targeted else adv_pred != goal
        delta = x_adv - x_t
        norms = {k: get_norm(k).measure(delta) for k in NORM_NAMES}
        conf = torch.softmax(adv_logits, dim=1).gather(1, adv_pred[:, None]).squeeze(1)
        return AttackResult(
            x_adv=x_adv,
            y=y_t,
            success=success,
            clean_pred=clean_pred,
            adv_pred=adv_pred,
            norms=norms,
            forwards=forwards,
            backwards=backwards,
            checks=checks,
            seconds=seconds,
            attack=self.name,
            threat=threat,
            params=runner.params(),
            target=target_t,
            adv_confidence=conf,
            adv_logits=adv_logits.float(),
            trace=trace,
        )

    def _targets(self, threat: ThreatModel, targets: Any, y: Tensor, n: int, c: int, dev: torch.device) -> Tensor | None:
        """The target labels (a rule's are filled in batch by batch, from the clean logits)."""
        if not threat.targeted:
            if targets is not None:
                raise InputError("targets were given but the threat model is untargeted (use targeted=True)")
            return None
        if targets is None:
            raise InputError(
                f"a targeted threat model needs targets=: a label tensor or one of {TARGET_RULES}"
            )
        if isinstance(targets, str):
            if targets not in TARGET_RULES:
                raise InputError(f"unknown target rule {targets!r}; expected a label tensor or one of {TARGET_RULES}")
            return torch.empty_like(y)
        t = as_label_tensor(targets, n, c, name="targets", device=dev)
        if bool((t == y).any()):
            raise InputError(f"targets equal the true label for {int((t == y).sum())} sample(s); a target must differ from y")
        return t

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"


# The clean pass is handed to the attack only when at least this share of its rows is attacked:
# the first backward pass then runs through every row of it (those already adversarial get a
# zero gradient and are not charged), which costs more than a fresh pass on the attacked rows
# alone when many are left out (a backward pass costs about two forward passes).
_SHARE_MIN = 0.75


def _draws(model: nn.Module, draws: int | None) -> int:
    """The number of forward draws that judge success (see ``Attack.__call__``)."""
    if draws is None:
        return DEFAULT_DRAWS if is_randomized(model) else 1
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise InputError(f"draws must be a positive int (forward passes per verdict), got {draws!r}")
    return draws


def _clean_pass(model: nn.Module, x: Tensor, keep_graph: bool, offset: int) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """The checked clean logits of one batch (rows ``offset`` on) and, with ``keep_graph``,
    the pass itself (input leaf and logits with their autograd graph) for the attack's first
    gradient step."""
    leaf = x.detach().requires_grad_(True) if keep_graph else x
    out = model_logits(model, leaf, run_model, grad=keep_graph, offset=offset)
    return out.detach(), ((leaf, out) if out.requires_grad else None)


def _given_logits(logits: Any, n: int, dev: torch.device) -> Tensor:
    """Clean logits a caller already computed (``clean_logits=``), checked like the model's own."""
    if not isinstance(logits, Tensor):
        raise InputError(f"clean_logits must be a tensor of shape ({n}, C), got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[0] != n:
        raise InputError(f"clean_logits has shape {tuple(logits.shape)}; expected ({n}, C), one row of logits per input")
    if not logits.is_floating_point() or not bool(torch.isfinite(logits).all()):
        raise InputError("clean_logits must be finite floating-point logits (recompute them with the model, or leave clean_logits out)")
    return logits.detach().to(dev)
