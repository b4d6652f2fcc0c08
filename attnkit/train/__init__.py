"""Training: the Trainer loop, optimisers and schedules, atomic checkpoints."""
from .checkpoint import CheckpointError, atomic_write, average_weights, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distill import DistillConfig, WithTeacher, distillation_loss
from .optim import (
           OPTIMIZERS,
           SCHEDULES,
           OptimizerConfig,
           ScheduleConfig,
           build_optimizer,
           build_schedule,
)
from .trainer import MetricsLog, Trainer, TrainingDiverged

__all__ = ["OPTIMIZERS", "SCHEDULES", "CheckpointError", "DistillConfig", "MetricsLog", "OptimizerConfig", "ScheduleConfig",
           "TrainConfig", "Trainer", "TrainingDiverged", "atomic_write", "average_weights", "build_optimizer", "build_schedule",
           "distillation_loss", "load_checkpoint", "save_checkpoint", "WithTeacher"]
