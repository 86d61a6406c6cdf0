"""Fixtures shared by the prototype tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(one_torch_thread):
    """The bundled checkpoint on the CPU (one per test module); a module that needs another model defines its own."""
    from ecglang.encoders.modeling import load_model  # here: torch loads only for the tests that use it

    return load_model(None, "cpu")
