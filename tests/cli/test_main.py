"""The CLI's outer behaviour: what it does when its reader goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_a_closed_pipe_ends_quietly_with_sigpipe_status(tmp_path: Path) -> None:
    """`ecglang inspect REC | head -1`: the reader leaves before the output is written. The command stops with
    status 141 (128 + SIGPIPE), as Unix tools do, and prints no traceback."""
    record = tmp_path / "r.npy"
    np.save(record, np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "ecglang.cli.main", "inspect", str(record), "--fs", "500",
            "--leads", "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # gone before the child (still importing torch) writes a byte
    _, err = proc.communicate(timeout=120)
    err = err.decode(errors="replace")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
    assert proc.returncode == 141, (proc.returncode, err[-2000:])
