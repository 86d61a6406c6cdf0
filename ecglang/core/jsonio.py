"""Parsing JSON that a user or a third party wrote (knowledge JSONL, prompt sets, external prompt files).

`parse_json` is `json.loads` with the failures that `json` leaves untyped turned into one `JsonInputError`
(a `ValueError` with `msg`, `lineno` and `colno`, like `json.JSONDecodeError`), which each reader re-raises
as its own typed error naming the file:

* syntax errors (`json.JSONDecodeError`);
* nesting deeper than `max_depth` (`json` itself raises `RecursionError` near the interpreter's limit, and
  code that walks the parsed value recursively would hit it later);
* integers longer than `max_int_digits` digits (`int()` raises `ValueError` past 4300, and is quadratic in
  the length when that limit is lifted);
* `NaN`, `Infinity` and `-Infinity`, which are not JSON;
* strings (keys included) with a lone UTF-16 surrogate such as ``"\\ud800"``: valid JSON escapes, but not
  Unicode text, so encoding them (to hash or to write) fails far from the file;
* with `unique_keys` (the default), a key repeated in one object, where `json` silently keeps the last value.

Positions (`lineno`, `colno`, 1-based, in `text`) are given where they can be found; a lone surrogate is
located by the key path of its string instead. No torch, no pandas.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ecglang.errors import clip_text

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "JsonInputError", "is_count", "parse_json"]

#: Deepest nesting accepted; the files read this way nest four levels at most.
MAX_DEPTH = 64
#: Longest integer accepted (digits); these files hold no integers that long.
MAX_INT_DIGITS = 1000
_QUOTED = 80  # characters of a key quoted in a message

_SURROGATE = re.compile("[\ud800-\udfff]")
# Tokens that matter for locating a problem: strings (skipped whole), brackets, numbers and the non-JSON constants.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|NaN|-?Infinity', re.S)


class JsonInputError(ValueError):
    """JSON text that cannot be used: `msg` is the problem, `lineno`/`colno` (1-based) where, when known, and
    `kind` which rule it broke ("syntax", "depth", "int", "constant", "surrogate" or "duplicate_key")."""

    def __init__(self, msg: str, lineno: int | None = None, colno: int | None = None, kind: str = "syntax") -> None:
        self.msg, self.lineno, self.colno, self.kind = msg, lineno, colno, kind
        super().__init__(msg + (f" at line {lineno} column {colno}" if lineno is not None else ""))

    def in_line(self) -> str:
        """The problem and its column, for text parsed one line at a time (JSONL), whose reader names the line."""
        return self.msg + (f" at column {self.colno}" if self.colno is not None else "")


def is_count(value: object, low: int = 0) -> bool:
    """Whether `value` (read from a file, or given by a caller) is an integer >= `low`; bools are not counts."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


class _Refused(ValueError):
    """Raised from inside `json`'s hooks; `kind` says which token `_locate` should look for."""

    def __init__(self, msg: str, kind: str = "") -> None:
        super().__init__(msg)
        self.msg, self.kind = msg, kind


def _locate(text: str, kind: str, max_depth: int, max_int_digits: int) -> tuple[int | None, int | None]:
    """(line, column) of the first token outside strings that is too deep ("depth"), an over-long integer
    ("int") or a non-JSON constant ("constant"); (None, None) if there is none (or `kind` is none of them)."""
    if kind not in ("depth", "int", "constant"):
        return None, None
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            continue
        if first in "[{":
            depth += 1
            hit = kind == "depth" and depth > max_depth
        elif first in "]}":
            depth -= 1
            continue
        elif kind == "int":
            hit = token.lstrip("-").isdigit() and len(token.lstrip("-")) > max_int_digits
        else:
            hit = kind == "constant" and token in ("NaN", "Infinity", "-Infinity")
        if hit:
            pos = match.start()
            return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
    return None, None


def _parse_int(max_digits: int):
    def parse(token: str) -> int:
        digits = len(token) - token.startswith("-")
        if digits > max_digits:
            raise _Refused(f"integer of {digits} digits, over the limit of {max_digits}", "int")
        return int(token)

    return parse


def _parse_constant(token: str) -> Any:
    raise _Refused(f"{token} is not a JSON value", "constant")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {clip_text(repr(key), _QUOTED)} appears twice in one JSON object", "duplicate_key")
        out[key] = value
    return out


def _check_value(value: Any, max_depth: int) -> tuple[str, str] | None:
    """Walk `value` without recursion: (kind, message) of the first problem in file order ("depth", or
    "surrogate" for a lone surrogate), else None."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 0, ())]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if bad := _SURROGATE.search(item):
                return (
                    "surrogate",
                    f"string at {list(where)} has a lone surrogate {bad.group()!r}, which is not Unicode text",
                )
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                return "depth", f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, sub in reversed(item.items()):  # reversed: popped in file order
                    if _SURROGATE.search(key):
                        shown = clip_text(ascii(key), _QUOTED)
                        return (
                            "surrogate",
                            f"key {shown} at {list(where)} has a lone surrogate, which is not Unicode text",
                        )
                    stack.append((sub, depth + 1, (*where, clip_text(key, 40))))
            else:
                stack.extend((item[i], depth + 1, (*where, i)) for i in reversed(range(len(item))))
    return None


def parse_json(
    text: str, *, max_depth: int = MAX_DEPTH, max_int_digits: int = MAX_INT_DIGITS, unique_keys: bool = True
) -> Any:
    """`json.loads(text)` that raises `JsonInputError` for anything unusable (see the module docstring)."""
    try:
        value = json.loads(
            text,
            parse_int=_parse_int(max_int_digits),
            parse_constant=_parse_constant,
            object_pairs_hook=_unique_pairs if unique_keys else None,
        )
    except json.JSONDecodeError as exc:
        raise JsonInputError(exc.msg, exc.lineno, exc.colno) from None
    except _Refused as exc:
        raise JsonInputError(exc.msg, *_locate(text, exc.kind, max_depth, max_int_digits), kind=exc.kind) from None
    except RecursionError:
        msg = f"nested deeper than {max_depth} levels"
        raise JsonInputError(msg, *_locate(text, "depth", max_depth, max_int_digits), kind="depth") from None
    found = _check_value(value, max_depth)
    if found is not None:
        kind, problem = found
        raise JsonInputError(problem, *_locate(text, kind, max_depth, max_int_digits), kind=kind)
    return value
