"""The ``multitask:`` section of a run config (``task: multitask``)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..config import checked, positive
from ..errors import ConfigError

PART_KEYS = ("task", "data", "pooler", "head", "metric")
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a task's name is also its folder: RUN/tasks/NAME


@dataclass
class MultiTaskConfig:
    """``tasks``: name -> ``{task, data, pooler, head, metric}``: each a single-task run
    whose ``data`` keys are laid over the run's ``data:`` and whose model is the run's
    ``model:`` (embedding and encoder shared by all) with its own ``pooler``/``head``;
    ``metric``: its dev metric (default: its task's). ``sampling``: which task each training
    batch comes from (``proportional``, ``temperature``, ``round_robin``; see
    :mod:`attnkit.data.multitask_data`)."""

    tasks: dict = field(default_factory=dict)
    sampling: Literal["proportional", "temperature", "round_robin"] = "proportional"
    temperature: float = checked(2.0, positive)

    def validate(self, where: str = "multitask"):
        """At least two tasks, each a mapping with known keys and a ``task``."""
        if len(self.tasks) < 2:
            raise ConfigError(f"{where}.tasks: give two or more tasks (name: {{task: ..., data: {{train: ...}}}})")
        for name, part in self.tasks.items():
            at = f"{where}.tasks.{name}"
            if not isinstance(part, dict):
                raise ConfigError(f"{at}: expected a mapping like {{task: text_classification, data: {{...}}}}")
            unknown = sorted(set(part) - set(PART_KEYS))
            if unknown:
                raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(PART_KEYS)}")
            if not isinstance(part.get("task"), str) or part["task"] == "multitask":
                raise ConfigError(f"{at}.task: required, a single task such as text_classification")
            if not NAME.fullmatch(str(name)):
                raise ConfigError(f"{at}: a task name is letters, digits, _ and - only (it names the folder "
                                  f"RUN/tasks/NAME)")
