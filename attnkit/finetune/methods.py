"""Fine-tuning methods, by name: each takes the backbone and ``model.finetune`` and returns
the backbone to train (possibly wrapped by PEFT) with ``requires_grad`` set.

LoRA, IA3, prefix and prompt tuning come from Hugging Face PEFT (not re-implemented);
BitFit and Houlsby adapters are not in PEFT and live here (:mod:`attnkit.finetune.adapters`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from ..config import checked, non_negative, positive, unit_interval
from ..errors import ConfigError
from ..registry import Registry
from .adapters import add_adapters
from .backbones import INSTALL

METHODS: Registry = Registry("fine-tuning method")


def _peft():
    # PEFT calls a transformers method deprecated in v5; the warning is not the user's business
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        import peft
    except ImportError:
        raise ConfigError(f"model.finetune.method: PEFT methods need the peft package: {INSTALL}") from None
    return peft


def linear_names(model: nn.Module) -> list[str]:
    """Suffixes (``query``, ``attention.output.dense`` ...) a target module may name:
    the distinct last one and two name components of every Linear layer."""
    names = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            parts = name.split(".")
            names.add(parts[-1])
            if len(parts) > 1:
                names.add(".".join(parts[-2:]))
    return sorted(names)


def check_targets(model: nn.Module, targets: list[str] | None, where: str) -> None:
    """Every target must name a module of the backbone (PEFT's suffix rule)."""
    if targets is None:
        return
    names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ConfigError(f"{where}: no module named {', '.join(map(repr, missing))} in this backbone; "
                          f"its linear layers are: {', '.join(linear_names(model))}")


def freeze(model: nn.Module, keep=lambda name: False) -> None:
    """``requires_grad = keep(name)`` for every parameter."""
    for name, p in model.named_parameters():
        p.requires_grad_(bool(keep(name)))


def freeze_bottom(model: nn.Module, cfg: FinetuneConfig) -> None:
    """``freeze_embeddings`` and ``freeze_layers: N`` (embeddings and the first N layers)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if cfg.freeze_layers and layers is None:
        raise ConfigError("model.finetune.freeze_layers: this backbone has no encoder.layer list")
    if cfg.freeze_layers > (len(layers) if layers is not None else 0):
        raise ConfigError(f"model.finetune.freeze_layers: {cfg.freeze_layers} > the backbone's {len(layers)} layers")
    frozen = []
    if cfg.freeze_embeddings or cfg.freeze_layers:
        frozen.append(model.embeddings)
    frozen += list(layers[:cfg.freeze_layers]) if cfg.freeze_layers else []
    for module in frozen:
        module.requires_grad_(False)


@METHODS.register("full")
def full(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Every weight trains (minus ``freeze_embeddings`` / ``freeze_layers``)."""
    model.requires_grad_(True)
    freeze_bottom(model, cfg)
    return model


@METHODS.register("bitfit")
def bitfit(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """BitFit (Ben Zaken et al., 2022): only the bias terms train."""
    freeze(model, keep=lambda name: name.endswith(".bias"))
    freeze_bottom(model, cfg)
    return model


@METHODS.register("adapter")
def adapter(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Houlsby et al. (2019) bottleneck adapters after each attention output and feed-forward
    projection; adapters and LayerNorms train, the rest is frozen."""
    freeze(model, keep=lambda name: "LayerNorm" in name)
    add_adapters(model, cfg.adapter_size)
    return model


@METHODS.register("lora")
def lora(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """LoRA through PEFT (``r``, ``alpha``, ``dropout``, ``target_modules``; default query, value)."""
    peft = _peft()
    targets = cfg.target_modules or ["query", "value"]
    check_targets(model, targets, "model.finetune.target_modules")
    return peft.get_peft_model(model, peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                      target_modules=targets, bias="none"))


@METHODS.register("ia3")
def ia3(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """IA3 through PEFT (learned scaling of keys, values and the feed-forward input)."""
    peft = _peft()
    check_targets(model, cfg.target_modules, "model.finetune.target_modules")
    check_targets(model, cfg.feedforward_modules, "model.finetune.feedforward_modules")
    return peft.get_peft_model(model, peft.IA3Config(target_modules=cfg.target_modules,
                                                     feedforward_modules=cfg.feedforward_modules))


@METHODS.register("prefix")
def prefix(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Prefix tuning through PEFT: ``virtual_tokens`` learned keys/values per layer."""
    peft = _peft()
    return peft.get_peft_model(model, peft.PrefixTuningConfig(num_virtual_tokens=cfg.virtual_tokens,
                                                              task_type="FEATURE_EXTRACTION"))


@METHODS.register("prompt")
def prompt(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Prompt tuning through PEFT: ``virtual_tokens`` learned input embeddings."""
    peft = _peft()
    return peft.get_peft_model(model, peft.PromptTuningConfig(num_virtual_tokens=cfg.virtual_tokens,
                                                              task_type="FEATURE_EXTRACTION"))


def apply_method(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """The backbone prepared for ``cfg.method``."""
    return METHODS.get(cfg.method, where="model.finetune.method")(model, cfg)


@dataclass
class FinetuneConfig:
    """``model.finetune``: how a pretrained backbone is trained.

    ``method``: ``full`` (every weight), ``lora``, ``ia3``, ``prefix``, ``prompt`` (through
    Hugging Face PEFT), ``bitfit`` (biases only) or ``adapter`` (Houlsby bottleneck adapters).
    The head is always trained. ``freeze_embeddings`` / ``freeze_layers: N`` freeze the
    embeddings / the first N layers (full and bitfit); ``layer_decay`` < 1 gives layer ``l``
    of ``L`` the learning rate ``lr * layer_decay ** (L - l)`` (embeddings ``l = 0``)."""

    method: str = "full"
    r: int = checked(8, positive)  # lora rank
    alpha: float = checked(16.0, positive)  # lora scaling numerator (scale = alpha / r)
    dropout: float = checked(0.0, unit_interval)  # lora dropout
    target_modules: list[str] | None = None  # lora/ia3: module names (default: query, value / key, value, output.dense)
    feedforward_modules: list[str] | None = None  # ia3: which targets scale the input (default: output.dense)
    virtual_tokens: int = checked(20, positive)  # prefix, prompt
    adapter_size: int = checked(64, positive)  # adapter bottleneck width
    freeze_embeddings: bool = False
    freeze_layers: int = checked(0, non_negative)
    layer_decay: float = checked(1.0, positive)
    max_len: int = checked(128, positive)  # word pieces per text (longer texts are cut)
    fast: bool = True  # the fast encoder path (BERT-structured models); false: transformers' forward

    def validate(self, where: str = "model.finetune"):
        """Check the method name."""
        METHODS.get(self.method, where=f"{where}.method")
        if self.layer_decay > 1:
            raise ConfigError(f"{where}.layer_decay: must be in (0, 1], got {self.layer_decay}")
