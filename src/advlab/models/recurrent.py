"""A recurrent victim: an LSTM that reads an image row by row (sequential MNIST).

The LSTM (Hochreiter & Schmidhuber 1997) sees a 28x28 digit as a sequence of 28 rows of 28
pixels, the row-wise variant of sequential MNIST (pixel-wise: Le et al. 2015,
arXiv:1504.00941).  It maps inputs in the box to logits like every other victim, so every
attack runs on it unchanged; gradients flow back through time to the pixels.

Example
-------
>>> model = build_model("lstm")                                   # doctest: +SKIP
>>> result = get_attack("pgd")(model, x, y, ThreatModel("linf", eps=0.1))  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.validation import InputError

__all__ = ["SequenceLSTM"]


class SequenceLSTM(nn.Module):
    """LSTM classifier over sequences of rows.

    Parameters
    ----------
    input_size:
        Features per time step: ``C * W`` for images ``(N, C, H, W)`` (28 for MNIST).
    hidden:
        LSTM hidden units.
    layers:
        Stacked LSTM layers.
    num_classes:
        Output classes.

    Inputs may be images ``(N, C, H, W)`` (read as ``H`` steps of ``C * W`` features),
    sequences ``(N, T, input_size)``, or flat vectors ``(N, T * input_size)``.  The logits come
    from a linear layer on the last hidden state.  ``input_kind = "sequence"`` tells reports to
    draw inputs and perturbations as time-step x feature heatmaps (:mod:`advlab.models.kinds`).
    """

    input_kind = "sequence"

    def __init__(self, input_size: int = 28, hidden: int = 64, layers: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        if input_size < 1 or hidden < 1 or layers < 1 or num_classes < 2:
            raise InputError(
                f"bad LSTM size: input_size={input_size}, hidden={hidden}, layers={layers}, num_classes={num_classes}"
            )
        self.input_size = input_size
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def sequence(self, x: Tensor) -> Tensor:
        """Inputs as ``(N, T, input_size)``: image rows become time steps."""
        if x.dim() == 4:
            n, c, h, w = x.shape
            seq = x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        elif x.dim() == 3:
            seq = x
        elif x.dim() == 2 and x.shape[1] % self.input_size == 0:
            seq = x.reshape(x.shape[0], -1, self.input_size)
        else:
            raise InputError(
                f"the LSTM expects images (N, C, H, W), sequences (N, T, {self.input_size}) or flat rows "
                f"(N, T*{self.input_size}); got shape {tuple(x.shape)}"
            )
        if seq.shape[-1] != self.input_size:
            raise InputError(
                f"the LSTM reads {self.input_size} features per step; inputs of shape {tuple(x.shape)} "
                f"give {seq.shape[-1]} (build it with input_size={seq.shape[-1]})"
            )
        return seq

    def forward(self, x: Tensor) -> Tensor:
        _, (h, _) = self.lstm(self.sequence(x))
        return self.head(h[-1])

    @torch.no_grad()
    def hidden_states(self, x: Tensor) -> Tensor:
        """The top layer's hidden state at every step ``(N, T, hidden)``, for plots."""
        out, _ = self.lstm(self.sequence(x))
        return out
