"""One config mechanism for every dataclass config: strict `from_dict`, `to_dict`, and dotted overrides.

A config is a `@dataclass` that inherits `DictConfig`. `from_dict` rejects unknown keys (naming them and the
known ones), builds nested dataclass sections, turns JSON/YAML lists into tuples where the field is a tuple,
and turns a constructor's TypeError/ValueError into a `ConfigError` that names the config. `to_dict` is the
inverse (tuples become lists, so the result is JSON- and YAML-safe).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

import yaml

from ecglang.errors import ConfigError

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """Base class of dataclass configs: `Cls.from_dict(d)` and `cfg.to_dict()`."""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str | None = None) -> C:
        return config_from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _options(hint: Any) -> tuple[Any, ...]:
    """The members of a union hint (`X | None` → (X, NoneType)), or the hint alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    for option in _options(hint):
        if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
            return config_from_dict(option, value, where)
        if typing.get_origin(option) is tuple and isinstance(value, list):
            return tuple(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str | None = None) -> C:
    """Build `cls` from a mapping; unknown keys and wrong types raise `ConfigError` naming `where`."""
    name = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    hints = _hints(cls)
    kwargs = {key: _coerce(hints.get(key), value, f"{name}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a list where a number belongs
        raise ConfigError(f"invalid {name}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON/YAML data (nested sections as dicts, tuples as lists)."""
    return _plain(dataclasses.asdict(cfg))


def parse_overrides(items: Sequence[str]) -> list[tuple[str, Any]]:
    """`["train.batch_size=64", "model.name=x"]` → `[(key, value)]`, values parsed as YAML."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.batch_size=64)")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        out.append((key.strip(), value))
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `tree["a"]["b"] = value` for `key="a.b"`, creating sections that are missing."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
