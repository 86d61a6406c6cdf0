"""Pretraining loop: seeded determinism, kill-then-resume, atomic/verified checkpoints, held-out validation.

Runs use configs/pretrain/smoke.yaml on 16 real PTB-XL records (the `ptbxl_dir` fixture), a tiny ECG
tower and the MiniLM text tower with LoRA: a few seconds per run on 2 CPU cores."""

from __future__ import annotations

import csv
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecglang.core.checksums import CHECKSUMS_NAME as CHECKSUMS
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.signal.augment import AugmentConfig, augment_signal
from ecglang.training.checkpoints import TRAINER_STATE, latest_checkpoint, verify_checkpoint
from ecglang.training.config import load_config
from ecglang.training.pairs import EpochSampler, PairTable
from ecglang.training.trainer import train
from ecglang.training.validation import grouped_recall, pair_metrics, selection_score

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"

pytestmark = pytest.mark.shared_data


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )


def _rows(out: Path, split: str = "train") -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _losses(out: Path) -> np.ndarray:
    """`[steps, 3]`: loss, grad norm and rhythm loss of every logged step, in step order."""
    rows = _rows(out)
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1)), "steps missing or repeated"
    return np.array([[float(r["loss"]), float(r["grad_norm"]), float(r["loss_rhythm"])] for r in rows])


