"""Several tasks' data sets as one, for multi-task training: every training batch comes from one
task (its own collate, its own length buckets), and a sampling schedule decides which task
each batch of an epoch comes from.

Schedules (``sampling``):

- ``proportional``: every batch of every task once per epoch, in a seeded random order; a
  task's share of the steps is its share of the data.
- ``temperature``: the task of each step drawn with probability proportional to
  ``n_k ** (1 / temperature)`` (``n_k``: its batches); 1 is proportional, larger values move
  toward equal shares, so a small task is seen more often (its batches are cycled). An epoch
  has as many steps as ``proportional``.
- ``round_robin``: the tasks in turn, one batch each, until the largest has had all of its
  batches (the smaller ones are cycled): equal shares."""
from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch

from ..errors import ConfigError
from .batching import length_bucketed_batches

SAMPLING = ("proportional", "temperature", "round_robin")


def _cycled(batches: list[list[int]]):
    """An endless iterator over ``batches`` (in their order, again and again)."""
    while True:
        yield from batches


def schedule(per_task: list[list[list[int]]], sampling: str, temperature: float, generator: torch.Generator
             ) -> list[list[int]]:
    """One epoch's batches from each task's (already shuffled) batches, by ``sampling``."""
    if sampling not in SAMPLING:
        raise ConfigError(f"multitask.sampling: unknown {sampling!r}; known: {', '.join(SAMPLING)}")
    sizes = [len(b) for b in per_task]
    live = [k for k, n in enumerate(sizes) if n]
    if not live:
        return []
    if sampling == "proportional":
        flat = [b for batches in per_task for b in batches]
        return [flat[i] for i in torch.randperm(len(flat), generator=generator).tolist()]
    streams = {k: _cycled(per_task[k]) for k in live}
    if sampling == "round_robin":
        return [next(streams[k]) for _ in range(max(sizes)) for k in live]
    weights = torch.tensor([sizes[k] ** (1.0 / temperature) for k in live], dtype=torch.float64)
    draws = torch.multinomial(weights / weights.sum(), sum(sizes), replacement=True, generator=generator)
    return [next(streams[live[i]]) for i in draws.tolist()]


class MultiTaskData:
    """Named data sets as one: index ``i`` is example ``i - offset`` of the task it falls in.
    ``collate(indices)`` gives ``{"parts": [(name, that task's batch), ...]}`` (one part per task
    the indices touch, in order); ``epoch_batches`` is the trainer's batch plan."""

    def __init__(self, parts: dict, sampling: str = "proportional", temperature: float = 1.0):
        self.names = list(parts)
        self.parts = parts
        self.sampling, self.temperature = sampling, temperature
        self.offsets = [0]
        for name in self.names:
            self.offsets.append(self.offsets[-1] + len(parts[name]))

    def __len__(self) -> int:
        return self.offsets[-1]

    def part_lengths(self, name: str) -> list[int]:
        """Lengths of one task's examples (1 each when its data set has none)."""
        part = self.parts[name]
        return list(getattr(part, "lengths", None) or [1] * len(part))

    @property
    def lengths(self) -> list[int]:
        """Every example's length, task after task."""
        return [n for name in self.names for n in self.part_lengths(name)]

    def locate(self, i: int) -> tuple[int, int]:
        """``(task index, index within that task)`` of example ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.offsets, i) - 1
        return k, i - self.offsets[k]

    def collate(self, indices: Sequence[int]) -> dict:
        """One batch per task the indices touch, in their order."""
        groups: list[tuple[int, list[int]]] = []
        for i in indices:
            k, j = self.locate(int(i))
            if groups and groups[-1][0] == k:
                groups[-1][1].append(j)
            else:
                groups.append((k, [j]))
        return {"parts": [(self.names[k], self.parts[self.names[k]].collate(js)) for k, js in groups]}

    def epoch_batches(self, epoch: int, batch_size: int, seed: int, bucket_factor: int = 50) -> list[list[int]]:
        """The batches of one epoch: each task's length-bucketed batches (global indices),
        ordered by the sampling schedule; seeded by ``seed`` and ``epoch``."""
        per_task = []
        for k, name in enumerate(self.names):
            local = length_bucketed_batches(self.part_lengths(name), batch_size, shuffle=True, seed=seed + k,
                                            epoch=epoch, bucket_factor=bucket_factor)
            per_task.append([[self.offsets[k] + j for j in b] for b in local])
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch + 7_919) % 2**63)  # not any task's stream
        return schedule(per_task, self.sampling, self.temperature, g)
