"""Layers shared by the towers: masked pooling, attention, feed-forward, the beat layout, projection heads.

Everything here is batched: attention runs over reshaped `[groups, sequence, d]` tensors, never a Python
loop over beats or leads. The masked mean lives here and nowhere else.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecglang.errors import ConfigError, EcgLangError


class ModelInputError(EcgLangError, ValueError):
    """A model input tensor is missing or has the wrong shape/dtype."""


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run in eval mode (no dropout) and give every submodule its own training flag back afterwards: scoring
    in the middle of training must not leave dropout off for the rest of the run."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def weights_version(module: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """A key that changes whenever a parameter or buffer of `module` is replaced, moved, cast or changed in
    place (an optimizer step, `load_state_dict`, `.half()`): each tensor's storage address, dtype and in-place
    version counter. Reading it costs microseconds, where hashing the weights would cost a pass over them.
    Writes through `tensor.data` bypass the counter (PyTorch's own rule for autograd, too)."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    # `_version` is PyTorch's in-place version counter (what autograd checks saved tensors with); no public
    # name exposes it
    return tuple((t.data_ptr(), hash(t.dtype), t._version) for t in tensors)


def allow_any_if_none(keep: Tensor) -> Tensor:
    """Rows with no valid key would give softmax(all -inf) = NaN; let them attend everywhere instead.

    Their outputs are garbage but finite, and every consumer masks them out afterwards."""
    return keep | ~keep.any(dim=-1, keepdim=True)


BEAT_AXIS_KEYS = ("beats", "beat_mask", "rr", "times")


def used_beat_slots(beat_mask: Tensor) -> int:
    """Beat slots a batch uses: its last real beat + 1 (at least 1). Slots after it are padding in every row."""
    real = beat_mask.any(0).nonzero()
    return int(real.max()) + 1 if len(real) else 1


def trim_beat_axis(batch: dict[str, Tensor], keys: tuple[str, ...] = BEAT_AXIS_KEYS) -> dict[str, Tensor]:
    """Cut the beat axis of a model-input batch to the slots in use, in place (and return it): a 10 s ECG
    fills ~10-15 of 40 slots, and whatever runs on the batch next (workers' pickling, the beat and token
    losses) costs in proportion to the slots. Only real beats are dropped from nowhere: the result is exact."""
    n = used_beat_slots(batch["beat_mask"])
    for key in keys:
        if key in batch:
            batch[key] = batch[key][:, :n].contiguous()
    return batch


def masked_mean(x: Tensor, keep: Tensor, dim: int) -> Tensor:
    """Mean of `x` over `dim` where `keep` (broadcastable, without the feature axis) is True; 0 if none."""
    w = keep.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp_min(1.0)


class MaskedPool(nn.Module):
    """Pool `[..., S, d]` over S with a mask: masked mean or attention pooling (learned scoring vector)."""

    def __init__(self, d: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.score = nn.Linear(d, 1) if mode == "attention" else None

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        if self.score is None:
            return masked_mean(x, keep, dim=-2)
        logits = self.score(x).squeeze(-1).masked_fill(~allow_any_if_none(keep), float("-inf"))
        w = torch.softmax(logits, dim=-1) * keep.any(dim=-1, keepdim=True).to(x.dtype)  # all-masked → 0
        return (w.unsqueeze(-1) * x).sum(-2)


def attention_weights(q: Tensor, k: Tensor, mask: Tensor) -> Tensor:
    """`softmax(q kᵀ / √d)` over the keys `mask` allows, written out (see `_short_attention` for why).

    Every row has an allowed key (`allow_any_if_none`), so the max is finite and no row divides by zero."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    w = (scores - scores.amax(-1, keepdim=True)).exp()
    return w / w.sum(-1, keepdim=True)


def _short_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float) -> tuple[Tensor, Tensor]:
    """Attention over short sequences, written out: `(softmax(q kᵀ / √d, masked) v, the weights)`.

    On CPU, `F.scaled_dot_product_attention` and `torch.softmax` are several times slower than these
    few ops when the key axis is short (12 leads, ~15 beats): their kernels pay a per-row set-up cost that
    dwarfs 12 exponentials (measured 5x on the spatial attention of ecglang-small, PyTorch 2.13).
    """
    w = attention_weights(q, k, mask)
    dropped = F.dropout(w, dropout_p) if dropout_p > 0 else w
    return dropped @ v, w


class SelfAttention(nn.Module):
    """Multi-head self-attention on `[G, S, d]` with a key-padding mask (`keep [G, S]`, True = real key).

    `kernel="auto"` uses the short-sequence path `_short_attention` on CPU and
    `F.scaled_dot_product_attention` ("fused") elsewhere; both compute the same function, and either can be
    asked for by name (the tests compare them on CPU). `need_weights=True` also returns the attention weights
    `[G, heads, S, S]` (before dropout; rows sum to 1 over the allowed keys); the output is the same either way."""

    returns_weights = True  # the rhythm block asks mixers with this flag for their weights (BEAT-Net maps)

    KERNELS = ("auto", "short", "fused")

    def __init__(self, d: int, n_heads: int, dropout: float, kernel: str = "auto") -> None:
        super().__init__()
        if kernel not in self.KERNELS:
            raise ConfigError(f"attention kernel must be one of {self.KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: Tensor, keep: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        g, s, d = x.shape
        # Strided views [G, heads, S, d/heads]: the batched matmuls read them in place, no permuted copy.
        q, k, v = self.qkv(x).view(g, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = allow_any_if_none(keep)[:, None, None, :]  # [G, 1, 1, S]: True = may attend
        p = self.dropout if self.training else 0.0
        w = None
        short = self.kernel == "short" or (self.kernel == "auto" and x.device.type == "cpu")
        if short:
            y, w = _short_attention(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = self.out(y.transpose(1, 2).reshape(g, s, d))
        if not need_weights:
            return y
        # Off the CPU path the fused kernel keeps its weights to itself: computed again, only when asked.
        return y, (attention_weights(q, k, mask) if w is None else w)


class FeedForward(nn.Sequential):
    def __init__(self, d: int, ratio: float, dropout: float) -> None:
        hidden = int(d * ratio)
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))


@dataclass
class BeatLayout:
    """Where the real beats of a padded batch `[B, N]` sit: real beat `r` is `(batch[r], index[r])`.

    The tower computes on real beats only, as `[R, 12, d]`; rhythm attention needs the padded layout back
    (`pad`) and hands its result back to the real beats (`take`)."""

    batch: Tensor  # [R]
    index: Tensor  # [R]
    b: int
    n: int  # beats per ECG in the padded layout (the batch's last real beat + 1)
    keep: Tensor  # beat_mask [B, n]
    dense: bool = False  # every slot is a "real" beat (R = B·N, static shapes); padded ones are masked out

    @classmethod
    def of(cls, beat_mask: Tensor) -> BeatLayout:
        batch, index = beat_mask.nonzero(as_tuple=True)
        n = int(index.max()) + 1 if len(index) else 1  # = used_beat_slots(beat_mask), from the indices at hand
        return cls(batch, index, beat_mask.shape[0], n, beat_mask[:, :n])

    @classmethod
    def all_slots(cls, beat_mask: Tensor) -> BeatLayout:
        """Every padded slot as a beat: no data-dependent shape and no host sync (what `torch.compile` needs)."""
        b, n = beat_mask.shape
        arange = torch.arange(b * n, device=beat_mask.device)
        return cls(arange // n, arange % n, b, n, beat_mask, dense=True)

    def pad(self, x: Tensor, n: int | None = None) -> Tensor:
        """`[R, ...]` → `[B, n, ...]` (`n` default: the layout's), zeros at padded beats."""
        if self.dense and n in (None, self.n):
            return x.reshape(self.b, self.n, *x.shape[1:])
        out = x.new_zeros(self.b, self.n if n is None else n, *x.shape[1:])
        out[self.batch, self.index] = x
        return out

    def take(self, x: Tensor) -> Tensor:
        """`[B, n, ...]` → `[R, ...]`."""
        if self.dense:
            return x.reshape(self.b * self.n, *x.shape[2:])
        return x[self.batch, self.index]


def check_input(name: str, x: Any, ndim: int, shape: Sequence[int | None]) -> Tensor:
    """`x` as a Tensor of `ndim` dims whose sizes match `shape` (None = any); `ModelInputError` otherwise."""
    if not isinstance(x, Tensor):
        raise ModelInputError(f"model input {name!r} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim or any(s is not None and s != t for s, t in zip(shape, x.shape, strict=True)):
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ModelInputError(f"model input {name!r} must have shape {want}, got {list(x.shape)}")
    return x


class BasicBlock1d(nn.Module):
    """ResNet basic block on `[B, C, T]`: two convolutions with BatchNorm, and a 1x1 conv + BN shortcut when the
    stride or width changes (attribute names as in MERL's resnet1d, so its weights load by name)."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


# ------------------------------------------------------------------------------------------ projection
class Projection(nn.Module):
    """Map tower features to the shared space; L2-normalise (config `projection.normalize`).

    `kind` (default `cfg["type"]`): `"linear"` (no bias), `"mlp"` (Linear, GELU, Linear; hidden width
    `cfg["hidden_dim"]` or `d_in`) or `"identity"` (normalisation only; `d_in` must equal `cfg["dim"]`)."""

    def __init__(self, d_in: int, cfg: Mapping[str, Any], kind: str | None = None) -> None:
        super().__init__()
        dim = int(cfg["dim"])
        kind = kind or cfg["type"]
        self.normalize = bool(cfg["normalize"])
        if kind == "mlp":
            hidden = int(cfg.get("hidden_dim") or d_in)
            self.net: nn.Module = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, dim))
        elif kind == "identity":
            if d_in != dim:
                raise ConfigError(f"an identity projection needs tower width {d_in} == projection.dim {dim}")
            self.net = nn.Identity()
        else:
            self.net = nn.Linear(d_in, dim, bias=False)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """`x [..., d_in]` → `[..., dim]`; with `keep` (bool, `x.shape[:-1]`) padded positions are exactly zero."""
        if keep is not None and keep.dtype == torch.bool and keep.shape == x.shape[:-1]:
            # Project the kept rows only: beat and token outputs are mostly padding (40 beat slots, ~12 beats).
            kept = self._project(x[keep])
            y = kept.new_zeros(*keep.shape, kept.shape[-1])
            y[keep] = kept
            return y
        y = self._project(x)
        if keep is not None:  # a broadcastable mask
            y = y * keep.unsqueeze(-1).to(y.dtype)
        return y

    def _project(self, x: Tensor) -> Tensor:
        y = self.net(x)
        return F.normalize(y, dim=-1) if self.normalize else y


def count_parameters(module: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


__all__ = [
    "BasicBlock1d",
    "BeatLayout",
    "FeedForward",
    "MaskedPool",
    "ModelInputError",
    "Projection",
    "SelfAttention",
    "allow_any_if_none",
    "check_input",
    "count_parameters",
    "masked_mean",
]
