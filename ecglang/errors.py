"""Typed errors. Every error that reaches a user names the file (when there is one) and the problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import Any


def clip_text(text: str, limit: int) -> str:
    """`text` for a message: whole, or its first `limit` characters and its length, so that a value quoted in
    an error (a CSV cell, a JSON key) cannot flood the screen."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class EcgLangError(Exception):
    """Base class for all errors raised by ecglang."""


class _PathError(EcgLangError):
    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class EcgReadError(_PathError, ValueError):
    """A record could not be read: missing/corrupt/truncated file, bad header, unknown leads."""


class EcgQualityError(_PathError, ValueError):
    """A record was read but its signal is unusable (long NaN gaps, < 2 beats, all leads flat)."""


class ConfigError(EcgLangError, ValueError):
    """An invalid configuration value."""


class UsageError(ConfigError):
    """A command line that its words alone show to be wrong (flags that exclude each other, a malformed value):
    the CLI exits with status 2, as argparse does for its own usage errors. A `ConfigError`, so that callers
    that catch those catch it too."""


class ModelLoadError(_PathError, OSError):
    """A checkpoint could not be found or loaded (offline Hub id, missing files, bad checksum)."""


class PromptError(_PathError, ValueError):
    """A prompt set or label list is invalid (empty, duplicate labels, shared prompts)."""


class KnowledgeError(_PathError, ValueError):
    """A knowledge base file or index is missing or malformed."""


@dataclass
class RecordFailure:
    """A record that a batch run (zero-shot, evaluation, dataset build, cache build, scan) left out, and why.

    Every batch path reports its failures with this one type: they are listed at the end of the run, written
    to a CSV, and make the command exit non-zero. `stage` says where it failed: "scan", "read", "process",
    "build", "missing" or "cache". `record` is the record's id or path as the user knows it.
    """

    record: str
    stage: str
    reason: str
    path: str = ""
    label_sets: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        # A typed error's reason already starts with the file, often the record's own name: say it once.
        reason = self.reason.removeprefix(f"{self.record}: ")
        return f"[{self.stage}] {self.record}: {reason}"

    def to_dict(self) -> dict[str, Any]:
        """One CSV/JSON row: record, stage and error (the column name the CLI has always written)."""
        row: dict[str, Any] = {"record": self.record, "stage": self.stage, "error": self.reason}
        if self.label_sets:
            row["label_sets"] = list(self.label_sets)
        return row
