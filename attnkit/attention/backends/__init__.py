"""Attention backends, registered fastest-first per device; see ``dispatch.py``."""
from . import blocksparse, chunked, direct, flex, reference, sdpa  # noqa: F401  (registration)
from .base import BACKENDS, Backend, Problem

__all__ = ["BACKENDS", "Backend", "Problem"]
