"""A prompt-set argument that is a file, but not JSON (audit 20, finding 7): the error suggested
`--labels 'prompts.csv'`, which scores the file's name as a label. It now says that a prompt-set file is JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecglang.errors import PromptError
from ecglang.scores.prompts import resolve_prompts


@pytest.mark.parametrize("name", ["prompts.csv", "labels.txt", "prompts.tsv"])
def test_a_non_json_prompt_file_is_not_offered_as_a_label(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(name).write_text("AF,atrial fibrillation\n", encoding="utf-8")
    with pytest.raises(PromptError) as err:
        resolve_prompts(prompts=name)
    message = str(err.value)
    assert "--labels" not in message and f"[{name!r}]" not in message
    assert name in message and ".json" in message and "prompts/README.md" in message


def test_a_word_that_is_no_prompt_set_still_suggests_labels() -> None:
    with pytest.raises(PromptError, match=r"--labels 'afib'"):
        resolve_prompts(prompts="afib")


def test_a_missing_file_name_is_not_offered_as_a_label_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PromptError) as err:
        resolve_prompts(prompts="prompts.csv")
    assert "--labels" not in str(err.value) and ".json" in str(err.value)


def test_the_example_in_the_hint_is_a_prompt_set_that_loads(tmp_path: Path) -> None:
    from ecglang.scores.prompts import load_prompt_set, prompt_set_hint

    hint = prompt_set_hint()
    example = hint[hint.index("{") : hint.rindex("}") + 1]
    (tmp_path / "mine.json").write_text(example, encoding="utf-8")
    assert load_prompt_set(tmp_path / "mine.json").prompts() == {"AF": ["atrial fibrillation"]}
    assert Path(hint[hint.index("schema: ") + 8 : -1]).is_file()  # the schema's file, where this install has it
