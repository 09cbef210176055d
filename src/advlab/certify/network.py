"""A model as the chain of layers that bound propagation walks, or the reason it cannot be.

Bound propagation needs the model as a sequence of known layers.  :func:`as_chain` finds it
for ``nn.Sequential`` models (nested sequences are flattened), for the two image
architectures of :mod:`advlab.models.architectures` (their ``forward`` is a chain written
out: flatten, linear, sigmoid, linear for the seed MLP; ``features`` then ``classifier`` for
the CNN), and for any module that declares ``bound_layers() -> Sequence[nn.Module]``.
Anything else, or a chain holding a layer outside :data:`SUPPORTED`, is refused with an
:class:`~advlab.validation.InputError` naming the layer and the supported ones.

The chain is checked against the model itself on the inputs being certified
(:func:`check_chain`): a subclass that overrides ``forward`` cannot be certified as the
chain it does not compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from advlab.models.architectures import SeedMLP, SmallCNN
from advlab.validation import InputError

__all__ = ["SUPPORTED", "as_chain", "supports", "check_chain", "run_chain"]

# Layers the bounds handle (Dropout is the identity in evaluation mode).
AFFINE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.AvgPool2d, nn.Identity, nn.Dropout)
ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh)
SUPPORTED: tuple[type[nn.Module], ...] = AFFINE + ACTIVATIONS + (nn.MaxPool2d,)


def _seed_mlp(m: SeedMLP) -> list[nn.Module]:
    return [nn.Flatten(), m.fc1, nn.Sigmoid(), m.fc2]


def _small_cnn(m: SmallCNN) -> list[nn.Module]:
    return [*m.features, *m.classifier]


# Known architectures whose forward pass is a chain written out by hand.
_KNOWN: dict[type[nn.Module], Callable[[nn.Module], list[nn.Module]]] = {
    SeedMLP: _seed_mlp,  # type: ignore[dict-item]
    SmallCNN: _small_cnn,  # type: ignore[dict-item]
}


def _names() -> str:
    return ", ".join(t.__name__ for t in SUPPORTED)


def _flatten(modules: Sequence[nn.Module]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in modules:
        if type(m) is nn.Sequential:
            out.extend(_flatten(list(m)))
        else:
            out.append(m)
    return out


def _find_chain(model: nn.Module) -> tuple[list[nn.Module] | None, str]:
    declared = getattr(model, "bound_layers", None)
    if callable(declared):
        return _flatten(list(declared())), ""
    if type(model) in _KNOWN:
        return _flatten(_KNOWN[type(model)](model)), ""
    if type(model) is nn.Sequential:
        return _flatten(list(model)), ""
    return None, (
        f"{type(model).__name__} is not a chain of layers the bounds know: certification handles "
        f"nn.Sequential models, advlab's seed-mlp and cnn, and modules that define bound_layers() "
        f"(supported layers: {_names()})"
    )


def _check_layer(layer: nn.Module) -> str:
    if type(layer) not in SUPPORTED:  # exact types: a subclass may compute something else
        return f"layer {type(layer).__name__} is not supported by the bounds (supported: {_names()})"
    if isinstance(layer, nn.MaxPool2d):
        if layer.dilation not in (1, (1, 1)) or layer.ceil_mode or layer.return_indices:
            return "MaxPool2d with dilation, ceil_mode or return_indices is not supported by the bounds"
    if isinstance(layer, nn.AvgPool2d) and (layer.ceil_mode or layer.divisor_override is not None):
        return "AvgPool2d with ceil_mode or divisor_override is not supported by the bounds"
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and not layer.track_running_stats:
        return "BatchNorm without running statistics is not an affine map in evaluation mode"
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        return f"Conv2d with padding_mode={layer.padding_mode!r} is not supported by the bounds (only zeros)"
    return ""


def supports(model: nn.Module) -> tuple[bool, str]:
    """Whether the bounds can certify ``model``, and if not, why (one sentence).

    >>> supports(build_model("cnn"))  # doctest: +SKIP
    (True, '')
    """
    if not isinstance(model, nn.Module):
        return False, f"the model is a {type(model).__name__}, not a torch.nn.Module"
    chain, reason = _find_chain(model)
    if chain is None:
        return False, reason
    if not chain:
        return False, "the model has no layers"
    for layer in chain:
        problem = _check_layer(layer)
        if problem:
            return False, problem
    return True, ""


def as_chain(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` in order; :class:`InputError` naming the problem otherwise."""
    ok, reason = supports(model)
    if not ok:
        raise InputError(f"cannot bound this model: {reason}")
    chain, _ = _find_chain(model)
    assert chain is not None
    return chain


def run_chain(chain: Sequence[nn.Module], x: Tensor) -> Tensor:
    for layer in chain:
        x = layer(x)
    return x


@torch.no_grad()
def check_chain(model: nn.Module, chain: Sequence[nn.Module], x: Tensor) -> Tensor:
    """The model's logits on ``x``, after checking that the chain computes them too."""
    logits = model(x)
    again = run_chain(chain, x)
    if again.shape != logits.shape or not torch.allclose(again, logits, rtol=1e-4, atol=1e-4):
        raise InputError(
            f"{type(model).__name__}'s forward pass is not the chain of its layers "
            "(it overrides forward); define bound_layers() to say which chain it computes"
        )
    return logits
