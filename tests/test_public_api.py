"""The public API's type hints resolve at run time, as documentation tools (sphinx-autodoc-typehints,
`typing.get_type_hints`) read them: a string type alias such as `LabelsArg: TypeAlias = "..."` made
`LabelsArg | None` a `TypeError`, and names imported for type checking only were `NameError`s."""

from __future__ import annotations

import inspect
import typing

import pytest

import ecglang
from ecglang.data.cached_rows import CachedRows

# Imported for type checking only where the module would otherwise pay for a layer it rarely needs
# (`ecglang.scores.classifier` loads the data layer, and `datasets`, only when a cache is scored).
TYPE_CHECKING_ONLY = {"CachedRows": CachedRows}


def public_functions() -> list[tuple[str, typing.Callable]]:
    out = []
    for name in ecglang.__all__:
        obj = getattr(ecglang, name)
        members = [(name, obj)] if not inspect.isclass(obj) else [
            (f"{name}.{attr}", getattr(value, "__func__", value)) for attr, value in vars(obj).items()
            if not attr.startswith("_") or attr in ("__init__", "__call__")
        ]  # fmt: skip
        out += [(n, f) for n, f in members if inspect.isfunction(f) and f.__module__.startswith("ecglang")]
    return out


FUNCTIONS = public_functions()


def test_the_public_api_has_functions_to_check() -> None:
    names = {n for n, _ in FUNCTIONS}
    assert {"ZeroShotClassifier.__call__", "ZeroShotClassifier.__init__", "load_model", "load_ecg"} <= names


@pytest.mark.parametrize(("name", "function"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_type_hints_resolve(name: str, function: typing.Callable) -> None:
    hints = typing.get_type_hints(function, localns=TYPE_CHECKING_ONLY)
    params = [p.name for p in inspect.signature(function).parameters.values()
              if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
    unhinted = [p for p in [*params, "return"] if p not in hints]
    assert not unhinted, f"{name}: no type hint for {unhinted}"
