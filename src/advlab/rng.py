"""Counter-based random numbers: the noise a sample receives depends only on the seed, the
sample's global index and a stream number, never on the batch it happens to be in.

This is what makes every advlab attack give the same per-sample result whatever the batch
size, the number of processes an evaluation is sharded over, or the device (the hash is
pure integer arithmetic, identical on CPU and CUDA).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CounterRNG", "uniform_to_int"]

_M32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser (avalanche mixing) on int64 tensors holding values < 2**32."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def _mix32_(x: Tensor, tmp: Tensor) -> Tensor:
    """:func:`_mix32` in place (``tmp``: scratch of the same shape); no allocation, same bits."""
    for _ in range(2):
        torch.bitwise_right_shift(x, 16, out=tmp)
        x.bitwise_xor_(tmp).mul_(0x45D9F3B).bitwise_and_(_M32)
    torch.bitwise_right_shift(x, 16, out=tmp)
    return x.bitwise_xor_(tmp)


def uniform_to_int(u: Tensor, high: int | Tensor) -> Tensor:
    """Map uniforms in (0, 1) (first dimension: samples) to integers in ``[0, high)``;
    ``high`` may be a per-sample tensor.  Lets a caller turn columns of one
    :meth:`CounterRNG.uniform` draw into integers instead of paying a draw per number."""
    u = u.to(torch.float64)
    h = torch.as_tensor(high, device=u.device, dtype=torch.float64)
    if h.dim() == 1:
        h = h.reshape((-1,) + (1,) * (u.dim() - 1))
    return torch.minimum((u * h).floor(), h - 1).long()


class CounterRNG:
    """Deterministic per-sample noise.

    Parameters
    ----------
    seed:
        Any non-negative integer.

    Examples
    --------
    >>> rng = CounterRNG(0)
    >>> a = rng.uniform(torch.tensor([3, 4]), stream=0, shape=(5,))
    >>> bool((a[1] == rng.uniform(torch.tensor([4]), 0, (5,))[0]).all())
    True
    """

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self._seed_key = int(_mix32(torch.tensor(seed * 0x9E3779B1 & _M32)).item())

    def _bits(self, index: Tensor, stream: int, n: int, device: torch.device | str | None) -> Tensor:
        index = torch.as_tensor(index, device=device).long().reshape(-1) & _M32
        base = _mix32((index * 0x85EBCA6B + self._seed_key) & _M32)
        base = _mix32((base + (stream * 0xC2B2AE35 & _M32)) & _M32)
        pos = (torch.arange(n, device=base.device, dtype=torch.long) * 0x27D4EB2F) & _M32
        x = base[:, None] ^ pos[None, :]
        tmp = torch.empty_like(x)
        return _mix32_(_mix32_(x, tmp).bitwise_xor_(0x5BD1E995), tmp)

    def uniform(
        self,
        index: Tensor,
        stream: int,
        shape: tuple[int, ...] | torch.Size = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Uniform numbers in the open interval (0, 1), shape ``(len(index), *shape)``."""
        shape = tuple(shape)
        n = math.prod(shape) if shape else 1
        bits = self._bits(index, stream, n, device)
        # (k + 0.5) / 2**24 rounds to the same float32 whether computed in float32 or float64
        work = torch.float32 if dtype == torch.float32 else torch.float64
        u = ((bits >> 8).to(work) + 0.5) / float(1 << 24)
        return u.to(dtype).reshape((-1,) + shape)

    def normal(
        self,
        index: Tensor,
        stream: int,
        shape: tuple[int, ...] | torch.Size = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Standard normal numbers (Box-Muller), shape ``(len(index), *shape)``."""
        shape = tuple(shape)
        u1 = self.uniform(index, 2 * stream + 1, shape, device, torch.float64)
        u2 = self.uniform(index, 2 * stream + 2, shape, device, torch.float64)
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
        return z.to(dtype)

    def randint(
        self,
        index: Tensor,
        stream: int,
        high: int | Tensor,
        shape: tuple[int, ...] | torch.Size = (),
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Integers in ``[0, high)``; ``high`` may be a per-sample tensor."""
        return uniform_to_int(self.uniform(index, stream, shape, device, torch.float64), high)

    def permutation(self, index: Tensor, stream: int, n: int, device: torch.device | str | None = None) -> Tensor:
        """One random permutation of ``range(n)`` per sample, shape ``(len(index), n)``."""
        return self.uniform(index, stream, (n,), device, torch.float64).argsort(dim=1)

    def __repr__(self) -> str:
        return f"CounterRNG(seed={self.seed})"
