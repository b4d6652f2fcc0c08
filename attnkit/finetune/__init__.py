"""Fine-tuning pretrained Transformers (Hugging Face encoders): in full, with frozen layers
and layer-wise learning-rate decay, or parameter-efficiently (LoRA, IA3, prefix and prompt
tuning through PEFT; BitFit and Houlsby adapters here), with a fast encoder path checked
against the transformers forward."""
from .adapters import Adapter, add_adapters
from .data import WordPieceTaggingData, encode_texts, text_data
from .encoder import BackboneEncoder, base_model, is_bert_like
from .merge import merge_lora
from .methods import METHODS, apply_method, linear_names
from .models import (
           PRETRAINED_TASKS,
           PretrainedTaskModel,
           PretrainedTextClassifier,
           PretrainedTokenTagger,
)

__all__ = ["METHODS", "PRETRAINED_TASKS", "Adapter", "BackboneEncoder", "PretrainedTaskModel",
           "PretrainedTextClassifier", "PretrainedTokenTagger", "WordPieceTaggingData", "add_adapters",
           "apply_method", "base_model", "encode_texts", "is_bert_like", "linear_names",
           "merge_lora", "text_data"]
