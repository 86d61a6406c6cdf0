"""What a run trains on and what it says about it: resume refuses other records, the run's own signal cache follows
the record files on disk, and the messages about records left out (all of them, unpaired ones, no held-out pairs in
an ECG-only run, a prepared folder with other preprocessing) are true and name what to do.

Synthetic WFDB records (`ecglang.data.synthetic`) with made-up reports, tiny towers (configs/pretrain/smoke.yaml)
and 1-2 steps per run."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.core.checksums import write_checksums
from ecglang.data.synthetic import synthetic_signal, write_wfdb_record
from ecglang.encoders.registry import load_model_config
from ecglang.errors import ConfigError
from ecglang.signal.preprocess import PreprocessConfig
from ecglang.training.checkpoints import TRAINER_STATE
from ecglang.training.config import load_config
from ecglang.training.trainer import train

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "smoke.yaml"
REPORTS = ["sinus rhythm. normal ecg.", "sinus bradycardia.", "atrial fibrillation.", "left bundle branch block."]
PAIRS = ["data.builder=pairs", "data.limit=null", "data.val_group=group", "schedule.warmup_steps=0"]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic 12-lead WFDB records S000..S015 (10 s at 500 Hz)."""
    root = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    for i in range(16):
        write_wfdb_record(root / f"S{i:03d}", synthetic_signal(rng))
    return root


def _pairs_csv(path: Path, records: Path, numbers: range) -> Path:
    """A pairs file of records `numbers` (absolute paths), each its own group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "report", "id", "group"])
        for i in numbers:
            w.writerow([str(records / f"S{i:03d}"), REPORTS[i % 4], f"S{i:03d}", f"g{i}"])
    return path


def _preprocess() -> PreprocessConfig:
    """The preprocessing of the smoke run's model (ecglang-small: smoke.yaml does not override it)."""
    return PreprocessConfig.from_dict(load_model_config("ecglang-small").processor["preprocess"])


# -------------------------------------------------------------------------------------------- resume (#1)
def test_resume_refuses_other_records_but_not_moved_ones(records: Path, tmp_path: Path) -> None:
    """data.root is not in the config identity (a moved folder must resume), so a resume on another pairs file
    went on silently with other training and held-out records."""
    first = _pairs_csv(tmp_path / "a" / "pairs.csv", records, range(8))
    other = _pairs_csv(tmp_path / "b" / "pairs.csv", records, range(8, 16))
    base = [*PAIRS, f"data.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=2", "train.eval_every=2",
            "train.checkpoint_every=1"]  # fmt: skip
    out = tmp_path / "run"
    train(load_config(SMOKE, [*base, f"data.root={first}"]), output_dir=out)

    def interrupted_after_step_1() -> None:
        for name in ("checkpoint-2", "final", "best"):
            shutil.rmtree(out / name, ignore_errors=True)

    interrupted_after_step_1()
    with pytest.raises(ConfigError, match=r"checkpoint-1: this checkpoint was trained on other data"):
        train(load_config(SMOKE, [*base, f"data.root={other}", f"data.cache_dir={tmp_path / 'c2'}"]),
              output_dir=out, resume=True)  # fmt: skip
    moved = tmp_path / "moved" / "pairs.csv"
    moved.parent.mkdir()
    shutil.copy(first, moved)  # the same records from another folder
    assert train(load_config(SMOKE, [*base, f"data.root={moved}"]), output_dir=out, resume=True).steps == 2

    # A checkpoint written before the fingerprint existed still resumes (nothing to compare with).
    interrupted_after_step_1()
    state_file = out / "checkpoint-1" / TRAINER_STATE
    state = json.loads(state_file.read_text())
    assert len(state.pop("data_sha256")) == 64 and state.pop("data_counts") == {"train": 6, "val": 2}
    state_file.write_text(json.dumps(state))
    write_checksums(out / "checkpoint-1")
    result = train(load_config(SMOKE, [*base, f"data.root={other}", f"data.cache_dir={tmp_path / 'c2'}"]),
                   output_dir=out, resume=True)  # fmt: skip
    assert result.steps == 2


