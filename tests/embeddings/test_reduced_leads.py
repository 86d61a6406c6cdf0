"""Reduced-lead input: a source that keeps only some leads, and `ecglang evaluate --leads`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.embeddings.sources import ItemSource
from ecglang.record.leads import parse_lead_subset
from ecglang.signal.simulate import simulate_ecg


def test_item_source_masks_and_zeroes_the_other_leads() -> None:
    ecg = simulate_ecg(heart_rate=70, seed=1)
    keep = parse_lead_subset("I,II,III,aVR,aVL,aVF")
    out = ItemSource([ecg], keep_leads=keep).read(0)
    assert out.lead_mask.tolist() == [True] * 6 + [False] * 6
    assert not out.signal[6:].any() and np.array_equal(out.signal[:6], ecg.signal[:6])
    assert ItemSource([ecg]).read(0) is ecg  # no subset: the record as given


@pytest.mark.slow
def test_evaluate_with_one_lead_records_it_and_changes_the_scores(ptbxl_dir, shared_data, tmp_path) -> None:
    common = [
        "evaluate", "--label-sets", "ptbxl_super", "--data-root", f"ptbxl={ptbxl_dir}",
        "--split-root", str(shared_data / "merl" / "data_split"), "--part", "train", "--folds", "8",
        "--sources", "prompts", "--n-boot", "50",
    ]  # fmt: skip
    assert cli([*common, "--model", "ecglang-mini", "--out", str(tmp_path / "all")]) == 0
    assert cli([*common, "--model", "ecglang-mini", "--leads", "II", "--out", str(tmp_path / "ii")]) == 0
    full, lead_ii = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("all", "ii"))
    assert full["protocol"]["leads"] == "all" and lead_ii["protocol"]["leads"] == "II"
    a = full["label_sets"]["ptbxl_super"]["sources"]["prompts"]["model"]["macro_auroc"]["point"]
    b = lead_ii["label_sets"]["ptbxl_super"]["sources"]["prompts"]["model"]["macro_auroc"]["point"]
    assert a != b  # the mask reached the model
    assert cli([*common, "--model", "ecglang-mini", "--leads", "V7", "--out", str(tmp_path / "bad")]) == 1
