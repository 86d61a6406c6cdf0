"""Mixed precision of a pretraining run (audit 21, findings 2, 3, 4 and 6): `auto` under `accelerate launch`,
`no` written without quotes, fp16 without a GPU, and a resume under fp16 from a checkpoint without a scaler."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ecglang.training.trainer as trainer_module
from ecglang.errors import ConfigError
from ecglang.training.config import load_config
from ecglang.training.setup import create_accelerator, mixed_precision_mode
from ecglang.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"


def _bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for a bf16-capable GPU (only what `auto` reads)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if hasattr(torch, "accelerator"):
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)


# ------------------------------------------------------------------------------------------------ finding 2
def test_auto_is_bf16_under_accelerate_launch_without_mixed_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """`accelerate launch` exports ACCELERATE_MIXED_PRECISION=no when it is not told otherwise: `auto` is bf16 on a
    bf16 GPU there too, as under torchrun; an explicit `--mixed_precision fp16|bf16` still holds."""
    _bf16_gpu(monkeypatch)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert mixed_precision_mode("auto") == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert mixed_precision_mode("auto") == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert mixed_precision_mode("auto") == "fp16"
    assert mixed_precision_mode("no") == "no"  # the config's own choice is never overridden


# ------------------------------------------------------------------------------------------------ finding 3
@pytest.mark.parametrize("written", ["no", "off", "false", "'no'"])
def test_mixed_precision_no_needs_no_quotes(written: str, tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted `no` (and `off`, `false`) as False: taken as "no", in an override and a file."""
    assert load_config(SMOKE, [f"train.mixed_precision={written}"]).train.mixed_precision == "no"
    config = tmp_path / "run.yaml"
    config.write_text(SMOKE.read_text().replace("mixed_precision: auto", f"mixed_precision: {written}"))
    cfg = load_config(config)
    assert cfg.train.mixed_precision == "no"
    assert cfg.to_dict()["train"]["mixed_precision"] == "no"  # what config.yaml of the run records


def test_mixed_precision_true_is_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.mixed_precision must be auto\|no\|fp16\|bf16, got True"):
        load_config(SMOKE, ["train.mixed_precision=yes"])


@pytest.mark.slow
def test_gpu_check_creates_its_work_folder(tmp_path: Path) -> None:
    """scripts/gpu_check.sh WORK_DIR: a folder that does not exist yet is created (its first log went there and
    failed). Without a GPU the script then stops at its CUDA check, which is all this machine can show."""
    work = tmp_path / "new" / "work"
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "data"), str(work)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert work.is_dir(), proc.stdout + proc.stderr
    if not torch.cuda.is_available():
        assert proc.returncode != 0 and "no CUDA device" in proc.stderr


# ------------------------------------------------------------------------------------------------ finding 4
@pytest.mark.parametrize(("setting", "env", "named"), [
    ("fp16", None, "train.mixed_precision=fp16"),
    ("auto", "fp16", "ACCELERATE_MIXED_PRECISION=fp16"),
])  # fmt: skip
def test_fp16_without_a_gpu_is_refused_before_training(
    setting: str, env: str | None, named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On CPU accelerate trains fp16 in float32 and validation refuses fp16: the run died at its first
    validation, before any checkpoint. It is refused at the start, naming where fp16 came from."""
    _no_gpu(monkeypatch)
    if env is None:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", env)
    cfg = load_config(SMOKE, [f"train.mixed_precision={setting}"])
    with pytest.raises(ConfigError, match="needs a GPU") as info:
        create_accelerator(cfg, tmp_path / "run")
    assert named in str(info.value) and "bf16" in str(info.value)


# ------------------------------------------------------------------------------------------------ finding 6
def _train_steps(out: Path) -> list[str]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r["step"] for r in csv.DictReader(f) if r["split"] == "train"]


@pytest.mark.shared_data
def test_resume_with_a_gradient_scaler_from_a_checkpoint_without_one(
    ptbxl_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    one_torch_thread: None,
) -> None:
    """A checkpoint written without fp16 has no scaler.pt; resumed under fp16 on a GPU, accelerate holds a
    GradScaler and read scaler.pt anyway (a raw FileNotFoundError). Emulated on CPU by giving the accelerator the
    scaler accelerate builds for fp16 on a GPU: the run resumes with a fresh loss scale and says so."""
    common = [f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path / 'cache'}", 'train.mixed_precision="no"',
              "train.eval_every=100", "train.checkpoint_every=1", "schedule.warmup_steps=0"]  # fmt: skip
    out = tmp_path / "run"
    train(load_config(SMOKE, [*common, "schedule.max_steps=2"]), output_dir=out)
    assert not (out / "checkpoint-2" / "scaler.pt").exists()

    real = trainer_module.create_accelerator
    scalers = []

    def with_scaler(*args, **kwargs):
        accelerator = real(*args, **kwargs)
        accelerator.scaler = torch.amp.GradScaler("cpu")  # what accelerate builds for fp16 on a GPU
        scalers.append(accelerator)
        return accelerator

    monkeypatch.setattr(trainer_module, "create_accelerator", with_scaler)
    with caplog.at_level(logging.WARNING):
        train(load_config(SMOKE, [*common, "schedule.max_steps=3"]), output_dir=out, resume=True)
    warned = [r.getMessage() for r in caplog.records if "scaler" in r.getMessage()]
    assert len(warned) == 1 and "checkpoint-2" in warned[0] and "fresh" in warned[0], warned
    assert _train_steps(out) == ["1", "2", "3"]
    assert scalers[0].scaler is not None  # the scaler is kept for the steps after the resume
    assert (out / "checkpoint-3" / "scaler.pt").is_file()  # and saved from now on
