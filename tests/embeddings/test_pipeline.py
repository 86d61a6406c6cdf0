"""The one records -> embeddings path: sources, worker-prepared batches, encoder paths, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ecglang.embeddings.pipeline as pipeline
from ecglang.embeddings.pipeline import (
    BatchPreparer,
    default_processor,
    embed_cache_rows,
    embed_records,
    encode_batches,
    encode_in_workers,
    workers_fork,
)
from ecglang.embeddings.sources import ArraySource, ItemSource, RecordSource, expand_inputs
from ecglang.encoders.registry import create_model
from ecglang.errors import RecordFailure
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ecglang-small").eval()


@pytest.fixture(scope="module")
def records(ptbxl_dir) -> list[Path]:
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    return [ptbxl_dir / f for f in db["filename_hr"].head(5)]


class _ExhaustedSource(RecordSource):
    """Real records, except that reading record `bad` runs out of memory (as an absurd record can)."""

    def __init__(self, ecgs: list[Ecg], bad: int) -> None:
        self.ecgs, self.bad = ecgs, bad

    def __len__(self) -> int:
        return len(self.ecgs)

    def read(self, i: int) -> Ecg | RecordFailure:
        if i == self.bad:
            raise MemoryError("Unable to allocate 112. GiB for an array")
        return self.ecgs[i]


def test_a_memory_error_in_one_record_fails_that_record_only(model, records):
    ecgs = [load_ecg(p) for p in records]
    processor = default_processor(model)
    table = embed_records(_ExhaustedSource(ecgs, bad=2), model, processor, batch_size=4, num_workers=0)
    assert table.positions.tolist() == [0, 1, 3, 4] and table.failed_positions == [2]
    assert [(f.stage, f.reason.split(":")[0]) for f in table.failures] == [("read", "MemoryError")]
    alone = embed_records(ItemSource([ecgs[i] for i in (0, 1, 3, 4)]), model, processor, num_workers=0)
    np.testing.assert_allclose(table.embeddings["model"], alone.embeddings["model"], atol=1e-6)
    assert table.record_ids == alone.record_ids == [ecgs[i].record_id for i in (0, 1, 3, 4)]


def test_full_and_rhythm_paths_agree_for_every_model(model, records):
    torch.manual_seed(1)
    other = create_model("ecglang-small").eval()
    source = ItemSource([str(p) for p in records])
    processor = default_processor(model)
    models = {"a": model, "b": other}
    fast = list(encode_batches(source, models, processor, batch_size=3, num_workers=0))
    full = list(encode_batches(source, models, processor, batch_size=3, num_workers=0, full=True))
    assert [b.record_ids for b in fast] == [b.record_ids for b in full]
    for f, g in zip(fast, full, strict=True):
        for key in models:
            torch.testing.assert_close(f.rhythm[key], g.rhythm[key], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(f.features[key], g.features[key], atol=1e-5, rtol=1e-5)
        # The full path keeps what explanations need: per-beat outputs and each row's prepared record.
        assert g.outputs["a"].beat_embeds is not None and len(g.views) == len(g.record_ids)
        assert all(tok.n_beats >= 2 and clean.fs == tok.fs for clean, tok in g.views)
    assert not torch.allclose(fast[0].rhythm["a"], fast[0].rhythm["b"])  # two models, two answers


def test_workers_give_the_same_embeddings(model, records):
    ecgs = [load_ecg(p) for p in records]
    signals = [e.signal for e in ecgs]
    processor = default_processor(model)
    here = embed_records(ArraySource(signals, ecgs[0].fs), model, processor, batch_size=2, num_workers=0)
    pooled = embed_records(ArraySource(signals, ecgs[0].fs), model, processor, batch_size=2, num_workers=1)
    np.testing.assert_allclose(here.embeddings["model"], pooled.embeddings["model"], atol=1e-6)
    assert here.record_ids == pooled.record_ids == [f"array{i}" for i in range(len(signals))]


def test_workers_that_also_encode_give_the_same_rows_failures_and_order(model, records, tmp_path, monkeypatch):
    """On this machine's few cores the workers run the encoder too; the main process only collects. The rows,
    their order, the failures and the embeddings of both models match encoding here."""
    if not workers_fork():
        pytest.skip("encoding in workers needs workers started by fork")
    # A runner with more cores than MAX_ENCODING_WORKERS would not take this path: 2 usable cores everywhere.
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 2)
    assert encode_in_workers("cpu", False, 1)
    broken = tmp_path / "broken.hea"
    broken.write_text("this is not a header\n")
    items = [str(p) for p in records[:2]] + [str(broken)] + [str(p) for p in records[2:]]
    torch.manual_seed(1)
    models = {"model": model, "random": create_model("ecglang-small").eval()}
    processor = default_processor(model)
    here = embed_records(ItemSource(items), models, processor, batch_size=2, num_workers=0)
    calls = []
    original = type(model).encode_ecg
    monkeypatch.setattr(type(model), "encode_ecg", lambda self, **kw: calls.append(1) or original(self, **kw))
    pooled = embed_records(ItemSource(items), models, processor, batch_size=2, num_workers=2)
    assert calls == []  # no encoder call in this process: the workers encoded
    assert pooled.record_ids == here.record_ids and len(pooled.record_ids) == len(records)
    assert pooled.positions.tolist() == here.positions.tolist() == [0, 1, 3, 4, 5]
    assert [(f.record, f.stage) for f in pooled.failures] == [(f.record, f.stage) for f in here.failures]
    assert pooled.failed_positions == [2]
    for key in models:
        np.testing.assert_allclose(pooled.embeddings[key], here.embeddings[key], atol=1e-6)


def test_embed_cache_rows_for_training_validation(model, records, tmp_path):
    from ecglang.data.cache import SignalCache

    broken = tmp_path / "broken.hea"
    broken.write_text("this is not a header\n")
    pairs = [(p.name, str(p)) for p in records[:3]] + [("broken", str(broken))]
    cache = SignalCache.build(pairs, tmp_path / "cache", progress=False)
    table = embed_cache_rows(model, cache, [3, 2, 0])
    assert table.positions.tolist() == [1, 2] and table.failed_positions == [0]
    assert table.record_ids == [records[2].name, records[0].name]
    assert [(f.record, f.stage) for f in table.failures] == [("broken", "read")]
    signals, masks = cache.get_batch([2, 0])
    same = embed_records(ArraySource(signals, cache.fs, masks, preprocessed=True), model, default_processor(model))
    np.testing.assert_allclose(table.embeddings["model"], same.embeddings["model"], atol=1e-6)
    norms = np.linalg.norm(table.embeddings["model"], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_first_batch_is_smaller_so_the_encoder_starts_sooner(model, records):
    source = ItemSource([str(p) for p in records])
    preparer = BatchPreparer(source, default_processor(model), batch_size=4, first=2)
    assert preparer.bounds.tolist() == [0, 2, 5]
    assert sum(preparer[b].n_inputs for b in range(len(preparer))) == len(records)


def test_expand_inputs_reports_empty_folders_and_orphan_signal_files(tmp_path):
    (tmp_path / "empty").mkdir()
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "x.dat").write_bytes(b"\0" * 16)
    (orphan / "notes.txt").write_text("not a record")
    got = list(expand_inputs([tmp_path / "empty", orphan], None, None))
    assert all(isinstance(g, RecordFailure) and g.stage == "scan" for g in got)
    # The orphan folder's one record (its .dat) is its failure; the folder is not counted a second time.
    assert [Path(g.record).name for g in got] == ["empty", "x.dat"]
