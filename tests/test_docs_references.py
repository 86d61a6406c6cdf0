"""The docs name real things: every backticked test file (and test), repository path and `ecglang.` dotted name
in the README and the Markdown docs resolves. Renames that forget a doc fail here, not in a user's hands."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "knowledge" / "README.md",
    REPO / "prompts" / "README.md",
    REPO / "benchmarks" / "README.md",
    REPO / "checkpoints" / "ecglang-mini" / "README.md",
]
TICKED = re.compile(r"`([^`\n]+)`")
TEST_REF = re.compile(r"^(tests/[\w/]+\.py)(?:::(\w+))?")
PATH_REF = re.compile(
    r"^((?:scripts|configs|docs|benchmarks|ecglang|knowledge|prompts|checkpoints)/[\w./-]+"
    r"\.(?:py|md|json|yaml|yml|jsonl|csv|sh))$"
)
DOTTED_REF = re.compile(r"^(ecglang(?:\.\w+)+)")


def resolves(dotted: str) -> bool:
    """Import the longest module prefix of `dotted`, then walk the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def broken_references(text: str, root: Path) -> list[str]:
    bad = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for ref in (t.strip() for t in TICKED.findall(line)):
            if m := TEST_REF.match(ref):
                path = root / m.group(1)
                if not path.is_file():
                    bad.append(f"{lineno}: {ref}: no such test file")
                elif m.group(2) and not re.search(rf"^def {m.group(2)}\b", path.read_text(encoding="utf-8"), re.M):
                    bad.append(f"{lineno}: {ref}: no such test")
            elif m := PATH_REF.match(ref):
                if not (root / m.group(1)).exists():
                    bad.append(f"{lineno}: {ref}: no such file")
            elif (m := DOTTED_REF.match(ref)) and not resolves(m.group(1)):
                bad.append(f"{lineno}: {ref}: does not resolve")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_test_path_and_dotted_name_exists(doc: Path) -> None:
    assert doc.is_file()
    assert broken_references(doc.read_text(encoding="utf-8"), REPO) == []


def test_the_check_finds_broken_references() -> None:
    text = (
        "see `tests/test_architecture.py::test_no_import_cycles` and `ecglang.record.io.load_ecg(path)`\n"
        "`tests/test_loss.py`, `tests/test_architecture.py::test_nothing`, `scripts/nope.py`\n"
        "`ecglang.encoders.towers.ModelInputError` and `ecglang.record.io.no_such_function`\n"
    )
    assert broken_references(text, REPO) == [
        "2: tests/test_loss.py: no such test file",
        "2: tests/test_architecture.py::test_nothing: no such test",
        "2: scripts/nope.py: no such file",
        "3: ecglang.encoders.towers.ModelInputError: does not resolve",
        "3: ecglang.record.io.no_such_function: does not resolve",
    ]
