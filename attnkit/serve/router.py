"""The customer-service router: a routing table (YAML) from intents to queues, and a
hand-off to a person for out-of-scope or low-confidence queries.

.. code-block:: yaml

    model: intents          # the served model that routes (default: the first)
    handoff: human_agent    # the route of handed-off queries
    threshold: auto         # confidence below this is handed off; auto: the run's tuned one
    default_route: general  # intents not listed under routes
    routes:
      billing: [pay_bill, bill_balance, bill_due]
      travel: [book_flight, book_hotel]

``threshold: auto`` reads the threshold ``attnkit tune-oos`` saved in the run, with the
confidence score it was tuned for (``msp``, ``margin`` or ``not_oos``, see
:mod:`attnkit.evaluate.out_of_scope`); a run without one hands off only what the model itself
calls out of scope. A number is a cut on ``score`` (default ``msp``)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import from_dict, load_yaml
from ..errors import ConfigError
from ..evaluate.out_of_scope import CONFIDENCE
from ..run_files import RunFiles


@dataclass
class RoutingTable:
    """See the module docstring."""

    handoff: str = "human_agent"
    threshold: float | str = "auto"
    default_route: str = "general"
    model: str | None = None
    out_of_scope: str | None = None
    score: str = "msp"
    routes: dict[str, list[str]] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        """Check the threshold and that no intent is in two queues."""
        if isinstance(self.threshold, str) and self.threshold != "auto":
            raise ConfigError(f"{where}.threshold: 'auto' or a number in [0, 1], got {self.threshold!r}")
        if not isinstance(self.threshold, str) and not 0 <= self.threshold <= 1:
            raise ConfigError(f"{where}.threshold: must be in [0, 1], got {self.threshold}")
        CONFIDENCE.get(self.score, f"{where}.score")
        seen: dict[str, str] = {}
        for queue, intents in self.routes.items():
            if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
                raise ConfigError(f"{where}.routes.{queue}: expected a list of intent names, got {intents!r}")
            for intent in intents:
                if intent in seen:
                    raise ConfigError(f"{where}.routes.{queue}: intent {intent!r} is already routed to {seen[intent]!r}")
                seen[intent] = queue


def read_table(path: str | Path) -> RoutingTable:
    """A routing table from YAML; every problem is one ConfigError naming the file and key."""
    data = load_yaml(path)
    return from_dict(RoutingTable, data, where=str(path))


@dataclass
class Router:
    """A routing table bound to a served run: its labels checked, its threshold resolved."""

    table: RoutingTable
    queue_of: dict[str, str]
    threshold: float
    threshold_source: str
    out_of_scope: str | None
    labels: list[str] = field(default_factory=list)
    score: str = "msp"

    def route(self, record: dict) -> dict:
        """Where one prediction record (``label``, ``scores``: every label's probability) goes."""
        intent = record["label"]
        probs = np.array([[record["scores"].get(name, 0.0) for name in self.labels]])
        oos = self.labels.index(self.out_of_scope) if self.out_of_scope in self.labels else -1
        value = float(CONFIDENCE.get(self.score)(probs, oos)[0]) if self.labels else 1.0
        base = {"text": record["text"], "intent": intent, "confidence": float(record["scores"].get(intent, 0.0))}
        if self.out_of_scope is not None and intent == self.out_of_scope:
            return {**base, "route": self.table.handoff, "handoff": True, "reason": "out of scope"}
        if value < self.threshold:
            return {**base, "route": self.table.handoff, "handoff": True,
                    "reason": f"low confidence ({self.score} {value:.3f} < {self.threshold:.3f}, "
                              f"{self.threshold_source})"}
        return {**base, "route": self.queue_of.get(intent, self.table.default_route), "handoff": False,
                "reason": "routed" if intent in self.queue_of else "default route"}


def bind_router(table: RoutingTable, run_dir: Path, labels: list[str], run_oos: str | None, where: str) -> Router:
    """The table checked against the run's labels, with the threshold chosen (``auto``: the run's
    tuned one, else 0)."""
    unknown = sorted({i for intents in table.routes.values() for i in intents} - set(labels))
    if unknown:
        raise ConfigError(f"{where}: routes name intents the model does not know: {', '.join(map(repr, unknown[:8]))}"
                          f"{' ...' if len(unknown) > 8 else ''}")
    oos = table.out_of_scope or run_oos
    if oos is not None and oos not in labels:
        raise ConfigError(f"{where}.out_of_scope: {oos!r} is not a label of the model")
    score = table.score
    if table.threshold == "auto":
        tuned = read_tuned_threshold(run_dir)
        if tuned is not None:
            (threshold, score), source = tuned, "tuned on dev"
        else:
            threshold, source = 0.0, "no tuned threshold in the run"
    else:
        threshold, source = float(table.threshold), "set in the routing table"
    if score == "not_oos" and oos is None:
        raise ConfigError(f"{where}.score: not_oos needs an out-of-scope label (out_of_scope: NAME)")
    queue_of = {i: q for q, intents in table.routes.items() for i in intents}
    return Router(table, queue_of, threshold, source, oos, list(labels), score)


def read_tuned_threshold(run_dir: Path) -> tuple[float, str] | None:
    """``(threshold, score)`` that ``attnkit tune-oos`` saved in a run (None when there is none)."""
    path = RunFiles(run_dir).out_of_scope
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        threshold, score = float(data["threshold"]), str(data.get("score", "msp"))
        if not math.isfinite(threshold) or not 0 <= threshold <= 1 or score not in CONFIDENCE:
            raise ValueError(f"threshold {threshold} for score {score!r}")
        return threshold, score
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: damaged ({e}); run `attnkit tune-oos {run_dir}` again") from None


__all__ = ["Router", "RoutingTable", "bind_router", "read_table", "read_tuned_threshold"]
