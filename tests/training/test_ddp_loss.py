"""`ObjectivesOutput.ddp_loss`: what the step loop backpropagates under DDP with the gathered contrastive loss.
Only the contrastive part is multiplied by the number of processes; the ECG-only objectives (per-process means)
are not. The 2-processes-equal-1 run is `test_multinode.py::test_two_processes_with_objectives_match_one_process`."""

from __future__ import annotations

import pytest
import torch

from ecglang.training.objectives import ObjectivesOutput


@pytest.mark.parametrize(
    ("contrastive", "objective", "expected"),
    [(True, True, (4.0, 1.0)), (True, False, (4.0, None)), (False, True, (None, 1.0))],
    ids=["mixed", "contrastive-only", "ecg-only"],
)
def test_only_the_contrastive_part_is_scaled(
    contrastive: bool, objective: bool, expected: tuple[float | None, float | None]
) -> None:
    c, o = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    loss = c + o if contrastive and objective else c if contrastive else o
    out = ObjectivesOutput(
        loss=loss, losses={}, n_pairs=0,
        contrastive_loss=c if contrastive else None, objective_loss=o if objective else None,
    )  # fmt: skip
    out.ddp_loss(4).backward()
    grads = tuple(None if t.grad is None else float(t.grad) for t in (c, o))
    assert grads == expected
    assert float(out.loss.detach()) == 2.0 * contrastive + 3.0 * objective  # the logged loss is never scaled
