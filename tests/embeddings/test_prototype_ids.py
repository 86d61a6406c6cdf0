"""Prototype ids and self-exclusion (audit17_cli finding 4): reference records of one stem in two folders had one
id in the index, a query's own beats were left out by stem with an over-fetch of one record's beats, so a query
whose stem two reference records shared got fewer than k prototypes, and two same-stem matches could not be told
apart (no file in the prototype table)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main
from ecglang.embeddings.prototypes import PrototypeError, PrototypeIndex, PrototypeMatch, build_prototypes, read_reports
from ecglang.errors import ConfigError
from ecglang.scores.classifier import ZeroShotClassifier

DIM = 8
IDENTITY = {"config_sha256": "c", "weights_sha256": "w"}


# ------------------------------------------------------------------------------ synthetic index
def synthetic(tmp_path: Path, records: list[dict], sizes: list[int], near: list[int]) -> PrototypeIndex:
    """An index of `sizes[i]` beats of record i, each beat close to axis `near[i]` (so records on one axis are
    each other's nearest); the record files exist under `tmp_path`, as `resolve` follows links."""
    for rec in records:
        if rec.get("source"):
            Path(rec["source"]).parent.mkdir(parents=True, exist_ok=True)
            Path(rec["source"]).touch()
    rng = np.random.default_rng(0)
    vectors = np.concatenate([np.eye(DIM)[axis] + 0.05 * rng.standard_normal((n, DIM)) for n, axis in
                              zip(sizes, near, strict=True)]).astype(np.float32)  # fmt: skip
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    beat_record = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
    beat_index = np.concatenate([np.arange(n) for n in sizes]).astype(np.int16)
    meta = {"format": 2, "model": IDENTITY, "dim": DIM, "n_beats": len(vectors), "n_records": len(records),
            "max_beats_per_record": max(sizes), "windows_shape": None}  # fmt: skip
    return PrototypeIndex(vectors, records, beat_record, beat_index, np.ones((len(vectors), 12), bool), None, meta)


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[PrototypeIndex, Path]:
    """Record r in folders a and b (ids r and r#2, 6 beats each, near one another), record s in c (3 beats)."""
    records = [{"id": "r", "report": "first", "source": str(tmp_path / "a" / "r.hea")},
               {"id": "r#2", "report": "second", "source": str(tmp_path / "b" / "r.hea")},
               {"id": "s", "report": "third", "source": str(tmp_path / "c" / "s.hea")}]  # fmt: skip
    return synthetic(tmp_path, records, [6, 6, 3], [0, 0, 1]), tmp_path


def test_the_query_file_is_left_out_and_a_same_stem_record_elsewhere_is_not(two_folders) -> None:
    index, root = two_folders
    hits = index.search(np.eye(DIM)[:1], k=3, exclude=["r"], exclude_paths=[root / "a" / "r.hea"])[0]
    assert [(h.record_id, h.path) for h in hits] == [("r#2", str(root / "b" / "r.hea"))] * 3
    assert {h.report for h in hits} == {"second"}


def test_one_file_reached_through_a_link_is_the_same_record(two_folders) -> None:
    index, root = two_folders
    (root / "link").symlink_to(root / "a", target_is_directory=True)
    hits = index.search(np.eye(DIM)[:1], k=6, exclude=["r"], exclude_paths=[str(root / "link" / "r.hea")])[0]
    assert {h.record_id for h in hits} == {"r#2"}


def test_k_matches_remain_when_more_beats_are_left_out_than_one_record_holds(two_folders) -> None:
    """A query from memory (no file) cannot be told from either `r`: both are left out, 12 beats, and the over-
    fetch used to be one record's 6, so none of the 3 asked for came back."""
    index, _ = two_folders
    hits = index.search(np.eye(DIM)[:1], k=3, exclude=["r"], exclude_paths=[None])[0]
    assert [h.record_id for h in hits] == ["s"] * 3
    assert len(index.search(np.eye(DIM)[:1], k=3, exclude=["r"])[0]) == 3  # ids alone, as before: the same
    everything = index.search(np.eye(DIM)[:1], k=50, exclude=["s"], exclude_paths=[None])[0]
    assert len(everything) == 12 and {h.record_id for h in everything} == {"r", "r#2"}  # the index runs out


def test_records_without_files_are_left_out_by_id(tmp_path: Path) -> None:
    """An index whose records have no files (built from memory; records.jsonl without `source`): by id stem."""
    index = synthetic(tmp_path, [{"id": "r"}, {"id": "r#2"}, {"id": "s"}], [6, 6, 3], [0, 0, 1])
    hits = index.search(np.eye(DIM)[:1], k=3, exclude=["r"], exclude_paths=[str(tmp_path / "q" / "r.hea")])[0]
    assert [(h.record_id, h.path) for h in hits] == [("s", None)] * 3


def test_exclusions_must_name_every_query(two_folders) -> None:
    index, root = two_folders
    with pytest.raises(ConfigError, match="1 exclude_paths entries for 2 query beats"):
        index.search(np.eye(DIM)[:2], k=1, exclude=["r", "r"], exclude_paths=[root / "a" / "r.hea"])


def test_a_match_names_its_file() -> None:
    match = PrototypeMatch("r#2", 3, 0.5, "report", 7, "/data/b/r.hea")
    assert match.to_dict() == {"record": "r#2", "path": "/data/b/r.hea", "beat": 3, "similarity": 0.5,
                               "report": "report"}  # fmt: skip


def test_an_older_folder_with_a_repeated_stem_loads_with_unique_ids(two_folders, tmp_path: Path) -> None:
    index, root = two_folders
    folder = index.save(tmp_path / "old")
    lines = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    lines[1]["id"] = "r"  # as builds wrote it before
    (folder / "records.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    loaded = PrototypeIndex.load(folder)
    assert [rec["id"] for rec in loaded.records] == ["r", "r#2", "s"]
    hits = loaded.search(np.eye(DIM)[:1], k=3, exclude=["r"], exclude_paths=[root / "a" / "r.hea"])[0]
    assert [h.record_id for h in hits] == ["r#2"] * 3
    assert PrototypeIndex.load(index.save(tmp_path / "new")).records == index.records  # unique ids stay as they are


BAD_RECORDS = [
    ({"id": 5}, "'id' must be a string"),
    ({"report": "x"}, "'id' must be a string"),
    ({"id": "r", "source": 3}, "'report' and 'source' must be strings or null"),
]


@pytest.mark.parametrize(("record", "words"), BAD_RECORDS)
def test_record_fields_of_the_wrong_type_are_a_typed_error(two_folders, tmp_path: Path, record, words) -> None:
    index, _ = two_folders
    folder = index.save(tmp_path / "bad")
    (folder / "records.jsonl").write_text(json.dumps(record) + "\n" + '{"id": "r"}\n{"id": "s"}\n')
    with pytest.raises(PrototypeError, match=f"records.jsonl: line 1: {words}"):
        PrototypeIndex.load(folder)


# ---------------------------------------------------------------------------- real records
@pytest.fixture(scope="module")
def folders(ptbxl_dir: Path, tmp_path_factory) -> Path:
    """a/ with 00001_hr and 00002_hr, b/ with a copy of 00001_hr (the audit's folders)."""
    root = tmp_path_factory.mktemp("same-stem")
    source = ptbxl_dir / "records500" / "00000"
    for folder, stems in (("a", ["00001_hr", "00002_hr"]), ("b", ["00001_hr"])):
        (root / folder).mkdir()
        for stem in stems:
            for suffix in (".hea", ".dat"):
                shutil.copy(source / f"{stem}{suffix}", root / folder / f"{stem}{suffix}")
    return root


def test_a_stem_in_two_folders_is_two_records_with_their_files(model, folders, ptbxl_dir) -> None:
    reports = read_reports(ptbxl_dir / "ptbxl_database.csv")
    index, failures = build_prototypes(model, [folders / "a", folders / "b"], folders / "index", progress=False,
                                       beats_per_record=5, num_workers=0, reports=reports)  # fmt: skip
    assert not failures
    assert [(rec["id"], rec["source"]) for rec in index.records] == [
        ("00001_hr", str(folders / "a" / "00001_hr.hea")),
        ("00002_hr", str(folders / "a" / "00002_hr.hea")),
        ("00001_hr#2", str(folders / "b" / "00001_hr.hea")),
    ]
    # the reports are found by the record's own stem, not its index id
    assert index.records[0]["report"] and index.records[2]["report"] == index.records[0]["report"]

    clf = ZeroShotClassifier(model, knowledge="off", prototypes=index, prototype_k=3)
    result = clf([folders / "a"], labels=["sinus rhythm", "atrial fibrillation"], progress=False)
    table = result.prototype_table()
    assert list(table.columns) == ["record", "path", "label", "beat", "rank", "prototype_record", "prototype_path",
                                   "prototype_beat", "similarity", "report"]  # fmt: skip
    assert table.groupby("record")["rank"].apply(list).to_dict() == {"00001_hr": [1, 2, 3], "00002_hr": [1, 2, 3]}
    assert not table.duplicated(["record", "prototype_path", "prototype_beat"]).any()  # rows tell matches apart
    assert (table["path"] != table["prototype_path"]).all()  # never the query's own file
    by_id = {rec["id"]: rec["source"] for rec in index.records}
    assert list(table["prototype_path"]) == [by_id[r] for r in table["prototype_record"]]
    # the copy in b/ is another file, so another record: it may explain a/00001_hr
    assert set(table["prototype_record"]) <= set(by_id)


def test_the_cli_table_has_k_rows_a_record_and_the_prototype_file(model, folders, ptbxl_dir, tmp_path) -> None:
    index, out = tmp_path / "protoAB", tmp_path / "protoAB.csv"
    assert main(["prototypes", "build", "--records", str(folders / "a"), str(folders / "b"), "--out", str(index),
                 "--beats-per-record", "5", "--reports", str(ptbxl_dir / "ptbxl_database.csv"), "--num-workers", "0",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["zero-shot", str(folders / "a"), "--labels", "sinus rhythm", "atrial fibrillation", "--knowledge",
                 "off", "--prototypes", str(index), "--prototype-k", "3", "--prototypes-out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    table = pd.read_csv(out)
    assert table["record"].value_counts().to_dict() == {"00001_hr": 3, "00002_hr": 3}
    assert not table.duplicated(["record", "prototype_path", "prototype_beat"]).any()
    assert set(table["prototype_path"]) <= {str(folders / f) for f in ("a/00001_hr.hea", "a/00002_hr.hea",
                                                                       "b/00001_hr.hea")}  # fmt: skip
