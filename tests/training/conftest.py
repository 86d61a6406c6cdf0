"""Training tests seed the global RNGs (`train` calls accelerate's `set_seed`); other folders' tests rely on the
state their own module-level seeding left, so each test here gives the global state back."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_global_rng():
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 (the legacy global state is what set_seed seeds)
    with torch.random.fork_rng():
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)  # noqa: NPY002
