"""What a victim's inputs are, so that reports draw them the way the model reads them.

A model may declare a class attribute ``input_kind``: ``"image"`` (``(C, H, W)`` pixels),
``"sequence"`` (time steps of feature vectors; the row-by-row LSTM reads image rows as time
steps), ``"vector"`` (a flat feature vector, e.g. tabular data for a scikit-learn model) or
``"graph"`` (node features and an adjacency; a GCN).  Wrappers (defenses, EOT) are looked
through via their ``model`` attribute.  Undeclared models get a kind inferred from the shape
of one input.

>>> input_kind(build_model("lstm"), (1, 28, 28))  # doctest: +SKIP
'sequence'
>>> input_kind(some_module, (30,))  # doctest: +SKIP
'vector'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["INPUT_KINDS", "declared_input_kind", "input_kind", "sequence_shape"]

INPUT_KINDS = ("image", "sequence", "vector", "graph")

# Flat vectors at least this long that are perfect squares are drawn as square images
# (flattened MNIST); shorter or non-square ones are feature vectors.
_MIN_SQUARE = 64


def declared_input_kind(model: Any) -> str | None:
    """The ``input_kind`` a model (or a model it wraps) declares, or ``None``."""
    seen = 0
    while model is not None and seen < 16:
        kind = getattr(type(model), "input_kind", None)
        if kind is not None:
            if kind not in INPUT_KINDS:
                raise ValueError(f"{type(model).__name__}.input_kind must be one of {INPUT_KINDS}, got {kind!r}")
            return str(kind)
        model = getattr(model, "model", None)
        seen += 1
    return None


def input_kind(model: Any, shape: Sequence[int]) -> str:
    """How to read one input of ``shape`` (without the batch dimension) given to ``model``."""
    declared = declared_input_kind(model)
    if declared is not None:
        return declared
    dims = tuple(int(s) for s in shape)
    if len(dims) == 3 and dims[0] in (1, 3):
        return "image"
    if len(dims) == 2:
        return "image"
    if len(dims) == 1:
        side = math.isqrt(dims[0])
        return "image" if dims[0] >= _MIN_SQUARE and side * side == dims[0] else "vector"
    return "vector"


def sequence_shape(model: Any, shape: Sequence[int]) -> tuple[int, int]:
    """``(time steps, features per step)`` of one input of ``shape`` read as a sequence.

    Images ``(C, H, W)`` are ``H`` steps of ``C * W`` features (row by row); ``(T, F)`` stays;
    a flat vector is cut into steps of the model's ``input_size`` (one step if unknown).
    """
    dims = tuple(int(s) for s in shape)
    if len(dims) == 3:
        return dims[1], dims[0] * dims[2]
    if len(dims) == 2:
        return dims[0], dims[1]
    width = 0
    while model is not None and not width:
        width = int(getattr(model, "input_size", 0) or 0)
        model = getattr(model, "model", None)
    if width and dims[0] % width == 0:
        return dims[0] // width, width
    return 1, dims[0]
