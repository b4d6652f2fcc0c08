"""Task models built from blocks, and the builder that reads their configs."""
from .builder import build_block
from .tasks import (
           TASKS,
           ImageClassifier,
           ModelConfig,
           TaskModel,
           TextClassifier,
           TokenTagger,
           build_model,
           count_parameters,
)

__all__ = ["TASKS", "ImageClassifier", "ModelConfig", "TaskModel", "TextClassifier", "TokenTagger", "build_block",
           "build_model", "count_parameters"]
