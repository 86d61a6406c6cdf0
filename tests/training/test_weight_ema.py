"""The weight average (`optim.ema_decay`, `ecglang.training.weight_ema`): its recurrence, the swap in and out of
the model, its file in checkpoints, and a pretraining run that validates and exports it and resumes it exactly."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ecglang.errors import ConfigError, ModelLoadError
from ecglang.training.config import load_config
from ecglang.training.trainer import train
from ecglang.training.weight_ema import WEIGHT_EMA_FILE, WeightEMA

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"


def _model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].bias.requires_grad_(False)  # a frozen tensor: not averaged
    return model


def test_average_follows_its_recurrence_and_leaves_frozen_tensors_out() -> None:
    model = _model()
    ema = WeightEMA(model, decay=0.8)
    assert set(ema.average) == {"0.weight", "0.bias", "1.weight"}
    expected = model[0].weight.detach().clone()
    for n in range(1, 8):
        with torch.no_grad():
            model[0].weight.add_(float(n))  # the "optimizer step"
        d = min(0.8, (1 + n) / (10 + n))  # short at the start, then the decay
        expected = d * expected + (1 - d) * model[0].weight.detach()
        ema.update()
    assert ema.updates == 7
    torch.testing.assert_close(ema.average["0.weight"], expected)
    assert not torch.allclose(ema.average["0.weight"], model[0].weight)  # an average, not the last weights


def test_applied_swaps_the_average_in_and_the_trained_weights_back() -> None:
    model = _model()
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.applied():
        torch.testing.assert_close(model[0].weight.detach(), ema.average["0.weight"])
        assert not torch.equal(model[0].weight, trained["0.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    with pytest.raises(RuntimeError), ema.applied():  # restored on an error inside the block too
        raise RuntimeError("validation failed")
    assert torch.equal(model[0].weight, trained["0.weight"])


def test_file_round_trip_and_errors(tmp_path: Path) -> None:
    model = _model()
    ema = WeightEMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update()
    ema.update()
    ema.save(tmp_path)
    other = WeightEMA(_model(), decay=0.9)
    other.load(tmp_path)
    assert other.updates == 2 and other.current_decay() == ema.current_decay()
    for key in ema.average:
        torch.testing.assert_close(other.average[key], ema.average[key])
    with pytest.raises(ModelLoadError, match=r"no weight average.*optim\.ema_decay"):
        WeightEMA(_model(), decay=0.9).load(tmp_path / "elsewhere")
    save_file({"0.weight": torch.zeros(2, 3)}, str(tmp_path / WEIGHT_EMA_FILE))
    with pytest.raises(ModelLoadError, match=r"missing \['0\.bias', '1\.weight'\]"):
        WeightEMA(_model(), decay=0.9).load(tmp_path)
    (tmp_path / WEIGHT_EMA_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot read the weight average"):
        WeightEMA(_model(), decay=0.9).load(tmp_path)
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(_model(), decay=1.0)


@pytest.mark.parametrize("value", ["1.0", "0", "-0.5"])
def test_decay_outside_zero_one_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"optim\.ema_decay must be a number in \(0, 1\)"):
        load_config(SMOKE, [f"optim.ema_decay={value}"])


# ------------------------------------------------------------------------------------------ in a run
EMA_RUN = ["optim.ema_decay=0.5"]  # a short average: it differs visibly from the last step's weights


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def ema_run(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("ema-cache")
    out = tmp_path_factory.mktemp("ema") / "run"
    train(load_config(SMOKE, [f"data.root={ptbxl_dir}", f"data.cache_dir={cache}", *EMA_RUN]), output_dir=out)
    return out, cache


@pytest.mark.shared_data
def test_exports_hold_the_average_not_the_last_step(ema_run: tuple[Path, Path]) -> None:
    from ecglang.encoders.modeling import EcgLangModel

    out, _ = ema_run
    average = _tensors(out / "checkpoint-8" / WEIGHT_EMA_FILE)
    trained = _tensors(out / "checkpoint-8" / "model.safetensors")
    assert set(average) == set(trained)  # the trainable tensors, as the checkpoint keeps them
    final = EcgLangModel.from_pretrained(out / "final").state_dict()
    ecg_keys = [k for k in average if k.startswith("ecg_tower.")]
    assert ecg_keys
    for key in ecg_keys:
        torch.testing.assert_close(final[key], average[key])
    assert any(not torch.allclose(average[k], trained[k]) for k in ecg_keys)  # the last step's weights differ
    for export in ("best", "final"):  # the card says what the weights are
        assert "exponential moving average of the trained ones (optim.ema_decay=0.5)" in (
            out / export / "README.md"
        ).read_text(encoding="utf-8")


@pytest.mark.shared_data
def test_resume_restores_the_average(ema_run: tuple[Path, Path], ptbxl_dir: Path, tmp_path: Path) -> None:
    """Resumed at step 6, the run ends with the same average as the uninterrupted one: an average rebuilt from the
    weights at step 6 (instead of restored) would differ."""
    reference, cache = ema_run
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    shutil.rmtree(out / "checkpoint-8")
    train(load_config(SMOKE, [f"data.root={ptbxl_dir}", f"data.cache_dir={cache}", *EMA_RUN]), output_dir=out,
          resume=True)  # fmt: skip
    expected, got = (_tensors(o / "checkpoint-8" / WEIGHT_EMA_FILE) for o in (reference, out))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def _resume(src: Path, out: Path, ptbxl_dir: Path, cache: Path, extra: list[str], caplog) -> list[str]:
    """Copy a finished run, drop its last checkpoint and resume it at step 6 with `extra`; the warnings logged."""
    shutil.copytree(src, out)
    shutil.rmtree(out / "checkpoint-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecglang"):
        train(load_config(SMOKE, [f"data.root={ptbxl_dir}", f"data.cache_dir={cache}", *extra]), output_dir=out,
              resume=True)  # fmt: skip
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.shared_data
def test_resume_turns_the_average_on_from_the_resumed_weights(
    ema_run: tuple[Path, Path], ptbxl_dir: Path, tmp_path: Path, caplog
) -> None:
    """docs/TRAINING.md: another `optim.*` on --resume is allowed with a warning. A run started without the
    average and resumed with it starts the average at the resumed step (it was a ModelLoadError telling the user
    to resume with the old config, after a warning that the change was accepted)."""
    _, cache = ema_run
    plain = tmp_path / "plain"
    train(load_config(SMOKE, [f"data.root={ptbxl_dir}", f"data.cache_dir={cache}"]), output_dir=plain)
    assert not (plain / "checkpoint-8" / WEIGHT_EMA_FILE).exists()
    warnings = _resume(plain, tmp_path / "run", ptbxl_dir, cache, EMA_RUN, caplog)
    assert any("no weight average" in w and "starts from the weights of step 6" in w for w in warnings), warnings
    assert not any("learning rate follows" in w for w in warnings), warnings  # the learning rate did not change
    with safe_open(str(tmp_path / "run" / "checkpoint-8" / WEIGHT_EMA_FILE), framework="pt") as f:
        assert f.metadata()["updates"] == "2"  # steps 7 and 8: the average began at step 6


@pytest.mark.shared_data
def test_resume_without_the_average_says_it_is_left_unused(
    ema_run: tuple[Path, Path], ptbxl_dir: Path, tmp_path: Path, caplog
) -> None:
    """Resumed without `optim.ema_decay`, the checkpoint's average is dropped: said, with what it means for
    validation and exports (before: only "the learning rate follows the new values", which it does not)."""
    reference, cache = ema_run
    warnings = _resume(reference, tmp_path / "run", ptbxl_dir, cache, [], caplog)
    assert any(
        "weight average" in w and "optim.ema_decay is not set" in w and "the trained weights" in w for w in warnings
    ), warnings
    assert not any("learning rate follows" in w for w in warnings), warnings


def test_batchnorm_statistics_are_averaged_with_the_weights() -> None:
    """With the ResNet baseline's BatchNorm the average swapped in the weights only: averaged weights normalised
    with the last step's running statistics. The statistics are averaged too; the batch counter is not."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.BatchNorm1d(3))
    ema = WeightEMA(model, decay=0.8)
    assert {"1.running_mean", "1.running_var"} <= set(ema.average) and "1.num_batches_tracked" not in ema.average
    expected = model[1].running_mean.clone()
    for n in range(1, 6):
        model.train()(torch.randn(4, 2, 8) + n)  # a training step moves the statistics
        d = min(0.8, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model[1].running_mean
        ema.update()
    live = model[1].running_mean.clone()
    with ema.applied():
        torch.testing.assert_close(model[1].running_mean, expected)
        assert not torch.allclose(model[1].running_mean, live)
    assert torch.equal(model[1].running_mean, live)  # the trained statistics come back
