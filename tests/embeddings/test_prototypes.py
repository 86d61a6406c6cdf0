"""Prototype index (ProtoECGNet, issue 17): built from real PTB-XL records with the bundled checkpoint."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglang.embeddings.pipeline import default_processor, encode_batches
from ecglang.embeddings.prototypes import (
    PrototypeError,
    PrototypeIndex,
    PrototypeModelMismatch,
    build_prototypes,
    read_reports,
)
from ecglang.embeddings.sources import ItemSource
from ecglang.errors import ConfigError

RECORDS = ["00001_hr", "00002_hr", "00003_hr", "00004_hr", "00005_hr"]


@pytest.fixture(scope="module")
def paths(ptbxl_dir: Path) -> list[Path]:
    return [ptbxl_dir / "records500" / "00000" / r for r in RECORDS]


@pytest.fixture(scope="module")
def built(model, paths, tmp_path_factory) -> tuple[PrototypeIndex, Path]:
    out = tmp_path_factory.mktemp("protos") / "index"
    # no reports= : PTB-XL's table beside the records is found as the CLI finds it (Python built an index
    # without a single report before)
    index, failures = build_prototypes(model, paths, out, progress=False, num_workers=0)
    assert failures == []
    return index, out


def beat_embeddings(model, paths) -> tuple[list[str], list[np.ndarray], list]:
    ids, embs, tokens = [], [], []
    for batch in encode_batches(ItemSource(paths), model, default_processor(model), full=True, num_workers=0):
        out = batch.outputs["model"]
        ids += batch.record_ids
        embs += [out.beat_embeds[r, : v[1].n_beats].numpy() for r, v in enumerate(batch.views)]
        tokens += [v[1] for v in batch.views]
    return ids, embs, tokens


def test_every_beat_retrieves_itself_first(built, model, paths) -> None:
    index, _ = built
    ids, embs, _ = beat_embeddings(model, paths)
    assert len(index) == sum(len(e) for e in embs) and len(index.records) == len(RECORDS)
    for rid, emb in zip(ids, embs, strict=True):
        hits = index.search(emb, k=2, positions=np.arange(len(emb)))
        for beat, matches in enumerate(hits):
            top = matches[0]
            assert (top.record_id, top.beat_index) == (rid, beat)
            assert top.similarity == pytest.approx(1.0, abs=1e-4)
            assert matches[1].similarity < top.similarity


def test_matches_are_not_just_beats_at_the_same_position(model, ptbxl_dir) -> None:
    """Beat embeddings carry their beat index: searched by their plain cosine, beat k's nearest beat of another
    record was beat k for every query beat of the sample (`scripts/prototype_positions.py`). Position
    centring must leave the same-index share well below that (and each beat still finds itself first, above)."""
    import pandas as pd

    files = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")["filename_hr"].head(90)
    ids, embs, _ = beat_embeddings(model, [ptbxl_dir / f for f in files])
    reference, queries = slice(0, 60), slice(60, 90)
    vectors = np.concatenate(embs[reference])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    beat_index = np.concatenate([np.arange(len(e)) for e in embs[reference]])
    beat_record = np.concatenate([np.full(len(e), i) for i, e in enumerate(embs[reference])])
    index = PrototypeIndex(vectors, [{"id": r} for r in ids[reference]], beat_record, beat_index,
                           np.ones((len(vectors), 12), bool), None, {})  # fmt: skip
    same_raw = same_centred = n = 0
    for emb in embs[queries]:
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        same_raw += int((beat_index[(unit @ vectors.T).argmax(1)] == np.arange(len(emb))).sum())
        hits = index.search(emb, k=1, positions=np.arange(len(emb)))
        same_centred += sum(h[0].beat_index == beat for beat, h in enumerate(hits))
        n += len(emb)
    assert n > 300 and same_raw / n > 0.9  # the effect is there in this model
    assert same_centred / n < 0.75 * same_raw / n, (same_centred / n, same_raw / n)


def test_exclude_leaves_out_the_query_record(built, model, paths) -> None:
    index, _ = built
    ids, embs, _ = beat_embeddings(model, paths[:1])
    hits = index.search(embs[0], k=3, exclude=[ids[0]] * len(embs[0]))
    assert all(len(m) == 3 and all(h.record_id != ids[0] for h in m) for m in hits)
    assert all(m[0].similarity < 0.9999 for m in hits)


def test_reports_and_windows_are_the_records(built, model, paths, ptbxl_dir) -> None:
    index, _ = built
    reports = read_reports(ptbxl_dir / "ptbxl_database.csv")
    assert [r["report"] for r in index.records] == [reports[r] for r in RECORDS]
    assert reports["00001_hr"].startswith("sinus rhythm")  # translated to English as for pretraining
    _, _, tokens = beat_embeddings(model, paths[:1])
    rows = np.flatnonzero(index.beat_record == 0)
    assert len(rows) == tokens[0].n_beats
    np.testing.assert_allclose(index.window(rows[3]), tokens[0].beats[3], atol=2e-2, rtol=1e-2)  # float16
    assert index.lead_masks[rows].all()


def test_save_load_round_trip(built, model, tmp_path) -> None:
    index, folder = built
    loaded = PrototypeIndex.load(folder, model=model)
    copy_dir = loaded.save(tmp_path / "copy")
    again = PrototypeIndex.load(copy_dir, model=model)
    q = np.random.default_rng(0).standard_normal((4, index.index.d)).astype(np.float32)
    for a, b in zip(index.search(q, 5), again.search(q, 5), strict=True):
        assert [(h.record_id, h.beat_index, h.report) for h in a] == [(h.record_id, h.beat_index, h.report) for h in b]
        np.testing.assert_allclose([h.similarity for h in a], [h.similarity for h in b], rtol=0, atol=1e-6)
    assert again.records == index.records and again.meta == index.meta
    np.testing.assert_array_equal(np.asarray(again.windows), np.asarray(loaded.windows))
    assert not any(p.suffix in {".pkl", ".pickle"} for p in copy_dir.iterdir())


def test_another_model_is_refused(built, model) -> None:
    _, folder = built
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.beat_proj.parameters().__next__().add_(1e-3)
    with pytest.raises(PrototypeModelMismatch, match="weights differ"):
        PrototypeIndex.load(folder, model=other)


def test_broken_folder_is_a_typed_error(built, tmp_path) -> None:
    index, _ = built
    folder = index.save(tmp_path / "broken")
    (folder / "beat_index.npy").unlink()
    with pytest.raises(PrototypeError, match=r"beat_index\.npy: not this index's array: file not found"):
        PrototypeIndex.load(folder)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(PrototypeError, match="format 99"):
        PrototypeIndex.load(folder)


def test_a_reports_table_keys_reports_by_the_ids_the_readers_give(tmp_path: Path) -> None:
    table = tmp_path / "reports.csv"
    table.write_text("path,report\n/data/x/rec9.hea,Sinus rhythm.\n/data/site.2/rec.10,atrial fibrillation\n")
    # a dot in a record's name is not a suffix (`record_id_of`); Path.stem read "rec.10" as "rec"
    assert read_reports(table) == {"rec9": "sinus rhythm.", "rec.10": "atrial fibrillation."}
    by_id = tmp_path / "ids.csv"
    by_id.write_text("id,report\nrec.10,atrial fibrillation\n")
    assert read_reports(by_id) == {"rec.10": "atrial fibrillation."}
    for text, problem in (("path,text\nx,y\n", "needs a 'report' column"), ("rec,report\nx,y\n", "'id' or 'path'")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=problem) as err:
            read_reports(bad)
        assert str(bad) in str(err.value)
