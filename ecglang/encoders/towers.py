"""The towers: `BeatEcgEncoder` (beat-level ECG transformer), `ResNet1dEncoder` (MERL-style baseline),
`TextEncoder` (any transformers encoder, optional LoRA) and the projection heads.

Everything here is batched: beats of all leads go through the morphology CNN in one call and attention
runs over reshaped `[groups, sequence, d]` tensors, never a Python loop over beats or leads.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from ecglang.errors import ConfigError, EcgLangError, ModelLoadError

logger = logging.getLogger(__name__)

N_LEADS = 12


class ModelInputError(EcgLangError, ValueError):
    """A model input tensor is missing or has the wrong shape/dtype."""


# ---------------------------------------------------------------------------------------------- helpers
def _allow_any_if_none(keep: Tensor) -> Tensor:
    """Rows with no valid key would give softmax(all -inf) = NaN; let them attend everywhere instead.

    Their outputs are garbage but finite, and every consumer masks them out afterwards."""
    return keep | ~keep.any(dim=-1, keepdim=True)


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
        logits = self.score(x).squeeze(-1).masked_fill(~_allow_any_if_none(keep), float("-inf"))
        w = torch.softmax(logits, dim=-1) * keep.any(dim=-1, keepdim=True).to(x.dtype)  # all-masked → 0
        return (w.unsqueeze(-1) * x).sum(-2)


def _short_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float) -> Tensor:
    """Attention over short sequences, written out: `softmax(q kᵀ / √d, masked) v`.

    On CPU, `F.scaled_dot_product_attention` and `torch.softmax` are several times slower than these
    few ops when the key axis is short (12 leads, ~15 beats): their kernels pay a per-row set-up cost that
    dwarfs 12 exponentials (measured 5x on the spatial attention of ecglang-small, PyTorch 2.13). Every
    row has an allowed key (`_allow_any_if_none`), so the max is finite and no row divides by zero.
    """
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    w = (scores - scores.amax(-1, keepdim=True)).exp()
    w = w / w.sum(-1, keepdim=True)
    if dropout_p > 0:
        w = F.dropout(w, dropout_p)
    return w @ v


class SelfAttention(nn.Module):
    """Multi-head self-attention on `[G, S, d]` with a key-padding mask (`keep [G, S]`, True = real key).

    On CPU the short-sequence path `_short_attention` is used; elsewhere `F.scaled_dot_product_attention`.
    Both compute the same function."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        g, s, d = x.shape
        # Strided views [G, heads, S, d/heads]: the batched matmuls read them in place, no permuted copy.
        q, k, v = self.qkv(x).view(g, s, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        mask = _allow_any_if_none(keep)[:, None, None, :]  # [G, 1, 1, S]: True = may attend
        p = self.dropout if self.training else 0.0
        if x.device.type == "cpu":
            y = _short_attention(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(g, s, d))


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
        n = int(index.max()) + 1 if len(index) else 1
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


class FactorizedBlock(nn.Module):
    """One block of explicit factorised attention on the tokens of the real beats, `[R beats, 12 leads, d]`.

    1. spatial attention: within each beat, across its 12 lead tokens (key padding = lead mask);
    2. rhythm attention: across beats — per lead (`per_lead`, each lead attends over its own beats) or over
       beat summaries (`summary`, lead-pooled beats attend to each other and the result is broadcast back);
    3. a feed-forward layer. Pre-norm residuals throughout.

    Padded beats are never computed: they could only attend among themselves, and no real token attends
    to them, so leaving them out changes no real output and saves their share of the work.
    """

    def __init__(self, d: int, n_heads: int, mlp_ratio: float, dropout: float, rhythm: str) -> None:
        super().__init__()
        self.rhythm = rhythm
        self.norm_s, self.norm_r, self.norm_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.spatial = SelfAttention(d, n_heads, dropout)
        self.temporal = SelfAttention(d, n_heads, dropout)
        self.ffn = FeedForward(d, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, lead_keep: Tensor, layout: BeatLayout) -> Tensor:
        """`x [R, 12, d]`, `lead_keep [R, 12]` (the lead mask of each real beat's ECG)."""
        c, d = x.shape[1:]
        x = x + self.drop(self.spatial(self.norm_s(x), lead_keep))
        if self.rhythm == "per_lead":
            h = layout.pad(self.norm_r(x)).transpose(1, 2).reshape(layout.b * c, layout.n, d)
            temporal_keep = layout.keep[:, None, :].expand(layout.b, c, layout.n).reshape(layout.b * c, layout.n)
            y = self.temporal(h, temporal_keep).view(layout.b, c, layout.n, d).transpose(1, 2)
            x = x + self.drop(layout.take(y))
        else:
            summary = layout.pad(masked_mean(self.norm_r(x), lead_keep, dim=1))  # [B, n, d]
            x = x + self.drop(layout.take(self.temporal(summary, layout.keep))).unsqueeze(1)
        return x + self.drop(self.ffn(self.norm_f(x)))


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


def _check(name: str, x: Any, ndim: int, shape: Sequence[int | None]) -> Tensor:
    if not isinstance(x, Tensor):
        raise ModelInputError(f"model input {name!r} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim or any(s is not None and s != t for s, t in zip(shape, x.shape, strict=True)):
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ModelInputError(f"model input {name!r} must have shape {want}, got {list(x.shape)}")
    return x


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
        self.blocks = nn.ModuleList(
            FactorizedBlock(d, int(cfg["n_heads"]), float(cfg["mlp_ratio"]), float(cfg["dropout"]),
                            cfg["rhythm_attention"])
            for _ in range(int(cfg["n_layers"]))
        )  # fmt: skip
        self.out_norm = nn.LayerNorm(d)
        self.lead_pool = MaskedPool(d, cfg["pooling"])
        self.beat_pool = MaskedPool(d, cfg["pooling"])
        self.gradient_checkpointing = False  # recompute each block in backward (set by the trainer)
        self.static_shapes = False  # compute all beat slots (`BeatLayout.all_slots`); always so under torch.compile

    def validate(self, beats: Any, beat_mask: Any, lead_mask: Any, rr: Any, times: Any) -> None:
        beats = _check("beats", beats, 4, (None, None, N_LEADS, self.beat_len))
        b, n = beats.shape[:2]
        if n > self.max_beats:
            raise ModelInputError(f"{n} beats per ECG but the model's beat-position table has {self.max_beats}")
        _check("beat_mask", beat_mask, 2, (b, n))
        _check("lead_mask", lead_mask, 2, (b, N_LEADS))
        _check("rr", rr, 3, (b, n, 2))
        _check("times", times, 2, (b, n))

    def forward(
        self,
        beats: Tensor,
        beat_mask: Tensor,
        lead_mask: Tensor,
        rr: Tensor,
        times: Tensor,
        *,
        rhythm_only: bool = False,
    ) -> dict:
        """Features of a batch (see the class docstring). `rhythm_only=True` skips building the padded beat
        and token outputs (`beats`/`tokens` are None): what zero-shot scoring needs, at less memory traffic."""
        self.validate(beats, beat_mask, lead_mask, rr, times)
        beat_mask, lead_mask = beat_mask.bool(), lead_mask.bool()
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
            windows = layout.take(beats).float()
            feats = self.morphology(windows.reshape(-1, windows.shape[-1])).view(-1, N_LEADS, d)
            morph = feats * lead_keep[..., None].to(feats.dtype)
        else:
            feats = self.morphology(layout.take(beats)[lead_keep].float())  # only real (beat, lead) windows
            morph = feats.new_zeros(len(layout.batch), N_LEADS, d)
            morph[lead_keep] = feats

        per_beat = self.rr_mlp(self._rr_features(layout.take(rr).float()))  # [R, d]
        if self.index_embed is not None:
            per_beat = per_beat + self.index_embed.weight[layout.index]
        if self.time_mlp is not None:
            phase = 2 * math.pi * layout.take(times).float().unsqueeze(-1) * self.time_freqs
            per_beat = per_beat + self.time_mlp(torch.cat([phase.sin(), phase.cos()], -1))
        x = morph + self.lead_embed + per_beat.unsqueeze(1)
        x = self.embed_drop(self.embed_norm(x))
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, lead_keep, layout, use_reentrant=False)
            else:
                x = block(x, lead_keep, layout)
        tokens_r = self.out_norm(x)
        if dense:
            tokens_r = tokens_r * real[..., None].to(tokens_r.dtype)  # padded beats are exactly zero
        beats_r = self.lead_pool(tokens_r, lead_keep)  # [R, d]
        beat_feats = layout.pad(beats_r)  # [B, n, d]
        rhythm = self.beat_pool(beat_feats, layout.keep)  # [B, d]
        if rhythm_only:
            return {"rhythm": rhythm, "beats": None, "tokens": None, "beat_mask": beat_mask}
        # Outputs line up with the input's beat axis; padded beats are exactly zero.
        tokens = layout.pad(tokens_r, n_full)
        beat_feats = F.pad(beat_feats, (0, 0, 0, n_full - layout.n))
        return {"rhythm": rhythm, "beats": beat_feats, "tokens": tokens, "beat_mask": beat_mask}

    @staticmethod
    def _rr_features(rr: Tensor) -> Tensor:
        """(previous RR, next RR, log(next/prev)): rate and prematurity/compensatory pause of each beat."""
        prev, nxt = rr[..., 0].clamp_min(0.0), rr[..., 1].clamp_min(0.0)
        ratio = torch.log(nxt.clamp_min(0.05) / prev.clamp_min(0.05))
        return torch.stack([prev, nxt, ratio], -1)


class _BasicBlock1d(nn.Module):
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
            blocks = [_BasicBlock1d(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, k)
                      for j in range(int(n_blocks))]  # fmt: skip
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.d_model = c_in
        self.pool = MaskedPool(c_in, "attention" if cfg["pooling"] == "attention" else "mean")
        self.drop = nn.Dropout(float(cfg["dropout"]))

    def forward(self, signal: Tensor, lead_mask: Tensor) -> dict:
        _check("signal", signal, 3, (None, N_LEADS, None))
        _check("lead_mask", lead_mask, 2, (signal.shape[0], N_LEADS))
        x = signal.float() * lead_mask.to(torch.float32).unsqueeze(-1)
        h = self.stages(self.stem(x)).transpose(1, 2)  # [B, T', C]
        keep = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        return {"rhythm": self.drop(self.pool(h, keep)), "beats": None, "tokens": None, "beat_mask": None}


# ------------------------------------------------------------------------------------------- text tower
def resolve_text_model(name_or_path: str) -> str:
    """Resolve `"package:<module>"` to the folder its `get_model_path()` returns; Hub ids and folders pass."""
    if name_or_path.startswith("package:"):
        module_name = name_or_path.split(":", 1)[1]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelLoadError(
                name_or_path, f"text model package {module_name!r} is not installed (pip install {module_name})"
            ) from exc
        if not hasattr(module, "get_model_path"):
            raise ModelLoadError(name_or_path, f"package {module_name!r} has no get_model_path()")
        return str(module.get_model_path())
    return name_or_path


# Encoder layer naming per family, for LoRA "qv" targets.
_QV_NAMES = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"))


def _qv_targets(model: nn.Module) -> list[str]:
    leaf_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for q, v in _QV_NAMES:
        if q in leaf_names and v in leaf_names:
            return [q, v]
    raise ConfigError(
        f"cannot find query/value projections in {type(model).__name__} for LoRA; set "
        "text_tower.lora.target_modules to 'all-linear' or a list of module names"
    )


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layer list of an encoder (the ModuleList as long as num_hidden_layers)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n:
            return m
    raise ConfigError(f"cannot find the {n} transformer layers of {type(model).__name__} to freeze")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the report's sentences, as split by `ecglang.text.reports.split_sentences`.

    Its pieces are stripped substrings in order, so each is found after the previous one. Blank text is
    one (empty) sentence, so every report has at least one span."""
    from ecglang.text.reports import split_sentences

    spans, cursor = [], 0
    for piece in split_sentences(text):
        start = text.find(piece, cursor)
        if start < 0:  # not a verbatim substring: keep the rest of the text as one sentence
            break
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    return spans or [(0, len(text))]


class TextEncoder(nn.Module):
    """A transformers encoder (`AutoModel`) for reports: token, pooled and per-sentence features.

    Modes (`text_tower.finetune`): `"full"` (all weights train, optionally the first `freeze_layers` layers
    frozen), `"lora"` (base frozen, a peft LoRA adapter trains), `"frozen"` (nothing trains).
    The model's own pooler head is removed: it is unused here and would otherwise hold weights that never
    receive gradients.
    """

    def __init__(self, cfg: Mapping[str, Any], hf_config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.cfg = dict(cfg)
        self.source = resolve_text_model(cfg["name_or_path"])
        try:
            if hf_config is not None:  # weights come from the ecglang checkpoint; only build the architecture
                conf = AutoConfig.for_model(**dict(hf_config))
                model = AutoModel.from_config(conf)
            else:
                model = AutoModel.from_pretrained(self.source)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(self.source, f"cannot load the text model: {exc}") from exc
        if isinstance(getattr(model, "pooler", None), nn.Module):
            model.pooler = None
        self.hidden_size = int(model.config.hidden_size)
        mode = cfg["finetune"]
        if mode in ("lora", "frozen"):
            model.requires_grad_(False)
        elif int(cfg["freeze_layers"]) > 0:
            layers = _encoder_layers(model)
            n = int(cfg["freeze_layers"])
            if n > len(layers):
                raise ConfigError(f"text_tower.freeze_layers={n} but the text model has {len(layers)} layers")
            for name, module in model.named_children():
                if "embed" in name:
                    module.requires_grad_(False)
            for layer in layers[:n]:
                layer.requires_grad_(False)
        if mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = cfg["lora"]
            targets = lora["target_modules"]
            targets = _qv_targets(model) if targets == "qv" else targets
            peft_cfg = LoraConfig(
                r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                target_modules=targets, bias="none",
            )  # fmt: skip
            model = get_peft_model(model, peft_cfg)
        self.model = model
        self.tokenizer = None  # set by EcgLangModel (from the checkpoint folder or the text model source)

    @property
    def is_lora(self) -> bool:
        return self.cfg["finetune"] == "lora"

    @property
    def base_model(self) -> nn.Module:
        """The underlying transformers model (inside the peft wrapper when LoRA is on)."""
        return self.model.get_base_model() if self.is_lora else self.model

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize whole reports once; map every token to its sentence through the character offsets.

        Returns `input_ids`, `attention_mask` `[B, T]`, `token_mask` `[B, T]` (real, non-special tokens) and
        `sentence_ids` `[B, T]` (sentence index of each token, -1 for special/padding tokens).
        """
        if self.tokenizer is None:
            raise ModelLoadError(self.source, "no tokenizer attached to the text tower")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ModelInputError("texts must be a list of strings")
        if not texts:
            raise ModelInputError("texts is empty")
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=int(self.cfg["max_length"]),
            return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="np",
        )  # fmt: skip
        attention = enc["attention_mask"].astype(bool)
        token_mask = attention & ~enc["special_tokens_mask"].astype(bool)
        starts = enc["offset_mapping"][..., 0]
        max_s = int(self.cfg["max_sentences"])
        sentence_ids = np.full(starts.shape, -1, dtype=np.int64)
        for i, text in enumerate(texts):
            span_starts = np.array([s for s, _ in sentence_spans(text)])
            ids = np.searchsorted(span_starts, starts[i], side="right") - 1
            sentence_ids[i] = np.where(token_mask[i], np.clip(ids, 0, max_s - 1), -1)
        return {
            "input_ids": torch.from_numpy(enc["input_ids"].astype(np.int64)),
            "attention_mask": torch.from_numpy(attention),
            "token_mask": torch.from_numpy(token_mask),
            "sentence_ids": torch.from_numpy(sentence_ids),
        }

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_mask: Tensor | None = None,
        sentence_ids: Tensor | None = None,
    ) -> dict:  # fmt: skip
        _check("input_ids", input_ids, 2, (None, None))
        _check("attention_mask", attention_mask, 2, tuple(input_ids.shape))
        attention_mask = attention_mask.bool()
        token_mask = attention_mask if token_mask is None else token_mask.bool() & attention_mask
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state
        if self.cfg["pooling"] == "cls":
            pooled = hidden[:, 0]
        else:  # mean over all attended tokens, as sentence-transformers' mean pooling
            pooled = masked_mean(hidden, attention_mask, dim=1)
        if sentence_ids is None:  # pre-tokenized input without sentence ids: the whole report is one sentence
            sentence_ids = torch.where(token_mask, 0, -1)
        n_sent = max(int(sentence_ids.max()) + 1, 1)
        onehot = (sentence_ids.unsqueeze(1) == torch.arange(n_sent, device=hidden.device)[None, :, None]).to(
            hidden.dtype
        )  # [B, S, T]
        count = onehot.sum(-1)
        sentences = onehot @ hidden / count.clamp_min(1.0).unsqueeze(-1)
        return {
            "pooled": pooled,
            "tokens": hidden,
            "token_mask": token_mask,
            "sentences": sentences,
            "sentence_mask": count > 0,
        }


# ------------------------------------------------------------------------------------------ projection
class Projection(nn.Module):
    """Map tower features to the shared space; L2-normalise (config `projection.normalize`)."""

    def __init__(self, d_in: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        dim = int(cfg["dim"])
        self.normalize = bool(cfg["normalize"])
        if cfg["type"] == "mlp":
            self.net: nn.Module = nn.Sequential(nn.Linear(d_in, d_in), nn.GELU(), nn.Linear(d_in, dim))
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
    "BeatEcgEncoder",
    "MaskedPool",
    "ModelInputError",
    "Projection",
    "ResNet1dEncoder",
    "TextEncoder",
    "count_parameters",
    "resolve_text_model",
    "sentence_spans",
]
