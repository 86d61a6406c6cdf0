"""Loading a model, or saving a table, without the console output of the libraries that do it.

`transformers` draws a "Loading weights" bar for every model it reads and peft warns (FutureWarning) that
transformers renamed `is_gradient_checkpointing`; in the Python API a newcomer reads both as something going
wrong. The CLI silences them for its whole process (`ecglang.cli.main`); the library only inside its own loading
calls, and restores the user's settings afterwards.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Run the block with transformers' progress bars off and peft's renamed-attribute FutureWarning ignored."""
    # here: transformers is only needed when a model is loaded
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def datasets_progress(enabled: bool) -> Iterator[None]:
    """Run the block with the `datasets` library's progress bars ("Saving the dataset") on or off, as the caller's
    own bars are (`--no-progress`), and restore the setting afterwards."""
    # here: datasets is only needed where a table is written
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    if enabled:
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
