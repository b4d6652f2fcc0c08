"""Threads for the block-sparse kernel on a shared machine.

The block-sparse path makes one fused call per query block, and each call opens a parallel
region that waits for its slowest thread. When another process keeps a core busy, the thread
placed on that core is descheduled and every region waits for it: measured at L=8192 with a
window of 256 on a 2-core machine, 2 threads went from 75 ms (quiet) to 158-272 ms with one
busy process, while 1 thread stayed at 126-130 ms. So when the other processes keep cores
busy, the kernel runs on the cores they leave free.

How busy the others are is read from ``/proc/stat`` (all CPU time) minus this process's own
CPU time (``/proc/self/stat``), over the last interval of at least ``MIN_INTERVAL_S``; a
reading is reused for ``MIN_INTERVAL_S``, so the check costs two small file reads at most a
few times a second. Where ``/proc`` is missing (not Linux) nothing changes.
"""
from __future__ import annotations

import contextlib
import os
import time

import torch

MIN_INTERVAL_S = 0.5
BUSY_CORE = 0.5  # another process using this much of a core counts as holding it
_state: dict = {}


def others_busy_between(before, after, elapsed: float) -> float:
    """Cores other processes kept busy between two :func:`cpu_seconds` readings ``elapsed``
    seconds apart (0 when either is unknown)."""
    if before is None or after is None or elapsed <= 0:
        return 0.0
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / elapsed)


def cpu_seconds() -> tuple[float, float] | None:
    """``(busy seconds of every CPU, CPU seconds of this process)`` so far, or None where
    ``/proc`` is missing."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        with open("/proc/self/stat") as f:
            mine = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / tick, (int(mine[11]) + int(mine[12])) / tick  # utime + stime


def others_busy_cores(now: float | None = None, reading=None) -> float:
    """Cores kept busy by other processes over the last interval (0 when unknown)."""
    now = time.monotonic() if now is None else now
    last = _state.get("last")
    if last is not None and now - last[0] < MIN_INTERVAL_S:
        return _state.get("busy", 0.0)
    reading = cpu_seconds() if reading is None else reading
    if reading is None:
        return 0.0
    if last is not None:
        _state["busy"] = others_busy_between(last[1], reading, now - last[0])
    _state["last"] = (now, reading)
    return _state.get("busy", 0.0)


def kernel_threads(threads: int, cores: int, busy: float) -> int:
    """Threads for the kernel: all of ``threads``, unless other processes hold cores it would
    share (each core they keep at least ``BUSY_CORE`` busy is left to them)."""
    held = int(busy + 0.5) if busy >= BUSY_CORE else 0  # cores, rounded: 0.5 of a core counts as one
    free = max(1, cores - held)
    return max(1, min(threads, free))


@contextlib.contextmanager
def threads_for_tiles(enabled: bool = True):
    """Run the block inside with :func:`kernel_threads` threads (restored after); nothing
    changes when not ``enabled`` (work on a GPU)."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    want = kernel_threads(threads, os.cpu_count() or threads, others_busy_cores())
    if want == threads:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
