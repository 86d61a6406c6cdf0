"""Typed errors. Every error that reaches a user names the file (when there is one) and the problem."""

from __future__ import annotations

from os import PathLike


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


class ModelLoadError(_PathError, OSError):
    """A checkpoint could not be found or loaded (offline Hub id, missing files, bad checksum)."""


class PromptError(_PathError, ValueError):
    """A prompt set or label list is invalid (empty, duplicate labels, shared prompts)."""


class KnowledgeError(_PathError, ValueError):
    """A knowledge base file or index is missing or malformed."""
