"""Age and sex from `Ecg.metadata` reach a tower with `demographics: true` through the processor and the
embedding pipeline (what zero-shot uses), and change nothing for a tower without it (issue 17)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglang.data.synthetic import synthetic_signal, write_wfdb_record
from ecglang.embeddings.pipeline import embed_records
from ecglang.embeddings.sources import ItemSource
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg


def ecgs_differing_in_age() -> list[Ecg]:
    signal = synthetic_signal(np.random.default_rng(3))
    return [
        Ecg(signal, 500.0, record_id="young", metadata={"age": 30.0, "sex": "F"}),
        Ecg(signal, 500.0, record_id="old", metadata={"age": 85.0, "sex": "F"}),
        Ecg(signal, 500.0, record_id="unknown", metadata={}),
    ]


@pytest.mark.parametrize("demographics", [True, False])
def test_processor_carries_age_and_sex_when_the_tower_reads_them(tiny_model, demographics: bool) -> None:
    model = tiny_model(demographics)
    processor = EcgLangProcessor.from_model(model)
    batch = processor(ecgs=ecgs_differing_in_age())
    if demographics:
        assert batch["age"][:2].tolist() == [30.0, 85.0] and math.isnan(float(batch["age"][2]))
        assert batch["sex"].tolist() == [2, 2, 0]
    else:
        assert "age" not in batch and "sex" not in batch
    with torch.no_grad():
        emb = model.encode_ecg(**batch, rhythm_only=True).rhythm_embeds
    assert torch.isfinite(emb).all()  # unknown age and sex are inputs too, never NaN outputs
    same_signal_differ = not torch.allclose(emb[0], emb[1])
    assert same_signal_differ == demographics


@pytest.mark.parametrize("demographics", [True, False])
def test_pipeline_reads_age_from_wfdb_header_comments(tiny_model, tmp_path: Path, demographics: bool) -> None:
    """CinC-style `# Age:` / `# Sex:` header lines → Ecg.metadata → the embedding of zero-shot and evaluation."""
    signal = synthetic_signal(np.random.default_rng(5))
    for name, age in (("a", 30), ("b", 85)):
        write_wfdb_record(tmp_path / name, signal)
        hea = tmp_path / f"{name}.hea"
        hea.write_text(hea.read_text() + f"# Age: {age}\n# Sex: Male\n")
    assert load_ecg(tmp_path / "a.hea").metadata["age"] == 30.0
    model = tiny_model(demographics)
    table = embed_records(ItemSource([tmp_path / "a.hea", tmp_path / "b.hea"]), model, model.get_processor())
    emb = table.embeddings["model"]
    assert emb.shape[0] == 2 and np.isfinite(emb).all()
    assert (not np.allclose(emb[0], emb[1])) == demographics


@pytest.mark.parametrize("demographics", [True, False])
def test_table_metadata_fills_what_the_record_lacks(tiny_model, tmp_path: Path, demographics: bool) -> None:
    """PTB-XL's WFDB headers carry no age or sex; `ptbxl_database.csv` does. Table metadata passed with the
    records fills the keys a header leaves unset (a header's own value wins) and reaches the tower."""
    from ecglang.data.cache import SignalCache
    from ecglang.embeddings.pipeline import embed_cache_rows
    from ecglang.errors import ConfigError

    signal = synthetic_signal(np.random.default_rng(5))
    for name in ("a", "b"):
        write_wfdb_record(tmp_path / name, signal)
    (tmp_path / "c.hea").write_text((tmp_path / "a.hea").read_text() + "# Age: 50\n# Sex: Female\n")
    paths = [tmp_path / "a.hea", tmp_path / "b.hea", tmp_path / "c.hea"]
    table = [{"age": 30.0, "sex": "M"}, {"age": 85.0, "sex": None}, {"age": 99.0, "sex": "M"}]
    source = ItemSource(paths, metadata=table)
    got = [source.read(i).metadata for i in range(3)]
    assert [(m["age"], m.get("sex")) for m in got] == [(30.0, "M"), (85.0, None), (50.0, "F")]
    with pytest.raises(ConfigError, match="2 metadata entries for 3 records"):
        ItemSource(paths, metadata=table[:2])
    model = tiny_model(demographics)
    emb = embed_records(source, model, model.get_processor()).embeddings["model"]
    plain = embed_records(ItemSource(paths[:2]), model, model.get_processor()).embeddings["model"]
    assert (not np.allclose(emb[0], emb[1])) == demographics  # same signal, ages from the table
    assert np.allclose(plain[0], plain[1])  # without the table both are unknown
    # Training validation reads the signal cache: the table's age/sex go with its rows the same way.
    cache = SignalCache.build([("a", str(paths[0])), ("b", str(paths[1]))], tmp_path / "cache", progress=False)
    rows = embed_cache_rows(model, cache, [0, 1], processor=model.get_processor(), metadata=table[:2])
    assert (not np.allclose(rows.embeddings["model"][0], rows.embeddings["model"][1])) == demographics


@pytest.mark.shared_data
def test_ptbxl_evaluation_passes_age_and_sex_from_the_database(tiny_model, ptbxl_dir: Path, shared_data: Path) -> None:
    from ecglang.evaluation.datasets import load_label_set, ptbxl_index
    from ecglang.evaluation.store import EmbeddingStore, processor_for

    index = ptbxl_index(ptbxl_dir)
    known = [i for i, d in index.demographics.items() if d["age"] is not None and d["sex"] in ("M", "F")]
    assert len(known) > 0.9 * len(index.paths)
    data = load_label_set("ptbxl_super", shared_data / "merl" / "data_split", ptbxl_dir, part="train", limit=6)
    assert data.metadata == [index.demographics[r] for r in data.record_ids]
    assert data.subset(np.arange(6) % 2 == 0).metadata == data.metadata[::2]
    model = tiny_model(True)
    processor = processor_for(model, "default", "ptbxl")
    with_table = EmbeddingStore({"model": model}, progress=False)
    rows = with_table.encode(data.paths, data.record_ids, processor, metadata=data.metadata)
    without = EmbeddingStore({"model": model}, progress=False)
    rows_plain = without.encode(data.paths, data.record_ids, processor)
    a, b = with_table.embeddings("model", rows), without.embeddings("model", rows_plain)
    assert a.shape == b.shape and not np.allclose(a, b)
