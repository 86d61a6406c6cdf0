"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SNIPPETS = [
    {"id": "af", "title": "Atrial fibrillation", "aliases": [], "codes": {"snomed": ["164889003"]},
     "text": "Irregular RR intervals; no P waves; f waves at 350-600 /min in V1.", "source": "Test (2024)"},
    {"id": "pvc", "title": "Ventricular premature complex", "aliases": [], "codes": {},
     "text": "Premature QRS >= 120 ms without a preceding P wave.", "source": "Test (2024)"},
]  # fmt: skip


@pytest.fixture
def small_kb(tmp_path: Path) -> Path:
    """A real two-snippet knowledge base: its index builds in well under a second once the model is loaded."""
    path = tmp_path / "kb.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SNIPPETS))
    return path
