"""ECG towers: `BeatEcgEncoder` (beat-level ECG transformer) and `ResNet1dEncoder` (MERL-style baseline), and
`ECG_TOWERS`, the registry that maps `ecg_tower.type` in a config to its class (configs stay plain data).

Every tower takes its config section and returns a dict with `rhythm` `[B, d]` (what the rhythm projection
reads), `beats`, `tokens` and `beat_mask` (None for towers without beats), and optionally `features` (pooled
backbone features for linear probes, when they differ from `rhythm`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from ecglang.encoders.heads import DemographicEmbedding, LeadGroupPool
from ecglang.encoders.layers import (
    BasicBlock1d,
    BeatLayout,
    FeedForward,
    MaskedPool,
    ModelInputError,
    SelfAttention,
    check_input,
    masked_mean,
)
from ecglang.encoders.merl import MerlResNetTower, MerlVitTower
from ecglang.encoders.mixers import SelectiveScan, build_rhythm_mixer
from ecglang.errors import ConfigError
from ecglang.record.leads import N_LEADS


class FactorizedBlock(nn.Module):
    """One block of explicit factorised attention on the tokens of the real beats, `[R beats, 12 leads, d]`.

    1. spatial attention: within each beat, across its 12 lead tokens (key padding = lead mask);
    2. rhythm attention: across beats — per lead (`per_lead`, each lead attends over its own beats) or over
       beat summaries (`summary`, lead-pooled beats attend to each other and the result is broadcast back);
    3. a feed-forward layer. Pre-norm residuals throughout.

    The rhythm step's mixer is `mixer` (`ecglang.encoders.mixers`): full attention, neighbourhood attention
    or a selective state-space scan.

    Padded beats are never computed: they could only attend among themselves, and no real token attends
    to them, so leaving them out changes no real output and saves their share of the work.
    """

    def __init__(
        self, d: int, n_heads: int, mlp_ratio: float, dropout: float, rhythm: str, mixer: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self.rhythm = rhythm
        self.norm_s, self.norm_r, self.norm_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.spatial = SelfAttention(d, n_heads, dropout)
        self.temporal = build_rhythm_mixer(mixer["name"], d, n_heads, dropout, mixer["window"], mixer["state"])
        self.ffn = FeedForward(d, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def residual_outputs(self) -> list[nn.Linear]:
        """The last linear layer of each residual branch (what `init="trunc_normal"` scales down)."""
        temporal_out = [m for m in self.temporal.modules() if isinstance(m, nn.Linear)][-1]
        return [self.spatial.out, temporal_out, self.ffn[-1]]

    def forward(
        self, x: Tensor, lead_keep: Tensor, layout: BeatLayout, maps: list[tuple[Tensor, Tensor | None]] | None = None
    ) -> Tensor:
        """`x [R, 12, d]`, `lead_keep [R, 12]` (the lead mask of each real beat's ECG). Given a list `maps`,
        the block appends its attention maps `(lead [B, 12], beat [B, n] or None)` (see `attention_maps`)."""
        c, d = x.shape[1:]
        spatial = self.spatial(self.norm_s(x), lead_keep, need_weights=maps is not None)
        if maps is not None:
            spatial, lead_w = spatial
            lead_map = masked_mean(layout.pad(query_mean(lead_w, lead_keep)), layout.keep, dim=1)  # [B, 12]
        x = x + self.drop(spatial)
        capture = maps is not None and getattr(self.temporal, "returns_weights", False)
        beat_map = None
        ask = {"need_weights": True} if capture else {}  # mixers without weights never see the argument
        if self.rhythm == "per_lead":
            h = layout.pad(self.norm_r(x)).transpose(1, 2).reshape(layout.b * c, layout.n, d)
            temporal_keep = layout.keep[:, None, :].expand(layout.b, c, layout.n).reshape(layout.b * c, layout.n)
            y = self.temporal(h, temporal_keep, **ask)
            if capture:
                y, beat_w = y
                per_lead = query_mean(beat_w, temporal_keep).view(layout.b, c, layout.n)  # [B, 12, n]
                present = layout.pad(lead_keep).any(1)  # [B, 12]: the ECG's lead mask
                beat_map = masked_mean(per_lead, present, dim=1)  # [B, n]: mean over present leads
            y = y.view(layout.b, c, layout.n, d).transpose(1, 2)
            x = x + self.drop(layout.take(y))
        else:
            summary = layout.pad(masked_mean(self.norm_r(x), lead_keep, dim=1))  # [B, n, d]
            y = self.temporal(summary, layout.keep, **ask)
            if capture:
                y, beat_w = y
                beat_map = query_mean(beat_w, layout.keep)  # [B, n]
            x = x + self.drop(layout.take(y)).unsqueeze(1)
        if maps is not None:
            maps.append((lead_map, None if beat_map is None else beat_map * layout.keep.to(beat_map.dtype)))
        return x + self.drop(self.ffn(self.norm_f(x)))


def query_mean(weights: Tensor, keep: Tensor) -> Tensor:
    """Attention weights `[G, heads, S, S]` → `[G, S]`: the attention each key receives, averaged over heads and
    over the real queries (`keep [G, S]`). Rows of the weights sum to 1 over allowed keys, so the result does."""
    per_query = weights.float().mean(1)  # [G, S queries, S keys]
    return masked_mean(per_query, keep, dim=1)


class MorphologyEncoder(nn.Module):
    """Small 1-D CNN shared by all leads: one beat of one lead `[M, beat_len]` → `[M, d]`.

    The last feature map is flattened (not averaged) so that where things happen inside the beat window —
    P before QRS, QRS width, ST level, T — stays visible to the linear layer."""

    def __init__(self, beat_len: int, channels: Sequence[int], kernel: int, d: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = 1, beat_len
        for c_out in channels:
            layers += [nn.Conv1d(c_in, int(c_out), kernel, stride=2, padding=kernel // 2), nn.GELU()]
            c_in, length = int(c_out), (length + 2 * (kernel // 2) - kernel) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in * length, d)

    def forward(self, segments: Tensor) -> Tensor:
        return self.proj(self.conv(segments.unsqueeze(1)).flatten(1))


# ------------------------------------------------------------------------------------------ ECG towers
class BeatEcgEncoder(nn.Module):
    """Beat-level ECG encoder.

    Tokens are (beat, lead) pairs: the morphology CNN embeds each beat window of each lead; learned lead
    embeddings, beat-position embeddings (index and/or R-peak time) and an RR-feature MLP (previous RR,
    next RR, log of their ratio) are added; `n_layers` factorised blocks follow. Outputs (features, before
    projection): tokens `[B, N, 12, d]`, beats `[B, N, d]` (pooled over present leads), rhythm `[B, d]`
    (pooled over real beats). Any lead subset works: masked leads are never attended to and never pooled.

    Only real beats (`beat_mask` True) go through the transformer, as `[R, 12, d]` (most 10 s ECGs have far
    fewer than `max_beats` beats, and a batch's records differ in beat count), and only real (beat, lead)
    windows go through the CNN; outputs are padded back to N with zeros at padded beats.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        d = int(cfg["d_model"])
        self.cfg = dict(cfg)
        self.d_model = d
        self.beat_len = int(cfg["beat_len"])
        self.max_beats = int(cfg["max_beats"])
        self.morphology = MorphologyEncoder(self.beat_len, cfg["cnn_channels"], int(cfg["cnn_kernel"]), d)
        self.lead_embed = nn.Parameter(torch.randn(N_LEADS, d) * 0.02)
        position = cfg["position"]
        self.index_embed = nn.Embedding(self.max_beats, d) if "index" in position else None
        if "time" in position:
            # Fourier features of the R-peak time, periods from 0.25 s to ~20 s (a 10 s record and its beats).
            freqs = torch.logspace(math.log10(0.05), math.log10(4.0), int(cfg["time_frequencies"]))
            self.register_buffer("time_freqs", freqs, persistent=False)
            self.time_mlp = nn.Sequential(nn.Linear(2 * len(freqs), d), nn.GELU(), nn.Linear(d, d))
        else:
            self.time_mlp = None
        self.rr_mlp = nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d))
        self.embed_norm = nn.LayerNorm(d)
        self.embed_drop = nn.Dropout(float(cfg["dropout"]))
        mixer = {
            "name": cfg.get("rhythm_mixer", "attention"),
            "window": int(cfg.get("mixer_window", 2)),
            "state": int(cfg.get("ssm_state", 8)),
        }
        self.blocks = nn.ModuleList(
            FactorizedBlock(d, int(cfg["n_heads"]), float(cfg["mlp_ratio"]), float(cfg["dropout"]),
                            cfg["rhythm_attention"], mixer)
            for _ in range(int(cfg["n_layers"]))
        )  # fmt: skip
        self.out_norm = nn.LayerNorm(d)
        # "lead_group" (CLEAR-HUG): beats still pool over leads for the beat outputs; the ECG pools
        # beat → lead → lead group → ECG.
        lead_group = cfg["pooling"] == "lead_group"
        self.lead_pool = MaskedPool(d, "attention" if lead_group else cfg["pooling"])
        self.beat_pool = None if lead_group else MaskedPool(d, cfg["pooling"])
        self.group_pool = LeadGroupPool(d) if lead_group else None
        self.demographics = DemographicEmbedding(d) if cfg.get("demographics", False) else None
        self.gradient_checkpointing = False  # recompute each block in backward (set by the trainer)
        self.static_shapes = False  # compute all beat slots (`BeatLayout.all_slots`); always so under torch.compile
        if cfg.get("init", "torch") == "trunc_normal":
            self.init_trunc_normal()

    @torch.no_grad()
    def init_trunc_normal(self, std: float = 0.02) -> None:
        """ViT/GPT-2 initialisation: linear and embedding weights N(0, std²) truncated at 2σ, zero biases, and the
        last layer of each residual branch scaled by 1/√(2·n_layers), so every block starts near the identity and
        the embeddings carry the signal. The morphology CNN keeps PyTorch's init (it feeds GELUs, not a residual
        stream), and the selective scans keep their own (their step sizes and decay rates are set on purpose)."""
        own_init = [self.morphology, *(m for m in self.modules() if isinstance(m, SelectiveScan))]
        kept = {id(m) for owner in own_init for m in owner.modules()}
        for module in self.modules():
            if id(module) in kept or not isinstance(module, nn.Linear | nn.Embedding):
                continue
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.lead_embed, std=std, a=-2 * std, b=2 * std)
        residual_std = std / math.sqrt(2 * len(self.blocks))
        for block in self.blocks:
            for layer in block.residual_outputs():
                nn.init.trunc_normal_(layer.weight, std=residual_std, a=-2 * residual_std, b=2 * residual_std)

    def validate(self, beats: Any, beat_mask: Any, lead_mask: Any, rr: Any, times: Any) -> None:
        beats = check_input("beats", beats, 4, (None, None, N_LEADS, self.beat_len))
        b, n = beats.shape[:2]
        if n > self.max_beats:
            raise ModelInputError(f"{n} beats per ECG but the model's beat-position table has {self.max_beats}")
        check_input("beat_mask", beat_mask, 2, (b, n))
        check_input("lead_mask", lead_mask, 2, (b, N_LEADS))
        check_input("rr", rr, 3, (b, n, 2))
        check_input("times", times, 2, (b, n))

    def forward(
        self,
        beats: Tensor,
        beat_mask: Tensor,
        lead_mask: Tensor,
        rr: Tensor,
        times: Tensor,
        *,
        rhythm_only: bool = False,
        age: Tensor | None = None,
        sex: Tensor | None = None,
        output_attentions: bool = False,
    ) -> dict:
        """Features of a batch (see the class docstring). `rhythm_only=True` skips building the padded beat
        and token outputs (`beats`/`tokens` are None): what zero-shot scoring needs, at less memory traffic.
        `age [B]` (years, NaN unknown) and `sex [B]` (0 unknown, 1 male, 2 female) are read only by a tower
        with `demographics: true`; left out, they count as unknown. `output_attentions=True` adds the
        attention maps `lead_attention [B, 12]` and `beat_attention [B, N]` (see `attention_maps`); the
        other outputs are the same with it or without."""
        self.validate(beats, beat_mask, lead_mask, rr, times)
        beat_mask, lead_mask = beat_mask.bool(), lead_mask.bool()
        w = self.lead_embed.dtype  # inputs in the weights' dtype (float32 unless the model was cast)
        n_full = beats.shape[1]
        d = self.d_model
        # Only real beats are computed (`[R, 12, d]`): a batch of 10 s ECGs fills ~30 % of its padded
        # beat slots with padding, and the per-token layers cost in proportion to the tokens.
        dense = self.static_shapes or torch.compiler.is_compiling()
        layout = BeatLayout.all_slots(beat_mask) if dense else BeatLayout.of(beat_mask)
        lead_keep = lead_mask[layout.batch]  # [R, 12]
        if dense:  # padded slots: no lead, so every pool gives 0 there; CNN on all windows, masked after
            real = layout.keep.reshape(-1)[:, None]
            lead_keep = lead_keep & real
            windows = layout.take(beats).to(w)
            feats = self.morphology(windows.reshape(-1, windows.shape[-1])).view(-1, N_LEADS, d)
            morph = feats * lead_keep[..., None].to(feats.dtype)
        else:
            feats = self.morphology(layout.take(beats)[lead_keep].to(w))  # only real (beat, lead) windows
            morph = feats.new_zeros(len(layout.batch), N_LEADS, d)
            morph[lead_keep] = feats

        per_beat = self.rr_mlp(self._rr_features(layout.take(rr).to(w)))  # [R, d]
        if self.index_embed is not None:
            per_beat = per_beat + self.index_embed.weight[layout.index]
        if self.time_mlp is not None:
            # the phase in float32 whatever the weights: 2π·t·f of a 10 s record is too large for bfloat16
            phase = 2 * math.pi * layout.take(times).float().unsqueeze(-1) * self.time_freqs.float()
            per_beat = per_beat + self.time_mlp(torch.cat([phase.sin(), phase.cos()], -1).to(w))
        x = morph + self.lead_embed + per_beat.unsqueeze(1)
        x = self.embed_drop(self.embed_norm(x))
        maps: list[tuple[Tensor, Tensor | None]] | None = [] if output_attentions else None
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and maps is None:
                x = torch.utils.checkpoint.checkpoint(block, x, lead_keep, layout, use_reentrant=False)
            else:
                x = block(x, lead_keep, layout, maps)
        tokens_r = self.out_norm(x)
        if dense:
            tokens_r = tokens_r * real[..., None].to(tokens_r.dtype)  # padded beats are exactly zero
        beats_r = self.lead_pool(tokens_r, lead_keep)  # [R, d]
        beat_feats = layout.pad(beats_r)  # [B, n, d]
        if self.group_pool is not None:
            rhythm = self.group_pool(layout.pad(tokens_r), layout.keep, lead_mask)
        else:
            rhythm = self.beat_pool(beat_feats, layout.keep)  # [B, d]
        if self.demographics is not None:
            rhythm = rhythm + self._demographics(rhythm, age, sex)
        extra = {} if maps is None else attention_maps(maps, n_full)
        if rhythm_only:
            return {"rhythm": rhythm, "beats": None, "tokens": None, "beat_mask": beat_mask, **extra}
        # Outputs line up with the input's beat axis; padded beats are exactly zero.
        tokens = layout.pad(tokens_r, n_full)
        beat_feats = F.pad(beat_feats, (0, 0, 0, n_full - layout.n))
        return {"rhythm": rhythm, "beats": beat_feats, "tokens": tokens, "beat_mask": beat_mask, **extra}

    def _demographics(self, rhythm: Tensor, age: Tensor | None, sex: Tensor | None) -> Tensor:
        b = rhythm.shape[0]
        age = torch.full((b,), float("nan"), device=rhythm.device) if age is None else age.to(rhythm.device)
        sex = torch.zeros(b, dtype=torch.long, device=rhythm.device) if sex is None else sex.to(rhythm.device)
        return self.demographics(age, sex).to(rhythm.dtype)

    @staticmethod
    def _rr_features(rr: Tensor) -> Tensor:
        """(previous RR, next RR, log(next/prev)): rate and prematurity/compensatory pause of each beat."""
        prev, nxt = rr[..., 0].clamp_min(0.0), rr[..., 1].clamp_min(0.0)
        ratio = torch.log(nxt.clamp_min(0.05) / prev.clamp_min(0.05))
        return torch.stack([prev, nxt, ratio], -1)


