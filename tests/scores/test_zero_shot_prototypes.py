"""Zero-shot with a prototype index and attention maps (issue 17): the nearest reference beats come back with
each explanation, and without an index nothing changes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglang.embeddings.prototypes import PrototypeModelMismatch, build_prototypes, find_reports, read_reports
from ecglang.encoders.modeling import load_model
from ecglang.scores.classifier import ZeroShotClassifier

REFERENCE = ["00001_hr", "00002_hr", "00003_hr", "00004_hr"]
QUERIES = ["00001_hr", "00005_hr", "00006_hr"]  # one in the reference set, two not


@pytest.fixture(scope="module")
def model(one_torch_thread):
    return load_model(None, "cpu")


@pytest.fixture(scope="module")
def records(ptbxl_dir: Path) -> Path:
    return ptbxl_dir / "records500" / "00000"


@pytest.fixture(scope="module")
def index(model, records, tmp_path_factory):
    reports = read_reports(find_reports(records))
    out = tmp_path_factory.mktemp("zs-protos") / "index"
    idx, failures = build_prototypes(model, [records / r for r in REFERENCE], out, reports=reports, progress=False)
    assert not failures
    return idx


def test_scores_are_unchanged_by_prototypes_and_explanations(model, index, records) -> None:
    paths = [records / r for r in QUERIES]
    plain = ZeroShotClassifier(model, knowledge="off")(paths, labels="ptbxl_super", progress=False)
    assert plain.explanations is None
    explained = ZeroShotClassifier(model, knowledge="off")(paths, labels="ptbxl_super", explain=True, progress=False)
    protos = ZeroShotClassifier(model, knowledge="off", prototypes=index)(paths, labels="ptbxl_super", progress=False)
    np.testing.assert_array_equal(explained.scores.to_numpy(), protos.scores.to_numpy())
    np.testing.assert_allclose(plain.scores.to_numpy(), protos.scores.to_numpy(), rtol=0, atol=1e-6)
    assert plain.prototype_table().empty and explained.prototype_table().empty
    assert all(e.prototypes is None for exps in explained.explanations.values() for e in exps.values())


def test_explanations_carry_the_nearest_prototypes(model, index, records) -> None:
    clf = ZeroShotClassifier(model, knowledge="off", prototypes=index, prototype_k=2)
    result = clf([records / r for r in QUERIES], labels="ptbxl_super", progress=False)
    table = result.prototype_table()
    assert len(table) == 2 * len(QUERIES)
    assert set(table["prototype_record"]) <= set(REFERENCE)
    assert not (table["record"] == table["prototype_record"]).any()  # a record never explains itself
    by_id = {rec["id"]: rec["report"] for rec in index.records}
    assert list(table["report"]) == [by_id[r] for r in table["prototype_record"]]
    for rid in QUERIES:
        top = result.scores.loc[rid].idxmax()
        exp = result.explanations[rid][top]
        assert exp.prototype_beat == int(np.nanargmax(exp.beat_contributions))
        assert [m.similarity for m in exp.prototypes] == sorted((m.similarity for m in exp.prototypes), reverse=True)
        # the attention maps, beside the contributions
        assert exp.lead_attention.shape == (12,) and exp.lead_attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert exp.beat_attention.shape == exp.beat_contributions.shape
        assert exp.beat_attention.sum() == pytest.approx(1.0, abs=1e-5)


def test_an_index_of_another_model_is_refused(model, index) -> None:
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.ecg_tower.parameters()).add_(1e-3)
    with pytest.raises(PrototypeModelMismatch):
        ZeroShotClassifier(other, knowledge="off", prototypes=index)
