"""Shared by the checkpoint-trust tests: loading checkpoint folders in a fresh, memory-capped interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import ecglang

REPO = Path(ecglang.__file__).resolve().parent.parent

# Loads each folder with EcgLangModel.from_pretrained and reports its error (or "loaded") and seconds, and how
# far peak memory grew. The address space is capped at 1.5 GiB above the imports, so a regression that
# allocates what a hostile config.json claims fails (as an UNTYPED MemoryError) instead of exhausting the machine.
_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    from transformers import AutoConfig
    import transformers.models.bert.modeling_bert  # imported before timing: the first case pays no import
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.errors import ModelLoadError
    AutoConfig.for_model("bert")
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 3 * 2**29, resource.RLIM_INFINITY))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = []
    for folder in sys.argv[1:]:
        t0 = time.perf_counter()
        try:
            EcgLangModel.from_pretrained(folder)
            message = "loaded"
        except ModelLoadError as exc:
            message = str(exc)
        except Exception as exc:
            message = f"UNTYPED {type(exc).__name__}: {exc}"[:300]
        out.append([message, time.perf_counter() - t0])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
    print("RESULT " + json.dumps({"cases": out, "grown_mb": grown_mb}))
    """
)


@pytest.fixture
def load_in_child() -> Callable[[Sequence[str]], dict[str, Any]]:
    """`load_in_child(folders)` → `{"cases": [[message, seconds], ...], "grown_mb": float}` (see `_LOAD_SCRIPT`)."""

    def run(folders: Sequence[str]) -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, *folders], env=env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])

    return run
