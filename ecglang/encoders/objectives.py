"""ECG-only pretraining objectives: they need no report, so ECGs without one (most of CinC, Holter) can help.

- `MaskedBeatReconstruction` (ECG-NAT, CLEAR-HUG): a random subset of the real beats is blanked in the input
  (every lead of the beat, and the samples of neighbouring beats' windows that overlap it), and a linear decoder
  reconstructs each blanked beat's windows from the tower's token features. The loss is the mean squared error
  on the blanked beats' present leads only.
- `LatentBeatPrediction` (ECG-JEPA): the same blanking, but the target is the feature of each blanked beat
  computed by an exponential-moving-average copy of the tower that sees the whole ECG; a small predictor maps
  the online features of the blanked beats onto those targets. Nothing is reconstructed in signal space.

Both take the tower's model input (`beats`, `beat_mask`, `lead_mask`, `rr`, `times`) and any tower whose forward
returns `tokens [B, N, 12, d]` and `beats [B, N, d]`, so they combine with the three alignment losses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def choose_masked_beats(beat_mask: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """`[B, N]` → which real beats to blank: `ratio` of each ECG's real beats (at least one, never all when it
    has two or more, so the tower always keeps some context)."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    real = beat_mask.bool()
    noise = torch.rand(real.shape, generator=generator, device=real.device)
    noise = noise.masked_fill(~real, 2.0)  # padded beats sort last and are never chosen
    n_real = real.sum(1)
    n_mask = (n_real.float() * ratio).round().long().clamp(min=1)
    n_mask = torch.minimum(n_mask, (n_real - 1).clamp(min=1))
    rank = noise.argsort(1).argsort(1)
    return (rank < n_mask[:, None]) & real


def blank_beats(inputs: Mapping[str, Tensor], masked: Tensor, offsets_s: Tensor | None = None) -> dict[str, Tensor]:
    """The model input with the windows of `masked` beats set to zero on every lead (RR and times stay: the
    rhythm context says where a beat is, the blanked window hides what it looks like).

    `offsets_s` (`[beat_len]`, each window sample's time from its R peak: `BeatConfig.offsets_s()`): the samples
    of the other beats' windows that lie inside a blanked beat's window are zeroed too. Windows overlap whenever RR
    is shorter than the window (0.7 s by default: above 86 /min), and a neighbour's window would otherwise show
    the blanked beat's onset or T wave (about half of it at 140 /min). None: the blanked windows only."""
    out = dict(inputs)
    hidden = masked[:, :, None, None]
    if offsets_s is not None:
        times = inputs["times"].to(offsets_s.dtype)
        sample_t = times[:, :, None] + offsets_s[None, None, :]  # [B, N, L]
        start, end = times + offsets_s[0], times + offsets_s[-1]  # [B, N]: each beat's window
        inside = (sample_t[..., None] >= start[:, None, None, :]) & (sample_t[..., None] <= end[:, None, None, :])
        covered = (inside & masked[:, None, None, :]).any(-1)  # [B, N, L]: inside some blanked beat's window
        hidden = hidden | covered[:, :, None, :]
    out["beats"] = inputs["beats"].masked_fill(hidden, 0.0)
    return out


TOWER_KEYS = ("beats", "beat_mask", "lead_mask", "rr", "times")


def _tower_input(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: inputs[k] for k in TOWER_KEYS}


class MaskedBeatReconstruction(nn.Module):
    """Blank beats, encode, reconstruct the blanked windows. `forward(tower, inputs) -> loss`."""

    def __init__(self, d: int, beat_len: int, mask_ratio: float = 0.3, offsets_s: Tensor | None = None) -> None:
        super().__init__()
        self.mask_ratio = mask_ratio
        self.decoder = nn.Linear(d, beat_len)
        # The window geometry (`blank_beats`); not saved: it is the processor's, not a weight.
        self.register_buffer("offsets_s", None if offsets_s is None else torch.as_tensor(offsets_s).float(), False)

    def forward(
        self, tower: nn.Module, inputs: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> Tensor:
        masked = choose_masked_beats(inputs["beat_mask"], self.mask_ratio, generator)
        out = tower(**_tower_input(blank_beats(inputs, masked, self.offsets_s)))
        pred = self.decoder(out["tokens"])  # [B, N, 12, beat_len]
        target = inputs["beats"].to(pred.dtype)
        keep = masked[:, :, None] & inputs["lead_mask"].bool()[:, None, :]  # [B, N, 12]
        if not keep.any():
            return pred.sum() * 0.0
        return F.mse_loss(pred[keep], target[keep])


class LatentBeatPrediction(nn.Module):
    """JEPA-style latent prediction of blanked beats against an EMA target tower.

    Call `update_target(tower)` after each optimiser step. The target tower holds no gradients and is not a
    parameter of this module's optimiser: it is a buffer-like copy kept in `self.target`."""

    def __init__(
        self,
        tower: nn.Module,
        d: int,
        mask_ratio: float = 0.3,
        momentum: float = 0.996,
        offsets_s: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        self.mask_ratio, self.momentum = mask_ratio, momentum
        self.register_buffer("offsets_s", None if offsets_s is None else torch.as_tensor(offsets_s).float(), False)
        self.predictor = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.target = copy.deepcopy(tower).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> LatentBeatPrediction:
        """The predictor follows `mode`; the target tower stays in eval mode (no dropout in the targets)."""
        super().train(mode)
        self.target.eval()
        return self

    @torch.no_grad()
    def update_target(self, tower: nn.Module) -> None:
        """target ← m · target + (1 − m) · online, parameter by parameter."""
        for t, o in zip(self.target.parameters(), tower.parameters(), strict=True):
            t.mul_(self.momentum).add_(o.detach(), alpha=1.0 - self.momentum)

    def forward(
        self, tower: nn.Module, inputs: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> Tensor:
        masked = choose_masked_beats(inputs["beat_mask"], self.mask_ratio, generator)
        with torch.no_grad():
            target = self.target(**_tower_input(inputs))["beats"]  # [B, N, d] from the whole ECG
            target = F.layer_norm(target, target.shape[-1:])  # scale-free targets, as in I-JEPA
        online = tower(**_tower_input(blank_beats(inputs, masked, self.offsets_s)))["beats"]
        pred = self.predictor(online)
        if not masked.any():
            return pred.sum() * 0.0
        return F.smooth_l1_loss(pred[masked], target[masked])
