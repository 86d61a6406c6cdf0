"""Two "nodes" on 127.0.0.1: each builds its own shard of a prepared dataset in a shared folder
(`ecglang data build ... --shard i/2`, both at once), then `torchrun --nnodes 2 --nproc-per-node 1` runs once per
node (static rendezvous at a free port) and trains exactly like one process with the same global batch on the same
prepared data.

Each process holds half of every global batch; `gather_with_grad` builds the full similarity matrices and
the trainer rescales gradients for DDP's averaging (see `ecglang.training.loop`). If either part were wrong the
gradient norms (taken after DDP's all-reduce) and then the losses would drift from the 1-process run:
without the rescaling the tower gradients are halved, without the logit-scale correction the norm is off
by ~2e-3. Dropout is off so that both runs compute the same function; augmentations stay on (they are
seeded per sample, not per process). This and the objectives case below are the 2-processes-equal-1 checks;
`--standalone` rendezvous and a signal cache built inside a 2-process run are covered by
`test_distributed.py::test_two_process_run_resumes_exactly`.

With the ECG-only objectives on (`test_two_processes_with_objectives_match_one_process`), the gathered
contrastive losses and the per-process objective losses need different rescaling: rescaled like the contrastive
ones, the objectives would get N × their weight. This file is also that test's torchrun entry point
(`python test_multinode.py TRAINER-ARGS`: the trainer with the objectives' masks fixed).

Also: a multi-process run refuses to build a large signal cache inside the job, naming the command instead."""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import ecglang.encoders.objectives
from ecglang.data.prepared import read_manifest
from ecglang.training.config import load_config
from ecglang.training.trainer import main, train

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "pretrain" / "smoke.yaml"
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

