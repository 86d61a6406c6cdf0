"""The `knowledge=` argument of zero-shot: every spelling of "none" turns retrieval off, and a value of another
type is a ConfigError that says what is taken (an audit: "none" looked for a folder named none, 1 was a TypeError)."""

from __future__ import annotations

import pytest

from ecglang.errors import ConfigError
from ecglang.scores.labels import resolve_knowledge


@pytest.mark.parametrize("off", [None, False, "off", "OFF", "none", "None"])
def test_every_spelling_of_none_turns_retrieval_off(off: object) -> None:
    assert resolve_knowledge(off) is None


@pytest.mark.parametrize("value", [1, 0.75, ["default"], b"default"])
def test_a_value_of_another_type_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"knowledge must be a KnowledgeIndex, a folder or file path, 'default'"):
        resolve_knowledge(value)  # type: ignore[arg-type]
