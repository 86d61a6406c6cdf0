"""The CLI's outer behaviour: what it does when its reader goes away, and with numbers out of range."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main
from ecglang.errors import ConfigError


def test_a_closed_pipe_ends_quietly_with_sigpipe_status(tmp_path: Path) -> None:
    """`ecglang inspect REC | head -1`: the reader leaves before the output is written. The command stops with
    status 141 (128 + SIGPIPE), as Unix tools do, and prints no traceback."""
    record = tmp_path / "r.npy"
    np.save(record, np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "ecglang.cli.main", "inspect", str(record), "--fs", "500",
            "--leads", "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # gone before the child (still importing torch) writes a byte
    _, err = proc.communicate(timeout=120)
    err = err.decode(errors="replace")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
    assert proc.returncode == 141, (proc.returncode, err[-2000:])


def test_a_plot_of_a_type_matplotlib_cannot_write_fails_before_the_run(tmp_path: Path, capsys) -> None:
    """`--plot out.xyz` drew nothing and ended in matplotlib's ValueError traceback after the whole zero-shot run;
    now a usage error (status 2) naming the file and the types, before the model is loaded."""
    import time

    from ecglang.cli.main import main as cli

    record = tmp_path / "r.npy"
    np.save(record, np.zeros((12, 5000), dtype=np.float32))
    for argv in (["zero-shot", str(record), "--labels", "sinus rhythm"], ["inspect", str(record)]):
        started = time.perf_counter()
        try:
            status = cli([*argv, "--plot", str(tmp_path / "out.xyz")])
        except SystemExit as exc:  # argparse's usage errors exit
            status = exc.code
        assert status == 2 and time.perf_counter() - started < 5.0
        err = capsys.readouterr().err
        assert "out.xyz" in err and "'.xyz'" in err and ".png" in err and "Traceback" not in err, err


def test_the_figure_types_are_ones_matplotlib_writes() -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    from ecglang.report.figure_paths import FIGURE_FORMATS, figure_path

    assert set(FIGURE_FORMATS) <= set(FigureCanvasBase.get_supported_filetypes())
    assert figure_path("a/b.PNG").name == "b.PNG" and figure_path("no_suffix").name == "no_suffix"


@pytest.mark.parametrize(
    "argv",
    [
        ["zero-shot", "x.hea", "--top", "-1"],  # dropped the last label
        ["zero-shot", "x.hea", "--plot-max", "0", "--plot", "f.png"],  # drew nothing, said nothing
        ["zero-shot", "x.hea", "-k", "0"],
        ["inspect", "x.hea", "--seconds", "-3"],  # drew the whole record
        ["data", "build", "physionet", "x", "--out", "o", "--shard-size", "0"],  # ZeroDivisionError, late
        ["data", "build", "physionet", "x", "--out", "o", "--workers", "-2"],
        ["data", "download", "ptbxl", "d", "--rates", "250"],  # fetched no record, reported success
        ["data", "download", "ptbxl", "d", "--rates", "abc"],  # ValueError traceback
        ["data", "download", "ptbxl", "d", "--timeout", "-1"],
        ["knowledge", "search", "LBBB", "-k", "0"],
        ["prototypes", "build", "--records", "x", "--out", "o", "--beats-per-record", "0"],
        ["evaluate", "--model", "m", "--label-sets", "ptbxl_super", "--n-boot", "-1"],  # exit 1, not a usage error
        ["evaluate", "--model", "m", "--label-sets", "ptbxl_super", "--n-boot", "1000000000"],  # past 2 GB, no word
    ],
)
def test_numeric_flags_out_of_range_are_usage_errors(argv: list[str], tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_a_cuda_device_without_cuda_is_a_clear_error() -> None:
    import torch

    from ecglang.encoders.modeling import load_model

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the error is for machines without one")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):  # was a bare AssertionError from torch
        load_model(None, device="cuda")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["physionet", "{root}", "--folds", "1"], "physionet does not read --folds; leave it out"),
        (["physionet", "{root}", "--sampling-rate", "100", "--min-words", "50"],
         "physionet does not read --sampling-rate, --min-words; leave them out"),
        (["mimic", "{root}", "--reference", "REFERENCE.csv"], "mimic does not read --reference; leave it out"),
        (["ptbxl", "{root}", "--model", "ecglang-small", "--merl-compat"],
         "--model and --merl-compat each choose the cache's preprocessing; give one"),
        (["ptbxl", "{root}", "--preprocess", "p.json", "--model", "ecglang-small", "--merl-compat"],
         "--preprocess, --model and --merl-compat each choose the cache's preprocessing; give one"),
    ],
)  # fmt: skip
def test_data_build_flag_conflicts_are_usage_errors(argv, message, tmp_path, capsys) -> None:
    """`data build physionet ... --folds 1` built every record, and `--model` silently won over `--merl-compat`
    (the cache got z-scored, not MERL's preprocessing). Both are refused; and as every other command's flags that
    exclude each other, as a usage error: status 2 (it was 1, the status of left-out records), the command's usage
    and one `error:` line, nothing on stdout, nothing written."""
    out = tmp_path / "out"
    args = ["data", "build", *(a.format(root=tmp_path) for a in argv), "--out", str(out)]
    assert main(args) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith("usage: ecglang data build "), printed.err
    assert [line for line in printed.err.splitlines() if "error:" in line] == [f"ecglang data build: error: {message}"]
    assert "Traceback" not in printed.err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["pretrain", "--config", "smoke", "--out", "runs/x"], "output", "runs/x"),  # the other commands' name
        (["pretrain", "--config", "smoke", "--output", "runs/x"], "output", "runs/x"),
        (["data", "build", "ptbxl", "root", "--out", "o", "--num-workers", "2"], "workers", 2),
        (["prototypes", "build", "--model", "m", "--records", "r", "--out", "o", "--workers", "2"], "num_workers", 2),
    ],
)
def test_output_and_worker_flags_answer_to_both_spellings(argv, dest, value, tmp_path, monkeypatch) -> None:
    from ecglang.cli.main import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(argv)
    assert str(getattr(args, dest)) == str(value)


def test_models_lists_the_trained_checkpoints_apart_from_the_configs(capsys) -> None:
    """`ecglang models` listed the untrained configs, which --model refuses, and not ecglang-mini, the bundled
    checkpoint it takes."""
    import json

    import ecglang

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Trained checkpoints") and "Model configs, untrained" in out, out
    checkpoints, configs = out.split("Model configs, untrained")
    assert "ecglang-mini" in checkpoints and "ecglang-small" not in checkpoints
    assert "ecglang-small" in configs and "merl-resnet18" in configs and "ecglang-mini" not in configs
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(listed["checkpoints"]) == ecglang.list_checkpoints() and "ecglang-mini" in listed["checkpoints"]
    assert {"ecglang-small", "ecglang-base", "merl-resnet18"} <= set(listed["configs"])
