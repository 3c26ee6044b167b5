"""Typed dataclass configs loaded from YAML with ``key=value`` overrides.

Every stage of the project (training, phase-1 filters, annotator, ...) keeps
its settings in a dataclass tree. A YAML file fills the tree, command-line
``a.b.c=value`` pairs override single leaves, and anything that does not fit
(an unknown key, a value of the wrong type) is rejected with one line that
names the key, before any heavy work starts.

Self-checking configs: every config class subclasses ``Config`` and
declares its fields with ``setting(default, help=..., range=...)``. Each field's help text
and range live on the field itself (``--help`` reads them; nothing parses source);
``Config.__post_init__`` checks the ranges and then calls ``validate()`` for rules that
tie fields together, so a config checks itself however it is built, children first
(they are built before their parent). A ``validate()`` message starts with the key it
names, relative to the class; ``load_config`` prefixes the path from the root. A message
that names further keys writes each as ``self.key("name")`` (its path from the root while
``load_config`` builds it, the bare name otherwise), and is then not prefixed again.
"""
from __future__ import annotations

import contextvars
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be loaded; the message is one line naming the key."""


_NO_DEFAULT = dataclasses.MISSING


def setting(default: Any = _NO_DEFAULT, *, help: str = "", range: str | None = None,  # noqa: A002
            factory: Any = None) -> Any:
    """A config field carrying its help text and allowed range (``"(0, 1]"``, ``">= 1"``).

    ``factory`` builds a mutable default (a list, a dict, a nested config). No default
    and no factory: the key is required."""
    if range is not None:
        _parse_interval(range)  # a malformed spec fails at import, not when a user hits it
    metadata = {"help": help, "range": range}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is _NO_DEFAULT:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_BUILDING = contextvars.ContextVar("config_prefix", default="")  # the path ``_build`` is building


class Config:
    """Base of every config dataclass: ranges from ``setting(range=...)``, then ``validate()``."""

    def __post_init__(self) -> None:
        check_fields(self)
        self.validate()

    def validate(self) -> None:
        """Rules that tie fields together; raise ConfigError naming the key. Default: none."""

    def key(self, name: str) -> str:
        """``name`` as the user wrote it: with its path from the root while ``load_config`` builds this config."""
        return _BUILDING.get() + name


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (converted where lossless)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {type(value).__name__} {value!r}")
        return _build(tp, value, prefix=key + ".")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{key}.<key>"): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected int, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected float, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {type(value).__name__} {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _parse_interval(spec: str) -> tuple[float, float, bool, bool]:
    """"(0, 1]" -> (0, 1, lo_open, hi_open); ">= 1", "> 0", "<= 5", "< 5" also accepted."""
    s = spec.replace(" ", "")
    for op in (">=", "<=", ">", "<"):
        if s.startswith(op):
            v = float(s[len(op):])
            if op[0] == ">":
                return v, math.inf, op == ">", True
            return -math.inf, v, True, op == "<"
    if s[0] not in "[(" or s[-1] not in "])" or "," not in s:
        raise ValueError(f"bad range spec {spec!r}")
    lo, hi = s[1:-1].split(",")
    return float(lo), float(hi), s[0] == "(", s[-1] == ")"


def in_range(value: Any, spec: str) -> bool:
    lo, hi, lo_open, hi_open = _parse_interval(spec)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value > lo if lo_open else value >= lo
    below = value < hi if hi_open else value <= hi
    return above and below


def check_fields(cfg: Any) -> None:
    """Check each field's ``setting(range=...)`` (a list: every item); ConfigError on the first miss."""
    for f in dataclasses.fields(cfg):
        spec = f.metadata.get("range")
        if spec is None:
            continue
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not in_range(v, spec):
                raise ConfigError(f"{f.name}={v!r} is out of range {spec}")


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            raise ConfigError(f"unknown key '{prefix}{k}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{prefix}{name}'")
    token = _BUILDING.set(prefix)
    try:
        built = cls(**kwargs)
    except ConfigError as e:
        if issubclass(cls, Config) and prefix and not str(e).startswith(prefix):
            raise ConfigError(prefix + str(e)) from None  # a Config names its first key relative to itself
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None
    finally:
        _BUILDING.reset(token)
    return built


def to_dict(cfg: Any) -> Any:
    """A plain (YAML-able) dict of a config tree."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3); the value is parsed as YAML (so 1e-4, true, [1,2] work)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides.

    Overrides are applied on top of the file's values, then the whole tree is
    type-checked against the dataclass annotations.
    """
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            with open(p, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
            problem = getattr(e, "problem", None) or str(e).split("\n", 1)[0]
            raise ConfigError(f"{where}: malformed YAML: {problem}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at top level")
        data = loaded
    data = apply_overrides(data, overrides)
    return _build(cls, data)


def dump_config(cfg: Any, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


# --- help text -----------------------------------------------------------------------------------------

def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "(required)"


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass a field holds (directly, or as the items of a list), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def settings_help(cls: type, prefix: str = "") -> list[str]:
    """One line per setting: ``key = default  meaning [range]``, recursing into nested configs."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        note = f.metadata.get("help", "")
        spec = f.metadata.get("range")
        inner = _dataclass_in(hints.get(f.name))
        if inner is not None and typing.get_origin(hints[f.name]) in (list, tuple):
            lines.append(f"  {key} = {_default_of(f)!r}    {note or 'a list of:'}")
            lines += settings_help(inner, key + "[].")
        elif inner is not None:
            lines += settings_help(inner, key + ".")
        else:
            rng = f"  [range {spec}]" if spec else ""
            lines.append(f"  {key} = {_default_of(f)!r}" + (f"    {note}" if note else "") + rng)
    return lines
