"""Zero-shot scoring of a prepared folder (`ecglang data build --out`): the PhysioNet-scale path, whose rows are
read a batch at a time from the shards instead of re-reading and re-preprocessing every record file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.errors import ConfigError, EcgReadError
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["atrial fibrillation", "sinus rhythm", "left bundle branch block"]


@pytest.fixture(scope="module")
def record_folder(ptbxl_dir, tmp_path_factory) -> Path:
    """Five PTB-XL records (no reports: unpaired ECGs) and one whose signal file is cut short (it passes the
    table's file check and fails in the cache build)."""
    folder = tmp_path_factory.mktemp("records")
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    names = list(db["filename_hr"].head(5))
    for name in names:
        for suffix in (".hea", ".dat"):
            shutil.copy(ptbxl_dir / f"{name}{suffix}", folder)
    first = Path(names[0]).name
    header = (folder / f"{first}.hea").read_text().replace(first, "broken_hr")
    (folder / "broken_hr.hea").write_text(header)
    (folder / "broken_hr.dat").write_bytes((folder / f"{first}.dat").read_bytes()[:100])
    return folder


@pytest.fixture(scope="module")
def prepared(model_dir, record_folder, tmp_path_factory) -> Path:
    """The folder built as a user would, in two shards, with the model's own preprocessing (`--model`)."""
    out = tmp_path_factory.mktemp("prepared") / "out"
    argv = ["data", "build", "physionet", str(record_folder), "--out", str(out), "--shard-size", "3",
            "--model", str(model_dir), "--no-progress"]  # fmt: skip
    assert cli(argv) in (0, 1)  # the truncated record's row fails in the cache (listed); the exit status says so
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 2
    return out


def test_a_prepared_folder_scores_as_its_record_files(model, prepared, record_folder):
    """`score_cache` takes a prepared folder (shards read as one, rows in table order) and scores each row as the
    file it was built from; a row that failed at build time is a listed failure."""
    clf = ZeroShotClassifier(model, knowledge=None, batch_size=2)
    result = clf.score_cache(prepared, LABELS, progress=False)
    good = sorted(p for p in record_folder.glob("*_hr.hea") if p.stem != "broken_hr")
    files = [str(p.with_suffix("")) for p in good]
    assert sorted(result.sources.tolist()) == files
    assert [f.stage for f in result.failures] == ["read"] and "broken" in result.failures[0].record
    direct = clf(good, labels=LABELS, progress=False)
    by_file = {src: rid for rid, src in zip(result.scores.index, result.sources.tolist(), strict=True)}
    ordered = result.scores.loc[[by_file[f] for f in files]].to_numpy()
    np.testing.assert_allclose(ordered, direct.scores.to_numpy(), atol=2e-2)  # float16 rows vs the files


def test_the_cli_scores_a_prepared_folder_and_lists_its_failed_rows(model_dir, prepared, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", str(prepared), "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off",
            "--out", str(out), "--no-progress", "--quiet"]  # fmt: skip
    assert cli(argv) == 1  # the failed row makes the status non-zero; the others are scored
    table = pd.read_csv(out)
    assert len(table) == 5 and table["path"].str.endswith("_hr").all() and "broken_hr" not in set(table["record"])
    assert "broken" in capsys.readouterr().err
    assert "lead_mask" not in out.with_suffix(".failures.csv").read_text()  # the cache's files are not records


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["{records}"], "score it on its own"),
        (["--plot", "x.png"], "--plot"),
        (["--fs", "500"], "--fs"),
    ],
)
def test_the_cli_refuses_what_a_prepared_folder_cannot_do(model_dir, prepared, record_folder, extra, message, capsys):
    extra = [a.format(records=record_folder) for a in extra]
    argv = ["zero-shot", str(prepared), *extra, "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off"]
    assert cli(argv) != 0
    assert message in capsys.readouterr().err


def test_a_folder_that_is_neither_cache_nor_prepared_is_named(model, tmp_path):
    with pytest.raises(EcgReadError, match="neither a signal cache"):
        ZeroShotClassifier(model, knowledge=None).score_cache(tmp_path, LABELS, progress=False)


def test_data_build_takes_the_preprocessing_of_a_checkpoint(model_dir, record_folder, tmp_path):
    """`--model CHECKPOINT` builds with that checkpoint's processor_config.json (it was refused: only model configs
    were read), so the cache is what the model scores; another preprocessing is refused when scoring."""
    from ecglang.encoders.modeling import load_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(model_dir, ckpt)
    contract = json.loads((ckpt / "processor_config.json").read_text())
    contract["preprocess"]["bandpass"] = [0.5, 35.0]
    (ckpt / "processor_config.json").write_text(json.dumps(contract))
    out = tmp_path / "out"
    cli(["data", "build", "physionet", str(record_folder), "--out", str(out), "--model", str(ckpt), "--no-progress"])
    assert json.loads((out / "manifest.json").read_text())["preprocess"]["bandpass"] == [0.5, 35.0]
    ZeroShotClassifier(load_model(ckpt, device="cpu"), knowledge=None).score_cache(out, LABELS, progress=False)
    with pytest.raises(ConfigError, match="bandpass"):
        ZeroShotClassifier(load_model(model_dir, device="cpu"), knowledge=None).score_cache(out, LABELS)
