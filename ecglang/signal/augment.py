"""Training-time ECG augmentations of a preprocessed `[12, T]` signal (numpy only, no torch).

`augment_signal(signal, lead_mask, fs, cfg, rng)` is a pure function of its inputs: with `rng` seeded from
`(seed, epoch, index)` (as `ecglang.training.pairs.PretrainPairs` does) the same sample is augmented the same
way in every run, whatever the number of DataLoader workers or where a run was resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecglang.core.config import DictConfig
from ecglang.errors import ConfigError


@dataclass
class AugmentConfig(DictConfig):
    """Training-time augmentations, applied in this order to the preprocessed `[12, T]` signal.

    lead_mask_p: each valid lead is dropped (zeroed, mask bit cleared) with this probability; at least one
        valid lead is always kept. Teaches the model to work with any lead subset.
    amplitude_scale: `(low, high)`: the whole record is multiplied by one factor drawn uniformly from this
        range (one factor for all leads keeps the electrical axis). `None` or `(1, 1)` disables it.
    time_shift_ms: the record starts a random 0..`time_shift_ms` later: the first samples are dropped, the
        end is zero-padded and excluded from beat detection. Beat times (a model input) shift accordingly.
    noise_std: standard deviation of Gaussian noise added to valid leads, in normalised units (the cache
        holds z-scored leads, so 0.02 is 2 % of a lead's spread).
    """

    lead_mask_p: float = 0.0
    amplitude_scale: tuple[float, float] | None = None
    time_shift_ms: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.amplitude_scale is not None:
            if not isinstance(self.amplitude_scale, (list, tuple)) or len(self.amplitude_scale) != 2:
                raise ConfigError(f"augment.amplitude_scale must be [low, high] or null, got {self.amplitude_scale!r}")
            self.amplitude_scale = (float(self.amplitude_scale[0]), float(self.amplitude_scale[1]))
            lo, hi = self.amplitude_scale
            if not 0 < lo <= hi:
                raise ConfigError(f"augment.amplitude_scale needs 0 < low <= high, got {self.amplitude_scale}")
        if not 0.0 <= float(self.lead_mask_p) < 1.0:
            raise ConfigError(f"augment.lead_mask_p must be in [0, 1), got {self.lead_mask_p!r}")
        if not float(self.time_shift_ms) >= 0:
            raise ConfigError(f"augment.time_shift_ms must be >= 0, got {self.time_shift_ms!r}")
        if not float(self.noise_std) >= 0:
            raise ConfigError(f"augment.noise_std must be >= 0, got {self.noise_std!r}")

    @property
    def active(self) -> bool:
        scale = self.amplitude_scale is not None and self.amplitude_scale != (1.0, 1.0)
        return bool(self.lead_mask_p > 0 or scale or self.time_shift_ms > 0 or self.noise_std > 0)


def augment_signal(
    signal: np.ndarray, lead_mask: np.ndarray, fs: float, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Apply `cfg` to one preprocessed record. Returns `(signal [12, T], lead_mask [12], n_valid)` where
    `n_valid` is the number of leading samples that hold signal (the rest is the shift's zero padding)."""
    x = np.array(signal, dtype=np.float32, copy=True)
    mask = np.array(lead_mask, dtype=bool, copy=True)
    n = x.shape[1]
    if cfg.lead_mask_p > 0 and mask.sum() > 1:
        valid = np.flatnonzero(mask)
        drop = valid[rng.random(valid.size) < cfg.lead_mask_p]
        if drop.size == valid.size:  # keep one valid lead, chosen at random
            drop = np.delete(drop, rng.integers(drop.size))
        mask[drop] = False
        x[drop] = 0.0
    if cfg.amplitude_scale is not None and cfg.amplitude_scale[0] != cfg.amplitude_scale[1]:
        x *= np.float32(rng.uniform(*cfg.amplitude_scale))
    elif cfg.amplitude_scale is not None:
        x *= np.float32(cfg.amplitude_scale[0])
    n_valid = n
    if cfg.time_shift_ms > 0:
        shift = int(rng.integers(0, round(cfg.time_shift_ms * fs / 1000.0) + 1))
        if shift:
            x[:, : n - shift] = x[:, shift:]
            x[:, n - shift :] = 0.0
            n_valid = n - shift
    if cfg.noise_std > 0:
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(cfg.noise_std)
        noise[:, n_valid:] = 0.0
        x += noise * mask[:, None]
    return x, mask, n_valid


__all__ = ["AugmentConfig", "augment_signal"]
