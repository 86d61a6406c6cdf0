"""The three contrastive losses of ecglang, and the cross-process gather they share.

- rhythm: symmetric CLIP InfoNCE between rhythm (whole-ECG) and report embeddings;
- beat: GLoRIA-style local alignment — each report sentence attends over the ECG's beats;
- token: FILIP-style late interaction between (beat, lead) tokens and report tokens.

Every loss is a CLIP loss over an ECG × report score matrix; they differ only in how a pair is scored.
Why these choices is written down in docs/MODEL.md.

Score functions return two `[B_ecg, B_text]` matrices: `s_e` (read row-wise, ECG → report) and `s_t`
(read column-wise, report → ECG). They are the same matrix for the symmetric scores (rhythm, beat) and
differ for FILIP, whose two directions aggregate over different token sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ecglang.encoders.layers import allow_any_if_none, masked_mean, used_beat_slots

LOSS_NAMES = ("rhythm", "beat", "token")

# --------------------------------------------------------------------------------------- distributed


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _all_gather_sizes(shape: torch.Size, device: torch.device) -> list[list[int]]:
    local = torch.tensor(list(shape), dtype=torch.long, device=device)
    sizes = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [s.tolist() for s in sizes]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from every process along dim 0, keeping the autograd graph of the local slot.

    `torch.distributed.all_gather` returns tensors that autograd knows nothing about; we put this process's
    own tensor back in its slot so gradients flow into the local shard (the other shards act as constants,
    which is correct: each process computes the gradient w.r.t. its own samples and DDP averages the
    parameter gradients). Ranks may hold different batch sizes and different non-batch sizes (e.g. text
    length): every dim is zero/False-padded to the largest before the gather, and the batch dim is cut back
    afterwards, so the result has `sum(B_r)` rows in rank order. Single process: returns `x` unchanged.
    """
    if world_size() == 1:
        return x
    sizes = _all_gather_sizes(x.shape, x.device)
    max_shape = [max(s[d] for s in sizes) for d in range(x.ndim)]
    as_bool = x.dtype == torch.bool
    local = x.to(torch.uint8) if as_bool else x  # gloo has no bool collectives
    pad = []
    for d in reversed(range(x.ndim)):
        pad += [0, max_shape[d] - x.shape[d]]
    padded = F.pad(local, pad) if any(pad) else local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.detach().contiguous())
    parts[rank()] = padded  # the one with a graph
    out = torch.cat([p[: s[0]] for p, s in zip(parts, sizes, strict=True)], dim=0)
    return out.bool() if as_bool else out


def batch_offset(local_batch: int, device: torch.device | None = None) -> int:
    """Index of this process's first sample in the gathered batch (sum of lower ranks' batch sizes)."""
    if world_size() == 1:
        return 0
    sizes = _all_gather_sizes(torch.Size([local_batch]), device or torch.device("cpu"))
    return sum(s[0] for s in sizes[: rank()])


# ------------------------------------------------------------------------------------------ the losses


