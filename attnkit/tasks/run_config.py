"""The whole run config: ``task``, ``data``, ``model``, ``train`` (one YAML file)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..config import from_dict, to_dict
from ..data.data_config import DataConfig
from ..models import ModelConfig
from ..train import TrainConfig
from .multitask_config import MultiTaskConfig
from .registry import get_task


@dataclass
class RunConfig:
    """A run: what to learn (``task``), from what (``data``), with what (``model``), how (``train``)."""

    task: str = "text_classification"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    multitask: MultiTaskConfig | None = None  # task: multitask: the tasks sharing the model's embedding and encoder
    name: str | None = None

    def with_data(self, options: dict | None) -> RunConfig:
        """A copy whose ``data:`` keys are changed by ``options`` (checked like the config's own,
        e.g. ``{"format": "csv", "encoding": "cp1252"}``); ``options`` empty: this config."""
        if not options:
            return self
        return replace(self, data=from_dict(DataConfig, {**to_dict(self.data), **options}, "data"))

    def validate(self, where: str = ""):
        """The task exists; ``train.metric`` (default: the task's) is one it computes."""
        task = get_task(self.task)
        if self.train.metric is None:
            self.train.metric = task.default_metric
        task.check_config(self)


def run_config(data: dict) -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig`."""
    return from_dict(RunConfig, data)
