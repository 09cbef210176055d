"""Sharding an evaluation over processes with ``torch.distributed``.

Launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment), an evaluation splits
its units round-robin over the ranks (gloo on CPU, NCCL on GPU), and every stage ends with an
all-gather so that each rank holds every unit and takes the same decisions.  Units are fixed
by the plan (not by the number of processes) and attacks draw their noise per sample, so the
merged results equal a single process's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Cluster", "cluster_from_env"]


@dataclass
class Cluster:
    """This process's place in the run: ``rank`` of ``world``; ``owned`` decides who computes."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, unit_number: int) -> bool:
        return unit_number % self.world == self.rank

    def gather(self, units: dict[str, Any]) -> dict[str, Any]:
        """Every rank's units, merged (a no-op in one process)."""
        if self.world == 1:
            return units
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, units)
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        return merged

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.initialized_here = False


def cluster_from_env(device: str | torch.device | None = None) -> Cluster:
    """Join the process group ``torchrun`` describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
    if world == 1:
        return Cluster(0, 1, dev)
    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        here = True
    return Cluster(dist.get_rank(), dist.get_world_size(), dev, here)
