"""Two CPU processes (torchrun, gloo) train exactly like one process with the same global batch.

Each process holds half of every global batch; `gather_with_grad` builds the full similarity matrices and
the trainer rescales gradients for DDP's averaging (see `ecglang.training.trainer`). If either part were wrong the
gradient norms (taken after DDP's all-reduce) and then the losses would drift from the 1-process run:
without the rescaling the tower gradients are halved, without the logit-scale correction the norm is off
by ~2e-3. Dropout is off so that both runs compute the same function; augmentations stay on (they are
seeded per sample, not per process)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecglang.training.config import load_config
from ecglang.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def _train_rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def _torchrun(args: list[str]) -> str:
    """`torchrun --standalone --nproc_per_node 2 -m ecglang.training.trainer ARGS`; returns the log."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ecglang.training.trainer", "--config", str(SMOKE), *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "2 processes on cpu" in log, log[-4000:]
    return log


@pytest.fixture(scope="module")
def data_overrides(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path_factory.mktemp('cache') / 'cache'}"]


def test_two_processes_match_one_process(data_overrides: list[str], tmp_path: Path) -> None:
    overrides = [
        *data_overrides,
        "schedule.max_steps=4",
        "train.eval_every=100",  # one validation, at the end
        "train.checkpoint_every=100",
        "model.overrides.ecg_tower.dropout=0",
        "model.overrides.text_tower.lora.dropout=0",
        "model.text_dropout=0",
    ]
    one = tmp_path / "one"
    train(load_config(SMOKE, overrides), output_dir=one)  # also builds the signal cache

    two = tmp_path / "two"
    _torchrun(["--output", str(two), *overrides])

    a, b = _train_rows(one), _train_rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == ["1", "2", "3", "4"]
    for key in ("loss", "loss_rhythm", "loss_beat", "loss_token", "grad_norm"):
        np.testing.assert_allclose(
            [float(r[key]) for r in b], [float(r[key]) for r in a], rtol=1e-4, atol=0, err_msg=key
        )
    # The gathered validation sees the same held-out pairs in the same order.
    with (one / "metrics.csv").open() as f1, (two / "metrics.csv").open() as f2:
        val1 = [r for r in csv.DictReader(f1) if r["split"] == "val"]
        val2 = [r for r in csv.DictReader(f2) if r["split"] == "val"]
    assert val1[0]["val_n_pairs"] == val2[0]["val_n_pairs"] == "4"
    assert float(val2[0]["val_selection"]) == pytest.approx(float(val1[0]["val_selection"]), abs=1e-6)


def test_two_process_run_resumes_exactly(data_overrides: list[str], tmp_path: Path) -> None:
    """Checkpoints of a DDP run hold every process's RNG state; dropout stays on here, so a resumed run
    matches only if each rank gets its own state back."""
    out = tmp_path / "run"
    overrides = [*data_overrides, "schedule.max_steps=4", "train.eval_every=100", "train.checkpoint_every=2"]
    _torchrun(["--output", str(out), *overrides])
    full = _train_rows(out)
    shutil.rmtree(out / "checkpoint-4")  # as if the run had been killed before its last checkpoint
    log = _torchrun(["--output", str(out), "--resume", *overrides])
    assert "resumed from" in log and "checkpoint-2" in log
    resumed = _train_rows(out)
    assert [r["step"] for r in resumed] == ["1", "2", "3", "4"]
    for key in ("loss", "grad_norm"):
        assert [float(r[key]) for r in resumed] == [float(r[key]) for r in full], key
