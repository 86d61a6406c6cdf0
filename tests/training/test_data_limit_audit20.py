"""`data.limit` (16 in the smoke config) cut a prepared or built dataset without a word (audit 20, finding 6): the
rows past it were in neither excluded_records.csv nor any log line. Now the run's data line (logged at INFO by the
trainer) counts them and says they are not failures; they are written nowhere else. Real PTB-XL sample records."""

from __future__ import annotations

import csv
from pathlib import Path

from ecglang.training.config import load_config

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "smoke.yaml"


def test_rows_cut_by_data_limit_are_counted_in_the_data_line(ptbxl_dir: Path, tmp_path: Path) -> None:
    from accelerate import Accelerator

    from ecglang.training.setup import build_model, prepare_data

    heads = sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))[:8]
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "report", "group"])
        w.writerows([str(h.with_suffix("")), f"report number {i}. sinus rhythm.", f"g{i}"] for i, h in enumerate(heads))
    overrides = ["data.builder=pairs", f"data.root={pairs}", "data.limit=6", "data.val_group=group"]
    cfg = load_config(SMOKE, [*overrides, f"data.cache_dir={tmp_path / 'cache'}"])
    data = prepare_data(cfg, build_model(cfg.model), tmp_path / "run", Accelerator(cpu=True))
    assert len(data.train) + len(data.val) == 6 and data.excluded == []
    assert data.description.endswith(
        "; 0 records left out (listed in excluded_records.csv), 2 of 8 rows beyond data.limit=6 unused (not failures)"
    )
    # a limit above the row count cuts nothing and says nothing
    cfg = load_config(SMOKE, [*overrides[:2], "data.limit=20", *overrides[3:], f"data.cache_dir={tmp_path / 'c2'}"])
    data = prepare_data(cfg, build_model(cfg.model), tmp_path / "run2", Accelerator(cpu=True))
    assert "data.limit" not in data.description and len(data.train) + len(data.val) == 8
