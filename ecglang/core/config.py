"""One config mechanism for every dataclass config: strict `from_dict`, `to_dict`, and dotted overrides.

A config is a `@dataclass` that inherits `DictConfig`. `from_dict` rejects unknown keys (naming them and the
known ones), builds nested dataclass sections, turns JSON/YAML lists into tuples where the field is a tuple,
and turns a constructor's TypeError/ValueError into a `ConfigError` that names the config. `to_dict` is the
inverse (tuples become lists, so the result is JSON- and YAML-safe).

Every value is checked against its field's type hint before the dataclass sees it (`ConfigError` naming the
field): a number where a number belongs (never a bool), an int where an int belongs, true/false for a bool, a
string for a string, one of the choices of a `Literal`, a list or mapping whose items have the right types, and
None only where the hint allows it. One conversion is made: a float written with an exponent becomes a float
where a float belongs, because YAML 1.1 (PyYAML) reads ``1e-3`` (no dot) as the string "1e-3"; a number in
quotes ("500") stays a string, and an error.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, TypeVar

import yaml

from ecglang.errors import ConfigError

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """Base class of dataclass configs: `Cls.from_dict(d)` and `cfg.to_dict()`."""

    # Settings added after configs of this class were first saved: name -> (the value that gives the behaviour of
    # the code before them, the processor format that first wrote them). Read by `from_saved`.
    SAVED_BEFORE: ClassVar[dict[str, tuple[Any, int]]] = {}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str | None = None) -> C:
        return config_from_dict(cls, data, where)

    @classmethod
    def from_saved(
        cls: type[C], data: Mapping[str, Any] | None, where: str | None = None, *, format_version: int | None = None
    ) -> C:
        """`from_dict` for settings that a file saved (a checkpoint's processor, a cache's or prepared folder's
        metadata): a setting added since (`SAVED_BEFORE`) keeps the behaviour of the code that wrote the file,
        since a model or cache made with it must be fed the same way. `format_version`, a processor file's
        (`ecglang.encoders.ecg_processing`), decides which settings its code did not know; without it (metadata
        with no format number), any of them missing from the file."""
        if data is not None and not isinstance(data, Mapping):
            return cls.from_dict(data, where)  # not settings: its ConfigError
        data = dict(data or {})
        for name, (value, since) in cls.SAVED_BEFORE.items():
            if format_version is None or format_version < since:
                data.setdefault(name, value)
        return cls.from_dict(data, where)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def check_choices(self, choices: Mapping[str, Sequence[str]]) -> None:
        """`ConfigError` naming the first field (of `choices`: name → allowed strings) holding another value."""
        for name, allowed in choices.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ConfigError(f"{type(self).__name__}.{name} must be one of {tuple(allowed)}, got {value!r}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _options(hint: Any) -> tuple[Any, ...]:
    """The members of a union hint (`X | None` → (X, NoneType)), or the hint alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


# A float with an exponent as YAML 1.2 and Python write it, which PyYAML (YAML 1.1: a dot and a signed exponent)
# leaves a string: 1e-3, 1e3, 2.5e4. Only these: "500" or "0.2" in quotes is a string, and stays an error.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _describe(hint: Any) -> str:
    """How a hint reads in an error message."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) > 1:
            return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_plural(_describe(args[0]))}" if args and args[0] is not Any else "a list"
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    return getattr(hint, "__name__", str(hint))


def _plural(described: str) -> str:
    """ "an integer" → "integers", "a number" → "numbers" (other descriptions unchanged)."""
    for article in ("an ", "a "):
        if described.startswith(article) and " " not in described[len(article) :]:
            return described[len(article) :] + "s"
    return described


def _key_path(where: str, key: str) -> str:
    """`FILE: section.key` after a file name, `Config.section.key` after a class name."""
    if where.endswith((".yaml", ".yml", ".json")):
        return f"{where}: {key}"
    return f"{where}.{key}"


def _matches(option: Any, value: Any) -> tuple[bool, Any]:
    """(whether `value` is of type `option`, the value to keep). Hints this does not know accept anything."""
    if option is Any or option is typing.Any or isinstance(option, TypeVar):
        return True, value
    if option is type(None):
        return value is None, value
    if option is bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_", value  # numpy's bool too
    if option is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool), value
    if option is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return True, float(value)
        return isinstance(value, numbers.Real) and not isinstance(value, bool), value
    if option is str:
        return isinstance(value, str), value
    origin, args = typing.get_origin(option), typing.get_args(option)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if origin in (list, tuple, Sequence) or option in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return False, value
            kinds = list(args)
        else:
            kinds = [args[0] if args else Any] * len(value)
        items = [_matches(kind, item) for kind, item in zip(kinds, value, strict=True)]
        if not all(ok for ok, _ in items):
            return False, value
        kept = [item for _, item in items]
        return True, tuple(kept) if origin is tuple else kept
    if origin in (dict, Mapping) or option in (dict, Mapping):
        return isinstance(value, Mapping), value
    return True, value  # a hint this does not know (a class): left to the dataclass


def _coerce(hint: Any, value: Any, where: str) -> Any:
    options = _options(hint) if hint is not None else (Any,)
    if value is not None:
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return config_from_dict(option, value, where)
    for option in options:
        if dataclasses.is_dataclass(option):
            continue
        ok, kept = _matches(option, value)
        if ok:
            return kept
    raise ConfigError(f"{where} must be {_describe(hint)}, got {value!r:.80} ({type(value).__name__})")


def check_value(hint: Any, value: Any, where: str) -> Any:
    """`value` as a field typed `hint` keeps it (a float written `1e-3` becomes a float), else `ConfigError`
    naming `where`: how a dotted override is checked before it is merged into a file's settings."""
    return _coerce(hint, value, where)


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
    kwargs = {key: _coerce(hints.get(key), value, _key_path(name, key)) for key, value in data.items()}
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
