"""Prompt-set and external prompt files that `json` fails on with untyped errors (RecursionError, ValueError) or
parses into text that breaks later (lone surrogates): each is a `PromptError` naming the file, and the line and
column where they can be found. The limits themselves are those of `ecglang.core.jsonio.parse_json`, the one
reader of user JSON, whose boundaries are checked at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecglang.core.jsonio import MAX_DEPTH, MAX_INT_DIGITS, JsonInputError, parse_json
from ecglang.errors import PromptError
from ecglang.scores.prompts import load_external_prompts, load_prompt_set


def _prompt_set(prompts: str) -> str:
    """A valid prompt-set file, but for label A's prompts (raw JSON text), on line 4."""
    return (
        '{"name": "x",\n "labels": {\n  "B": {"name": "b", "prompts": ["sinus rhythm"]},\n'
        f'  "A": {{"name": "a", "prompts": {prompts}}}\n }}\n}}\n'
    )


HOSTILE = {
    # json raised RecursionError
    "deep": ("[" * 100_000 + "]" * 100_000, r"not valid JSON: nested deeper than 64 levels at line 4 column 94"),
    # int() raised ValueError: Exceeds the limit (4300 digits)
    "huge-int": ("[" + "9" * 10_000 + "]", r"integer of 10000 digits, over the limit of 1000 at line 4 column 34"),
    # loaded fine, then failed when the prompt was encoded (tokenizer, CSV, checksum)
    "surrogate": ('["atrial \\ud800 fibrillation"]', r"not valid JSON: string at \['labels', 'A', 'prompts', 0\] "
                  r"has a lone surrogate '\\ud800', which is not Unicode text"),
    "nan": ("[NaN]", r"not valid JSON: NaN is not a JSON value at line 4 column 34"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_prompt_set_is_a_prompt_error(tmp_path: Path, case: str) -> None:
    prompts, problem = HOSTILE[case]
    path = tmp_path / "set.json"
    path.write_text(_prompt_set(prompts), encoding="utf-8")
    with pytest.raises(PromptError, match=problem) as err:
        load_prompt_set(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_external_prompt_file_is_a_prompt_error(tmp_path: Path, case: str) -> None:
    prompts, problem = HOSTILE[case]
    path = tmp_path / "external.json"
    path.write_text(_prompt_set(prompts), encoding="utf-8")
    with pytest.raises(PromptError, match=problem):
        load_external_prompts(path, for_labels=["A"])


def test_external_file_with_a_surrogate_description(tmp_path: Path) -> None:
    path = tmp_path / "external.json"
    path.write_text('{"AFIB": "atrial fibrillation",\n "SR": "sinus \\udc00 rhythm"}', encoding="utf-8")
    with pytest.raises(PromptError, match=r"string at \['SR'\] has a lone surrogate '\\udc00'") as err:
        load_external_prompts(path)
    assert err.value.path == str(path)
    path.write_text('{"AFIB": "atrial fibrillation", "AFIB": "atrial flutter"}', encoding="utf-8")
    with pytest.raises(PromptError, match=r"key 'AFIB' appears twice in one JSON object \(duplicate label\?\)"):
        load_external_prompts(path)


def test_parse_json_limits_are_inclusive_and_pairs_are_kept() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(JsonInputError, match=f"nested deeper than {MAX_DEPTH} levels") as err:
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert (err.value.lineno, err.value.colno) == (1, MAX_DEPTH + 1)
    assert parse_json("[-" + "9" * MAX_INT_DIGITS + "]") == [-int("9" * MAX_INT_DIGITS)]
    with pytest.raises(JsonInputError, match=f"integer of {MAX_INT_DIGITS + 1} digits"):
        parse_json("[" + "9" * (MAX_INT_DIGITS + 1) + "]")
    # Digits inside strings and a long float are not integers; brackets inside strings do not nest.
    assert parse_json(json.dumps(["9" * 5000, "[" * 500])) == ["9" * 5000, "[" * 500]
    assert parse_json("1" + "0" * 5000 + ".0") == float("inf")
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character
    assert parse_json('{"a": 1, "a": 2}', unique_keys=False) == {"a": 2}
    with pytest.raises(JsonInputError, match=r"Expecting ',' delimiter at line 2 column 4"):
        parse_json("[1,\n 2 3]")


def test_a_prompt_far_longer_than_the_text_tower_reads_is_refused(tmp_path: Path) -> None:
    """A prompt set with one 9 MB prompt was tokenized whole: `ecglang evaluate` took 2.7 GB against 0.76 GB."""
    from ecglang.scores.prompts import MAX_PROMPT_CHARS, resolve_prompts

    huge = "af " * (MAX_PROMPT_CHARS // 3 + 1)
    labels = {"AF": {"name": "atrial fibrillation", "prompts": ["atrial fibrillation", huge]}}
    prompt_set = {"name": "mine", "dataset": "x", "label_set": "y", "labels": labels}
    path = tmp_path / "set.json"
    path.write_text(json.dumps(prompt_set))
    with pytest.raises(PromptError, match=rf"set\.json: .*label 'AF' has a prompt of {len(huge):,} characters"):
        load_prompt_set(path)
    external = tmp_path / "external.json"
    external.write_text(json.dumps({"AF": huge}))
    with pytest.raises(PromptError, match=r"external\.json: code 'AF': a description of"):
        load_external_prompts(external)
    with pytest.raises(PromptError, match=r"label 'AF' has a prompt of"):
        resolve_prompts(prompts={"AF": [huge]})
    with pytest.raises(PromptError, match=r"label #0 has"):
        resolve_prompts([huge])