NO_DROPOUT = [
    "model.overrides.ecg_tower.dropout=0",
    "model.overrides.text_tower.lora.dropout=0",
    "model.text_dropout=0",
]


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(out: Path, split: str = "train") -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _run_all(cmds: list[list[str]], timeout: int = 500) -> list[str]:
    """Start every command at once (one per "node"), wait for all; their logs, each asserted to succeed."""
    procs = [subprocess.Popen(c, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in cmds]
    logs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        logs.append(out)
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    return logs


def test_two_nodes_with_own_shards_match_one_process(ptbxl_dir: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "prepared"  # the shared filesystem of both nodes
    build = [sys.executable, "-m", "ecglang.cli.main", "data", "build", "ptbxl", str(ptbxl_dir), "--out", str(shared),
             "--shard-size", "200"]  # fmt: skip
    logs = _run_all([[*build, "--shard", "0/2"], [*build, "--shard", "1/2"]])
    assert "shard-00000-of-00002: built" in logs[0] and "shard-00001-of-00002: built" in logs[1]
    manifest = read_manifest(shared)
    assert [e["n_ok"] + e["n_failed"] for e in manifest["shards"]] == [200, 153]  # table built once, both shards

    overrides = [f"data.prepared={shared}", "schedule.max_steps=4", "train.eval_every=100",
                 "train.checkpoint_every=100", *NO_DROPOUT]  # fmt: skip
    one = tmp_path / "one"
    train(load_config(SMOKE, overrides), output_dir=one)

    two = tmp_path / "shared" / "two"
    port = _free_port()
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--master-addr", "127.0.0.1", "--master-port", str(port)]  # fmt: skip
    trainer = ["-m", "ecglang.training.trainer", "--config", str(SMOKE), "--output", str(two), *overrides]
    logs = _run_all([[*node, "--node-rank", str(rank), *trainer] for rank in (0, 1)])
    assert "2 processes on cpu" in logs[0], logs[0][-4000:]

    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == ["1", "2", "3", "4"]
    for key in ("loss", "loss_rhythm", "loss_beat", "loss_token", "grad_norm"):
        np.testing.assert_allclose([float(r[key]) for r in b], [float(r[key]) for r in a], rtol=1e-4, err_msg=key)
    # The gathered validation (one, at the end) sees the same held-out pairs in the same order.
    val1, val2 = _rows(one, "val"), _rows(two, "val")
    assert val1[0]["val_n_pairs"] == val2[0]["val_n_pairs"] == "4"
    assert float(val2[0]["val_selection"]) == pytest.approx(float(val1[0]["val_selection"]), abs=1e-6)


def fixed_masked_beats(beat_mask: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The ECG-only objectives' choice of beats to blank, made independent of the RNG and of how a batch is split
    over processes: the second beat of every ECG. Every process then blanks as many beats as its share of the one
    process's (the objectives' per-process means average to the global batch's mean)."""
    masked = torch.zeros_like(beat_mask, dtype=torch.bool)
    masked[:, 1] = True
    return masked & beat_mask.bool()


def test_two_processes_with_objectives_match_one_process(
    ptbxl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contrastive + masked_beats + latent_beats: 2 processes step like 1 with the same global batch. Rescaled
    with the gathered contrastive losses, the per-process objective losses got 2 × their weight (grad_norm 1 %
    off at step 1), and the logged losses were the main process's half of the batch only."""
    overrides = [f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=2",
                 "train.eval_every=100", "train.checkpoint_every=100", *NO_DROPOUT,
                 "augment.lead_mask_p=0",  # every process blanks the same number of leads per beat
                 "objectives.masked_beats.weight=1.0", "objectives.latent_beats.weight=0.5"]  # fmt: skip
    monkeypatch.setattr(ecglang.encoders.objectives, "choose_masked_beats", fixed_masked_beats)
    one = tmp_path / "one"
    train(load_config(SMOKE, overrides), output_dir=one)  # builds the cache the 2-process run reads

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
           "--config", str(SMOKE), "--output", str(two), *overrides]  # fmt: skip
    logs = _run_all([cmd])
    assert "2 processes on cpu" in logs[0], logs[0][-4000:]

    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == ["1", "2"]
    keys = ("grad_norm", "loss_rhythm", "loss_beat", "loss_token", "loss_masked_beats", "loss_latent_beats", "loss")
    for key in keys:
        np.testing.assert_allclose([float(r[key]) for r in b], [float(r[key]) for r in a], rtol=1e-4, err_msg=key)
    # Each process draws its own beat masks and dropout: seeded alike (for the same initial weights) and left
    # so, both blanked the same beat positions of their halves of the batch.
    states = [(tmp_path / f"rng-{rank}.txt").read_text() for rank in (0, 1)]
    assert states[0] != states[1], "both processes' torch RNG streams are the same"


def test_multi_process_run_refuses_to_build_a_large_cache(ptbxl_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ecglang.training.trainer", "--config", str(SMOKE), "--output", str(tmp_path / "run"),
           f"data.root={ptbxl_dir}", f"data.cache_dir={tmp_path / 'cache'}", "data.max_inline_records=10"]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "ecglang data build ptbxl" in log and "data.prepared=PREPARED" in log, log[-3000:]
    assert not (tmp_path / "cache").exists()  # nothing was built


def test_accelerate_launch_on_cpu_needs_multi_gpu(ptbxl_dir: Path, tmp_path: Path) -> None:
    """What docs/TRAINING.md says: on a CPU machine `--num_processes 2` alone runs ONE process; with
    `--multi_gpu` it runs two (gloo)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--num_processes", "2"]  # fmt: skip
    args = ["-m", "ecglang.training.trainer", "--config", str(SMOKE), f"data.root={ptbxl_dir}",
            f"data.cache_dir={tmp_path / 'cache'}", "schedule.max_steps=1"]  # fmt: skip
    plain = _run_all([[*launch, *args, "--output", str(tmp_path / "a")]])
    multi = _run_all([[*launch, "--multi_gpu", *args, "--output", str(tmp_path / "b")]])
    assert "1 processes on cpu" in plain[0], plain[0][-3000:]
    assert "2 processes on cpu" in multi[0], multi[0][-3000:]


def rng_recording_masked_beats(folder: Path) -> Callable[..., torch.Tensor]:
    """`fixed_masked_beats` that also writes, at its first call, a digest of this process's global torch RNG
    state (which draws the real beat masks and dropout) to `folder/rng-RANK.txt`, without drawing from it."""

    def choose(beat_mask: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
        path = folder / f"rng-{os.environ['RANK']}.txt"
        if not path.exists():
            path.write_text(hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest())
        return fixed_masked_beats(beat_mask, ratio, generator)

    return choose


if __name__ == "__main__":  # a process of test_two_processes_with_objectives_match_one_process's torchrun
    output = Path(sys.argv[sys.argv.index("--output") + 1])
    ecglang.encoders.objectives.choose_masked_beats = rng_recording_masked_beats(output.parent)
    sys.exit(main())
