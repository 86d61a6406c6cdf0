"""`ecglang data build` resumed after an interruption: what it says it did."""

from __future__ import annotations

import re

import datasets

from ecglang.cli.main import main as cli
from ecglang.data.cache import SignalCache
from ecglang.data.synthetic import write_mimic_like
from ecglang.signal.preprocess import PreprocessConfig


def test_resumed_shard_reports_the_rows_and_rate_of_this_call(tmp_path, capsys):
    """A resumed shard's rate was all its rows over this call's seconds: a shard 19,000 of 20,000 rows done before
    the interruption printed ~20x its real rate."""
    root = write_mimic_like(tmp_path / "mimic", 10, seed=5)
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(root), "--out", str(out), "--no-progress", "--batch-size", "4"]
    assert cli([*args, "--no-cache"]) == 0
    table = datasets.load_from_disk(str(out / "dataset"))
    records = list(zip(table["id"], table["path"], strict=True))

    def stop(n_done: int, n: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C once the first batch of 4 rows is on disk

    try:
        SignalCache.build(records, out / "cache", PreprocessConfig(), batch_size=4, progress=False, on_batch=stop)
    except KeyboardInterrupt:
        pass
    capsys.readouterr()
    assert cli(args) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("shard"))
    resumed = r"shard     shard-00000-of-00001: resumed \(6 of 10 rows computed now\), [0-9.]+ records/s"
    assert re.fullmatch(resumed, line), line