@pytest.fixture(scope="module")
def overrides(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    cache = tmp_path_factory.mktemp("smoke-cache") / "cache"
    return [f"data.root={ptbxl_dir}", f"data.cache_dir={cache}"]


@pytest.fixture(scope="module")
def reference(overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted smoke run: 8 steps, validation at 4 and 8, checkpoints every 2 steps (last 2 kept)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = train(load_config(SMOKE, overrides), output_dir=out)
    assert result.steps == 8
    return out


# ------------------------------------------------------------------------------------------ config
def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text() + "\ntrian: {batch_size: 2}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*trian"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['batchsize'\] in section 'train'"):
        load_config(SMOKE, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(SMOKE, ["train.batch_size"])
    # Selection may only combine held-out pair metrics, never a downstream label set.
    with pytest.raises(ConfigError, match=r"selection\.metrics"):
        load_config(SMOKE, ["selection.metrics=[ptbxl_superclass_macro_auroc]"])
    cfg = load_config(SMOKE, ["train.batch_size=6", "model.overrides.ecg_tower.d_model=16"])
    assert cfg.train.batch_size == 6 and cfg.model.overrides["ecg_tower"]["d_model"] == 16


def test_unknown_override_key_is_blamed_on_the_override_not_the_file() -> None:
    # The key came from the command line: naming smoke.yaml would send the user to a file that is fine.
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["train.batchsize=3"])
    assert "override 'train.batchsize=3'" in str(err.value) and "smoke.yaml" not in str(err.value)
    with pytest.raises(ConfigError, match=r"override 'nmae=x': unknown key\(s\) \['nmae'\] at the top level"):
        load_config(SMOKE, ["nmae=x"])
    with pytest.raises(ConfigError, match=r"override 'augment=\{noise: 1\}'.*\['noise'\] in section 'augment'"):
        load_config(SMOKE, ["augment={noise: 1}"])
    with pytest.raises(ConfigError, match=r"override 'data.root.x': 'root' is not a section"):
        load_config(SMOKE, ["data.root=/tmp", "data.root.x=1"])
    # Free-form mappings are checked by their consumers (the model registry, the builder), not here.
    cfg = load_config(SMOKE, ["data.builder_args.check_files=false", "model.overrides.projection.dim=8"])
    assert cfg.data.builder_args == {"check_files": False} and cfg.model.overrides["projection"] == {"dim": 8}
    # A value of the wrong type is the override's too (it was blamed on smoke.yaml, which does not hold the key).
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, ["train.deterministic=1"])
    assert "override 'train.deterministic=1': train.deterministic must be" in str(err.value)
    assert "smoke.yaml" not in str(err.value)
    # A value the merged settings refuse names the overrides that were merged in.
    with pytest.raises(ConfigError, match=r"smoke\.yaml.*builder.*with overrides data\.builder=chapman"):
        load_config(SMOKE, ["data.builder=chapman"])


def test_builder_aliases_resolve_and_unknown_names_get_a_suggestion() -> None:
    """`data.builder=mimic` (the name of `ecglang data build mimic`, an alias of mimic_ecg) was refused with the
    false claim that MIMIC has no reports, steering the user into an ECG-only run."""
    assert load_config(SMOKE, ["data.builder=mimic"]).data.builder == "mimic"
    assert load_config(SMOKE, ["data.builder=ptb-xl"]).objectives.contrastive
    with pytest.raises(ConfigError, match=r"data\.builder must be one of .*got 'mimc'; did you mean mimic_ecg\?"):
        load_config(SMOKE, ["data.builder=mimc"])
    cfg = load_config(
        SMOKE, ["data.unpaired_builder=cinc", "data.unpaired_root=/x", "objectives.masked_beats.weight=1"]
    )
    assert cfg.data.unpaired_builder == "cinc"


@pytest.mark.parametrize(
    ("override", "message"),
    [  # tracebacks (ValueError, OverflowError, TypeError), a failure after training, or a silent misreading before
        ("schedule.epochs=.nan", "schedule.epochs must be a finite number > 0, got nan"),
        ("schedule.epochs=.inf", "schedule.epochs must be a finite number > 0, got inf"),
        ("seed=-1", r"seed must be in 0\.\.2\*\*32-1, got -1"),
        ("seed=100000000000000000000000", r"seed must be in 0\.\.2\*\*32-1"),
        ("data.builder_args.bogus=1", r"data\.builder_args \['bogus'\] are not arguments of the ptbxl builder"),
        ("data.val_max=-1", r"data\.val_max must be an int >= 0 or null, got -1"),
        ("train.eval_batch_size=-5", r"train\.eval_batch_size must be an int >= 1 or null, got -5"),
        ("train.eval_batch_size=0", r"train\.eval_batch_size must be an int >= 1 or null, got 0"),
        ("train.early_stopping_patience=0", r"train\.early_stopping_patience must be an int >= 1 or null, got 0"),
        ("objectives.masked_beats.weight=.inf", r"objectives\.masked_beats\.weight must be a finite number >= 0"),
        ("objectives.latent_beats.weight=.nan", r"objectives\.latent_beats\.weight must be a finite number >= 0"),
    ],
)
def test_values_that_broke_a_run_later_are_config_errors_naming_the_key(override: str, message: str) -> None:
    extra = ["schedule.max_steps=null"] if override.startswith("schedule.epochs") else []
    with pytest.raises(ConfigError, match=rf"smoke\.yaml: {message}"):
        load_config(SMOKE, [*extra, override])


def test_yaml_aliases_and_binary_config_files_are_refused(tmp_path: Path) -> None:
    """Nine nested anchors of nine aliases under `data.builder_args` grew past 2.8 GB when the config was copied;
    a config file of random bytes was a UnicodeDecodeError traceback."""
    laughs = ["lol0: &l0 [lol]"] + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(SMOKE.read_text().replace("data:\n", "data:\n  builder_args:\n" + "".join(
        f"    {line}\n" for line in laughs), 1))  # fmt: skip
    with pytest.raises(ConfigError, match=r"bomb\.yaml: cannot read YAML: alias \*l0 is not allowed in a config"):
        load_config(bomb)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)) * 20)
    with pytest.raises(ConfigError, match=r"binary\.yaml: cannot read YAML: 'utf-8' codec"):
        load_config(binary)


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_data_limit_below_one_is_a_config_error(limit: str) -> None:
    """data.limit=0 (or negative) crashed deep in numpy ("a cannot be empty unless no samples are taken")."""
    with pytest.raises(ConfigError, match=rf"smoke\.yaml: data\.limit must be an int >= 1 \(or null for all rows\), "
                       rf"got {limit}"):  # fmt: skip
        load_config(SMOKE, [f"data.limit={limit}"])
    assert load_config(SMOKE, ["data.limit=null"]).data.limit is None


