"""Rhythm mixers: how the beats of one ECG exchange information, selected by the tower config's `rhythm_mixer`.

Each mixer maps a padded beat sequence `x [G, S, d]` with `keep [G, S]` (True = a real beat) to `[G, S, d]`;
outputs at padded beats are never read. The choices, from the seed papers:

- `attention`: full self-attention across beats (what the tower always did);
- `neighbourhood`: each beat attends only to beats within `window` positions (ECG-NAT's neighbourhood
  attention: local first, then global through depth);
- `ssm`: a bidirectional selective state-space scan (Mamba-style, CNN-Mamba), written in plain PyTorch with
  no CUDA-only kernel; its cost is linear in the number of beats.

Attention maps (`output_attentions`, BEAT-Net's "which beats"): only `attention` hands back its weights
(`returns_weights`). `ssm` has none; `neighbourhood` has weights, but each beat sees only its band, so how
much attention a beat receives measures its number of neighbours (edge beats get less) rather than what the
model attended to: both give no beat map (None).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecglang.encoders.layers import SelfAttention

RHYTHM_MIXERS = ("attention", "neighbourhood", "ssm")


def band_keep(keep: Tensor, window: int) -> Tensor:
    """`[G, S]` key mask → `[G, S, S]`: query i may attend key j when j is real and |i − j| ≤ window.
    A query whose band holds no real key may attend to itself, so its softmax stays finite."""
    s = keep.shape[-1]
    idx = torch.arange(s, device=keep.device)
    band = (idx[:, None] - idx[None, :]).abs() <= window
    allowed = keep[:, None, :] & band
    return allowed | (~allowed.any(-1, keepdim=True) & torch.eye(s, dtype=torch.bool, device=keep.device))


class NeighbourhoodAttention(nn.Module):
    """Multi-head attention in which each beat sees only its `window` neighbours on either side."""

    returns_weights = False  # banded: see the module docstring

    def __init__(self, d: int, n_heads: int, dropout: float, window: int = 2) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"neighbourhood window must be >= 1, got {window}")
        self.n_heads, self.window, self.dropout = n_heads, window, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        g, s, d = x.shape
        q, k, v = self.qkv(x).view(g, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = band_keep(keep, self.window)[:, None]  # [G, 1, S, S]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(g, s, d))


class SelectiveScan(nn.Module):
    """One direction of a selective state-space layer (Mamba's S6, without its fused CUDA kernel).

    h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t,  y_t = C_t h_t + D u_t, with Δ, B, C computed from the input
    (that is what makes it selective). Padded beats get Δ = 0: the state passes them unchanged and they add
    nothing, so the real beats' outputs do not depend on how much padding follows them.
    """

    def __init__(self, d_inner: int, d_state: int) -> None:
        super().__init__()
        self.d_state = d_state
        self.x_proj = nn.Linear(d_inner, 1 + 2 * d_state)  # Δ (one rate per step, broadcast), B, C
        self.dt_proj = nn.Linear(1, d_inner)
        # Mamba's step-size init: Δ log-uniform in [0.001, 0.1] (bias = softplus⁻¹(Δ)), so that at the start the
        # state remembers across the whole record instead of forgetting within a beat or two.
        dt = torch.exp(torch.empty(d_inner).uniform_(math.log(1e-3), math.log(1e-1)))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.a_log = nn.Parameter(torch.log(a))  # A = −exp(a_log): stable decay rates 1..d_state (S4D-real init)
        self.d_skip = nn.Parameter(torch.ones(d_inner))

    def forward(self, u: Tensor, keep: Tensor) -> Tensor:
        g, s, _ = u.shape
        dt_raw, b, c = self.x_proj(u).split([1, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_raw)) * keep.unsqueeze(-1).to(u.dtype)  # [G, S, d_inner]
        a = -torch.exp(self.a_log.float())  # [d_inner, d_state]
        decay = torch.exp(dt.unsqueeze(-1) * a)  # [G, S, d_inner, d_state]
        drive = (dt * u).unsqueeze(-1) * b.unsqueeze(-2)  # [G, S, d_inner, d_state]
        h = u.new_zeros(g, u.shape[-1], self.d_state)
        ys = []
        for t in range(s):  # the sequence is tens of beats: a plain loop is cheap and needs no custom kernel
            h = decay[:, t] * h + drive[:, t]
            ys.append((h * c[:, t].unsqueeze(-2)).sum(-1))
        return torch.stack(ys, 1) + u * self.d_skip


class SelectiveSSM(nn.Module):
    """Bidirectional selective SSM block: in-projection with a gate, a short depthwise convolution along the
    beats, a forward and a backward selective scan, gated and projected back to `d`."""

    returns_weights = False  # a recurrence: no attention weights

    def __init__(self, d: int, d_state: int = 8, expand: int = 2, conv_kernel: int = 3) -> None:
        super().__init__()
        inner = expand * d
        self.in_proj = nn.Linear(d, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, conv_kernel, padding=conv_kernel // 2, groups=inner)
        self.forward_scan = SelectiveScan(inner, d_state)
        self.backward_scan = SelectiveScan(inner, d_state)
        self.out_proj = nn.Linear(inner, d)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        u, gate = self.in_proj(x).chunk(2, dim=-1)
        u = u * keep.unsqueeze(-1).to(u.dtype)  # padded beats feed nothing into the convolution
        u = F.silu(self.conv(u.transpose(1, 2)).transpose(1, 2))
        y = self.forward_scan(u, keep) + self.backward_scan(u.flip(1), keep.flip(1)).flip(1)
        return self.out_proj(y * F.silu(gate))


def build_rhythm_mixer(name: str, d: int, n_heads: int, dropout: float, window: int = 2, state: int = 8) -> nn.Module:
    """The rhythm mixer `name` (one of `RHYTHM_MIXERS`); all take `(x [G, S, d], keep [G, S])`."""
    if name == "attention":
        return SelfAttention(d, n_heads, dropout)
    if name == "neighbourhood":
        return NeighbourhoodAttention(d, n_heads, dropout, window)
    if name == "ssm":
        return SelectiveSSM(d, d_state=state)
    raise ValueError(f"rhythm mixer must be one of {RHYTHM_MIXERS}, got {name!r}")
