"""The processes of one run: a single process, or several under ``accelerate launch`` (DDP).

accelerate starts the processes and the process group; ktmu splits every forget batch across
them (same effective batch), all-reduces gradients, shards evaluation and gathers predictions, so
that every process holds the same numbers and only the main process writes files.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Iterable

import numpy as np
import torch

from ktmu.errors import KtmuError


class DistError(KtmuError, ValueError):
    """A multi-process setting that cannot work; the message says what to change."""


class Dist:
    """Rank and world size, with the few collectives ktmu needs (no-ops in a single process)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> np.ndarray:
        """This process's contiguous share of ``range(n)`` (sizes differ by at most one)."""
        return np.array_split(np.arange(n), self.world)[self.rank]

    def split_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's share of one forget batch."""
        return torch.tensor_split(batch, self.world)[self.rank]

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def all_reduce_grads_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum gradients over processes in one flat buffer (each process scaled its loss by its share)."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``tensor`` along dim 0, in rank order (lengths may differ)."""
        if not self.enabled:
            return tensor
        from accelerate.utils import gather, pad_across_processes

        n = torch.tensor([len(tensor)], device=tensor.device)
        lengths = gather(n).tolist()
        padded = gather(pad_across_processes(tensor.contiguous(), dim=0))
        size = max(lengths)
        return torch.cat([padded[r * size : r * size + k] for r, k in enumerate(lengths)])

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


@lru_cache(maxsize=1)
def get_dist() -> Dist:
    """The run's processes: started by ``accelerate launch`` when WORLD_SIZE > 1, else a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return Dist(state.process_index, state.num_processes, state.local_process_index)
