"""`ecglang pretrain` with the ECG-only objectives (issue 17): ECG-only runs on a folder without reports, mixed
paired + unpaired runs, the EMA target (trained by no optimizer, saved with checkpoints, restored on resume)
and the config keys. Tiny towers (configs/pretrain/smoke.yaml), a few steps each."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ecglang.data.synthetic import synthetic_signal, write_wfdb_record
from ecglang.encoders.objectives import LatentBeatPrediction
from ecglang.errors import ConfigError
from ecglang.training.config import load_config
from ecglang.training.objectives import PretrainObjectives
from ecglang.training.pairs import EpochSampler, PretrainCollator
from ecglang.training.setup import build_model, param_groups
from ecglang.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"
ECG_ONLY = [
    "data.builder=physionet", "data.limit=null", "data.val_group=null", "data.val_fraction=0.34",
    "objectives.contrastive=false", "objectives.masked_beats.weight=1.0", "objectives.latent_beats.weight=1.0",
    "objectives.latent_beats.ema=0.5",  # a target that moves visibly: its restoration on resume shows
    "schedule.max_steps=3", "schedule.warmup_steps=0", "train.batch_size=2", "train.eval_every=3",
    "train.checkpoint_every=1", "train.keep_last=3",
]  # fmt: skip


def _rows(out: Path, split: str = "train") -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


@pytest.fixture(scope="module")
def unpaired_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic 12-lead WFDB records without reports (CinC-style age/sex comments on some)."""
    root = tmp_path_factory.mktemp("unpaired")
    rng = np.random.default_rng(0)
    for i in range(6):
        base = root / f"U{i:03d}"
        write_wfdb_record(base, synthetic_signal(rng))
        if i % 2 == 0:
            hea = base.with_name(base.name + ".hea")
            hea.write_text(hea.read_text() + f"# Age: {40 + i}\n# Sex: {'Male' if i % 4 else 'Female'}\n")
    return root


