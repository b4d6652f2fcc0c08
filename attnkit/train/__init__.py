"""Training: the Trainer loop, optimisers and schedules, atomic checkpoints."""
from .checkpoint import CheckpointError, atomic_write, average_weights, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .optim import (
           OPTIMIZERS,
           SCHEDULES,
           OptimizerConfig,
           ScheduleConfig,
           build_optimizer,
           build_schedule,
)
from .trainer import MetricsLog, Trainer, TrainingDiverged

__all__ = ["OPTIMIZERS", "SCHEDULES", "CheckpointError", "MetricsLog", "OptimizerConfig", "ScheduleConfig",
           "TrainConfig", "Trainer", "TrainingDiverged", "atomic_write", "average_weights", "build_optimizer", "build_schedule",
           "load_checkpoint", "save_checkpoint"]
