"""A small named registry, shared by every pluggable part (scores, masks, mods, backends…).

Adding a component is one function or class plus ``@REGISTRY.register("name")``; lookups of
unknown names raise :class:`UnknownNameError` listing what is known.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of component."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; duplicate names are an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, where: str | None = None) -> T:
        """Return the component called ``name``; unknown names list the known ones."""
        at = f"{where}: " if where else ""
        if not isinstance(name, str):
            raise UnknownNameError(f"{at}expected a {self.kind} name, got {name!r}; known: "
                                   f"{', '.join(sorted(self._items))}")
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"{at}unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``"*dot*"``)."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
