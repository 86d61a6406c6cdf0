"""`ecg_tower.init`: the beat tower's initialisation scheme (issue 17's initialisation experiment)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ecglang.encoders.ecg_encoders import BeatEcgEncoder
from ecglang.encoders.mixers import SelectiveScan
from ecglang.encoders.registry import create_model
from ecglang.errors import ConfigError

SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "cnn_channels": [4, 8], "dropout": 0.0}


def _tower(seed: int = 0, **overrides: object) -> BeatEcgEncoder:
    torch.manual_seed(seed)
    return create_model("ecglang-small", ecg_tower={**SMALL, **overrides}).ecg_tower


def test_trunc_normal_starts_every_block_near_the_identity() -> None:
    tower = _tower(init="trunc_normal")
    residual = {id(m) for block in tower.blocks for m in block.residual_outputs()}
    morphology = {id(m) for m in tower.morphology.modules()}
    checked = 0
    for module in tower.modules():
        if not isinstance(module, nn.Linear) or id(module) in morphology:
            continue
        std = 0.02 / math.sqrt(2 * len(tower.blocks)) if id(module) in residual else 0.02
        w = module.weight.detach()
        assert w.abs().max() <= 2 * std + 1e-7
        if w.numel() >= 1000:  # enough draws to tell the scale (a truncated normal's std is 0.88 σ)
            assert 0.8 * std < w.std() < 0.95 * std
        assert module.bias is None or not module.bias.any()
        checked += 1
    assert checked >= 10 and len(residual) == 3 * len(tower.blocks)
    # Each block's output stays within a few percent of its input: near the identity.
    x = torch.randn(5, 12, 64)
    keep = torch.ones(5, 12, dtype=torch.bool)
    block = tower.blocks[0]
    y = block.spatial(block.norm_s(x), keep)
    assert y.norm() < 0.05 * x.norm()


def test_default_init_is_pytorchs_and_the_cnn_keeps_it_under_trunc_normal() -> None:
    plain, ours = _tower(seed=3), _tower(seed=3, init="trunc_normal")
    assert plain.blocks[0].ffn[0].weight.abs().max() > 0.05  # kaiming-uniform bound 1/√64 = 0.125, not 2 × 0.02
    for a, b in zip(plain.morphology.parameters(), ours.morphology.parameters(), strict=True):
        assert torch.equal(a, b)  # same seed, same draws: the re-initialisation never touched the CNN
    assert not torch.equal(plain.blocks[0].ffn[0].weight, ours.blocks[0].ffn[0].weight)


def test_the_selective_scans_keep_their_step_sizes() -> None:
    tower = _tower(init="trunc_normal", rhythm_mixer="ssm")
    scans = [m for m in tower.modules() if isinstance(m, SelectiveScan)]
    assert scans
    for scan in scans:  # Mamba's Δ init: softplus(bias) in [0.001, 0.1], never the zero bias of the rest
        dt = torch.nn.functional.softplus(scan.dt_proj.bias)
        assert dt.min() >= 1e-3 * 0.99 and dt.max() <= 0.1 * 1.01


def test_an_unknown_init_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ecg_tower\.init must be one of"):
        _tower(init="xavier")
