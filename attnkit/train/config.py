"""The ``train:`` section of a run config."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import checked, non_negative, positive
from ..errors import ConfigError
from .adversarial import AdversarialConfig
from .distill import DistillConfig
from .optim import OptimizerConfig, ScheduleConfig
from .precision import precision_error


@dataclass
class TrainConfig:
    """Training settings; every field has a default that trains a small model sensibly."""

    epochs: int = checked(5, positive)
    batch_size: int = checked(32, positive)
    max_tokens: int = checked(0, non_negative)  # batch by a budget of padded tokens instead (translation); 0 = off
    eval_batch_size: int = checked(256, positive)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # FGM / PGD on the token embeddings
    grad_clip: float = checked(1.0, non_negative)  # max global grad norm; 0 = off
    accumulate: int = checked(1, positive)  # batches per optimiser step
    metric: str | None = None  # dev metric that picks the best checkpoint (default: the task's; accuracy, entity f1)
    average_last: int = checked(0, non_negative)  # average the weights of the last N epochs at the end; kept if dev is as good; 0 = off
    patience: int = checked(0, non_negative)  # epochs without improvement before stopping; 0 = off
    seed: int = 0
    precision: str = checked("fp32", precision_error)  # auto: bf16 autocast only where a probe measures it faster
    bf16: bool = False  # older name of precision: bf16 (true = bf16 autocast)
    checkpoint_every: int = checked(0, non_negative)  # optimiser steps between checkpoints; 0 = per epoch
    max_steps: int = checked(0, non_negative)  # stop after this many optimiser steps; 0 = no limit
    bucket_factor: int = checked(50, positive)  # batches per length-sorted pool
    log_every: float = checked(30.0, non_negative)  # seconds between progress lines if no bar (not a terminal); 0 = off
    report: bool = True  # write RUN/report.html at the end (attnkit report RUN writes it later too)

    def validate(self, where: str = "train"):
        """``bf16: true`` (the older name) and a different ``precision`` contradict each other."""
        if self.bf16 and self.precision == "auto":
            at = f"{where}." if where else ""
            raise ConfigError(f"{at}bf16: true contradicts {at}precision: auto; keep precision and drop bf16 "
                              f"(its older name)")

    @property
    def effective_precision(self) -> str:
        """``precision``, with the older ``bf16: true`` read as ``bf16``."""
        return "bf16" if self.bf16 else self.precision
