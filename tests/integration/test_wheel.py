"""A normal install works (issue 13, item 10): a wheel built from the repository carries everything the package
reads at run time, and its `ecglang zero-shot` runs from another folder, offline.

The wheel is installed with ``--target`` into an empty folder (the dependencies come from the test's own
environment, no network); the command runs from a third folder with only that folder on PYTHONPATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ecglang.record.leads import CANONICAL_LEADS

REPO = Path(__file__).resolve().parents[2]
RUN_TIME = ("prompts", "knowledge", "configs", "checkpoints")


def _offline_env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(pythonpath), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", PIP_NO_INDEX="1",
    )  # fmt: skip
    return env


@pytest.mark.slow
def test_wheel_carries_its_data_and_runs_zero_shot_from_another_folder(tmp_path: Path) -> None:
    started = time.perf_counter()
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(wheels)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("ecglang-*.whl")

    # Every file the package reads at run time is in the wheel, as package data (not share/ data files).
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in RUN_TIME:
        expected = {
            f"ecglang/bundled/{p.relative_to(REPO).as_posix()}"
            for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert expected and expected <= names, f"{folder}: missing {sorted(expected - names)[:5]}"
    assert not any(".data/data/" in n for n in names)

    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    weights = target / "ecglang" / "bundled" / "checkpoints" / "ecglang-mini" / "model.safetensors"
    assert weights.is_file() and not weights.is_symlink()
    assert weights.read_bytes() == (REPO / "checkpoints" / "ecglang-mini" / "model.safetensors").read_bytes()

    from ecglang.signal.simulate import simulate_ecg  # the test process's own copy: only the record is made here

    signal = simulate_ecg(72.0, seed=0).signal + 0.05 * np.random.default_rng(0).standard_normal((12, 5000))
    np.savez(work / "rec.npz", signal=signal, fs=500.0, leads=np.array(CANONICAL_LEADS))

    env = _offline_env(target)
    where = subprocess.run(
        [sys.executable, "-c", "import ecglang; from ecglang.core.paths import resource_dir as r;"
         "print(ecglang.__file__); print(*(r(n) for n in ('prompts','knowledge','configs','checkpoints')))"],
        capture_output=True, text=True, env=env, cwd=work, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    package_file, folders = where.stdout.strip().splitlines()
    assert Path(package_file).is_relative_to(target)
    assert all(Path(f).is_relative_to(target / "ecglang" / "bundled") for f in folders.split())

    script = target / "bin" / "ecglang"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "ecglang.cli.main"]
    run = subprocess.run(
        [*command, "zero-shot", "rec.npz", "--labels", "normal ECG", "atrial fibrillation"],
        capture_output=True, text=True, env=env, cwd=work, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "== rec" in run.stdout
    scores = [line for line in run.stdout.splitlines() if "normal ECG" in line or "atrial fibrillation" in line]
    assert len(scores) == 2
    for line in scores:  # rank, label, score (cosine), snippets
        match = re.search(r"\s(-?\d+\.\d+)\s", line)
        assert match, line
        assert -1.0 <= float(match.group(1)) <= 1.0
    print(f"wheel build + install + zero-shot: {time.perf_counter() - started:.1f} s")