def clip_loss(
    logits_per_ecg: Tensor, logits_per_text: Tensor, labels: Tensor | None = None, targets: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE: mean of cross-entropy ECG→report (rows of `logits_per_ecg`) and report→ECG.

    Both logits are `[rows, candidates]`; `labels[r]` is the column of row r's positive (default: r).
    `targets` (`[rows, candidates]`, rows summing to 1) replaces `labels`: soft targets (`report_targets`),
    one matrix for both directions (it is built from a symmetric similarity)."""
    if targets is not None:
        labels = targets.to(logits_per_ecg.dtype)
    elif labels is None:
        labels = torch.arange(logits_per_ecg.shape[0], device=logits_per_ecg.device)
    return 0.5 * (F.cross_entropy(logits_per_ecg, labels) + F.cross_entropy(logits_per_text, labels))


def report_targets(rows: Tensor, columns: Tensor, weight: float, temperature: float, offset: int = 0) -> Tensor:
    """`[R, C]` soft targets: `(1 - weight)` on each row's own pair (column `r + offset`) and `weight` spread
    over the columns by `softmax(cos(report_r, report_c) / temperature)`, from the reports' text features.

    Why: PTB-XL's 309 sample training reports hold 148 distinct texts, and many of the others say the same in
    other words ("sinus rhythm, otherwise normal ECG"); CLIP's one-hot targets make those pairs negatives of
    each other. (Word-for-word equal reports alone would change nothing: their columns are equal, so the loss
    and its gradient are the same whichever of them is the target.) Features are used detached: the targets
    do not train the text tower."""
    a, b = F.normalize(rows.detach().float(), dim=-1), F.normalize(columns.detach().float(), dim=-1)
    soft = torch.softmax(a @ b.T / temperature, dim=-1)
    own = torch.zeros_like(soft)
    own[torch.arange(len(a), device=own.device), torch.arange(len(a), device=own.device) + offset] = 1.0
    return (1.0 - weight) * own + weight * soft


def rhythm_scores(ecg: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarity of global embeddings `[Be, D]`, `[Bt, D]` → `[Be, Bt]` (both directions)."""
    s = F.normalize(ecg, dim=-1) @ F.normalize(text, dim=-1).T
    return s, s


def unit_float32(x: Tensor) -> Tensor:
    """`x / |x|` along the last axis, in float32 at least (float64 stays). Padded beat and token slots are zero
    vectors, and `F.normalize`'s eps (1e-12) is 0 in float16: a float16 model's zero rows became 0/0 = NaN, which
    reached the beat and token losses (through `attn * sim` and the max). In float32 they stay 0."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


def _rows_per_chunk(total_rows: int, elements_per_row: int, budget: int) -> int:
    return max(1, min(total_rows, budget // max(1, elements_per_row)))


def beat_scores(
    beats: Tensor,
    beat_mask: Tensor,
    sentences: Tensor,
    sentence_mask: Tensor,
    temperature: float = 0.1,
    gamma: float = 5.0,
    chunk_elements: int = 2**24,
) -> tuple[Tensor, Tensor]:
    """GLoRIA-style local alignment score between every ECG (beats `[Be, N, D]`) and report (`[Bt, S, D]`).

    For ECG i and report j: each valid sentence s attends over i's valid beats,
    `a = softmax(cos(sent_s, beat_n) / temperature)`, giving a context `c_s = Σ_n a_n beat_n`; the sentence
    scores `cos(sent_s, c_s)`; sentences are aggregated with a log-mean-exp of sharpness `gamma`,
    `score = (1/γ) log((1/S_j) Σ_s exp(γ cos_s))` — a soft maximum over sentences; the `1/S_j` keeps reports
    with many sentences from scoring higher against every ECG. Reports without a valid sentence score 0.

    `|c_s|` is computed from the beat Gram matrix (`aᵀ G a`) so no `[Be, Bt, S, D]` context tensor is built.
    """
    beats, sentences = unit_float32(beats), unit_float32(sentences)
    beat_keep = allow_any_if_none(beat_mask.bool())
    sent_keep = sentence_mask.bool()
    n_sent = sent_keep.sum(-1)  # [Bt]
    be, n = beats.shape[:2]
    bt, s = sentences.shape[:2]
    rows = _rows_per_chunk(be, bt * s * n * 2, chunk_elements)
    out = []
    for start in range(0, be, rows):
        b, keep = beats[start : start + rows], beat_keep[start : start + rows]
        sim = torch.einsum("jsd,ind->ijsn", sentences, b)  # [c, Bt, S, N]
        attn = torch.softmax((sim / temperature).masked_fill(~keep[:, None, None, :], float("-inf")), dim=-1)
        dot = (attn * sim).sum(-1)  # sentence · context
        gram = b @ b.transpose(1, 2)  # [c, N, N]
        ctx_sq = (torch.einsum("ijsn,inm->ijsm", attn, gram) * attn).sum(-1)
        cos = dot / ctx_sq.clamp_min(1e-12).sqrt()
        z = (gamma * cos).masked_fill(~sent_keep[None, :, :], float("-inf"))
        lme = torch.logsumexp(z, dim=-1) - n_sent.clamp_min(1).to(z.dtype).log()[None, :]
        out.append(torch.where(n_sent[None, :] > 0, lme / gamma, torch.zeros_like(lme)))
    score = torch.cat(out, 0)
    return score, score


def _masked_mean_last(x: Tensor, keep: Tensor) -> Tensor:
    """`masked_mean` over the last axis of a tensor without a feature axis."""
    return masked_mean(x.unsqueeze(-1), keep, dim=-2).squeeze(-1)


def token_scores(
    ecg_tokens: Tensor,
    ecg_mask: Tensor,
    text_tokens: Tensor,
    text_mask: Tensor,
    chunk_elements: int = 2**24,
) -> tuple[Tensor, Tensor]:
    """FILIP late interaction between ECG tokens `[Be, K, D]` and report tokens `[Bt, L, D]`.

    `s_e[i, j]` = mean over i's valid ECG tokens of the max cosine over j's valid report tokens;
    `s_t[i, j]` = mean over j's valid report tokens of the max cosine over i's valid ECG tokens.
    The `[c, Bt, K, L]` similarity is built for chunks of ECGs with at most `chunk_elements` floats; `max`
    (not `amax`) keeps only indices for backward, so the chunk is freed after its reduction.
    """
    ecg_tokens, text_tokens = unit_float32(ecg_tokens), unit_float32(text_tokens)
    ecg_keep, text_keep = ecg_mask.bool(), text_mask.bool()
    ecg_any, text_any = allow_any_if_none(ecg_keep), allow_any_if_none(text_keep)
    be, k = ecg_tokens.shape[:2]
    bt, length = text_tokens.shape[:2]
    rows = _rows_per_chunk(be, bt * k * length, chunk_elements)
    s_e, s_t = [], []
    for start in range(0, be, rows):
        sl = slice(start, start + rows)
        sim = torch.einsum("ikd,jld->ijkl", ecg_tokens[sl], text_tokens)  # [c, Bt, K, L]
        best_text = sim.masked_fill(~text_any[None, :, None, :], float("-inf")).max(-1).values  # [c, Bt, K]
        s_e.append(_masked_mean_last(best_text, ecg_keep[sl][:, None, :]))
        best_ecg = sim.masked_fill(~ecg_any[sl][:, None, :, None], float("-inf")).max(-2).values  # [c, Bt, L]
        s_t.append(_masked_mean_last(best_ecg, text_keep[None, :, :]))
    return torch.cat(s_e, 0), torch.cat(s_t, 0)


ScoreFn = Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, Tensor]]


def contrastive_loss(
    score_fn: ScoreFn,
    ecg: tuple[Tensor, ...],
    text: tuple[Tensor, ...],
    logit_scale: Tensor,
    local_loss: bool = False,
    soft: tuple[Tensor, float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """CLIP loss of `score_fn` over the (gathered) batch. Returns `(loss, local logits_per_ecg)`.

    `soft`: `(report text features [B, H], weight, temperature)` for `report_targets`; None: one-hot targets.

    Single process: the `[B, B]` matrices of the batch. Several processes (`torch.distributed` initialised):
    - `local_loss=False` (default): every process gathers all ECG and report tensors and computes the full
      `[B_all, B_all]` loss, with gradients flowing into its own shard only. The *sum* over processes of
      those gradients is the global-batch gradient; DDP *averages*, so the trainer (`ecglang.training.trainer`)
      backpropagates `world_size × loss` and divides the gradients of the loss module's own parameters
      (the logit scales, which every process sees whole) by `world_size`.
    - `local_loss=True`: each process computes only its own rows (`[b, B_all]`: its ECGs against all reports
      and its reports against all ECGs), labels offset by its position. Cheaper (b × B_all instead of
      B_all²), but the terms where this process's samples act as negatives in other processes' rows give
      no gradient here, so the gradient is an approximation of the global loss's.
    """
    if world_size() == 1:
        s_e, s_t = score_fn(ecg, text)
        targets = None if soft is None else report_targets(soft[0], soft[0], soft[1], soft[2])
        return clip_loss(logit_scale * s_e, logit_scale * s_t.T, targets=targets), logit_scale * s_e
    ecg_all = tuple(gather_with_grad(t) for t in ecg)
    text_all = tuple(gather_with_grad(t) for t in text)
    features_all = None if soft is None else gather_with_grad(soft[0].detach())
    b = ecg[0].shape[0]
    offset = batch_offset(b, ecg[0].device)
    if local_loss:
        labels = torch.arange(b, device=ecg[0].device) + offset
        targets = None if soft is None else report_targets(soft[0], features_all, soft[1], soft[2], offset)
        s_e, _ = score_fn(ecg, text_all)  # [b, B_all]
        _, s_t = score_fn(ecg_all, text)  # [B_all, b]
        loss = clip_loss(logit_scale * s_e, logit_scale * s_t.T, labels, targets)
        return loss, logit_scale * s_e[:, offset : offset + b]
    s_e, s_t = score_fn(ecg_all, text_all)
    local_logits = logit_scale * s_e[offset : offset + b, offset : offset + b]
    targets = None if soft is None else report_targets(features_all, features_all, soft[1], soft[2])
    return clip_loss(logit_scale * s_e, logit_scale * s_t.T, targets=targets), local_logits


class EcgLangLoss(nn.Module):
    """Weighted sum of the active losses, each with its own learnable logit scale.

    Logit scales start at `ln(1/0.07)` and are used as `exp(min(scale, ln 100))` — CLIP's clamp: once the
    temperature reaches 1/100 it stops sharpening (the clamp also stops its gradient, as in CLIP).
    """

    def __init__(self, cfg: Mapping[str, Any], active: list[str]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.weights = {name: float(cfg["weights"][name]) for name in active}
        init = float(cfg["logit_scale_init"])
        # "rhythm" always has a scale: it also scales `logits_per_ecg` of the model output.
        names = dict.fromkeys(["rhythm", *active])
        self.logit_scale = nn.ParameterDict({name: nn.Parameter(torch.tensor(init)) for name in names})

    def scale(self, name: str) -> Tensor:
        return self.logit_scale[name].clamp(max=float(self.cfg["logit_scale_max"])).exp()

    def forward(self, ecg_out: Mapping[str, Any], text_out: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """`ecg_out`/`text_out`: EcgEncoderOutput / TextEncoderOutput (or dicts with the same keys).

        Returns `(total, {"rhythm": ..., "beat": ..., "token": ...})` (only the active losses)."""
        cfg, local = self.cfg, bool(self.cfg["local_loss"])
        chunk = int(cfg["token_chunk_elements"])
        soft = None
        if float(cfg.get("report_targets", 0.0)) > 0 and text_out.get("text_features") is not None:
            soft = (text_out["text_features"], float(cfg["report_targets"]), float(cfg["report_target_temperature"]))
        losses: dict[str, Tensor] = {}
        if "rhythm" in self.weights:
            losses["rhythm"], _ = contrastive_loss(
                lambda e, t: rhythm_scores(e[0], t[0]),
                (ecg_out["rhythm_embeds"],), (text_out["text_embeds"],), self.scale("rhythm"), local, soft,
            )  # fmt: skip
        if "beat" in self.weights or "token" in self.weights:
            # Beats after the batch's last real beat are padding: drop them before the B×B score tensors.
            n = used_beat_slots(ecg_out["beat_mask"])
            beat_mask = ecg_out["beat_mask"][:, :n]
        if "beat" in self.weights:
            losses["beat"], _ = contrastive_loss(
                lambda e, t: beat_scores(*e, *t, float(cfg["beat_attention_temperature"]),
                                         float(cfg["beat_gamma"]), chunk),
                (ecg_out["beat_embeds"][:, :n], beat_mask),
                (text_out["sentence_embeds"], text_out["sentence_mask"]),
                self.scale("beat"), local, soft,
            )  # fmt: skip
        if "token" in self.weights:
            tok = ecg_out["token_embeds"][:, :n]
            b, n, c, d = tok.shape
            keep = beat_mask[:, :, None] & ecg_out["lead_mask"][:, None, :]
            losses["token"], _ = contrastive_loss(
                lambda e, t: token_scores(*e, *t, chunk),
                (tok.reshape(b, n * c, d), keep.reshape(b, n * c)),
                (text_out["token_embeds"], text_out["token_mask"]),
                self.scale("token"), local, soft,
            )  # fmt: skip
        total = sum(self.weights[k] * v for k, v in losses.items())
        return total, losses
