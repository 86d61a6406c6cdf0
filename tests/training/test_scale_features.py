"""Training features for scale: the loss arrangement, trackers, gradient checkpointing and a tower that compiles."""

from __future__ import annotations

import copy

import pytest
import torch

from ecglang.encoders.ecg_encoders import BeatEcgEncoder
from ecglang.encoders.registry import create_model
from ecglang.errors import ConfigError
from ecglang.training.config import LoggingSection
from ecglang.training.logs import resolve_trackers, tensorboard_available
from ecglang.training.setup import enable_gradient_checkpointing, resolve_local_loss

TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_ratio": 2.0, "cnn_channels": [8, 16], "dropout": 0.0}


def test_local_loss_auto_is_exact_up_to_two_processes_and_local_beyond():
    assert [resolve_local_loss("auto", n) for n in (1, 2, 3, 8)] == [False, False, True, True]
    assert resolve_local_loss(True, 2) is True and resolve_local_loss(False, 8) is False


def test_trackers_from_log_with():
    assert resolve_trackers(LoggingSection(tensorboard=False)) == []
    expected = ["tensorboard"] if tensorboard_available() else []
    assert resolve_trackers(LoggingSection(tensorboard=True)) == expected
    with pytest.raises(ConfigError, match="unknown tracker"):
        resolve_trackers(LoggingSection(log_with=["tensorbored"], tensorboard=False))
    import accelerate.utils

    for name in ("wandb", "mlflow"):
        section = LoggingSection(log_with=name, tensorboard=False)
        if getattr(accelerate.utils, f"is_{name}_available")():
            assert resolve_trackers(section) == [name]
        else:
            with pytest.raises(ConfigError, match="not installed"):
                resolve_trackers(section)


def _batch(seed: int = 0, b: int = 3, n: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    beat_mask = torch.zeros(b, n, dtype=torch.bool)
    for i, k in enumerate((7, 4, 6)[:b]):  # different beat counts; the last slots are padding everywhere
        beat_mask[i, :k] = True
    lead_mask = torch.ones(b, 12, dtype=torch.bool)
    lead_mask[1, 6:] = False  # a 6-lead record
    return {
        "beats": torch.randn(b, n, 12, 96, generator=g), "beat_mask": beat_mask, "lead_mask": lead_mask,
        "rr": torch.rand(b, n, 2, generator=g) + 0.5, "times": torch.rand(b, n, generator=g) * 10,
    }  # fmt: skip


def _tower() -> BeatEcgEncoder:
    torch.manual_seed(0)
    return create_model("ecglang-small", ecg_tower=TINY).ecg_tower.eval()


def test_static_shape_path_equals_the_real_beats_path():
    tower, batch = _tower(), _batch()
    ref = tower(**batch)
    tower.static_shapes = True
    out = tower(**batch)
    for key in ("rhythm", "beats", "tokens"):
        torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=1e-5)
    assert torch.all(out["tokens"][~batch["beat_mask"]] == 0)


def test_tower_compiles_without_graph_breaks():
    tower, batch = _tower(), _batch()
    explanation = torch._dynamo.explain(tower)(**batch)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(tower, fullgraph=True, backend="aot_eager")  # no C compiler needed for this check
    out, ref = compiled(**batch), tower(**batch)
    torch.testing.assert_close(out["rhythm"], ref["rhythm"], atol=1e-5, rtol=1e-5)
    out["rhythm"].sum().backward()  # and backward through the compiled graph
    assert tower.blocks[0].ffn[0].weight.grad is not None


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("ecglang-small", ecg_tower=TINY, text_tower={"max_length": 32, "lora": None})
    model.train()
    ckpt = copy.deepcopy(model)
    enable_gradient_checkpointing(ckpt)
    base = ckpt.text_tower.base_model
    assert ckpt.ecg_tower.gradient_checkpointing
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    batch = _batch()
    texts = ["sinus rhythm. normal ecg.", "atrial fibrillation.", "sinus bradycardia. left axis deviation."]
    for m in (model, ckpt):
        torch.manual_seed(1)
        m(**batch, texts=texts).loss.backward()
    for (name, p), q in zip(model.named_parameters(), ckpt.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
