"""Pooling heads and side inputs of the ECG tower that the config selects.

- `LeadGroupPool` (CLEAR-HUG): pools as a clinician reads, beat → single lead → lead group (limb leads,
  precordial leads) → ECG, each step a masked attention pool, so any lead subset works.
- `DemographicEmbedding` (EfficientECG): age and sex as a vector fused with the ECG features, with missing
  values handled by explicit "missing" indicators (never imputed as a real age or sex).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ecglang.record.leads import CANONICAL_LEADS

LEAD_GROUPS: dict[str, tuple[str, ...]] = {
    "limb": ("I", "II", "III", "aVR", "aVL", "aVF"),
    "precordial": ("V1", "V2", "V3", "V4", "V5", "V6"),
}


def _attention_pool(x: Tensor, keep: Tensor, score: nn.Linear) -> Tensor:
    """Softmax-weighted sum of `x [..., S, d]` over S where `keep [..., S]`; rows with nothing kept give 0."""
    logits = score(x).squeeze(-1).masked_fill(~keep, float("-inf"))
    any_kept = keep.any(-1, keepdim=True)
    w = torch.softmax(logits.masked_fill(~any_kept, 0.0), -1) * any_kept.to(x.dtype)
    return (w.unsqueeze(-1) * x).sum(-2)


class LeadGroupPool(nn.Module):
    """`tokens [B, N, 12, d]` → ECG `[B, d]` through per-lead, per-group and whole-ECG attention pools.

    Also returns the weights of the lead and group levels, for explanations (which leads, which group)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.beat_score = nn.Linear(d, 1)
        self.lead_score = nn.Linear(d, 1)
        self.group_score = nn.Linear(d, 1)
        index = [[CANONICAL_LEADS.index(lead) for lead in leads] for leads in LEAD_GROUPS.values()]
        self.register_buffer("group_index", torch.tensor(index), persistent=False)  # [groups, leads per group]

    def forward(self, tokens: Tensor, beat_keep: Tensor, lead_keep: Tensor) -> Tensor:
        """`beat_keep [B, N]` real beats, `lead_keep [B, 12]` present leads."""
        per_lead = tokens.transpose(1, 2)  # [B, 12, N, d]
        keep_bl = beat_keep[:, None, :] & lead_keep[:, :, None]  # [B, 12, N]
        leads = _attention_pool(per_lead, keep_bl, self.beat_score)  # beat → lead: [B, 12, d]
        grouped = leads[:, self.group_index]  # [B, groups, leads per group, d]
        group_keep = lead_keep[:, self.group_index]  # [B, groups, leads per group]
        groups = _attention_pool(grouped, group_keep, self.lead_score)  # lead → group: [B, groups, d]
        return _attention_pool(groups, group_keep.any(-1), self.group_score)  # group → ECG: [B, d]


class DemographicEmbedding(nn.Module):
    """Age (years) and sex as a `[B, d]` vector. Inputs: `age [B]` float with NaN for unknown, `sex [B]` int
    with 0 = unknown, 1 = male, 2 = female. Unknown values switch on their own indicator features, so the model
    can learn what "unknown" means instead of reading a made-up value."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(5, d), nn.GELU(), nn.Linear(d, d))

    @staticmethod
    def features(age: Tensor, sex: Tensor) -> Tensor:
        known_age = torch.isfinite(age)
        scaled = torch.where(known_age, age.clamp(0, 120) / 100.0, torch.zeros_like(age))
        sex = sex.long()
        return torch.stack(
            [scaled, (~known_age).to(age.dtype), (sex == 1).to(age.dtype), (sex == 2).to(age.dtype),
             ((sex != 1) & (sex != 2)).to(age.dtype)], -1,
        )  # fmt: skip

    def forward(self, age: Tensor, sex: Tensor) -> Tensor:
        return self.mlp(self.features(age.to(self.mlp[0].weight.dtype), sex))
