"""Change detectors on one entity's index series: a two-sided CUSUM and a rolling z-score.

Both standardise each period against a baseline of the recent periods of the current regime
(up to ``window`` of them, at least ``warmup``): the mean, and a spread made of the between-
period variance beyond sampling noise plus this period's own sampling variance (a period with
few texts is noisier and moves the statistic less). After an alarm the regime restarts at the
estimated change, so a lasting shift raises one alert, not one a day.

``sensitivity`` scales the alarm threshold (2 halves it, 0.5 doubles it); the delay/false-alarm
trade-off of both detectors is measured by ``benchmarks/monitor.py``."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..registry import Registry
from .index import Point

DETECTORS: Registry = Registry("detector")


@dataclass
class Alarm:
    """A detected turn: at position ``at`` of the series, starting at ``since``."""

    at: int
    since: int
    direction: str  # "down" or "up"
    statistic: float
    baseline: float  # the index before the change
    current: float  # the mean index since the change


def standardised(base: list[Point], point: Point) -> tuple[float, float] | None:
    """(z of ``point`` against the baseline periods ``base``, the baseline mean), or None with
    fewer than 2 of them. Under no change, the period's index has the baseline's label shares,
    so its sampling variance is the pooled per-text variance over its count; the baseline's
    spread beyond sampling noise is added as between-period variance."""
    if len(base) < 2:
        return None
    n = sum(p.n for p in base)
    p0, q0 = sum(p.positive for p in base) / n, sum(p.negative for p in base) / n
    per_text = max(p0 + q0 - (p0 - q0) ** 2, 0.01)  # 0.01: a baseline whose texts all agree still varies
    xs = [p.index for p in base]
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    noise = sum(per_text / p.n for p in base) / len(base)
    between = max(var - noise, 0.0)
    # the period's own variance plus the baseline mean's: a short baseline is an uncertain one
    sd = math.sqrt(between + per_text / point.n + (between + noise) / len(base))
    return (point.index - mean) / sd, mean


@DETECTORS.register("cusum")
def cusum(points: list[Point], sensitivity: float = 1.0, warmup: int = 7, window: int = 28,
          drift: float = 1.0, threshold: float = 3.0) -> list[Alarm]:
    """Two-sided CUSUM (Page 1954) of the standardised index with allowance ``drift``: an alarm
    when either side's sum exceeds ``threshold / sensitivity``; the change is dated where that
    side's sum last left zero. ``drift`` 1 and ``threshold`` 3 are tuned for shifts of two or
    more daily standard deviations (Siegmund's approximation: about 1,000 periods between false
    alarms, 2.6 periods to find a 2.5-sd shift); ``benchmarks/monitor.py`` measures them."""
    h = threshold / sensitivity
    alarms: list[Alarm] = []
    start, hi, lo, hi_from, lo_from = 0, 0.0, 0.0, 0, 0
    for t in range(len(points)):
        if t - start < warmup:
            continue
        if hi == 0:
            hi_from = t
        if lo == 0:
            lo_from = t
        # periods already suspected of a change stay out of the baseline, or a shift would
        # drag its own baseline along
        upto = min(hi_from, lo_from)
        zb = standardised(points[max(start, upto - window):upto], points[t])
        if zb is None:
            continue
        z, mean = zb
        hi, lo = max(0.0, hi + z - drift), max(0.0, lo - z - drift)
        if hi > h or lo > h:
            up = hi > h
            since = hi_from if up else lo_from
            current = sum(p.index for p in points[since:t + 1]) / (t + 1 - since)
            alarms.append(Alarm(t, since, "up" if up else "down", round(hi if up else lo, 3), mean, current))
            start, hi, lo = t, 0.0, 0.0  # the new regime's baseline: from here (the dated start may be early)
    return alarms


@DETECTORS.register("zscore")
def zscore(points: list[Point], sensitivity: float = 1.0, warmup: int = 7, window: int = 28,
           threshold: float = 3.5) -> list[Alarm]:
    """Rolling z-score: an alarm when one period is more than ``threshold / sensitivity``
    standard deviations from its regime's baseline (periods beyond half of that are left out
    of the baseline); the new regime starts there."""
    h = threshold / sensitivity
    alarms: list[Alarm] = []
    start, suspect = 0, set()
    for t in range(len(points)):
        if t - start < warmup:
            continue
        base = [p for i, p in enumerate(points[start:t], start) if i not in suspect][-window:]
        zb = standardised(base, points[t])
        if zb is None:
            continue
        z, mean = zb
        if abs(z) > h:
            alarms.append(Alarm(t, t, "up" if z > 0 else "down", round(z, 3), mean, points[t].index))
            start, suspect = t, set()
        elif abs(z) > h / 2:  # kept out of the baseline: a shift must not hide in it
            suspect.add(t)
    return alarms
