"""Models built from blocks (embedding -> encoder -> pooler -> head), from scratch or on a
pretrained backbone; which model a task uses is the task's choice (:mod:`attnkit.tasks`)."""
from .backbone_models import PretrainedTaskModel, PretrainedTextClassifier, PretrainedTokenTagger
from .builder import build_block
from .classifiers import ImageClassifier, TaskModel, TextClassifier, TokenTagger, count_parameters
from .masked_lm import MaskedLanguageModel
from .model_config import ModelConfig
from .search import Hypothesis, SearchConfig, beam_search, greedy, translate_batch
from .translators import Translator

__all__ = ["ImageClassifier", "MaskedLanguageModel", "ModelConfig", "PretrainedTaskModel", "PretrainedTextClassifier",
           "PretrainedTokenTagger", "TaskModel", "TextClassifier", "TokenTagger", "build_block", "count_parameters",
           "Hypothesis", "SearchConfig", "Translator", "beam_search", "greedy", "translate_batch"]