def test_overrides_may_come_between_the_options(tmp_path: Path) -> None:
    """`--config smoke a=1 --output DIR b=2` stopped with "unrecognized arguments: b=2": argparse takes one run of
    positionals only."""
    import argparse

    from ecglang.cli.main import build_parser
    from ecglang.training.config import add_arguments

    argv = ["--config", "smoke", "schedule.max_steps=2", "--output", str(tmp_path), "data.limit=8", "--resume"]
    args = build_parser().parse_args(["pretrain", *argv])
    assert args.overrides == ["schedule.max_steps=2", "data.limit=8"] and args.resume
    assert args.output == str(tmp_path) and args.config == "smoke"
    parser = argparse.ArgumentParser()  # python -m ecglang.training.trainer (accelerate launch, torchrun)
    add_arguments(parser)
    assert parser.parse_args(["a=1", *argv]).overrides == ["a=1", "schedule.max_steps=2", "data.limit=8"]


def test_config_round_trips_through_dict() -> None:
    from ecglang.training.config import PretrainConfig, config_from_tree

    cfg = load_config(SMOKE)
    tree = cfg.to_dict()
    assert (
        "source" not in tree
        and tree["optim"]["betas"] == [0.9, 0.98]
        and tree["augment"]["amplitude_scale"] == [0.8, 1.2]
    )
    again = config_from_tree(tree, source="x.yaml")
    assert again.to_dict() == tree and isinstance(again, PretrainConfig) and again.optim.betas == (0.9, 0.98)
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown key\(s\) \['source'\]"):
        config_from_tree({**tree, "source": "y"}, source="x.yaml")


def test_checkpoints_keep_running_statistics_and_the_frozen_hash_the_rest() -> None:
    """The MERL ResNet baseline has BatchNorm. Its running statistics change in training, so checkpoints keep
    them (they were dropped as 'frozen', and a resumed run restarted them from 0 and 1); the frozen hash covers
    what checkpoints leave out (a frozen layer's own BatchNorm included, 0-d `num_batches_tracked` too)."""
    import torch

    from ecglang.training.checkpoints import checkpoint_keys, frozen_sha256, running_statistics

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4))
    model[2].requires_grad_(False)  # a frozen layer: its statistics are the frozen hash's, not the checkpoint's
    assert running_statistics(model) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert checkpoint_keys(model) == {"0.weight", "0.bias", "1.weight", "1.bias", *running_statistics(model)}
    before = frozen_sha256(model)
    model[1].train()(torch.randn(3, 4, 6))  # the trained layer's statistics move: not a frozen-weight change
    assert frozen_sha256(model) == before
    model[2].train()(torch.randn(3, 4, 6))  # the frozen layer's move: the hash sees it
    assert frozen_sha256(model) != before


def test_merl_baseline_pretrains(overrides: list[str], tmp_path: Path) -> None:
    """`model.name=merl-resnet18` (signal input, BatchNorm) trains and checkpoints (issue 13, 11a)."""
    extra = ["model.name=merl-resnet18", "model.overrides={}", "schedule.max_steps=2", "train.eval_every=2",
             "train.checkpoint_every=2"]  # fmt: skip
    result = train(load_config(SMOKE, [*overrides, *extra]), output_dir=tmp_path / "run")
    assert result.steps == 2
    assert np.isfinite(_losses(tmp_path / "run")[:, 0]).all()
    state = json.loads((latest_checkpoint(tmp_path / "run") / TRAINER_STATE).read_text())
    assert len(state["frozen_sha256"]) == 64


# The ResNet baseline (BatchNorm), 4 steps, checkpoints at 2 and 4.
MERL_FOUR_STEPS = ["model.name=merl-resnet18", "model.overrides={}", "schedule.max_steps=4", "train.eval_every=4",
                   "train.checkpoint_every=2"]  # fmt: skip


def _run_cut_and_resumed(cfg, tmp_path: Path) -> tuple[Path, Path]:
    """`reference`: an uninterrupted run; `resumed`: its copy cut back to checkpoint-2 and resumed to the end."""
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    train(cfg, output_dir=reference)
    shutil.copytree(reference, resumed)
    shutil.rmtree(resumed / "checkpoint-4")
    train(cfg, output_dir=resumed, resume=True)
    return reference, resumed


