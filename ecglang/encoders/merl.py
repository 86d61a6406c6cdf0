"""MERL's ECG towers (Liu et al., ICML 2024), as ecglang tower types, so MERL checkpoints load exactly.

Written from the description of MERL's published code (github.com/cheliu-computation/MERL-ICML2024, commit
38799b7, MIT licence); no code is copied. Attribute names follow MERL's, so a MERL state dict maps onto these
modules by prefix only (`ecglang.encoders.convert_merl`). What a port must reproduce, and does here:

- `merl_resnet18`: ResNet1d-18 **without a max-pool** (5000 samples -> 313 steps), a 1x1 `downconv` 512 -> 256,
  and MERL's `AttentionPool2d` (1-D despite the name): the CLS slot gets `pos[:, 0]` twice (once with the
  CLS token, once with all positions), then `nn.MultiheadAttention` with the CLS position as the only query.
- `merl_vit_tiny`: ViT1d-tiny (patch 50, 100 tokens, 12 pre-norm blocks, 3 heads of 64), mean over tokens
  **then** the final LayerNorm, then `proj_e` (Linear, BN, ReLU, Linear, BN).

Each tower returns `rhythm` = MERL's ECG embedding before normalisation `[B, 256]` and `features` = the pooled
backbone feature MERL's linear probe uses (ResNet: time-averaged layer4 map `[B, 512]`; ViT: `[B, 192]`).
Inputs are `[B, 12, 5000]` in MERL's lead order (aVF before aVL; the processor's `lead_order="mimic"`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ecglang.encoders.layers import BasicBlock1d, ModelInputError, check_input
from ecglang.record.leads import N_LEADS


def _check_signal(signal: Any, lead_mask: Any, length: int, dtype: torch.dtype) -> Tensor:
    check_input("signal", signal, 3, (None, N_LEADS, None))
    check_input("lead_mask", lead_mask, 2, (signal.shape[0], N_LEADS))
    if signal.shape[-1] != length:
        raise ModelInputError(
            f"MERL towers take exactly {length} samples per lead (MERL crops to 5000 at 500 Hz), got "
            f"{signal.shape[-1]}; use the model's processor"
        )
    return signal.to(dtype) * lead_mask.to(dtype).unsqueeze(-1)


# ------------------------------------------------------------------------------------------- ResNet
class MerlResNet1d(nn.Module):
    """MERL's `ResNet18` backbone: conv k7 s2 + BN + ReLU (no max-pool), four stages of basic blocks.

    Returns the layer4 map `[B, 8 * width, T']`. MERL's unused classification head (`linear`) is left out."""

    def __init__(self, n_leads: int, width: int, blocks: list[int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_leads, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        c_in = width
        for i, n_blocks in enumerate(blocks):
            c_out = width * 2**i
            stage = [BasicBlock1d(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, 3)
                     for j in range(int(n_blocks))]  # fmt: skip
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            c_in = c_out
        self.n_stages = len(blocks)
        self.out_channels = c_in

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


class MerlAttentionPool(nn.Module):
    """MERL's `AttentionPool2d` on `[B, C, T]`: a CLS query attends over CLS + T positions; then `c_proj`."""

    def __init__(self, steps: int, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(1, steps + 1, dim) / dim**0.5)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.mhsa = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.c_proj = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 1)  # [B, T, C]
        if x.shape[1] + 1 != self.positional_embedding.shape[1]:
            raise ModelInputError(
                f"attention pool has {self.positional_embedding.shape[1] - 1} time positions, got {x.shape[1]}"
            )
        cls = self.cls_token + self.positional_embedding[:, :1]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.positional_embedding  # the CLS slot gets pos[:, 0] a second time, as in MERL
        y, _ = self.mhsa(x[:, :1], x, x)  # need_weights=True (the default): MERL's standard path
        return self.c_proj(y[:, 0])


class MerlResNetTower(nn.Module):
    """`merl_resnet18`: `att_pool_head(downconv(ecg_encoder(x)))`, MERL's `ext_ecg_emb` for ResNets."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        d = int(cfg["embed_dim"])
        self.signal_len = int(cfg["signal_len"])
        self.ecg_encoder = MerlResNet1d(N_LEADS, int(cfg["width"]), [int(b) for b in cfg["blocks"]])
        self.downconv = nn.Conv1d(self.ecg_encoder.out_channels, d, kernel_size=1)
        steps = self.signal_len
        for _ in range(len(cfg["blocks"])):  # the stem and every stage after the first halve the length
            steps = (steps + 1) // 2
        self.att_pool_head = MerlAttentionPool(steps, d, int(cfg["heads"]), d)
        self.d_model = d

    def forward(self, signal: Tensor, lead_mask: Tensor) -> dict:
        h = self.ecg_encoder(_check_signal(signal, lead_mask, self.signal_len, next(self.parameters()).dtype))
        emb = self.att_pool_head(self.downconv(h))
        return {"rhythm": emb, "features": h.mean(-1), "beats": None, "tokens": None, "beat_mask": None}


# ---------------------------------------------------------------------------------------------- ViT
class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class _VitAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class _VitFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _VitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.attn = _PreNorm(dim, _VitAttention(dim, heads, dim_head))
        self.ff = _PreNorm(dim, _VitFeedForward(dim, mlp_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.ff(x)


class MerlVit1d(nn.Module):
    """MERL's `ViT` (1-D): patch conv, + positions, pre-norm blocks, mean over tokens, final LayerNorm."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        width, patch = int(cfg["width"]), int(cfg["patch"])
        self.to_patch_embedding = nn.Conv1d(N_LEADS, width, patch, stride=patch, bias=False)
        self.pos_embedding = nn.Parameter(torch.randn(1, int(cfg["signal_len"]) // patch, width))
        self.depth = int(cfg["depth"])
        for i in range(self.depth):
            self.add_module(f"block{i}", _VitBlock(width, int(cfg["heads"]), int(cfg["dim_head"]), int(cfg["mlp_dim"])))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        x = self.to_patch_embedding(x).transpose(1, 2) + self.pos_embedding
        for i in range(self.depth):
            x = getattr(self, f"block{i}")(x)
        return self.norm(x.mean(dim=1))  # MERL normalises after pooling


class MerlVitTower(nn.Module):
    """`merl_vit_tiny`: `proj_e(ecg_encoder(x))`, MERL's `ext_ecg_emb` for ViTs."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        width, d = int(cfg["width"]), int(cfg["embed_dim"])
        self.signal_len = int(cfg["signal_len"])
        self.ecg_encoder = MerlVit1d(cfg)
        self.proj_e = nn.Sequential(nn.Linear(width, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, d),
                                    nn.BatchNorm1d(d))  # fmt: skip
        self.d_model = d

    def forward(self, signal: Tensor, lead_mask: Tensor) -> dict:
        h = self.ecg_encoder(_check_signal(signal, lead_mask, self.signal_len, next(self.parameters()).dtype))
        return {"rhythm": self.proj_e(h), "features": h, "beats": None, "tokens": None, "beat_mask": None}


__all__ = [
    "MerlAttentionPool",
    "MerlResNet1d",
    "MerlResNetTower",
    "MerlVit1d",
    "MerlVitTower",
]
