"""The soft report targets across two gloo processes: each process's loss equals the one-process loss of the
whole batch (full loss), or their mean does (local rows), and the targets use every process's reports."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ecglang.encoders.loss import contrastive_loss, rhythm_scores

B, D, H = 6, 4, 5
SOFT = (0.5, 0.1)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64),
            torch.randn(B, H, generator=g, dtype=torch.float64))  # fmt: skip


def _loss(ecg, text, feats, local: bool) -> float:
    scale = torch.tensor(math.exp(2.0), dtype=torch.float64)
    loss, _ = contrastive_loss(lambda e, t: rhythm_scores(e[0], t[0]), (ecg,), (text,), scale, local, (feats, *SOFT))
    return float(loss)


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ecg, text, feats = _batch()
        half = slice(rank * B // 2, (rank + 1) * B // 2)
        out[rank] = (_loss(ecg[half], text[half], feats[half], False), _loss(ecg[half], text[half], feats[half], True))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_soft_targets_across_two_processes_match_one_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    whole = _loss(*_batch(), False)
    assert out[0][0] == pytest.approx(whole, rel=1e-9) and out[1][0] == pytest.approx(whole, rel=1e-9)
    assert (out[0][1] + out[1][1]) / 2 == pytest.approx(whole, rel=1e-9)  # local rows: the mean is the loss
