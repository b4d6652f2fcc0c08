"""Registries of model blocks: adding an encoder, pooler or head is one class plus
``@ENCODERS.register("name")``; builders and tests find it by name."""
from __future__ import annotations

from ..registry import Registry

EMBEDDINGS: Registry = Registry("embedding")
ENCODERS: Registry = Registry("encoder")
POOLERS: Registry = Registry("pooler")
HEADS: Registry = Registry("head")
DECODERS: Registry = Registry("decoder")
