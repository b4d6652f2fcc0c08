"""Fine-tuning pretrained Transformers (Hugging Face encoders): where backbones come from,
the methods that train them in full, with frozen layers and layer-wise learning-rate decay,
or parameter-efficiently (LoRA, IA3, prefix and prompt tuning through PEFT; BitFit and
Houlsby adapters here), and a fast encoder path checked against the transformers forward.
The task models on a backbone are in :mod:`attnkit.models.backbone_models`."""
from .adapters import Adapter, add_adapters
from .backbones import load_backbone, load_tokenizer, resolve_backbone
from .data import WordPieceTaggingData, encode_texts, text_data
from .encoder import BackboneEncoder, base_model, is_bert_like
from .merge import merge_lora
from .methods import METHODS, FinetuneConfig, apply_method, linear_names

__all__ = ["METHODS", "Adapter", "BackboneEncoder", "FinetuneConfig", "WordPieceTaggingData", "add_adapters",
           "apply_method", "base_model", "encode_texts", "is_bert_like", "linear_names", "load_backbone",
           "load_tokenizer", "merge_lora", "resolve_backbone", "text_data"]
