"""The sentiment index: per entity and period, the share of texts labelled positive minus the
share labelled negative, with its count and a 95% band from the multinomial standard error."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..registry import Registry
from .state import State

PERIODS: Registry = Registry("period")
PERIODS.register("hour")("%Y-%m-%dT%H:00")
PERIODS.register("day")("%Y-%m-%d")
PERIODS.register("week")("%Y-W%W")
ALL = "(all)"


@dataclass
class Point:
    """One entity's period: texts, positive and negative counts, the index and its band."""

    period: str
    n: int
    positive: int
    negative: int

    @property
    def index(self) -> float:
        """Share positive minus share negative, in [-1, 1]."""
        return (self.positive - self.negative) / self.n

    @property
    def se(self) -> float:
        """Standard error of the index (difference of two multinomial shares)."""
        p, q = self.positive / self.n, self.negative / self.n
        return math.sqrt(max(p + q - (p - q) ** 2, 0.0) / self.n)

    def to_dict(self) -> dict:
        """JSON-ready, with the index and its 95% band."""
        i, h = self.index, 1.96 * self.se
        return {"period": self.period, "n": self.n, "positive": self.positive, "negative": self.negative,
                "index": round(i, 4), "low": round(max(-1.0, i - h), 4), "high": round(min(1.0, i + h), 4)}


def series(state: State, period: str, positive: str, negative: str) -> dict[str, list[Point]]:
    """Per entity (``(all)`` for texts without one), its periods in time order."""
    fmt = PERIODS.get(period, "--period")
    rows = state.db.execute(
        "SELECT entity, strftime(?, ts, 'unixepoch') AS p, COUNT(*), SUM(label = ?), SUM(label = ?) "
        "FROM texts GROUP BY entity, p ORDER BY entity, p", (fmt, positive, negative)).fetchall()
    out: dict[str, list[Point]] = {}
    for entity, p, n, pos, neg in rows:
        out.setdefault(entity or ALL, []).append(Point(p, n, pos, neg))
    return out


def period_of(ts: float, period: str) -> str:
    """The period key of a time, as :func:`series` names it."""
    import time

    return time.strftime(PERIODS.get(period, "--period"), time.gmtime(ts))
