"""Blocks from config mappings: ``{type: lstm, hidden: 128}`` -> ``LSTMEncoder(in_dim, hidden=128)``.

The options a block accepts are its constructor's keyword parameters, so a new block needs
no schema of its own: unknown options, wrong types (from the constructor's annotations) and
the block's own checks all come back as one :class:`ConfigError` naming the key path."""
from __future__ import annotations

import typing

from ..config import block_options, check_keys, convert
from ..errors import ConfigError
from ..registry import Registry


def build_block(registry: Registry, options: dict | None, where: str, *sizes, default_type: str | None = None):
    """Instantiate ``registry[options["type"]](*sizes, **rest)`` with key-path errors."""
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping like {{type: ...}}, got {options!r}")
    options = dict(options or {})
    kind = options.pop("type", default_type)
    if kind is None:
        raise ConfigError(f"{where}.type: required; known: {', '.join(registry.names())}")
    cls = registry.get(kind, where=f"{where}.type")
    names, var_kw = block_options(cls)
    settable = names[len(sizes):]
    if var_kw and hasattr(cls, "known_options"):  # e.g. a pooler passing options on to its score
        settable = cls.known_options(options)
    if not var_kw or hasattr(cls, "known_options"):
        check_keys(options, ["type", *settable], where)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # annotations that cannot be resolved: skip type checks
        hints = {}
    for key, value in options.items():
        if key in hints and value is not None:
            options[key] = convert(value, hints[key], f"{where}.{key}")
    head, _, last = where.rpartition(".")
    try:
        return cls(*sizes, **options)
    except ConfigError as e:  # blocks name their own keys ("encoder.hidden: ..."): add the path above
        msg = str(e)
        raise ConfigError(f"{head}.{msg}" if head and msg.startswith(last) else f"{where}: {msg}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {kind}: {e}") from None
