"""``AttentionSpec``: a whole attention described in data, so YAML can express it::

    {score: additive, mask: [causal, {window: 128}], mods: [alibi], heads: 8}

``score`` is a registered name, ``{name: mlp, hidden: 64, activation: relu}`` or a callable;
``mask`` a list of masks ANDed together; ``mods`` a list of score modifiers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..config import check_keys
from ..errors import ConfigError
from ..registry import Registry
from .backends import BACKENDS
from .masks import MASKS, build_mask, combine_masks
from .mods import MODS, build_mod
from .scores import SCORES, build_score

ATTENTION_LAYERS: Registry = Registry("attention layer")  # name -> module class taking (embed_dim, kv_dim=, spec=)


@dataclass
class AttentionSpec:
    """Everything that defines an attention; ``build(dim)`` makes the module."""

    score: Any = "scaled_dot"
    mask: list = field(default_factory=list)
    mods: list = field(default_factory=list)
    heads: int = 1
    kv_heads: int | None = None
    dropout: float = 0.0
    backend: str = "auto"

    def __post_init__(self):
        self.validate()

    def validate(self, where: str = "attention") -> AttentionSpec:
        """Check every field; errors name the key path and the allowed values."""
        if isinstance(self.mask, (str, dict)) or callable(self.mask):
            self.mask = [self.mask]
        if isinstance(self.mods, (str, dict)) or callable(self.mods):
            self.mods = [self.mods]
        name = self.score_name
        if isinstance(name, str) and name not in SCORES:
            raise ConfigError(f"{where}.score: unknown score {name!r}; known: {', '.join(SCORES.names())}")
        if not isinstance(self.heads, int) or self.heads <= 0:
            raise ConfigError(f"{where}.heads: must be an int > 0, got {self.heads!r}")
        if self.kv_heads is not None and (not isinstance(self.kv_heads, int) or self.kv_heads <= 0
                                          or self.heads % self.kv_heads):
            raise ConfigError(f"{where}.kv_heads: must divide heads={self.heads}, got {self.kv_heads!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout!r}")
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise ConfigError(f"{where}.backend: unknown {self.backend!r}; known: auto, {', '.join(BACKENDS.names())}")
        for i, m in enumerate(self.mask):
            if isinstance(m, str) and m not in MASKS or isinstance(m, dict) and not set(m) <= set(MASKS.names()):
                raise ConfigError(f"{where}.mask[{i}]: unknown mask {m!r}; known: {', '.join(MASKS.names())}")
        for i, m in enumerate(self.mods):
            key = m if isinstance(m, str) else (next(iter(m)) if isinstance(m, dict) and len(m) == 1 else None)
            if isinstance(m, (str, dict)) and key not in MODS:
                raise ConfigError(f"{where}.mods[{i}]: unknown modifier {m!r}; known: {', '.join(MODS.names())}")
        return self

    @property
    def score_name(self) -> str | Callable:
        """The score's registered name (or the callable)."""
        return self.score.get("name") if isinstance(self.score, dict) else self.score

    @property
    def score_options(self) -> dict:
        """Constructor options of the score (``{name: mlp, hidden: 64}`` -> ``{hidden: 64}``)."""
        return {k: v for k, v in self.score.items() if k != "name"} if isinstance(self.score, dict) else {}

    @classmethod
    def from_dict(cls, data: dict, where: str = "attention") -> AttentionSpec:
        """Build from a plain mapping (YAML); unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        check_keys(data, [f.name for f in fields(cls)], where)
        spec = cls.__new__(cls)
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            setattr(spec, f.name, data.get(f.name, default))
        return spec.validate(where)

    def to_dict(self) -> dict:
        """Plain mapping (callables are kept as objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def build_score(self, q_dim: int, k_dim: int):
        """The score module for per-head dims ``q_dim`` / ``k_dim``."""
        return build_score(self.score_name, q_dim, k_dim, **self.score_options)

    def build_mask(self):
        """The static mask (list ANDed), or ``None``."""
        return combine_masks([build_mask(m, f"mask[{i}]") for i, m in enumerate(self.mask)])

    def build_mods(self):
        """The modifier modules, in order."""
        return [build_mod(m, self.heads, f"mods[{i}]") for i, m in enumerate(self.mods)]

    def build(self, embed_dim: int, kv_dim: int | None = None):
        """A :class:`MultiHeadAttention` for this spec (the layer registers itself in
        ``ATTENTION_LAYERS`` from :mod:`attnkit.attention.layers`, which sits above this module)."""
        return ATTENTION_LAYERS.get("multi_head", where="AttentionSpec.build")(embed_dim, kv_dim=kv_dim, spec=self)
