"""Typed configuration: dataclasses filled from YAML/dicts with errors that name the key path
and what is allowed (``model.encoder.hidden: must be > 0, got -3``), ``--set a.b=c``
overrides, and saving the resolved config with a run.

A config class is a plain dataclass; fields may carry ``metadata={"check": fn}`` where
``fn(value) -> str | None`` returns what is wrong. ``from_dict`` checks unknown keys, types
(bool, int, float, str, Literal, list, dict, Optional, nested dataclasses) and the checks.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .files import write_text

T = TypeVar("T")


def positive(v) -> str | None:
    """Check: a number > 0."""
    return None if v > 0 else f"must be > 0, got {v!r}"


def non_negative(v) -> str | None:
    """Check: a number >= 0."""
    return None if v >= 0 else f"must be >= 0, got {v!r}"


def unit_interval(v) -> str | None:
    """Check: a number in [0, 1)."""
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v!r}"


def closed_unit(v) -> str | None:
    """Check: a number in [0, 1]."""
    return None if 0 <= v <= 1 else f"must be in [0, 1], got {v!r}"


def checked(default=dataclasses.MISSING, check=None, doc: str = "", **kw):
    """A dataclass field with a value check (see the module docstring) and what it means
    (``doc``: the docs' key tables are generated from it, see :func:`keys_table`)."""
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc}, **kw)


def keys_table(cls, section: str) -> str:
    """A Markdown table of a config dataclass's keys: name, default, meaning (``doc``)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = "—" if f.default in (None, dataclasses.MISSING) else f"`{f.default}`"
        rows.append(f"| `{section}.{f.name}` | {default} | {f.metadata.get('doc', '')} |")
    return "\n".join(rows) + "\n"


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _number_from_text(value, tp):
    """``"1e-3"`` as 0.001: YAML 1.1 (PyYAML) reads exponents without a dot as strings, so
    hand-written configs and ``--set`` values meet this; other strings are left as they are."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        if tp is int:
            return int(number) if number.is_integer() and "." not in value else value
        return number
    return value


def convert(value, tp, where: str):
    """``value`` as type ``tp`` or a ConfigError naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1 and dataclasses.is_dataclass(real[0]):  # an optional section: its own error, key path and all
            return convert(value, real[0], where)
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, get_args(tp)))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        value = _number_from_text(value, int)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        value = _number_from_text(value, float)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, missing required keys, wrong
    types and failed checks raise :class:`ConfigError` with the key path."""
    label = where or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(data, fields, label)
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}: required")
            continue
        value = convert(data[name], hints[name], path)
        check = f.metadata.get("check")
        problem = check(value) if check and value is not None else None
        if problem:
            raise ConfigError(f"{path}: {problem}")
        kwargs[name] = value
    obj = cls(**kwargs)
    post = getattr(obj, "validate", None)
    if post:
        post(where)
    return obj


def check_keys(given, known, where: str) -> None:
    """The one unknown-key check: ``{where}: unknown key(s) 'x' (did you mean 'y'?); known: ...``."""
    import difflib

    known = list(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}{hint}; "
                      f"known: {', '.join(known) or 'none'}")


def block_options(cls) -> tuple[list[str], bool]:
    """Keyword parameters of ``cls.__init__`` (the first ones are a block's positional sizes), and
    whether it takes ``**kwargs``: the options a registered component accepts."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def to_dict(obj) -> dict:
    """A dataclass config as plain data (YAML-ready)."""
    return dataclasses.asdict(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (``["a", "b"]``, value parsed as YAML: numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a raw config mapping (before validation)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(keys[:i + 1])} is not a mapping")
            node = nxt
        node[keys[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; syntax errors name the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {e.problem}") from None
    except yaml.reader.ReaderError as e:  # a control character: not text YAML can hold
        raise ConfigError(f"{path}: character U+{e.character:04X} at position {e.position} is not allowed in YAML "
                          f"({e.reason})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not a YAML file ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def save_yaml(data: dict, path: str | Path) -> None:
    """Write a mapping as YAML atomically (temp file, then rename)."""
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def require_positive(where: str, **values) -> None:
    """Raise ``ConfigError("{where}.{name}: must be > 0, got v")`` for the first value <= 0."""
    for name, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise ConfigError(f"{where}.{name}: must be > 0, got {v!r}")
