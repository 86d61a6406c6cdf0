"""DDP and parameters the active losses never reach (audit 21, finding 1): an ECG-only run, or a contrastive loss
weighted 0, left trainable parameters without a gradient, and every multi-process run crashed at its second step
(DDP waits for every parameter unless `find_unused_parameters` is on). `build_training` now turns that option on
from the config (`unused_parameters_reason`); here one forward/backward of the model `build_training` prepared, on a
batch of its own loader, checks that the rule fires exactly when a trainable parameter gets no gradient."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from ecglang.training.config import load_config
from ecglang.training.setup import build_training, create_accelerator, unused_parameters_reason

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"

pytestmark = [pytest.mark.shared_data]

CONFIGS = {
    "contrastive": [],
    "masked_beats alone": ["objectives.contrastive=false", "objectives.masked_beats.weight=1"],
    "latent_beats alone": ["objectives.contrastive=false", "objectives.latent_beats.weight=1"],
    "token=0": ["model.overrides.loss.weights.token=0"],
    "rhythm=0": ["model.overrides.loss.weights.rhythm=0"],
    "beat=0": ["model.overrides.loss.weights.beat=0"],
}


@pytest.fixture(scope="module")
def overrides(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> list[str]:
    return [f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path_factory.mktemp('cache') / 'cache'}"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_rule_fires_exactly_when_a_trainable_parameter_gets_no_gradient(
    name: str, overrides: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(SMOKE, [*overrides, *CONFIGS[name]])
    accelerator = create_accelerator(cfg, tmp_path / "run")
    with caplog.at_level(logging.INFO):
        setup = build_training(cfg, tmp_path / "run", accelerator)
    batch = next(iter(setup.train_loader))
    # the inputs the step loop gives the model (`StepLoop._micro_step`)
    skip = ("index",) if setup.objectives is not None else ("index", "has_report")
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in skip}
    setup.model(**inputs).loss.backward()
    unused = [n for n, p in setup.model.named_parameters() if p.requires_grad and p.grad is None]
    reason = unused_parameters_reason(cfg, setup.inner_model)
    assert (reason is not None) == bool(unused), (reason, unused)
    # the option DDP is built with (a one-process run wraps nothing, but the rule is applied alike); the INFO line
    # that says why comes in runs of several processes only (test_distributed.py)
    assert accelerator.ddp_handler.find_unused_parameters == bool(unused)
    assert not [r for r in caplog.records if "find_unused_parameters" in r.getMessage()]
