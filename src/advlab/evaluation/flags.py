"""Model-level probes behind the audit's flags that need a second look at the forward pass.

- **Batch dependence**: the same samples' logits in two batch compositions (the batch as
  given, and the batch reversed next to as many uniform-noise companions).  A deterministic
  model whose output for a sample depends on the other rows of its batch (BatchNorm without
  running statistics, a batch-wide normalisation) makes every robust accuracy depend on the
  batch size and on which samples an attack still works on; it was met in the wild when
  TRADES' evaluation left BatchNorm in training mode (yaodongyu/TRADES issue #3).
- **Autograd during inference**: a forward pass run under ``torch.no_grad()`` that computes
  gradients anyway (a test-time optimisation defense), the ``check_dynamic`` flag of
  AutoAttack (Croce & Hein 2020, arXiv:2003.01690; fra31/auto-attack ``flags_doc.md``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from advlab.model_check import model_name
from advlab.validation import check_logits

__all__ = ["BATCH_TOLERANCE", "batch_composition", "AutogradWatch"]

# Relative to each row's largest logit (at least 1): float round-off between batch sizes
# (other kernels; TF32 convolutions on a GPU, about 1e-3) stays below; batch statistics do not
# (the planted models of the tests move their logits by 5e-2 to 1.5).
BATCH_TOLERANCE = 1e-2

_AUTOGRAD_CALLS = (torch.autograd.grad, torch.Tensor.backward)


class AutogradWatch(TorchFunctionMode):
    """Records, while active, whether a torch operation ran with gradients enabled although
    the caller disabled them, or whether ``backward`` / ``torch.autograd.grad`` was called.
    Enter it inside ``torch.no_grad()``; ``seen`` names the first such call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: str | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.seen is None:
            if func in _AUTOGRAD_CALLS:
                self.seen = getattr(func, "__qualname__", str(func))
            elif torch.is_grad_enabled():
                self.seen = f"{getattr(func, '__qualname__', func)} with gradients enabled"
        return func(*args, **(kwargs or {}))


def batch_composition(model: nn.Module, x: Tensor, first: Tensor, box: tuple[float, float], seed: int) -> dict[str, Any]:
    """Run ``model`` (already frozen by the caller) on the batch reversed and interleaved
    with as many uniform-noise rows in ``box`` (so that however the rows are chunked, each
    sample's companions differ), in two passes of about the batch's size, under ``no_grad``
    and an :class:`AutogradWatch`.

    ``first`` are the logits of ``x`` as one batch.  Returns the relative largest logit
    difference per sample (``difference``), the samples beyond :data:`BATCH_TOLERANCE` or
    with another prediction (``affected``), and ``autograd`` (what the watch saw, or None).
    Costs ``2 * len(x)`` forward rows."""
    n = x.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    noise = box[0] + (box[1] - box[0]) * noise
    watch = AutogradWatch()
    mixed = torch.stack([x.flip(0), noise], 1).reshape(2 * n, *x.shape[1:])
    # two passes of at most n + 1 rows each: no more memory than the batch itself needs
    half = 2 * ((n + 1) // 2)
    parts = []
    with torch.no_grad():
        for piece in mixed.split(half):
            with watch:  # the model itself, not run_model: the library's chunking probes use autograd
                raw = model(piece)
            parts.append(check_logits(raw, piece.shape[0], model=model_name(model), where="the batch-composition probe", finite=False))
    other = torch.cat(parts)[0::2].flip(0).float().detach()
    scale = first.abs().amax(1).clamp_min(1.0)
    diff = (first - other).abs().amax(1) / scale
    affected = (diff > BATCH_TOLERANCE) | (first.argmax(1) != other.argmax(1)) | ~torch.isfinite(diff)
    return {"difference": diff, "affected": affected, "autograd": watch.seen}
