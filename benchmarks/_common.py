"""Shared benchmark plumbing: machine description, timing, results files in one shape."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def has_bf16_units() -> bool:
    """Whether the CPU has bf16 matrix units (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo);
    without them torch emulates bf16, several times slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """``(steal, total)`` CPU ticks since boot from ``/proc/stat`` (Linux), else None. Steal is
    time the hypervisor gave this VM's CPUs to someone else: every timing stretches with it."""
    try:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


_START_TICKS = cpu_ticks()  # when the benchmark started (this module is imported first)


def steal_share(since: tuple[int, int] | None = _START_TICKS, now: tuple[int, int] | None = None) -> float | None:
    """The share of CPU time stolen by the hypervisor since ``since`` (default: the benchmark's
    start); None where /proc/stat is not there."""
    now = now or cpu_ticks()
    if since is None or now is None or now[1] <= since[1]:
        return None
    return round((now[0] - since[0]) / (now[1] - since[1]), 3)


def machine() -> dict:
    """CPU model, core count, bf16 units, torch version, and GPU if any."""
    import torch

    from attnkit.train.precision import cpu_name  # the one reading of the CPU model (the precision cache keys on it)

    cpu = cpu_name()
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "bf16_units": has_bf16_units()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_ms(fn, max_seconds: float = 8.0, max_reps: int = 7, warmup: bool = True) -> float:
    """Median wall time of ``fn`` in ms; repetitions adapt so that slow cases stay bounded."""
    first = time.perf_counter()
    fn()
    t0 = time.perf_counter() - first
    if not warmup:
        return t0 * 1e3
    reps = max(1, min(max_reps, int(max_seconds / max(t0, 1e-6))))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def row(name, metric, value, target=None, better="lower", unit="", **extra) -> dict:
    """One result row; ``meets`` is set when there is a target."""
    r = {"name": name, "metric": metric, "value": value, "target": target, "better": better, "unit": unit}
    if target is not None and value is not None:
        r["meets"] = bool(value <= target) if better == "lower" else bool(value >= target)
    elif target is not None:
        r["meets"] = False
    r.update(extra)
    return r


def write_results(name: str, rows: list[dict], notes: list[str] | None = None, path: Path | str | None = None) -> Path:
    """Write ``benchmarks/results/NAME.json`` (or ``path``: smoke runs write elsewhere) with
    command, date and machine."""
    path = Path(path) if path else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "cpu_steal_share": steal_share()},  # > 0.05: a busy host, timings stretched
        "notes": notes or [],
        "rows": rows,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def train_if_missing(run_dir: Path, config: Path) -> float | None:
    """Train ``config`` (an example, data paths relative to the repository, which becomes the
    working directory) into ``run_dir`` unless it holds a trained run; the seconds it took,
    or None when it was there already."""
    from attnkit.run import train

    os.chdir(Path(__file__).resolve().parent.parent)
    if (Path(run_dir) / "model.safetensors").is_file():
        return None
    t0 = time.perf_counter()
    train(config, out=run_dir, progress=False)
    return round(time.perf_counter() - t0, 1)


def timed_train(config, out: Path, overrides=(), reuse: bool = False) -> float:
    """Train ``config`` (a path or a mapping; data paths relative to the repository root, the
    working directory meanwhile) into ``out`` without its report; the wall time in seconds, also
    kept in ``out/train_seconds.txt``. With ``reuse``, a finished run there is kept and its
    recorded time returned."""
    import shutil

    from attnkit.run import train

    timing = Path(out) / "train_seconds.txt"
    if reuse and (Path(out) / "eval.json").is_file() and timing.is_file():
        return float(timing.read_text())
    shutil.rmtree(out, ignore_errors=True)
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parent.parent)
    try:
        t = time.perf_counter()
        train(config, out=out, overrides=[*overrides, "train.report=false"], progress=False)
        seconds = time.perf_counter() - t
    finally:
        os.chdir(here)
    timing.write_text(f"{seconds:.1f}\n")
    return seconds
