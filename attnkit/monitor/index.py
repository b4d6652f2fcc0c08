"""The sentiment index: per entity and period, the share of texts labelled positive minus the
share labelled negative, with its count and a 95% band from the multinomial standard error.
The detectors standardise with their own variance (:mod:`attnkit.monitor.detect`); the band
is for people."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..registry import Registry
from .state import State

# each period: an SQLite time format and modifiers; a week is named by its Monday (a week
# number would split the week across New Year into two short periods)
PERIODS: Registry = Registry("period")
PERIODS.register("hour")(("%Y-%m-%dT%H:00", ()))
PERIODS.register("day")(("%Y-%m-%d", ()))
PERIODS.register("week")(("%Y-%m-%d", ("weekday 0", "-6 days")))
ALL = "(all)"


def period_sql(period: str) -> str:
    """The SQL expression naming the period of column ``ts`` (UTC seconds)."""
    fmt, mods = PERIODS.get(period, "--period")
    return "strftime(" + ", ".join([f"'{fmt}'", "ts", "'unixepoch'", *(f"'{m}'" for m in mods)]) + ")"


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
        """Standard error of the index (difference of two multinomial shares), with one
        pseudo-text of each kind (Agresti-Caffo style): a period of one positive text has a
        wide band, not the zero-width one the plain formula gives."""
        m = self.n + 3
        p, q = (self.positive + 1) / m, (self.negative + 1) / m
        return math.sqrt(max(p + q - (p - q) ** 2, 0.0) / m)

    def to_dict(self) -> dict:
        """JSON-ready, with the index and its 95% band."""
        i, h = self.index, 1.96 * self.se
        return {"period": self.period, "n": self.n, "positive": self.positive, "negative": self.negative,
                "index": round(i, 4), "low": round(max(-1.0, i - h), 4), "high": round(min(1.0, i + h), 4)}


def series(state: State, period: str, positive: str, negative: str) -> dict[str, list[Point]]:
    """Per entity (``(all)`` for texts without one), its periods in time order."""
    rows = state.db.execute(
        f"SELECT entity, {period_sql(period)} AS p, COUNT(*), SUM(label = ?), SUM(label = ?) "
        "FROM texts GROUP BY entity, p ORDER BY entity, p", (positive, negative)).fetchall()
    out: dict[str, list[Point]] = {}
    for entity, p, n, pos, neg in rows:
        out.setdefault(entity or ALL, []).append(Point(p, n, pos, neg))
    return out

