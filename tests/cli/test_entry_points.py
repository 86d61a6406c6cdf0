"""How an installed package is started: `python -m ecglang` is the console script, `ecglang demo` (and `python -m
ecglang.cli.demo`) runs the README's demo, and a missing `demo` extra or a Ctrl-C is one line, not a traceback."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ecglang
from ecglang.cli import demo
from ecglang.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_python_dash_m_ecglang_is_the_console_script_and_skips_torch(tmp_path: Path) -> None:
    run = _run("-X", "importtime", "-m", "ecglang", "--version", cwd=tmp_path)  # was: No module named ecglang.__main__
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == f"ecglang {ecglang.__version__}"
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "ecglang.cli" in imported  # (cli.main itself runs as __main__)
    assert "torch" not in imported  # as the `ecglang` script: --version and --help need no model code


def test_python_dash_m_demo_module_runs_the_demo_command(tmp_path: Path) -> None:
    run = _run("-m", "ecglang.cli.demo", "--help", cwd=tmp_path)  # printed nothing and exited 0
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage: ecglang demo" in run.stdout


def test_demo_is_a_subcommand() -> None:
    args = build_parser().parse_args(["demo", "--out-dir", "here"])
    assert args.func is demo.run
    assert args.out_dir == "here"
    assert args.model is None


def test_the_demo_ranks_every_simulated_record_right_and_draws_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's main command, for real: bundled model, bundled knowledge (cached for the session), three
    simulated records. Then the same records with two true labels swapped: the count must follow (it said
    "3 of 3" whatever was ranked first), so the first "3 of 3" is the model's doing."""
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "3 of 3 ranked the right label first." in stdout, stdout[-3000:]
    for label, _ in demo.DEMO_CASES:
        assert f"ranked first: {label}  ->  RIGHT" in stdout
    figure = out / "explanation.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    assert len(list(out.glob("*.npz"))) == len(demo.DEMO_CASES)

    (slow, _), normal, (fast, _) = demo.DEMO_CASES
    monkeypatch.setattr(demo, "DEMO_CASES", ((fast, 45.0), normal, (slow, 130.0)))
    assert main(["demo", "--out-dir", str(tmp_path / "swapped")]) == 0
    stdout = capsys.readouterr().out
    assert "1 of 3 ranked the right label first." in stdout, stdout[-3000:]
    assert stdout.count("->  WRONG") == 2 and stdout.count("->  RIGHT") == 1


def test_demo_without_neurokit2_says_which_extra_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "neurokit2" else real(name, *a))
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: the demo simulates its ECGs with neurokit2: pip install neurokit2 (the 'demo' extra)"
    assert not out.exists()  # stopped before writing records or loading the model


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tmp_path: Path) -> None:
    """A review interrupted a data build with Ctrl-C and got a KeyboardInterrupt traceback. The signal is sent
    once the command's own work has started (the embedding progress bar of `knowledge build`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    # A job started in the background of a non-interactive shell (`make test &`) inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: the child gets the default action back, as a terminal has.
    proc = subprocess.Popen([sys.executable, "-m", "ecglang", "knowledge", "build", "--out", str(tmp_path / "kb")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    seen = b""
    deadline = time.monotonic() + 240
    while b"Batches" not in seen and proc.poll() is None and time.monotonic() < deadline:
        seen += proc.stderr.read1(4096)
    assert b"Batches" in seen, seen[-2000:]
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