# --------------------------------------------------------------------------------------- signal cache (#2)
def test_run_cache_follows_the_record_files(records: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    """The default cache folder was keyed by ids and paths only: a record fixed on disk stayed excluded with a
    reason that was no longer true, and a record replaced on disk kept its old signal."""
    from accelerate import Accelerator

    from ecglang.training.setup import inline_cache

    monkeypatch.setenv("ECGLANG_CACHE", str(tmp_path / "user-cache"))
    folder = tmp_path / "recs"
    shutil.copytree(records, folder)
    items = [(f"S{i:03d}", str(folder / f"S{i:03d}")) for i in range(3)]
    good = (folder / "S001.dat").read_bytes()
    (folder / "S001.dat").write_bytes(good[:5000])  # a truncated download
    cfg, acc = load_config(SMOKE), Accelerator(cpu=True)

    def cache() -> tuple[Path, list[str], str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ecglang.training.setup"):
            c = inline_cache(cfg, items, _preprocess(), tmp_path / "run", acc)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signal cache ")]
        return Path(c.directory), sorted(c.failures["id"].astype(str)), lines

    broken, failed, _ = cache()
    assert failed == ["S001"]
    (folder / "S001.dat").write_bytes(good)  # the user fixes the file
    fixed, failed, lines = cache()
    assert failed == [] and fixed != broken and lines == [f"signal cache {fixed}: built"]
    stat = os.stat(folder / "S002.dat")
    os.utime(folder / "S002.dat", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten, same size
    touched = cache()[0]
    assert touched not in (broken, fixed)
    again, _, lines = cache()  # nothing changed since: one line says the cache was reused, and where it is
    assert again == touched and len(lines) == 1 and lines[0].startswith(f"signal cache {touched}: reused")


# ------------------------------------------------------------------------------- records left out (#9, #11)
@pytest.fixture(scope="module")
def smoke_model():
    from ecglang.training.setup import build_model

    return build_model(load_config(SMOKE).model)


def test_no_usable_pairs_lists_them_and_says_why(records: Path, tmp_path: Path, smoke_model, capsys) -> None:
    """A prepared folder without reports: the error pointed to excluded_records.csv, which was never written, and
    gave no cause."""
    from accelerate import Accelerator

    from ecglang.training.setup import prepare_data

    folder = tmp_path / "cinc"
    folder.mkdir()
    for name in ("S000", "S001", "S002", "S003"):
        for ext in (".hea", ".dat"):
            shutil.copy(records / (name + ext), folder / (name + ext))
    prepared = tmp_path / "prepared"
    assert cli(["data", "build", "physionet", str(folder), "--out", str(prepared), "--no-progress"]) == 0
    capsys.readouterr()
    cfg = load_config(SMOKE, [f"data.prepared={prepared}", "data.val_group=null", "data.limit=null"])
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        prepare_data(cfg, smoke_model, out, Accelerator(cpu=True))
    message = str(err.value)
    assert "no usable training pairs: 3 of 3 training records left out (3 empty report" in message
    assert str(out / "excluded_records.csv") in message and "objectives.contrastive=false" in message
    with (out / "excluded_records.csv").open(newline="") as f:
        assert sorted(r["reason"] for r in csv.DictReader(f)) == ["train: empty report"] * 3 + ["val: empty report"]


def test_left_out_count_includes_unpaired_ecgs(records: Path, tmp_path: Path, smoke_model) -> None:
    """The count was taken before the unpaired records were added: "0 records left out" while
    excluded_records.csv listed the unpaired ones."""
    from accelerate import Accelerator

    from ecglang.training.setup import prepare_data

    unpaired = tmp_path / "unpaired"
    unpaired.mkdir()
    for name in ("S010", "S011", "S012", "S013"):
        for ext in (".hea", ".dat"):
            shutil.copy(records / (name + ext), unpaired / (name + ext))
    (unpaired / "S011.dat").write_bytes((unpaired / "S011.dat").read_bytes()[:100])  # fails in the cache
    (unpaired / "BAD.hea").write_text("junk\n")  # fails in the builder
    pairs = _pairs_csv(tmp_path / "pairs.csv", records, range(8))
    cfg = load_config(SMOKE, [*PAIRS, f"data.root={pairs}", f"data.cache_dir={tmp_path / 'cache'}",
                              f"data.unpaired_root={unpaired}", "objectives.masked_beats.weight=0.5"])  # fmt: skip
    data = prepare_data(cfg, smoke_model, tmp_path / "run", Accelerator(cpu=True))
    assert sorted(i for i, r in data.excluded if r.startswith("unpaired: ")) == ["BAD", "S011"]
    assert data.description.endswith(
        "; 3 ECGs without reports of physionet (unpaired) mixed in; 0 records left out, 2 of 5 unpaired ECGs left "
        "out (listed in excluded_records.csv)"
    )


def test_unpaired_ecgs_that_are_pairs_of_the_run_are_left_out_of_them(
    records: Path, tmp_path: Path, smoke_model
) -> None:
    """data.unpaired_root on the pairs' own record folder (MIMIC's files/, to add the ECGs whose reports were too
    short) trained the held-out ECGs with the ECG-only objectives, and every training ECG a second time, while the
    run said "N held out"."""
    from accelerate import Accelerator

    from ecglang.training.setup import prepare_data

    pairs = _pairs_csv(tmp_path / "pairs.csv", records, range(8))  # S000..S007 paired; the folder has S000..S015
    cfg = load_config(SMOKE, [*PAIRS, f"data.root={pairs}", f"data.cache_dir={tmp_path / 'cache'}",
                              f"data.unpaired_root={records}", "objectives.masked_beats.weight=0.5"])  # fmt: skip
    data = prepare_data(cfg, smoke_model, tmp_path / "run", Accelerator(cpu=True))
    assert data.unpaired is not None and len(data.val) > 0
    assert sorted(data.unpaired.ids) == [f"S{i:03d}" for i in range(8, 16)]  # the ECGs without a pair
    reasons = dict(i for i in data.excluded if i[1].startswith("unpaired: "))
    assert sorted(reasons) == [f"S{i:03d}" for i in range(8)]
    assert {reasons[i] for i in data.val.ids} == {"unpaired: the ECG of a held-out pair of this run"}
    assert {reasons[i] for i in data.train.ids} == {"unpaired: the ECG of a training pair of this run"}
    assert not [f for f in data.failed if f[0] in reasons]  # not failures: the run's exit status is not theirs
    assert f"8 of 16 unpaired ECGs are pairs of this run ({len(data.val)} held out), left out" in data.description


def test_a_refused_unpaired_cache_names_the_unpaired_folder(records: Path, tmp_path: Path) -> None:
    """Over data.max_inline_records, a multi-process run refused the unpaired ECGs' cache with the paired source's
    `ecglang data build` command and "train with data.prepared=", which cannot prepare them."""
    from types import SimpleNamespace

    from ecglang.training.setup import inline_cache

    cfg = load_config(SMOKE, [f"data.unpaired_root={records}", "objectives.masked_beats.weight=0.5",
                              "data.max_inline_records=2"])  # fmt: skip
    two_processes = SimpleNamespace(num_processes=2, is_main_process=True)
    ecgs = [(f"S{i:03d}", str(records / f"S{i:03d}")) for i in range(4)]
    with pytest.raises(ConfigError) as err:
        inline_cache(cfg, ecgs, _preprocess(), tmp_path / "run", two_processes,
                     cache_dir=str(tmp_path / "cache" / "unpaired"), unpaired=True)  # fmt: skip
    message = str(err.value)
    assert f"4 ECGs of data.unpaired_root={records}" in message and "ONE process" in message
    assert "data build" not in message and "data.prepared" not in message


# ------------------------------------------------------------------------------- ECG-only validation (#10)
def test_ecg_only_run_with_one_held_out_ecg_validates_without_a_false_warning(
    records: Path, tmp_path: Path, caplog
) -> None:
    """ECG-only runs validate on the objectives' loss, which one held-out ECG gives: the warning "1 held-out
    pairs: no validation ... best/ is not written" was false, and the validation line printed pair metrics as nan."""
    folder = tmp_path / "cinc"
    folder.mkdir()
    for i in range(6):
        for ext in (".hea", ".dat"):
            shutil.copy(records / f"S{i:03d}{ext}", folder / f"S{i:03d}{ext}")
    cfg = load_config(SMOKE, [
        "data.builder=physionet", f"data.root={folder}", f"data.cache_dir={tmp_path / 'cache'}", "data.limit=null",
        "data.val_group=null", "data.val_fraction=0.17", "objectives.contrastive=false",
        "objectives.masked_beats.weight=1", "schedule.max_steps=1", "schedule.warmup_steps=0", "train.batch_size=2",
        "train.eval_every=1", "train.checkpoint_every=1",
    ])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ecglang"):
        result = train(cfg, output_dir=tmp_path / "run")
    assert result.best_dir is not None  # one held-out ECG: validated and selected
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ecglang")]
    assert not [m for m in messages if "no validation" in m]
    (line,) = [m for m in messages if m.startswith("step 1 validation:")]
    assert "val_objective_loss" in line and "on 1 ECGs" in line and "nan" not in line


# ------------------------------------------------------------------------- preprocessing mismatch (#14)
def test_preprocessing_mismatch_names_a_command_that_works(records: Path, tmp_path: Path, capsys) -> None:
    """The error told the user to run `data build ... --preprocess model_preprocess.json`, a file that nothing
    wrote; the model's name (or its written-out preprocessing) gives a command that works."""
    from ecglang.training.setup import open_prepared

    pairs = _pairs_csv(tmp_path / "pairs.csv", records, range(4))
    prepared = tmp_path / "prepared"
    assert cli(["data", "build", "pairs", str(pairs), "--out", str(prepared), "--merl-compat", "--no-progress"]) == 0
    capsys.readouterr()
    cfg = load_config(SMOKE, [f"data.prepared={prepared}"])
    with pytest.raises(ConfigError) as err:
        open_prepared(cfg, _preprocess())
    expected = f"`ecglang data build pairs {pairs} --out NEW_FOLDER --model ecglang-small`"
    assert expected in str(err.value) and "data.prepared=NEW_FOLDER" in str(err.value)

    # Preprocessing that no named model config has (model.overrides.processor): written out, and named.
    own = PreprocessConfig.from_dict({**_preprocess().to_dict(), "bandpass": [1.0, 40.0]})
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        open_prepared(cfg, own, out)
    written = out / "model_preprocess.json"
    assert f"--out NEW_FOLDER --preprocess {written}`" in str(err.value)
    assert PreprocessConfig.from_dict(json.loads(written.read_text())).to_dict() == own.to_dict()


def test_relative_data_paths_use_the_repository_root_only_in_a_checkout(tmp_path) -> None:
    """An installed wheel has site-packages above the package: a review got 'relative paths are tried from
    ... and .../site-packages' for the shipped smoke config. Only a folder with pyproject.toml is a checkout."""
    from ecglang.core.paths import repo_root, source_checkout
    from ecglang.training.setup import resolve_data_path

    assert source_checkout(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    assert source_checkout(tmp_path) == tmp_path
    assert source_checkout() == repo_root()  # the tests run from a checkout
    with pytest.raises(ConfigError, match="repository root"):
        resolve_data_path("no/such/folder", "data.root")


def test_reports_longer_than_the_text_tower_reads_are_counted_and_warned(caplog) -> None:
    """The tokenizer cut every report at text_tower.max_length silently at each step (MIMIC reports of up to 18
    statements pass 128 tokens). The count uses the real tokenizer, special tokens included."""
    from ecglang.encoders.registry import create_model
    from ecglang.training.setup import warn_truncated_reports

    model = create_model("ecglang-small", text_tower={"max_length": 16})
    short = "sinus rhythm. normal ecg."
    long = "sinus rhythm. " + "left ventricular hypertrophy with secondary repolarisation abnormality. " * 3
    assert len(model.get_tokenizer()(short)["input_ids"]) <= 16 < len(model.get_tokenizer()(long)["input_ids"])
    with caplog.at_level(logging.WARNING, logger="ecglang.training.setup"):
        assert warn_truncated_reports(model, [short, long, "", long]) == 2
    assert "2 of 3 reports are longer than text_tower.max_length=16" in caplog.text
    caplog.clear()
    assert warn_truncated_reports(model, [short]) == 0 and caplog.text == ""


def test_a_resume_with_another_learning_rate_trains_with_it(records: Path, tmp_path: Path) -> None:
    """`optim.lr` changed on --resume was announced ("the new values hold from step 2") but `load_state` put the
    checkpoint's rate back: the run went on with the old schedule, bit for bit (weight decay, betas, eps alike)."""
    run = _pairs_csv(tmp_path / "pairs.csv", records, range(8))
    base = [*PAIRS, f"data.root={run}", f"data.cache_dir={tmp_path / 'cache'}", "train.eval_every=2",
            "train.checkpoint_every=2", "schedule.max_steps=4"]  # fmt: skip

    def lrs(out: Path) -> dict[int, float]:
        rows = pd.read_csv(out / "metrics.csv")
        rows = rows[rows["split"] == "train"]
        return dict(zip(rows["step"], rows["lr"], strict=True))

    train(load_config(SMOKE, [*base, "schedule.max_steps=2"]), output_dir=tmp_path / "resumed")
    train(load_config(SMOKE, [*base, "optim.lr=0.0002"]), output_dir=tmp_path / "resumed", resume=True)
    fresh = tmp_path / "fresh"  # the new rate's schedule from the start
    train(load_config(SMOKE, [*base, "optim.lr=0.0002"]), output_dir=fresh)
    resumed, wanted = lrs(tmp_path / "resumed"), lrs(fresh)
    assert {3, 4} <= set(resumed) & set(wanted)
    assert [resumed[s] for s in (3, 4)] == pytest.approx([wanted[s] for s in (3, 4)], rel=1e-9)


def test_restoring_the_optimizer_settings_keeps_the_state_and_takes_the_config() -> None:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from ecglang.training.checkpoints import optimizer_settings, restore_optimizer_settings

    def build(lr: float, wd: float) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(4))
        opt = torch.optim.AdamW([{"params": [w], "weight_decay": wd}], lr=lr, betas=(0.9, 0.98))
        return opt, get_cosine_schedule_with_warmup(opt, 2, 10)

    opt, sched = build(1e-3, 0.01)
    for _ in range(3):
        opt.param_groups[0]["params"][0].sum().backward()
        opt.step()
        sched.step()
    saved = (opt.state_dict(), sched.state_dict())
    for lr, wd in ((1e-3, 0.01), (2e-4, 0.5)):  # the same config: the loaded rate bit for bit; another: its values
        new_opt, new_sched = build(lr, wd)
        settings = optimizer_settings(new_opt, new_sched)
        new_opt.load_state_dict(saved[0])
        new_sched.load_state_dict(saved[1])
        restore_optimizer_settings(new_opt, new_sched, settings)
        group = new_opt.param_groups[0]
        assert group["weight_decay"] == wd and new_sched.base_lrs == [lr] and new_sched.last_epoch == 3
        assert group["lr"] == lr * new_sched.lr_lambdas[0](3)
        assert torch.equal(new_opt.state_dict()["state"][0]["exp_avg"], saved[0]["state"][0]["exp_avg"])
        if lr == 1e-3:
            assert group["lr"] == saved[0]["param_groups"][0]["lr"]


def test_a_refused_resume_names_what_differs_and_another_world_size_is_said(
    records: Path, tmp_path: Path, caplog
) -> None:
    """A resume with another batch size or data.limit was refused with one message for all ("a different
    data/model/augment/batch configuration"): the keys are named now. A checkpoint of another number of processes
    resumed in silence, though `local_loss: auto` then computes another loss: said now."""
    run = _pairs_csv(tmp_path / "pairs.csv", records, range(8))
    base = [*PAIRS, f"data.root={run}", f"data.cache_dir={tmp_path / 'cache'}", "train.eval_every=2",
            "train.checkpoint_every=2", "schedule.max_steps=2"]  # fmt: skip
    out = tmp_path / "run"
    train(load_config(SMOKE, base), output_dir=out)
    with pytest.raises(ConfigError, match=r"configuration \(batch: \[4, 1\] -> \[2, 1\]\); resume with"):
        train(load_config(SMOKE, [*base, "train.batch_size=2"]), output_dir=out, resume=True)
    with pytest.raises(ConfigError, match=r"configuration \(data/limit: None -> 6\); resume with"):
        train(load_config(SMOKE, [*base, "data.limit=6"]), output_dir=out, resume=True)

    state_file = out / "checkpoint-2" / TRAINER_STATE
    state = json.loads(state_file.read_text())
    assert state["num_processes"] == 1
    state["num_processes"] = 4  # as a 4-process run would have written it
    state_file.write_text(json.dumps(state))
    write_checksums(out / "checkpoint-2")
    with caplog.at_level(logging.WARNING, logger="ecglang.training.trainer"):
        train(load_config(SMOKE, [*base, "schedule.max_steps=3"]), output_dir=out, resume=True)
    said = [r.getMessage() for r in caplog.records if "process(es)" in r.getMessage()]
    assert len(said) == 1 and "was trained on 4 process(es), this run has 1" in said[0]
    assert "train.local_loss=auto now computes the exact loss, the local one before" in said[0]
    assert json.loads((out / "checkpoint-3" / TRAINER_STATE).read_text())["num_processes"] == 1


def test_resume_with_another_schedule_says_so(records: Path, tmp_path: Path, caplog) -> None:
    """A resume with another max_steps or learning rate went on silently: the run then follows two schedules
    (the ablation scripts refuse their own run folders; a user extending a run gets a warning naming each change)."""
    run = _pairs_csv(tmp_path / "pairs.csv", records, range(8))
    base = [*PAIRS, f"data.root={run}", f"data.cache_dir={tmp_path / 'cache'}", "train.eval_every=2",
            "train.checkpoint_every=2"]  # fmt: skip
    out = tmp_path / "run"
    train(load_config(SMOKE, [*base, "schedule.max_steps=2"]), output_dir=out)
    with caplog.at_level(logging.WARNING, logger="ecglang.training.checkpoints"):
        train(load_config(SMOKE, [*base, "schedule.max_steps=2"]), output_dir=out, resume=True)
    assert "--resume with" not in caplog.text  # the same config: nothing to say
    with caplog.at_level(logging.WARNING, logger="ecglang.training.checkpoints"):
        assert train(load_config(SMOKE, [*base, "schedule.max_steps=4", "optim.lr=0.0002"]), output_dir=out,
                     resume=True).steps == 4  # fmt: skip
    assert "schedule/max_steps: 2 -> 4" in caplog.text and "optim/lr:" in caplog.text
    caplog.clear()  # selection and clipping changed in silence before (config.yaml then claimed them for all steps)
    with caplog.at_level(logging.WARNING, logger="ecglang.training.checkpoints"):
        changed = ["schedule.max_steps=6", "optim.lr=0.0002", "train.clip_grad_norm=1000",
                   "selection.metrics=[report2ecg_recall@10]"]  # fmt: skip
        train(load_config(SMOKE, [*base, *changed]), output_dir=out, resume=True)
    assert "train/clip_grad_norm: 1.0 -> 1000" in caplog.text and "selection/metrics:" in caplog.text
    assert "a new best/ is compared with a score of another scale" in caplog.text


def test_a_folder_prepared_before_a_setting_existed_opens_where_it_means_the_same(records: Path, tmp_path) -> None:
    """A prepared folder's manifest from before `flat_block_ptp_mv` (its preprocessing: that rule off) was refused
    for any model, since the model's settings gained the key, with "(prepared, model): {}" as the difference."""
    from ecglang.data.cache import sha256_json
    from ecglang.training.setup import open_prepared

    pairs = _pairs_csv(tmp_path / "pairs.csv", records, range(4))
    prepared = tmp_path / "prepared"
    assert cli(["data", "build", "pairs", str(pairs), "--out", str(prepared), "--model", "ecglang-small",
                "--no-progress"]) == 0  # fmt: skip
    manifest_file = prepared / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    for key in ("flat_block_ptp_mv", "flat_block_fraction"):  # as written before these settings existed
        manifest["preprocess"].pop(key)
    manifest["config_sha256"] = sha256_json(manifest["preprocess"])
    manifest_file.write_text(json.dumps(manifest))
    cfg = load_config(SMOKE, [f"data.prepared={prepared}"])
    same = PreprocessConfig.from_dict({**_preprocess().to_dict(), "flat_block_ptp_mv": 0.0})  # the rule off
    assert open_prepared(cfg, same)[4] == prepared
    with pytest.raises(ConfigError, match=r"'flat_block_ptp_mv': \(0\.0, 0\.01\)"):
        open_prepared(cfg, _preprocess())  # today's default has the rule on: refused, naming it
