"""Smoke run of the benchmark harness (`benchmarks/run.py --quick`): every benchmark runs end to end on
tiny inputs and writes its rows, so none can rot. Nothing here is timed or compared with a target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
EXPECTED = {
    "tokenizer",
    "encoder",
    "zeroshot",
    "knowledge",
    "dataloader",
    "memory",
    "scaling",
    "rpeaks_noisy",
    "prepare",
    "loss",
    "train",
    "labels",
    "evaluation",
}


def _load_harness() -> ModuleType:
    # By file path, as `python benchmarks/run.py` runs it (benchmarks/ is not an installed package).
    spec = importlib.util.spec_from_file_location("ecglang_benchmarks_run", BENCHMARKS_DIR / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return _load_harness()


def test_every_benchmark_is_registered(harness: ModuleType) -> None:
    assert set(harness.discover()) == EXPECTED


@pytest.mark.slow
@pytest.mark.shared_data
def test_quick_run_writes_every_benchmark_and_the_targets(harness: ModuleType, shared_data: Path, tmp_path: Path):
    out = tmp_path / "RESULTS.md"
    committed = BENCHMARKS_DIR / "RESULTS.md"
    committed_before = committed.read_bytes() if committed.is_file() else None
    status = harness.main(["--quick", "--repeats", "1", "--data", str(shared_data), "--output", str(out),
                           "--work-dir", str(tmp_path / "work")])  # fmt: skip
    assert status == 0
    text = out.read_text(encoding="utf-8")
    assert "## Machine" in text and "load average (1/5/15 min) at the start" in text
    for name in EXPECTED:
        section = text.split(f"### {name}\n", 1)
        assert len(section) == 2, f"no results table for {name}"
        table = [line for line in section[1].split("\n#", 1)[0].splitlines() if line.startswith("|")]
        assert len(table) >= 3, f"{name} wrote no row"  # header, rule, at least one row
    targets = text.split("## Targets\n", 1)[1].split("## Results", 1)[0]
    rows = [line for line in targets.splitlines() if line.startswith("| ") and "---" not in line][1:]
    covered = {row.split(" | ")[0].strip("| ") for row in rows}
    assert covered == EXPECTED, f"benchmarks without a target row: {EXPECTED - covered}"
    assert all(row.rstrip(" |").rsplit(" | ", 1)[1] in ("yes", "no", "limit") for row in rows)
    # Every target row says what it measured (loss, prepare and train rows once had an empty case).
    assert all(row.split(" | ")[1].strip() for row in rows), [r for r in rows if not r.split(" | ")[1].strip()]
    # Generated inputs went to the work folder, and a quick run leaves the committed results alone.
    assert (tmp_path / "work" / "checkpoint-ecglang-small" / "config.json").is_file()
    assert len(list((tmp_path / "work" / "records-12").glob("*.npz"))) == 12
    assert (committed.read_bytes() if committed.is_file() else None) == committed_before


def test_ratio_and_target_columns(harness: ModuleType) -> None:
    ctx = harness.BenchContext(quick=True, data_dir=Path("."), repeats=3)
    calls = {"ours": 0, "base": 0}

    def ours() -> None:
        calls["ours"] += 1

    def base() -> None:
        calls["base"] += 1
        sum(range(20_000))

    t_ours, t_base = ctx.compare(ours, base)
    assert calls == {"ours": 4, "base": 4}  # one warm-up each, then 3 interleaved repeats
    cols = ctx.ratio_columns(t_ours, t_base)
    assert cols["speedup"] == pytest.approx(t_base.wall / t_ours.wall) and cols["speedup"] > 1
    assert ctx.target_columns("≥ 2×", "3×", True)["met"] == "yes"
    assert ctx.target_columns("≥ 2×", "1×", False)["met"] == "no"
    assert ctx.target_columns("≤ 30 s", "500 s", "limit")["met"] == "limit"


def test_process_stats_see_the_child_peak(harness: ModuleType) -> None:
    # A child that holds ~200 MB of private memory for a moment: both the exact and the sampled peaks see it.
    code = "import time, numpy as np; a = np.ones(25_000_000); time.sleep(0.5); print(a.sum())"
    stats = harness.run_process([sys.executable, "-c", code], interval=0.05)
    assert stats.returncode == 0 and "25000000.0" in stats.output
    assert stats.peak_rss > 200e6
    assert stats.tree_pss == 0 or stats.tree_pss > 150e6  # 0 only without psutil


@pytest.mark.slow
@pytest.mark.shared_data
def test_profile_script_reports_both_stages(shared_data: Path) -> None:
    import subprocess

    cmd = [sys.executable, str(BENCHMARKS_DIR / "profile_zeroshot.py"), "--n", "16", "--top", "8",
           "--data", str(shared_data)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # cProfile of the worker's stage: the zero-phase band-pass (ecglang.signal.zero_phase) is its largest own time
    assert "== preparation:" in done.stdout and "zero_phase.py" in done.stdout
    encoder = done.stdout.split("== encoder:", 1)[1]
    assert "aten::addmm" in encoder  # torch.profiler table of the encoder, with the matmuls' GFLOP/s
