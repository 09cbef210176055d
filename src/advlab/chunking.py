"""How many rows a CPU runs through a model at once: the batch shape of every pass.

On a CPU a pass over a batch is fastest when the tensors the backward pass keeps fit in the
last-level cache: a convolutional network run on 500 MNIST images at once spills them and takes
1.5x the time of the same rows in chunks of 64-128, while a small MLP keeps almost nothing per
row and is fastest in one piece (chunks only add per-call overhead).  The rule here: chunks of

    rows = cache size / bytes saved for the backward pass per row

where the bytes per row are measured once per model, input shape, dtype and device, with two
tiny probe passes (1 and 2 rows) that count what autograd saves (so weights, saved once per
chunk, cancel out).  The cache size is the CPU's largest cache as the OS reports it (32 MiB if
unknown).  ``benchmarks/attacks.py`` times the rule's choice against one piece and the other
chunk sizes on the seed MLP and the CNN.  Off the CPU, and for at most 64 rows, every pass
runs in one piece.

A user can set the shape for a model (:func:`set_chunk_rows`), or measure it on their own
inputs (:func:`calibrate`).  Per-row results do not depend on the chunking beyond float
rounding: every row is computed independently of the others.
"""

from __future__ import annotations

import copy
import functools
import time
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["chunk_rows", "set_chunk_rows", "calibrate", "saved_bytes_per_row", "cache_bytes"]

_DEFAULT_CACHE = 32 * 2**20
_MIN_ROWS = 16  # never chunk finer (per-call overhead dominates)
_SMALL = 64  # a pass on at most this many rows runs in one piece, without probing the model
_ONE_PIECE = 0  # stored for "run in one piece"

# per model: {(input shape, dtype, device): rows} (rules, calibrations and user settings)
_chosen: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()
_user: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=1)
def cache_bytes() -> int:
    """Size of the CPU's largest cache (from ``/sys``), or 32 MiB when the OS does not say."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else _DEFAULT_CACHE


def _key(x: Tensor) -> tuple:
    return (tuple(x.shape[1:]), x.dtype, str(x.device))


def _saved_bytes(model: nn.Module, x: Tensor) -> int:
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(leaf)
    return total + leaf.numel() * leaf.element_size()


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose weights live on the ``meta`` device: running it computes
    shapes only, costs no memory for the weights, and never calls the user's model (no
    side effect on it, no row a forward hook or a query counter could see)."""
    memo: dict[int, object] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def saved_bytes_per_row(model: nn.Module, x: Tensor) -> int:
    """Bytes autograd keeps per input row for the backward pass of ``model`` (the inputs
    included), from probe passes on one and two rows shaped like ``x``'s, run on a copy of
    the model on the ``meta`` device (shapes only: no sample is queried and the model itself
    is never called).  The copy runs in evaluation mode."""
    probe = _meta_copy(model).eval()
    one = torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device="meta")
    two = torch.zeros((2, *x.shape[1:]), dtype=x.dtype, device="meta")
    return max(_saved_bytes(probe, two) - _saved_bytes(probe, one), 1)


def chunk_rows(model: nn.Module, x: Tensor) -> int | None:
    """Rows per chunk for passes of ``model`` on inputs like ``x``; ``None``: one piece."""
    if x.device.type != "cpu" or x.shape[0] <= _SMALL:
        return None
    if model in _user:
        rows = _user[model]
    else:
        per_model = _chosen.setdefault(model, {})
        key = _key(x)
        if key not in per_model:
            try:
                per_row = saved_bytes_per_row(model, x)
            except Exception:  # a model the probe cannot run (it will fail, or not, on the real pass)
                per_row = 1
            per_model[key] = max(cache_bytes() // per_row, _MIN_ROWS)
        rows = per_model[key]
    return None if rows == _ONE_PIECE or x.shape[0] <= rows else rows


def set_chunk_rows(model: nn.Module, rows: int | None | str) -> None:
    """Fix the rows per chunk for every pass of ``model`` on the CPU: a positive int, ``None``
    (one piece) or ``"auto"`` (back to the measured rule)."""
    if rows == "auto":
        _user.pop(model, None)
        return
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        from advlab.validation import InputError

        raise InputError(f"rows per chunk must be a positive int, None (one piece) or 'auto', got {rows!r}")
    _user[model] = _ONE_PIECE if rows is None else rows


def run_chunked(model: nn.Module, x: Tensor, rows: int | None) -> Tensor:
    """``model(x)`` in chunks of at most ``rows`` rows (``None``: one piece), all of about the
    same size; one autograd graph."""
    n = x.shape[0]
    if rows is None or n <= rows:
        return model(x)
    size = -(-n // -(-n // rows))  # as many chunks as ``rows`` needs, of even size (no small tail)
    return torch.cat([model(x[i : i + size]) for i in range(0, n, size)])


def time_passes(model: nn.Module, x: Tensor, rows: int | None, passes: int = 1) -> float:
    """CPU time of ``passes`` forward+backward passes (gradient with respect to the input) of
    ``model`` on ``x`` in chunks of ``rows``."""
    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    start = time.process_time()
    for _ in range(passes):
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(run_chunked(model, leaf, rows), target, reduction="sum")
            torch.autograd.grad(loss, leaf)
    return time.process_time() - start


def calibrate(
    model: nn.Module, x: Tensor, candidates: tuple[int | None, ...] = (None, 256, 128, 64, 32), repeats: int = 2, keep: bool = True
) -> dict[int | None, float]:
    """Time one forward+backward pass of ``model`` on ``x`` for each chunk size (best of
    ``repeats``, interleaved) and return the seconds per candidate (``None``: one piece);
    with ``keep``, later passes on inputs shaped like ``x`` use the fastest.  Costs
    ``repeats * len(candidates)`` passes."""
    best: dict[int | None, float] = {}
    for _ in range(repeats):
        for rows in candidates:
            if rows is None or rows < x.shape[0]:
                t = time_passes(model, x, rows)
                best[rows] = min(best.get(rows, t), t)
    winner = min(best, key=lambda r: best[r])
    if keep:
        _chosen.setdefault(model, {})[_key(x)] = _ONE_PIECE if winner is None else winner
    return best
