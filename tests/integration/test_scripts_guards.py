"""scripts/ablation.py, crossfit.py and bundle_checkpoint.py refuse what would make their figures wrong: a run
folder of another schedule reused as fresh, bare --seeds/--only, a missing data folder, and a bundle that is too
large or was selected with downstream labels."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecglang.training.config import load_config

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch):
    """The scripts as modules (crossfit imports ablation by name, as `python scripts/crossfit.py` allows)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("ablation"), importlib.import_module("crossfit")


def finished_fold(ablation, runs: Path, fold: int, max_steps: int) -> Path:
    """A crossfit fold trained and scored at `max_steps`: the config.yaml the trainer writes, final/, results.json."""
    out = runs / f"ecglang-mini-s0-f{fold}"
    (out / "train" / "final").mkdir(parents=True)
    overrides = ablation.recipe_overrides("ecglang-mini", 0, DATA, max_steps, fold)
    tree = load_config(ablation.RECIPE["base_config"], overrides).to_dict()
    (out / "train" / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text("{}", encoding="utf-8")
    return out


def test_crossfit_never_reuses_a_fold_trained_at_another_schedule(scripts, tmp_path: Path) -> None:
    """A fold finished at 2 steps was taken as the 300-step fold: no training, its old scores pooled, and the
    report said 300 steps."""
    ablation, crossfit = scripts
    finished_fold(ablation, tmp_path, 1, max_steps=2)
    args = argparse.Namespace(runs=tmp_path, seed=0, variant="ecglang-mini", data=DATA, max_steps=300, n_boot=10)
    with pytest.raises(ablation.RunFolderError, match="schedule/max_steps: 2 there, 300 here"):
        crossfit.train_and_score(args, 1)
    crossfit.train_and_score(argparse.Namespace(**{**vars(args), "max_steps": 2}), 1)  # its own schedule: reused
    assert json.loads((tmp_path / "ecglang-mini-s0-f1" / "eval" / "results.json").read_text()) == {}


def test_ablation_run_folder_of_another_variant_is_refused(scripts, tmp_path: Path) -> None:
    ablation, _ = scripts
    out = finished_fold(ablation, tmp_path, 8, max_steps=100)
    with pytest.raises(ablation.RunFolderError, match="rhythm_mixer"):
        ablation.check_run_folder(out / "train", "ssm", 0, DATA, 100, 8)
    ablation.check_run_folder(out / "train", "ecglang-mini", 0, tmp_path / "elsewhere", 100, 8)  # moved data: same run


def test_a_run_saved_before_a_setting_existed_is_the_same_run_at_its_default(scripts, tmp_path: Path) -> None:
    """The crossfit runs of session 14 predate `data.order_seed` and were refused ("None there, 'None' here"), so
    their tables could not be pooled again; a setting the run lacks but the recipe sets is still a difference."""
    ablation, _ = scripts
    out = finished_fold(ablation, tmp_path, 8, max_steps=100)
    saved = yaml.safe_load((out / "train" / "config.yaml").read_text(encoding="utf-8"))
    del saved["data"]["order_seed"]
    (out / "train" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")
    ablation.check_run_folder(out / "train", "ecglang-mini", 0, DATA, 100, 8)
    with pytest.raises(ablation.RunFolderError, match="rhythm_mixer"):
        ablation.check_run_folder(out / "train", "neighbourhood", 0, DATA, 100, 8)
    saved["model"]["overrides"]["ecg_tower"] = {}  # the model's own sizes, not the recipe's: another run
    (out / "train" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")
    with pytest.raises(ablation.RunFolderError, match="d_model"):
        ablation.check_run_folder(out / "train", "ecglang-mini", 0, DATA, 100, 8)


@pytest.mark.parametrize("bare", ["--seeds", "--only"])
def test_ablation_bare_seeds_or_only_is_an_error(scripts, tmp_path: Path, bare: str) -> None:
    """A bare --seeds ran nothing and exited 0; a bare --only ran every variant."""
    ablation, _ = scripts
    argv = ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.jsonl"), "--data", str(tmp_path / "none"),
            "--report", str(tmp_path / "a.md"), "--only", "ecglang-mini", "--seeds", "0", bare]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        ablation.main(argv)
    assert exc.value.code == 2
    assert not (tmp_path / "runs").exists()


def test_ablation_missing_data_folder_is_said_before_any_run(scripts, tmp_path: Path) -> None:
    """It started `ecglang pretrain`, then said only `failed (1): pretrain --config; see .../ablation.log`."""
    ablation, _ = scripts
    argv = ["--data", str(tmp_path / "none"), "--runs", str(tmp_path / "runs"), "--only", "ecglang-mini",
            "--seeds", "0", "--results", str(tmp_path / "r.jsonl"), "--report", str(tmp_path / "a.md")]  # fmt: skip
    with pytest.raises(SystemExit, match=r"not the shared data folder \(missing .*ptbxl_database.csv"):
        ablation.main(argv)
    assert not (tmp_path / "runs" / "ecglang-mini-s0").exists()


def pretrain_run(folder: Path, val_folds: list[int], best_from: Path) -> Path:
    """A finished `ecglang pretrain` output folder: its config.yaml and best/ (copied from a real checkpoint)."""
    import shutil

    folder.mkdir(parents=True)
    tree = load_config("ptbxl-mini", [f"data.val_folds={val_folds}"]).to_dict()
    (folder / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    (folder / "metrics.csv").write_text("step,epoch,split,elapsed_s,samples_per_s\n2,0,train,10.0,3.0\n")
    shutil.copytree(best_from, folder / "best")
    return folder


def bundle(run: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPTS / "bundle_checkpoint.py"), "--run", str(run), "--data", str(DATA),
           "--out", str(out), "--n-boot", "10"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_bundle_refuses_a_run_scored_on_labels_or_not_held_out_on_fold_8(tmp_path: Path) -> None:
    """Both were bundled with the card's "held out, selected without downstream labels" (exit 0)."""
    mini = REPO / "checkpoints" / "ecglang-mini"
    crossfit_fold = pretrain_run(tmp_path / "f3" / "train", [3], mini)  # trained on fold 8
    proc = bundle(crossfit_fold, tmp_path / "out1")
    assert proc.returncode == 1 and "data.val_folds=[3]" in proc.stderr, proc.stderr[-2000:]
    ablation_run = pretrain_run(tmp_path / "ssm-s0" / "train", [8], mini)
    (tmp_path / "ssm-s0" / "eval").mkdir()
    (tmp_path / "ssm-s0" / "eval" / "results.json").write_text("{}", encoding="utf-8")
    proc = bundle(ablation_run, tmp_path / "out2")
    assert proc.returncode == 1 and "selected with downstream labels" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_bundle_refuses_a_checkpoint_over_10_mb(tmp_path: Path) -> None:
    """A ResNet1d-18 run (16.6 MiB) was bundled without a word (exit 0)."""
    from ecglang.encoders.registry import create_model

    create_model("merl-resnet18").save_pretrained(tmp_path / "resnet")
    run = pretrain_run(tmp_path / "resnet-run" / "train", [8], tmp_path / "resnet")
    proc = bundle(run, tmp_path / "out")
    assert proc.returncode == 1 and "over the 10 MiB" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()
