"""Knowledge JSONL that `json` parses into something unusable, or fails on with an untyped error: every case is a
`KnowledgeError` naming the file and the line (the CLI prints one line, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecglang.cli.main import main as cli
from ecglang.errors import KnowledgeError
from ecglang.knowledge.base import KnowledgeBase, Snippet

GOOD = {
    "id": "afib-x",
    "title": "Atrial fibrillation",
    "text": "Irregularly irregular rhythm with no P waves and fibrillatory waves.",
    "source": "test",
    "aliases": ["AF"],
    "codes": {"ptbxl": ["AFIB"]},
}
OTHER = {"id": "s1", "title": "Sinus rhythm", "text": "Regular rhythm with a P wave before every QRS.", "source": "s"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        # json raised RecursionError for these two
        ("[" * 100_000 + "]" * 100_000, r"line 2: invalid JSON \(nested deeper than 64 levels at column 65\)"),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, r"line 2: invalid JSON \(nested deeper than 64 levels at column 321\)"),
        # a nesting json parses but the reader refuses
        ('{"id": "s1", "title": "t", "text": "a b c", "source": "s", "codes": {"x": ' + "[" * 70 + "]" * 70 + "}}",
         r"line 2: invalid JSON \(nested deeper than 64 levels at column 137\)"),
        # int() raised ValueError (over 4300 digits)
        ('{"id": "s1", "title": "t", "text": "a b c", "source": "s", "codes": {"x": [' + "9" * 100_000 + "]}}",
         r"line 2: invalid JSON \(integer of 100000 digits, over the limit of 1000 at column 76\)"),
        # the checksum raised UnicodeEncodeError
        ('{"id": "s1", "title": "\\ud800", "text": "abc def ghi", "source": "s"}',
         r"line 2: invalid JSON \(string at \['title'\] has a lone surrogate '\\ud800', which is not Unicode text\)"),
        ('{"id": "s1", "title": "t", "text": "a b c", "source": "s", "codes": {"\\udfff": []}}',
         r"line 2: invalid JSON \(key '\\udfff' at \['codes'\] has a lone surrogate"),
        # json kept the last of two values, silently
        ('{"id": "s1", "title": "t", "text": "first text", "text": "second text", "source": "s"}',
         r"line 2: invalid JSON \(key 'text' appears twice in one JSON object\)"),
        ('{"id": "s1", "title": NaN, "text": "a b c", "source": "s"}',
         r"line 2: invalid JSON \(NaN is not a JSON value at column 23\)"),
    ],
    ids=["deep-array", "deep-object", "nested-70", "huge-int", "surrogate", "surrogate-key", "duplicate-key", "nan"],
)  # fmt: skip
def test_hostile_line_is_a_knowledge_error_naming_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=problem) as err:
        KnowledgeBase.load(path).checksum  # noqa: B018 -- the surrogate used to fail only here
    assert err.value.path == str(path)


def test_valid_surrogate_pairs_and_unicode_line_separators_load(tmp_path: Path) -> None:
    """A pair (an emoji escaped as two surrogates) is fine; U+2028 inside a string, which `write_jsonl` writes
    unescaped, is not a line break (the reader split lines with `str.splitlines` and failed on its own file)."""
    text = "Irregular rhythm\u2028with no P waves\x85and fibrillatory waves \U0001f600."
    kb = KnowledgeBase([Snippet.from_dict({**GOOD, "text": text}), Snippet.from_dict(OTHER)])
    path = kb.write_jsonl(tmp_path / "kb.jsonl")
    loaded = KnowledgeBase.load(path)
    assert loaded["afib-x"].text == text and loaded.checksum == kb.checksum
    escaped = tmp_path / "escaped.jsonl"
    escaped.write_text(json.dumps({**OTHER, "title": "Sinus \ud83d\ude00"}) + "\n", encoding="utf-8")
    assert KnowledgeBase.load(escaped)["s1"].title == "Sinus \U0001f600"


def test_bad_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    latin1 = '{"id": "s1", "title": "Sinus \xe9", "text": "Regular rhythm with P waves.", "source": "s"}'
    path.write_bytes((json.dumps(GOOD) + "\n\n" + latin1 + "\n").encode("latin-1"))
    problem = r"line 3: not UTF-8 text \(invalid continuation byte at byte offset 29 of the line\)"
    with pytest.raises(KnowledgeError, match=problem):
        KnowledgeBase.load(path)


def test_cli_search_with_a_deep_knowledge_file_prints_one_error_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    assert cli(["knowledge", "search", "x", "--kb", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}: line 1: invalid JSON (nested deeper than 64 levels at column 65)\n"


def test_a_byte_order_mark_is_read_past_and_a_text_without_criteria_is_refused(tmp_path: Path) -> None:
    """A file saved with a BOM (Windows Notepad) was refused with Python's hint "decode using utf-8-sig"; a
    snippet whose text holds no criterion (";;;") loaded and was shown beside scores it did not change."""
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert KnowledgeBase.load(bom).ids == ["afib-x"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({**GOOD, "text": ";;;"}) + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"line 1: field 'text' holds no criterion"):
        KnowledgeBase.load(empty)
