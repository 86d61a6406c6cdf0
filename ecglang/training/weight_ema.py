"""An exponential moving average of the trained weights (`optim.ema_decay`), validated and exported in their place.

Why: on a few hundred pairs the weights after any one step are noisy, and the checkpoint that selection picks
is one draw from that noise. Averaging the last steps' weights (Polyak averaging, timm's `ModelEmaV3` in its
simplest form) smooths it. The trainable parameters are averaged, and so are the running means and variances of
normalisation layers that train (the ResNet baseline's BatchNorm), as timm's averages do: averaged weights
with the last step's statistics would normalise with numbers they were never trained with. Frozen tensors are
the same in both; the integer `num_batches_tracked` is not a statistic to average and stays the model's.

The average lives beside the model as plain tensors. `applied()` swaps it into the model for validation and
export and swaps the trained weights back afterwards, so the optimizer never sees it. Checkpoints keep it in
`weight_ema.safetensors` (never a pickle) through accelerate's save/load hooks. A run resumed with the average on
from a checkpoint without one (started without `optim.ema_decay`) starts it from the resumed weights (`restart`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ecglang.errors import ModelLoadError
from ecglang.training.checkpoints import running_statistics

WEIGHT_EMA_FILE = "weight_ema.safetensors"


class WeightEMA:
    """`average <- d * average + (1 - d) * weights` after each optimizer step, with `d = min(decay, (1 + n) / (10
    + n))` at the n-th update: a short average while the weights move fast at the start (timm's warm-up), and
    no bias towards the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        buffers = dict(model.named_buffers())
        statistics = {n: buffers[n] for n in sorted(running_statistics(model)) if buffers[n].is_floating_point()}
        # the tensors averaged: trainable parameters, then running statistics
        self.tracked = {**{n: p for n, p in model.named_parameters() if p.requires_grad}, **statistics}
        self.average = {n: p.detach().clone() for n, p in self.tracked.items()}
        self.updates = 0

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average again from the model's weights (a resumed run that had none)."""
        for n, p in self.tracked.items():
            self.average[n].copy_(p.detach())
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the weights just stepped."""
        weight = 1.0 - self.current_decay()
        self.updates += 1
        for name, p in self.tracked.items():
            self.average[name].lerp_(p.detach(), weight)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the average; the trained weights come back afterwards, exactly."""
        trained = {n: p.detach().clone() for n, p in self.tracked.items()}
        with torch.no_grad():
            for n, p in self.tracked.items():
                p.copy_(self.average[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.tracked.items():
                    p.copy_(trained[n])

    def save(self, folder: str | Path) -> None:
        """Write the average to `folder/weight_ema.safetensors` (the update count in its metadata)."""
        tensors = {n: t.detach().cpu().contiguous() for n, t in self.average.items()}
        save_file(tensors, str(Path(folder) / WEIGHT_EMA_FILE), metadata={"updates": str(self.updates)})

    def load(self, folder: str | Path, missing_ok: bool = False) -> bool:
        """Restore the average from `folder/weight_ema.safetensors`; a partial file is an error, a missing one too
        unless `missing_ok` (then False: nothing was loaded)."""
        path = Path(folder) / WEIGHT_EMA_FILE
        if not path.is_file():
            if missing_ok:
                return False
            raise ModelLoadError(
                path,
                "the checkpoint has no weight average: it was written by a run without optim.ema_decay (a resume "
                "starts the average from its weights instead)",
            )
        try:
            with safe_open(str(path), framework="pt") as f:
                keys, meta = set(f.keys()), f.metadata() or {}
                if keys != set(self.average):
                    missing, unexpected = sorted(set(self.average) - keys)[:3], sorted(keys - set(self.average))[:3]
                    raise ModelLoadError(path, f"does not match the model: missing {missing}, unexpected {unexpected}")
                loaded = {n: f.get_tensor(n) for n in keys}
            updates = int(meta.get("updates", "0"))
        except ModelLoadError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged headers
            raise ModelLoadError(path, f"cannot read the weight average: {exc}") from exc
        for n, t in loaded.items():
            if t.shape != self.average[n].shape:
                raise ModelLoadError(path, f"{n}: shape {tuple(t.shape)}, the model has {tuple(self.average[n].shape)}")
            self.average[n].copy_(t)
        self.updates = updates
        return True


__all__ = ["WEIGHT_EMA_FILE", "WeightEMA"]
