"""Fine-tuning methods, by name: each takes the backbone and ``model.finetune`` and returns
the backbone to train (possibly wrapped by PEFT) with ``requires_grad`` set.

LoRA, IA3, prefix and prompt tuning come from Hugging Face PEFT (not re-implemented);
BitFit and Houlsby adapters are not in PEFT and live here (:mod:`attnkit.finetune.adapters`)."""
from __future__ import annotations

import warnings

from torch import nn

from ..errors import ConfigError
from ..models.pretrained import INSTALL, FinetuneConfig
from ..registry import Registry
from .adapters import add_adapters

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
