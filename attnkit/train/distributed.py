"""Data-parallel training on ``torch.distributed`` (DDP) over gloo: attnkit trains on the CPU.

A run started by ``torchrun`` (or ``attnkit train --nproc N``, which starts torchrun) has
``WORLD_SIZE`` and ``RANK`` in its environment. Every rank builds the same batch list (a pure
function of the seed and the epoch, length-bucketed), with ``world x train.batch_size``
examples per *global* batch, and trains on its own contiguous share of each; the loss of a
share is weighted by its size, so that DDP's gradient mean is the mean over the global batch:
2 ranks x batch B take the very steps of 1 process x batch 2B (for losses that are means
over examples). Only rank 0 writes the run directory; a checkpoint keeps every rank's random
state, so a killed run resumes exactly.

Launching on several machines is torchrun's rendezvous (``docs/training.md``)."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger("attnkit")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        """Whether more than one rank trains."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this rank writes the run directory and prints."""
        return self.rank == 0


def world() -> World:
    """The current process group's rank and size (``World()`` when there is none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-rank run (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> World:
    """Join the process group the environment describes (torchrun's variables) over gloo: the
    trainer keeps models and batches on the CPU, so NCCL (GPU tensors only) is not used even
    where GPUs are. Each rank gets ``cpu cores / local ranks`` threads (at least 1)."""
    if not launched_by_torchrun():
        return World()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    w = world()
    if not w.main:  # one voice: the other ranks log warnings only
        log.setLevel(logging.WARNING)
    return w


def shard(indices: list[int], w: World) -> list[int]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    n = len(indices)
    lo, hi = w.rank * n // w.size, (w.rank + 1) * n // w.size
    return indices[lo:hi]


def any_rank(flag: bool, w: World) -> bool:
    """Whether ``flag`` holds on at least one rank (every rank must call it)."""
    if not w.distributed:
        return flag
    return all_sum([1.0 if flag else 0.0], w)[0] > 0


def barrier(w: World) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if w.distributed:
        torch.distributed.barrier()


def gather_objects(obj, w: World) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not w.distributed:
        return [obj]
    out = [None] * w.size
    torch.distributed.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], w: World) -> list[float]:
    """``values`` summed over every rank (float64)."""
    if not w.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def wrap(model: torch.nn.Module, w: World, probe=None) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` on a multi-rank run (itself otherwise).
    ``probe()`` (a loss on one batch) finds whether every trainable parameter gets a gradient;
    if some do not (a block unused by this task), DDP is told to look for unused parameters on
    every step, which costs a graph traversal, so only then."""
    if not w.distributed or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    for m in model.modules():  # a backbone's sparse embedding gradient: DDP buckets it as dense, so keep it dense
        if getattr(m, "sparse_embeddings", False):
            m.sparse_embeddings = False

    unused = True
    if probe is not None:
        was = model.training
        model.eval()  # no dropout draw, no running-statistics update
        try:
            probe().backward()
            unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was)
    return DistributedDataParallel(model, find_unused_parameters=unused)


def no_sync(ddp: torch.nn.Module, sync: bool):
    """DDP's ``no_sync`` for micro-batches that only accumulate (gradient accumulation)."""
    if sync or not hasattr(ddp, "no_sync"):
        return contextlib.nullcontext()
    return ddp.no_sync()
