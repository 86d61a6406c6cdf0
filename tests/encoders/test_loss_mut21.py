"""One-hot (no report targets) contrastive loss across two gloo processes, checked against the CLIP formula
written out by hand: with `local_loss=True` each process's loss is the InfoNCE of its own ECG rows and its own
report columns, whose positives sit at the process's offset in the gathered batch; the local logits returned
by both paths are the process's diagonal block of the whole batch's logits."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ecglang.encoders.loss import contrastive_loss, rhythm_scores

B, D = 6, 4
SCALE = math.exp(2.0)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64)


def _by_hand() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits `scale * cos(ecg_i, text_j)`, and each ECG row's and each report column's cross-entropy."""
    e, t = (x.numpy() for x in _batch())
    e, t = e / np.linalg.norm(e, axis=1, keepdims=True), t / np.linalg.norm(t, axis=1, keepdims=True)
    z = SCALE * e @ t.T
    i = np.arange(B)
    row_ce = np.log(np.exp(z).sum(1)) - z[i, i]  # ECG i -> report i among all reports
    col_ce = np.log(np.exp(z).sum(0)) - z[i, i]  # report j -> ECG j among all ECGs
    return z, row_ce, col_ce


def _run(ecg: torch.Tensor, text: torch.Tensor, local: bool) -> tuple[float, np.ndarray]:
    scale = torch.tensor(SCALE, dtype=torch.float64)
    loss, logits = contrastive_loss(lambda e, t: rhythm_scores(e[0], t[0]), (ecg,), (text,), scale, local)
    return float(loss), logits.detach().numpy()


def _worker(rank: int, port: int, out: dict) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ecg, text = _batch()
        half = slice(rank * B // 2, (rank + 1) * B // 2)
        out[rank] = (_run(ecg[half], text[half], False), _run(ecg[half], text[half], True))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_one_hot_local_and_full_loss_across_two_processes_match_the_clip_formula() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    z, row_ce, col_ce = _by_hand()
    whole = 0.5 * (row_ce.mean() + col_ce.mean())
    for rank in (0, 1):
        mine = slice(rank * B // 2, (rank + 1) * B // 2)
        (full_loss, full_logits), (local_loss, local_logits) = out[rank]
        assert full_loss == pytest.approx(whole, rel=1e-9)
        # local rows: this process's ECGs against all reports, its reports against all ECGs
        assert local_loss == pytest.approx(0.5 * (row_ce[mine].mean() + col_ce[mine].mean()), rel=1e-9), rank
        np.testing.assert_allclose(full_logits, z[mine, mine], rtol=1e-9)
        np.testing.assert_allclose(local_logits, z[mine, mine], rtol=1e-9)
    assert (out[0][1][0] + out[1][1][0]) / 2 == pytest.approx(whole, rel=1e-9)