def attention_maps(maps: Sequence[tuple[Tensor, Tensor | None]], n_beats: int) -> dict[str, Tensor | None]:
    """The blocks' maps averaged over layers (BEAT-Net's lead and rhythm attention, read as "where it looked"):

    - `lead_attention [B, 12]`: the spatial attention each lead receives, averaged over heads, the present
      query leads and the real beats; it sums to 1 over the ECG's present leads and is 0 at missing ones;
    - `beat_attention [B, n_beats]`: the rhythm attention each beat receives, averaged over heads and the real
      query beats (and over present leads for `per_lead` rhythm attention); it sums to 1 over the real beats and
      is 0 at padded ones. None when the rhythm mixer has no attention weights (`ssm`, `neighbourhood`: see
      `ecglang.encoders.mixers`)."""
    lead = torch.stack([m[0] for m in maps]).mean(0)
    beats = [m[1] for m in maps]
    if any(b is None for b in beats):
        return {"lead_attention": lead, "beat_attention": None}
    beat = torch.stack(beats).mean(0)  # type: ignore[arg-type]
    return {"lead_attention": lead, "beat_attention": F.pad(beat, (0, n_beats - beat.shape[1]))}


class ResNet1dEncoder(nn.Module):
    """MERL-style ResNet1d-18 on the raw signal `[B, 12, T]` (MERL: 500 Hz, T = 5000).

    Stem conv 12→64 (kernel 7, stride 2) + BN + ReLU + max-pool, four stages of basic blocks (64, 128, 256,
    512 channels, stride 1, 2, 2, 2), then attention or average pooling over time → rhythm features
    `[B, 8 * width]`. Missing leads are zeroed before the stem. There are no beats, so beat/token outputs
    are None and the beat and token losses are skipped.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        w, k = int(cfg["width"]), int(cfg["kernel"])
        self.cfg = dict(cfg)
        self.stem = nn.Sequential(
            nn.Conv1d(N_LEADS, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm1d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        stages, c_in = [], w
        for i, n_blocks in enumerate(cfg["blocks"]):
            c_out = w * 2**i
            blocks = [BasicBlock1d(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, k)
                      for j in range(int(n_blocks))]  # fmt: skip
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.d_model = c_in
        self.pool = MaskedPool(c_in, "attention" if cfg["pooling"] == "attention" else "mean")
        self.drop = nn.Dropout(float(cfg["dropout"]))

    def forward(self, signal: Tensor, lead_mask: Tensor) -> dict:
        check_input("signal", signal, 3, (None, N_LEADS, None))
        check_input("lead_mask", lead_mask, 2, (signal.shape[0], N_LEADS))
        w = next(self.parameters()).dtype  # the weights' dtype (float32 unless the model was cast)
        x = signal.to(w) * lead_mask.to(w).unsqueeze(-1)
        h = self.stages(self.stem(x)).transpose(1, 2)  # [B, T', C]
        keep = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        return {"rhythm": self.drop(self.pool(h, keep)), "beats": None, "tokens": None, "beat_mask": None}


# `ecg_tower.type` -> tower class. A new tower registers here; configs name it by type.
ECG_TOWERS: dict[str, type[nn.Module]] = {
    "beat": BeatEcgEncoder,
    "resnet1d18": ResNet1dEncoder,
    "merl_resnet18": MerlResNetTower,
    "merl_vit_tiny": MerlVitTower,
}


def build_ecg_tower(cfg: Mapping[str, Any]) -> nn.Module:
    """The ECG tower of `cfg["type"]`, built from its config section."""
    try:
        tower_class = ECG_TOWERS[cfg["type"]]
    except KeyError:
        raise ConfigError(f"ecg_tower.type must be one of {sorted(ECG_TOWERS)}, got {cfg.get('type')!r}") from None
    return tower_class(cfg)


__all__ = ["ECG_TOWERS", "BeatEcgEncoder", "ResNet1dEncoder", "build_ecg_tower"]
