"""Fixtures shared by the zero-shot tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(model_dir):
    """The test checkpoint (`model_dir`) loaded on the CPU; a module that needs another model defines its own."""
    from ecglang.encoders.modeling import load_model  # here: torch loads only for the tests that use it

    return load_model(model_dir, device="cpu")