@pytest.fixture(scope="module")
def ecg_only_run(unpaired_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Path:
    out = tmp_path_factory.mktemp("ecg-only") / "run"
    cache = tmp_path_factory.mktemp("ecg-only-cache")
    cfg = load_config(SMOKE, [*ECG_ONLY, f"data.root={unpaired_dir}", f"data.cache_dir={cache}"])
    result = train(cfg, output_dir=out)
    assert result.steps == 3
    return out


def test_ecg_only_run_on_a_folder_without_reports(ecg_only_run: Path) -> None:
    rows = _rows(ecg_only_run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for name in ("loss", "loss_masked_beats", "loss_latent_beats"):
        values = [float(r[name]) for r in rows]
        assert all(math.isfinite(v) for v in values), (name, values)
    assert "loss_rhythm" not in rows[0]  # no contrastive loss ran
    assert {r["contrastive_pairs"] for r in rows} == {"0"}
    (val,) = _rows(ecg_only_run, "val")
    assert math.isfinite(float(val["val_objective_loss"])) and int(val["val_n_items"]) == 2
    assert float(val["val_selection"]) == pytest.approx(-float(val["val_objective_loss"]))
    assert (ecg_only_run / "checkpoint-3" / "ema_targets.safetensors").is_file()  # the EMA target
    assert not list((ecg_only_run / "checkpoint-3").glob("custom_checkpoint_*"))  # never a pickle
    assert (ecg_only_run / "best" / "model.safetensors").is_file()


def test_released_model_holds_no_objective_weights(ecg_only_run: Path) -> None:
    with safe_open(str(ecg_only_run / "final" / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "target" in k or "decoder" in k or "predictor" in k]
    with safe_open(str(ecg_only_run / "checkpoint-3" / "model.safetensors"), framework="pt") as f:
        ckpt_keys = list(f.keys())
    assert any(k.startswith("objectives.masked_beats.decoder") for k in ckpt_keys)  # heads resume with the run
    assert not [k for k in ckpt_keys if ".target." in k]  # frozen EMA copy: in ema_targets.safetensors instead
    assert not [k for k in ckpt_keys if k.startswith("model.text_tower")]  # ECG-only: the text side is frozen


def test_resume_restores_the_ema_target(ecg_only_run: Path, unpaired_dir: Path, tmp_path: Path) -> None:
    """Resuming at step 2 reproduces step 3 exactly: the latent loss reads the EMA target, so a target rebuilt
    from the online tower (instead of restored) would change it."""
    out = tmp_path / "run"
    shutil.copytree(ecg_only_run, out)
    shutil.rmtree(out / "checkpoint-3")
    cache = tmp_path / "cache"
    cfg = load_config(SMOKE, [*ECG_ONLY, f"data.root={unpaired_dir}", f"data.cache_dir={cache}"])
    train(cfg, output_dir=out, resume=True)
    (reference,), (resumed,) = [[r for r in _rows(o) if r["step"] == "3"] for o in (ecg_only_run, out)]
    assert float(resumed["loss_latent_beats"]) == pytest.approx(float(reference["loss_latent_beats"]), rel=1e-6)
    assert float(resumed["loss_masked_beats"]) == pytest.approx(float(reference["loss_masked_beats"]), rel=1e-5)


@pytest.mark.shared_data
def test_mixed_run_keeps_unpaired_items_out_of_the_contrastive_losses(
    ptbxl_dir: Path, unpaired_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    out = tmp_path / "run"
    cfg = load_config(SMOKE, [
        f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path / 'cache'}", f"data.unpaired_root={unpaired_dir}",
        "objectives.masked_beats.weight=0.5", "schedule.max_steps=4", "train.eval_every=4",
        "train.checkpoint_every=4",
    ])  # fmt: skip
    train(cfg, output_dir=out)
    rows = _rows(out)
    # The training set is the 12 paired records (positions 0-11) then the 6 unpaired ones (12-17): the pairs
    # the contrastive losses saw are exactly the paired positions of the 4 batches of 4.
    order = EpochSampler(18, seed=cfg.seed).order(0)[:16]
    expected = [int((order[i : i + 4] < 12).sum()) for i in range(0, 16, 4)]
    assert [int(r["contrastive_pairs"]) for r in rows] == expected
    assert sum(expected) < 16  # some unpaired items were in the batches
    assert all(math.isfinite(float(r["loss_masked_beats"])) for r in rows)
    (val,) = _rows(out, "val")
    assert int(val["val_n_pairs"]) == 4 and math.isfinite(float(val["val_objective_loss"]))


def test_ema_target_moves_after_a_step_and_is_not_optimized(one_torch_thread: None) -> None:
    torch.manual_seed(0)
    cfg = load_config(SMOKE, ["objectives.latent_beats.weight=1.0", "objectives.latent_beats.ema=0.5"])
    model = build_model(cfg.model)
    wrapper = PretrainObjectives(model, cfg.objectives)
    latent = wrapper.objectives["latent_beats"]
    assert isinstance(latent, LatentBeatPrediction)
    optimized = {id(p) for g in param_groups(wrapper, 0.0) for p in g["params"]}
    assert not any(id(p) in optimized for p in latent.target.parameters())
    assert all(id(p) in optimized for p in latent.predictor.parameters())
    before = [p.detach().clone() for p in latent.target.parameters()]
    optimizer = torch.optim.AdamW(param_groups(wrapper, 0.0), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    b, n = 2, 6
    inputs = {
        "beats": torch.randn(b, n, 12, model.ecg_tower.beat_len, generator=g),
        "beat_mask": torch.ones(b, n, dtype=torch.bool), "lead_mask": torch.ones(b, 12, dtype=torch.bool),
        "rr": torch.full((b, n, 2), 0.8), "times": torch.arange(n).float().repeat(b, 1) * 0.8,
        "has_report": torch.zeros(b, dtype=torch.bool),
    }  # fmt: skip
    out = wrapper(**inputs)
    assert out.n_pairs == 0 and set(out.losses) == {"latent_beats"}  # no report: no contrastive loss
    out.loss.backward()
    assert all(p.grad is None for p in latent.target.parameters())
    optimizer.step()
    unchanged = [torch.equal(a, p) for a, p in zip(before, latent.target.parameters(), strict=True)]
    assert all(unchanged)  # the optimizer did not touch the target ...
    wrapper.update_targets()
    moved = [not torch.equal(a, p) for a, p in zip(before, latent.target.parameters(), strict=True)]
    assert any(moved)  # ... the EMA update did
    assert not any(t.requires_grad for t in latent.target.parameters())
    wrapper.train()
    assert not latent.target.training  # the target never runs dropout


def test_objective_config_keys_are_checked(tmp_path: Path, unpaired_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"wieght"):
        load_config(SMOKE, ["objectives.masked_beats.wieght=0.5"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text() + "\nobjectives: {masked_beats: {weight: 0.5, ratio: 0.3}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*ratio"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"no reports.*objectives\.contrastive=false"):
        load_config(SMOKE, ["data.builder=physionet", f"data.root={unpaired_dir}"])
    with pytest.raises(ConfigError, match=r"nothing to train"):
        load_config(SMOKE, ["objectives.contrastive=false"])
    with pytest.raises(ConfigError, match=r"unpaired_root.*ECG-only objectives"):
        load_config(SMOKE, [f"data.unpaired_root={unpaired_dir}"])
    with pytest.raises(ConfigError, match=r"mask_ratio"):
        load_config(SMOKE, ["objectives.masked_beats.weight=1", "objectives.masked_beats.mask_ratio=1.5"])
    default = load_config(SMOKE)
    assert not default.objectives.active() and default.objectives.contrastive  # off unless asked for


def test_collate_carries_age_sex_and_the_report_flag() -> None:
    def item(i: int, report: str, age: float, sex: int) -> dict:
        z = np.zeros
        return {"id": str(i), "index": i, "report": report, "has_report": bool(report), "age": np.float32(age),
                "sex": np.int64(sex), "beats": z((3, 12, 4), np.float32), "beat_mask": np.ones(3, bool),
                "lead_mask": np.ones(12, bool), "rr": z((3, 2), np.float32), "times": z(3, np.float32)}  # fmt: skip

    batch = PretrainCollator(None)([item(0, "sinus rhythm", 63.0, 1), item(1, "", float("nan"), 0)])
    assert batch["has_report"].tolist() == [True, False]
    assert batch["age"][0] == 63.0 and torch.isnan(batch["age"][1]) and batch["sex"].tolist() == [1, 0]
    assert "input_ids" not in batch  # ECG-only runs tokenize no report
