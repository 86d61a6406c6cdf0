"""Prototype index, audit 22 (explanations): reports of records of one name, indexes without beats, and queries
prepared otherwise than the index's beats. Real PTB-XL records and the bundled checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main
from ecglang.core.array_files import write_array
from ecglang.embeddings.pipeline import default_processor
from ecglang.embeddings.prototypes import (
    PrototypeError,
    PrototypeIndex,
    PrototypeModelMismatch,
    build_prototypes,
    read_reports,
)
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS


@pytest.fixture(scope="module")
def same_name(ptbxl_dir: Path, tmp_path_factory) -> Path:
    """a/rec.npz and b/rec.npz: two different PTB-XL ECGs (00001_hr, 00002_hr) under one file name."""
    root = tmp_path_factory.mktemp("same-name")
    for sub, stem in (("a", "00001_hr"), ("b", "00002_hr")):
        ecg = load_ecg(ptbxl_dir / "records500" / "00000" / f"{stem}.hea")
        (root / sub).mkdir()
        np.savez(root / sub / "rec.npz", signal=ecg.signal, fs=np.float64(ecg.fs), leads=np.array(CANONICAL_LEADS))
    return root


def test_a_reports_table_keyed_by_path_gives_each_file_its_own_report(model, same_name: Path, tmp_path) -> None:
    """Finding 1: a `path`-keyed reports CSV reduced each path to its stem, so a/rec and b/rec were both indexed
    with b's report (the last row), exit 0, no warning. Now the file decides (relative paths from the CSV's folder)."""
    table = same_name / "reports.csv"
    table.write_text(f"path,report\na/rec.npz,Atrial fibrillation\n{same_name / 'b' / 'rec.npz'},Sinus rhythm\n")
    reports = read_reports(table)
    assert "rec" not in reports  # the name alone no longer says which report
    out = tmp_path / "index"
    rc = main(["prototypes", "build", "--records", str(same_name / "a"), str(same_name / "b"), "--out", str(out),
               "--reports", str(table), "--beats-per-record", "2", "--num-workers", "0", "--no-progress"])  # fmt: skip
    assert rc == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["id"], Path(r["source"]).parent.name, r["report"]) for r in records] == [
        ("rec", "a", "atrial fibrillation."),
        ("rec#2", "b", "sinus rhythm."),
    ]


def test_a_name_of_several_files_is_not_given_to_a_file_the_table_lacks(model, same_name, tmp_path, caplog) -> None:
    """Finding 1: where the table names `rec` for two other files, a third `rec` gets no report (with a warning
    naming it), not one of theirs; a name the table gives one file still matches any file of that name."""
    table = tmp_path / "reports.csv"
    table.write_text("path,report\n/elsewhere/x/rec.npz,Atrial fibrillation\n/elsewhere/y/rec.npz,Sinus rhythm\n")
    with caplog.at_level(logging.WARNING, logger="ecglang.embeddings.prototypes"):
        index, failures = build_prototypes(model, [same_name / "a"], tmp_path / "index", reports=read_reports(table),
                                           beats_per_record=2, num_workers=0, progress=False)  # fmt: skip
    assert not failures and index.records[0]["report"] is None
    assert any("rec" in r.getMessage() and str(same_name / "a") in r.getMessage() for r in caplog.records)
    # unique name, other folder: the name is enough (as before)
    table.write_text("path,report\n/elsewhere/x/rec.npz,Atrial fibrillation\n")
    index, _ = build_prototypes(model, [same_name / "a"], tmp_path / "index", reports=read_reports(table),
                                beats_per_record=2, num_workers=0, progress=False)  # fmt: skip
    assert index.records[0]["report"] == "atrial fibrillation."


def test_an_id_table_can_name_the_second_record_of_a_name(model, same_name: Path, tmp_path) -> None:
    """Finding 1: the build looked reports up by the bare stem, so no table could give `rec#2` its own report."""
    table = tmp_path / "ids.csv"
    table.write_text("id,report\nrec,Atrial fibrillation\nrec#2,Sinus rhythm\n")
    index, _ = build_prototypes(model, [same_name / "a", same_name / "b"], tmp_path / "index",
                                reports=read_reports(table), beats_per_record=2, num_workers=0,
                                progress=False)  # fmt: skip
    assert [(r["id"], r["report"]) for r in index.records] == [("rec", "atrial fibrillation."),
                                                                ("rec#2", "sinus rhythm.")]  # fmt: skip


def test_an_id_listed_twice_with_other_reports_is_an_error_naming_it(tmp_path: Path) -> None:
    """Finding 1: the last of two rows of one id won without a word. The same report twice is fine."""
    table = tmp_path / "ids.csv"
    table.write_text("id,report\nrec,Atrial fibrillation\nother,Normal ECG\nrec,Sinus rhythm\n")
    with pytest.raises(ConfigError, match=r"ids\.csv, line 4: record 'rec' is listed again with another report "
                       r"\(line 2\)"):  # fmt: skip
        read_reports(table)
    table.write_text("path,report\n/x/rec.npz,Atrial fibrillation\n/x/rec.npz,Sinus rhythm\n")
    with pytest.raises(ConfigError, match="line 3: record '/x/rec' is listed again"):
        read_reports(table)
    table.write_text("id,report\nrec,Sinus rhythm\nrec,Sinus rhythm\n")
    assert read_reports(table) == {"rec": "sinus rhythm."}


def flat_ecg() -> Ecg:
    return Ecg(np.zeros((12, 5000), np.float32), 500.0, record_id="flat")


def test_a_build_where_every_record_fails_writes_no_index(model, tmp_path: Path) -> None:
    """Finding 2: a build of records that all failed wrote a 0-beat index, which loaded, and zero-shot then died
    in FAISS with a bare AssertionError. Now a typed error names the cause and nothing is written."""
    out = tmp_path / "index"
    with pytest.raises(PrototypeError, match=r"no beats indexed: every record failed \(1: .*flat"):
        build_prototypes(model, [flat_ecg()], out, num_workers=0, progress=False)
    assert not out.exists()
    np.savez(tmp_path / "flat.npz", signal=np.zeros((12, 5000), np.float32), fs=np.float64(500.0),
             leads=np.array(CANONICAL_LEADS))  # fmt: skip
    assert main(["prototypes", "build", "--records", str(tmp_path / "flat.npz"), "--out", str(out),
                 "--num-workers", "0", "--no-progress"]) == 1  # fmt: skip
    assert not out.exists()


def test_an_index_folder_without_beats_is_refused_on_load(tmp_path: Path) -> None:
    """Finding 2: a 0-beat folder (written before builds refused it, or by hand) loaded and crashed in FAISS at
    the first search; an index of no beats made in memory returns no matches."""
    folder = tmp_path / "empty"
    folder.mkdir()
    meta = {"format": 2, "model": {"config_sha256": "x", "weights_sha256": "y"}, "dim": 8, "n_beats": 0,
            "n_records": 0, "windows_shape": None}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "records.jsonl").write_text("")
    write_array(folder / "vectors.npy", np.zeros((0, 8), np.float32), "<f4")
    for name, shape, dtype in (("beat_record.npy", (0,), "<i4"), ("beat_index.npy", (0,), "<i2"),
                               ("lead_mask.npy", (0, 12), "|b1")):  # fmt: skip
        write_array(folder / name, np.zeros(shape), dtype)
    with pytest.raises(PrototypeError, match=r"meta\.json: the index holds no beats"):
        PrototypeIndex.load(folder)
    empty = PrototypeIndex(np.zeros((0, 8), np.float32), [], np.zeros(0, np.int32), np.zeros(0, np.int16),
                           np.zeros((0, 12), bool), None, meta)  # fmt: skip
    assert empty.search(np.ones((2, 8), np.float32), k=3) == [[], []]


def test_an_index_refuses_a_processor_that_prepares_beats_otherwise(model, ptbxl_dir: Path, tmp_path) -> None:
    """Finding 6: the model check ignored the preprocessing, so an index built from 0.5-40 Hz beats answered
    queries filtered at 5-15 Hz (or cut with other windows) without a word."""
    folder = ptbxl_dir / "records500" / "00000"
    out = tmp_path / "index"
    build_prototypes(model, [folder / "00001_hr", folder / "00002_hr"], out, beats_per_record=2, num_workers=0,
                     progress=False)  # fmt: skip
    processor = default_processor(model)
    index = PrototypeIndex.load(out, model=model, processor=processor)  # the processor it was built with
    index.check_model(model, processor=EcgProcessor.from_dict(index.meta["processor"]))  # as the error advises
    other = EcgProcessor(preprocess=dataclasses.replace(processor.preprocess_config, bandpass=(5.0, 15.0)),
                         beats=processor.beat_config)  # fmt: skip
    with pytest.raises(PrototypeModelMismatch, match=r"preprocess\.bandpass: \[0\.5, 40\.0\] in the index, "
                       r"\[5\.0, 15\.0\] given"):  # fmt: skip
        PrototypeIndex.load(out, model=model, processor=other)
    cut = EcgProcessor(preprocess=processor.preprocess_config,
                       beats=dataclasses.replace(processor.beat_config, pre_s=0.3))  # fmt: skip
    with pytest.raises(PrototypeModelMismatch, match=r"beats\.pre_s: 0\.25 in the index, 0\.3 given"):
        index.check_model(model, processor=cut)


def test_the_classifier_refuses_an_index_built_with_other_preprocessing(model, ptbxl_dir: Path, tmp_path) -> None:
    """Finding 6, the user's path: ZeroShotClassifier(m, processor=<5-15 Hz>, prototypes=<0.5-40 Hz index>) was
    accepted, and query beats filtered otherwise were matched to the index's."""
    from ecglang.scores.classifier import ZeroShotClassifier

    folder = ptbxl_dir / "records500" / "00000"
    out = tmp_path / "index"
    index, _ = build_prototypes(model, [folder / "00001_hr"], out, beats_per_record=2, num_workers=0, progress=False)
    processor = default_processor(model)
    other = EcgProcessor(preprocess=dataclasses.replace(processor.preprocess_config, bandpass=(5.0, 15.0)),
                         beats=processor.beat_config)  # fmt: skip
    ZeroShotClassifier(model, knowledge="off", prototypes=out)  # the default processor: the index's
    for given in (out, index):
        with pytest.raises(PrototypeModelMismatch, match=r"preprocess\.bandpass"):
            ZeroShotClassifier(model, processor=other, knowledge="off", prototypes=given)
