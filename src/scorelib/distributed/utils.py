"""Several processes, one model: process group, DDP wrapping, sums and gathers over ranks.

Mirrors ``fairseq/distributed/utils.py`` (``distributed_init``, ``all_reduce``,
``all_gather_list``). A production extra: with one process every function here is a no-op,
and the course's core never needs it. Start with ``torchrun --nproc_per_node=N -m scorelib.cli``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch


@dataclass
class World:
    """This process's place among ``size`` processes (``torchrun`` sets ``RANK`` and ``WORLD_SIZE``)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> "World":
        return cls(rank=int(os.environ.get("RANK", "0")), size=int(os.environ.get("WORLD_SIZE", "1")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(cpu: bool) -> World:
    """Join the process group when started by ``torchrun`` (NCCL on GPUs, else Gloo)."""
    world = World.from_env()
    if world.size > 1 and not torch.distributed.is_initialized():
        use_nccl = torch.cuda.is_available() and not cpu
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if use_nccl else "gloo")
    return world


def close() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(model: torch.nn.Module, world: World, device: torch.device):
    """``DistributedDataParallel`` around ``model`` when there are several processes, else ``None``."""
    if world.size == 1:
        return None
    # find_unused_parameters: the encoder's pooler (and a prompt row absent from a batch) gets no gradient
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)


def shard(batches: list, world: World) -> list:
    """This rank's share (``batches[rank::size]``), padded with ``None`` so that every rank runs as many steps
    (a ``None`` is a dummy batch whose gradient is zeroed)."""
    mine = batches[world.rank::world.size]
    return mine + [None] * (math.ceil(len(batches) / world.size) - len(mine))


def all_reduce_sum(values: list, world: World, device: torch.device) -> list:
    """Sum numbers over all ranks in one call; types are kept."""
    if world.size == 1:
        return list(values)
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return [type(v)(x) for v, x in zip(values, t.tolist())]


def gather_predictions(loss: float, preds, rows: list[int], world: World):
    """Rank 0's view of every rank's predictions: summed loss, and ``preds`` filled at every rank's ``rows``."""
    if world.size == 1:
        return loss, preds
    gathered = [None] * world.size
    torch.distributed.all_gather_object(gathered, (loss, {i: preds[i] for i in rows}))
    for _, part in gathered:
        preds[list(part)] = list(part.values())
    return sum(g[0] for g in gathered), preds


def barrier(world: World) -> None:
    if world.size > 1:
        torch.distributed.barrier()