def test_merl_baseline_resumes_with_its_batchnorm_statistics(overrides: list[str], tmp_path: Path) -> None:
    """Cut at step 2 and resumed, the ResNet baseline ends with the uninterrupted run's BatchNorm statistics (they
    restarted from their initial values: checkpoints held the trainable parameters only)."""
    import torch
    from safetensors.torch import load_file

    cfg = load_config(SMOKE, [*overrides, *MERL_FOUR_STEPS])
    reference, resumed = _run_cut_and_resumed(cfg, tmp_path)
    saved = load_file(str(reference / "checkpoint-2" / "model.safetensors"))
    assert any(k.endswith("running_mean") for k in saved)  # the checkpoint holds them
    expected, got = (load_file(str(run / "final" / "model.safetensors")) for run in (reference, resumed))
    stats = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6)

    # A checkpoint written before the statistics were kept (and whose frozen hash covered them): resuming it said
    # the pretrained text model had changed. It says what is missing instead.
    from safetensors.torch import save_file

    from ecglang.core.checksums import write_checksums
    from ecglang.errors import ModelLoadError

    old = tmp_path / "old"
    shutil.copytree(reference, old)
    shutil.rmtree(old / "checkpoint-4")
    ckpt = old / "checkpoint-2"
    kept = {k: v for k, v in saved.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    save_file(kept, str(ckpt / "model.safetensors"))
    state = json.loads((ckpt / TRAINER_STATE).read_text())
    (ckpt / TRAINER_STATE).write_text(json.dumps({**state, "frozen_sha256": "0" * 64}))
    write_checksums(ckpt)
    with pytest.raises(ModelLoadError, match="no running statistics of the model's normalisation layers"):
        train(cfg, output_dir=old, resume=True)


# ------------------------------------------------------------------------------------- determinism
def test_sampler_and_augmentation_are_pure_functions_of_seed_epoch_index() -> None:
    s = EpochSampler(50, seed=3)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(0)
    s.set_epoch(2)
    assert list(s) == first and sorted(i for _, i in first) == list(range(50))
    assert all(e == 2 for e, _ in first)
    assert not np.array_equal(s.order(2), s.order(3))
    assert not np.array_equal(s.order(2), EpochSampler(50, seed=4).order(2))

    cfg = AugmentConfig(lead_mask_p=0.9, amplitude_scale=(0.5, 1.5), time_shift_ms=200, noise_std=0.1)
    x = np.random.default_rng(0).standard_normal((12, 5000)).astype(np.float32)
    mask = np.ones(12, dtype=bool)
    a = augment_signal(x, mask, 500.0, cfg, np.random.default_rng([0, 1, 2]))
    b = augment_signal(x, mask, 500.0, cfg, np.random.default_rng([0, 1, 2]))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    sig, m, n_valid = a
    assert 1 <= m.sum() < 12  # p=0.9 drops leads but always keeps one
    assert np.all(sig[~m] == 0)
    assert 5000 - 100 <= n_valid <= 5000 and np.all(sig[:, n_valid:] == 0)
    with pytest.raises(ConfigError):
        AugmentConfig(lead_mask_p=1.0)


def test_identical_runs_give_identical_losses(reference: Path, overrides: list[str], tmp_path: Path) -> None:
    train(load_config(SMOKE, overrides), output_dir=tmp_path / "again")
    ref, again = _losses(reference), _losses(tmp_path / "again")
    assert ref.shape == (8, 3)
    np.testing.assert_array_equal(again, ref)
    # Training did something: the loss moved and differs between steps.
    assert len(np.unique(ref[:, 0])) == 8
    val_ref = [r["val_selection"] for r in _rows(reference, "val")]
    assert [r["val_selection"] for r in _rows(tmp_path / "again", "val")] == val_ref


# ---------------------------------------------------------------------------------- kill and resume
def test_kill_then_resume_continues_exactly(reference: Path, overrides: list[str], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    kill_after = random.randint(3, 7)  # checkpoints are written every 2 steps, so one exists by then
    cmd = [sys.executable, "-m", "ecglang.training.trainer", "--config", str(SMOKE), "--output", str(out), *overrides]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    last = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "metrics.csv").is_file():
                rows = _rows(out)
                last = int(rows[-1]["step"]) if rows else 0
                if last >= kill_after:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and last < kill_after:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"run was not killed (rc {proc.returncode}): {proc.stderr.read()!r}"
    ckpt = latest_checkpoint(out)
    assert ckpt is not None, f"killed after step {last} (target {kill_after}) without a complete checkpoint"
    resumed_from = json.loads((ckpt / TRAINER_STATE).read_text())["step"]
    assert 2 <= resumed_from <= last

    result = train(load_config(SMOKE, overrides), output_dir=out, resume=True)
    assert result.steps == 8
    # Every step, before and after the resume point, equals the uninterrupted run (RNG, optimiser,
    # scheduler, data order and augmentation restored; rows the killed run wrote after its last
    # checkpoint are replaced, not duplicated).
    # rtol 1e-5, not bit-equality: float32 GEMMs may round the last bits differently with buffer alignment
    # (seen once in a few dozen runs: 1.4e-6 on one gradient norm); a wrong restore differs by far more.
    np.testing.assert_allclose(_losses(out), _losses(reference), rtol=1e-5, atol=0)
    assert [r["val_selection"] for r in _rows(out, "val")] == [r["val_selection"] for r in _rows(reference, "val")]


def test_half_written_checkpoint_is_ignored(reference: Path, overrides: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    # A kill during the write of checkpoint-8 leaves only checkpoint-8.tmp, here with a cut-off model file.
    shutil.rmtree(out / "checkpoint-8")
    shutil.copytree(out / "checkpoint-6", out / "checkpoint-8.tmp")
    weights = out / "checkpoint-8.tmp" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert latest_checkpoint(out).name == "checkpoint-6"

    train(load_config(SMOKE, overrides), output_dir=out, resume=True)
    assert not (out / "checkpoint-8.tmp").exists()
    verify_checkpoint(out / "checkpoint-8")
    assert json.loads((out / "checkpoint-8" / TRAINER_STATE).read_text())["step"] == 8
    np.testing.assert_allclose(_losses(out), _losses(reference), rtol=1e-5, atol=0)


def test_corrupted_checkpoint_fails_checksum(reference: Path, overrides: list[str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    target = out / "checkpoint-8" / "optimizer.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"optimizer\.bin.*checksum mismatch"):
        verify_checkpoint(out / "checkpoint-8")

    from ecglang.cli.main import main

    rc = main(["pretrain", "--config", str(SMOKE), "--output", str(out), "--resume", *overrides])
    err = capsys.readouterr().err
    assert rc == 1
    assert "checksum mismatch" in err and "optimizer.bin" in err and "Traceback" not in err


class _Payload:
    """Unpickling this creates `marker` (proof that a file was unpickled as objects, not refused)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["random_states_0.pkl", "optimizer.bin", "scheduler.bin"])
def test_a_pickled_state_of_other_objects_is_refused_by_name(reference, overrides, tmp_path, capsys, name) -> None:
    """A checkpoint's pickled state replaced by other objects (checksums.json rewritten to match): the optimizer's
    or scheduler's gave a traceback advising `weights_only=False`; the random-number state's was passed over with
    an INFO line and the run resumed, not exactly, with exit 0. Nothing is unpickled as objects, ever."""
    from ecglang.cli.main import main
    from ecglang.core.checksums import write_checksums

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    marker = tmp_path / "pwned"
    (out / "checkpoint-8" / name).write_bytes(pickle.dumps({"state": _Payload(marker)}))
    write_checksums(out / "checkpoint-8")
    rc = main(["pretrain", "--config", str(SMOKE), "--output", str(out), "--resume", *overrides])
    err = capsys.readouterr().err
    assert rc == 1 and not marker.exists()
    assert f"error: {out / 'checkpoint-8' / name}: not a state ecglang wrote" in err
    assert "Traceback" not in err and "weights_only" not in err


def test_a_fresh_run_never_writes_over_a_folder_of_other_files(overrides, tmp_path, capsys) -> None:
    """`--output` naming a folder of the user's files: the run replaced their config.yaml and metrics.csv and
    deleted final/'s files, exit 0. Refused before any work now; a folder where a run wrote its config is reused."""
    from ecglang.cli.main import main

    user = tmp_path / "user"
    (user / "final").mkdir(parents=True)
    files = {"metrics.csv": "my notes\n", "config.yaml": "precious: 1\n", "final/mine.txt": "keep\n"}
    for name, text in files.items():
        (user / name).write_text(text)
    rc = main(["pretrain", "--config", str(SMOKE), "--output", str(user), *overrides])
    assert (
        rc != 0 and "holds other files (config.yaml, final, metrics.csv) and no earlier run" in capsys.readouterr().err
    )
    assert {n: (user / n).read_text() for n in files} == files
    earlier = tmp_path / "earlier"  # a run cut before its first checkpoint: its own files, written again
    earlier.mkdir()
    shutil.copy(ROOT / "configs" / "pretrain" / "smoke.yaml", earlier / "config.yaml")
    (earlier / "metrics.csv").write_text("step,loss\n")
    assert main(["pretrain", "--config", str(SMOKE), "--output", str(earlier), *overrides]) == 0


def test_checkpoint_layout_and_best_export(reference: Path) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert [n for n in names if n.startswith("checkpoint-")] == ["checkpoint-6", "checkpoint-8"]  # keep_last: 2
    assert not any(n.endswith(".tmp") for n in names)
    for ckpt in ("checkpoint-6", "checkpoint-8"):
        folder = reference / ckpt
        verify_checkpoint(folder)
        sums = json.loads((folder / CHECKSUMS).read_text())
        assert {"model.safetensors", "optimizer.bin", "scheduler.bin", TRAINER_STATE} <= set(sums)
        assert any(k.startswith("random_states") for k in sums)
        state = json.loads((folder / TRAINER_STATE).read_text())
        assert {"step", "epoch", "batch_in_epoch", "best_metric", "data_seed"} <= set(state)

    # The exported best model is the validation with the highest selection metric.
    evals = [json.loads(line) for line in (reference / "validation.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [4, 8]
    best = max(evals, key=lambda e: e["selection"])  # max keeps the first of equal values, as the trainer
    state = json.loads((reference / "checkpoint-8" / TRAINER_STATE).read_text())
    assert state["best_step"] == best["step"] and state["best_metric"] == pytest.approx(best["selection"])

    from ecglang.encoders.modeling import EcgLangModel

    model = EcgLangModel.from_pretrained(reference / "best")
    assert model.text_tower.is_lora and (reference / "best" / "text_adapter").is_dir()
    card = (reference / "best" / "README.md").read_text()
    assert "held-out" in card and f"selected at step: {best['step']}" in card


# ------------------------------------------------------------------------------------------ validation
def test_pair_metrics_recall_and_zero_shot_auroc() -> None:
    rng = np.random.default_rng(0)
    reports = ["sinus rhythm. normal ecg.", "atrial fibrillation.", "sinus rhythm. normal ecg.", "sinus bradycardia."]
    names = ["sinus rhythm", "atrial fibrillation", "sinus bradycardia"]
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])  # what each report states
    labels = np.zeros((3, 16))
    labels[np.arange(3), 13 + np.arange(3)] = 1.0  # label names live in their own 3 dimensions
    base = rng.standard_normal((4, 16))
    base[:, 13:] = 0.0
    base[2] = base[0]  # a duplicated pair: same report text, same embeddings
    ecg = base + 5.0 * (y @ labels)
    m = pair_metrics(ecg, ecg.copy(), reports, labels, names)
    assert m["ecg2report_recall@1"] == 1.0 and m["report2ecg_recall@1"] == 1.0
    assert m["n_pairs"] == 4 and m["n_distinct_reports"] == 3
    assert m["zero_shot_macro_auroc"] == 1.0 and m["n_labels_scored"] == 3
    # ECGs pointing away from their reports and labels: nothing right at rank 1, AUROC 0.
    m = pair_metrics(-ecg, ecg.copy(), reports, labels, names)
    assert m["ecg2report_recall@1"] == 0.0 and m["report2ecg_recall@1"] == 0.0
    assert m["zero_shot_macro_auroc"] == 0.0
    assert selection_score({"a": 0.5, "b": float("nan"), "c": 1.0}, ["a", "b", "c"]) == 0.75

    # Grouped recall: a wrong item scoring as high as the right one counts against it.
    sim = np.array([[1.0, 1.0], [0.0, 1.0]])
    r = grouped_recall(sim, np.array([0, 1]), np.array([0, 1]), [1, 2])
    assert r == {1: 0.5, 2: 1.0}


def _permuted_ptbxl(src: Path, dst: Path) -> Path:
    """A PTB-XL folder whose downstream labels (scp_codes) are shuffled across records; signals and
    reports are the original ones (linked, not copied)."""
    import pandas as pd

    dst.mkdir()
    for name in ("records500", "records100", "scp_statements.csv"):
        (dst / name).symlink_to(src / name)
    db = pd.read_csv(src / "ptbxl_database.csv")
    db["scp_codes"] = db["scp_codes"].sample(frac=1.0, random_state=0).to_numpy()
    assert (db["scp_codes"] != pd.read_csv(src / "ptbxl_database.csv")["scp_codes"]).any()
    db.to_csv(dst / "ptbxl_database.csv", index=False)
    return dst


def test_validation_uses_held_out_reports_only(reference: Path, ptbxl_dir: Path, tmp_path: Path) -> None:
    from accelerate import Accelerator

    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.training.pairs import PretrainPairs
    from ecglang.training.setup import prepare_data
    from ecglang.training.validation import evaluate

    model = EcgLangModel.from_pretrained(reference / "best")
    accelerator = Accelerator(cpu=True)
    results = []
    for root, name in ((ptbxl_dir, "orig"), (_permuted_ptbxl(ptbxl_dir, tmp_path / "permuted"), "perm")):
        cfg = load_config(SMOKE, [f"data.root={root}", f"data.cache_dir={tmp_path / name / 'cache'}"])
        data = prepare_data(cfg, model, tmp_path / name, accelerator)
        # Only ids, cache rows and report texts reach validation: no label column exists to be read.
        assert set(vars(data.val)) == {"rows", "ids", "reports"} and isinstance(data.val, PairTable)
        assert not set(data.train.ids) & set(data.val.ids) and len(data.val) == 4
        ds = PretrainPairs(data.cache, data.val, model.get_processor().beat_config)
        metrics, skipped = evaluate(model, ds, accelerator, 4, 0, cfg.selection.metrics)
        assert skipped == [] and metrics["n_pairs"] == 4
        assert {"ecg2report_recall@1", "report2ecg_recall@10", "zero_shot_macro_auroc"} <= set(metrics)
        results.append(metrics)
    orig, perm = results
    # Shuffling every downstream label changes nothing: selection never sees them.
    assert perm["selection"] == orig["selection"] and perm["per_label_auroc"] == orig["per_label_auroc"]
    # The same numbers as the run's own validation of that checkpoint.
    evals = [json.loads(line) for line in (reference / "validation.jsonl").read_text().splitlines()]
    best = max(evals, key=lambda e: e["selection"])
    assert orig["selection"] == pytest.approx(best["selection"], abs=1e-6)


def test_records_without_beats_are_skipped_and_listed(overrides: list[str], tmp_path: Path) -> None:
    # 5 of the 16 records have fewer than 11 beats in 10 s: asking for 11 makes them unusable.
    extra = ["model.overrides.processor.beats.min_beats=11", "schedule.max_steps=3", "train.checkpoint_every=3"]
    result = train(load_config(SMOKE, [*overrides, *extra]), output_dir=tmp_path / "run")
    assert result.steps == 3
    with (tmp_path / "run" / "skipped_records.csv").open(newline="") as f:
        listed = {r["id"]: r["reason"] for r in csv.DictReader(f)}
    assert listed and listed == result.skipped
    assert all("need at least 11" in reason for reason in listed.values())
    assert len(_rows(tmp_path / "run")) == 3


def test_a_warmup_as_long_as_the_run_is_said(overrides: list[str], tmp_path: Path, caplog) -> None:
    """schedule.warmup_steps at or above the run's steps: the rate only ramps up (never reaching optim.lr nor
    decaying), and nothing said so."""
    import logging

    extra = ["schedule.max_steps=2", "schedule.warmup_steps=5", "train.eval_every=2", "train.checkpoint_every=2"]
    with caplog.at_level(logging.WARNING, logger="ecglang.training.setup"):
        train(load_config(SMOKE, [*overrides, *extra]), output_dir=tmp_path / "run")
    said = [r.getMessage() for r in caplog.records if "warmup_steps" in r.getMessage()]
    assert said == ["schedule.warmup_steps=5 is not below the run's 2 optimizer steps: the learning rate only ramps "
                    "up, never reaching optim.lr nor decaying"]  # fmt: skip


def test_all_records_unusable_is_a_clear_error(overrides: list[str], tmp_path: Path) -> None:
    extra = ["model.overrides.processor.beats.min_beats=40", "schedule.max_steps=3"]
    with pytest.raises(ConfigError, match="no batch had usable pairs"):
        train(load_config(SMOKE, [*overrides, *extra]), output_dir=tmp_path / "run")


def test_a_run_without_a_selected_model_says_why_best_is_missing(tmp_path: Path, caplog) -> None:
    """A held-out part of one pair scores NaN at every validation: the run ended with final/ only and no word;
    scripts/bundle_checkpoint.py then looked for best/."""
    import logging

    from ecglang.training.trainer import TrainResult, report_result

    result = TrainResult(output_dir=tmp_path, steps=4, best_metric=None, best_step=None, best_dir=None,
                         final_dir=tmp_path / "final", stopped_early=False, skipped={}, excluded=[],
                         samples_per_s=1.0)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ecglang.training.trainer"):
        report_result(result)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no best/ model" in warnings[0] and "at least 2 pairs" in warnings[0]


def test_order_seed_sets_the_data_order_apart_from_the_initial_weights(overrides: list[str], tmp_path: Path) -> None:
    """`data.order_seed` seeds the training order and augmentations only: the weights start as the run's `seed`
    gives them, the order and augmentations as a run seeded `order_seed` has them."""
    import torch

    from ecglang.training.checkpoints import config_identity
    from ecglang.training.setup import build_training, create_accelerator

    def setup(seed: int, *extra: str):  # each seed its own cache (its crops are seeded)
        cfg = load_config(SMOKE, [*overrides, f"seed={seed}", f"data.cache_dir={tmp_path / f'cache-{seed}'}", *extra])
        return build_training(cfg, tmp_path / "run", create_accelerator(cfg, tmp_path / "run"))

    base, other, split = setup(0), setup(1), setup(0, "data.order_seed=1")
    first = next(iter(base.inner_model.ecg_tower.parameters()))
    assert torch.equal(next(iter(split.inner_model.ecg_tower.parameters())), first)  # weights: seed 0
    assert not torch.equal(next(iter(other.inner_model.ecg_tower.parameters())), first)
    assert split.sampler.seed == other.sampler.seed == 1 and base.sampler.seed == 0  # order: seed 1
    assert split.train_ds.seed == other.train_ds.seed == 1  # augmentations: seed 1
    assert list(split.sampler.order(0)) == list(other.sampler.order(0))
    assert split.val_ds.pairs.ids == base.val_ds.pairs.ids  # the held-out pairs do not move
    # Unset, the key is not part of what a resume checks: checkpoints written before it still resume.
    assert "order_seed" not in config_identity(load_config(SMOKE, overrides))["data"]
    assert config_identity(load_config(SMOKE, [*overrides, "data.order_seed=1"]))["data"]["order_seed"] == 1


def test_merl_baseline_with_a_weight_average_exports_averaged_statistics(overrides: list[str], tmp_path: Path) -> None:
    """`optim.ema_decay` on the ResNet baseline: the export holds the averaged BatchNorm statistics beside the
    averaged weights (it held the last step's), and a run cut at step 2 and resumed ends with the same ones."""
    import torch
    from safetensors.torch import load_file

    cfg = load_config(SMOKE, [*overrides, *MERL_FOUR_STEPS, "optim.ema_decay=0.5"])
    reference, resumed = _run_cut_and_resumed(cfg, tmp_path)
    live = load_file(str(reference / "checkpoint-4" / "model.safetensors"))  # the last step's statistics
    expected, got = (load_file(str(run / "final" / "model.safetensors")) for run in (reference, resumed))
    stats = [k for k in expected if k.endswith(("running_mean", "running_var"))]
    assert stats
    assert any(not torch.allclose(expected[k], live[k]) for k in stats)  # the export's are the average's
    for key in stats:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6)
