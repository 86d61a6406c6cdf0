"""What a resume checks, and how often: the checkpoint's keys were read and compared twice per resume (once by
`Trainer._restore`, before its frozen-weights check, and again by `load_checkpoint`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ecglang.core.checksums import write_checksums
from ecglang.errors import ModelLoadError
from ecglang.training import checkpoints, trainer
from ecglang.training.checkpoints import TRAINER_STATE
from ecglang.training.config import load_config
from ecglang.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"
FOUR_STEPS = ["schedule.max_steps=4", "train.eval_every=4", "train.checkpoint_every=2"]

pytestmark = pytest.mark.shared_data


def test_a_resume_checks_the_checkpoint_keys_once(ptbxl_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A smoke run cut back to checkpoint-2 and resumed: the real `check_checkpoint_keys` runs, through a spy that
    counts its calls, once for the one checkpoint loaded."""
    cfg = load_config(SMOKE, [f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path / 'cache'}", *FOUR_STEPS])
    run = tmp_path / "run"
    train(cfg, output_dir=run)
    shutil.rmtree(run / "checkpoint-4")

    real, seen = checkpoints.check_checkpoint_keys, []

    def spy(model, ckpt: Path) -> None:
        seen.append(Path(ckpt).name)
        real(model, ckpt)

    monkeypatch.setattr(checkpoints, "check_checkpoint_keys", spy)  # what load_checkpoint calls
    monkeypatch.setattr(trainer, "check_checkpoint_keys", spy, raising=False)  # the trainer's own name, if any
    result = train(cfg, output_dir=run, resume=True)
    assert result.steps == 4 and (run / "checkpoint-4").is_dir()  # it resumed and went on
    assert seen == ["checkpoint-2"]

    # The frozen-weights check, now made inside load_checkpoint after the keys, still refuses another text model.
    other = tmp_path / "other"
    shutil.copytree(run, other)
    shutil.rmtree(other / "checkpoint-4")
    ckpt = other / "checkpoint-2"
    state = json.loads((ckpt / TRAINER_STATE).read_text())
    (ckpt / TRAINER_STATE).write_text(json.dumps({**state, "frozen_sha256": "0" * 64}))
    write_checksums(ckpt)
    seen.clear()
    with pytest.raises(ModelLoadError, match=r"checkpoint-2: the frozen weights \(the pretrained text model\) differ"):
        train(cfg, output_dir=other, resume=True)
    assert seen == ["checkpoint-2"]
