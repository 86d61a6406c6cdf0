"""Explanations: which beats and leads a score came from (no gradients).

A beat's contribution is the cosine between its beat embedding and the label embedded through the sentence
head, which the beat-level loss aligned with beats: cheap, exact for what the model computed, and defined for
every beat. A lead's contribution is what leaving it out does to the score (occlusion, `lead_occlusion`): the
score minus the score of the same beats with that lead masked, as a record without the lead is encoded. (It
used to be the mean cosine of the lead's token embeddings with the sentence-head label embedding; the token
head is aligned with report tokens, not with that head, and on 8 PTB-XL records × 4 labels that measure ranked
the leads against what removing them did: Spearman −0.45 with the change in the score.)

Beside them, when the model computed them (`output_attentions`), the attention maps of the beat tower
(BEAT-Net): which leads and which beats the tower attended to (`ecglang.encoders.ecg_encoders.attention_maps`);
these are the same for every label. With a prototype index (ProtoECGNet), the reference beats nearest to the
label's most contributing beat (`ecglang.embeddings.prototypes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ecglang.beats.tokenize import BeatTokens
from ecglang.embeddings.pipeline import encode_rhythm, encoding
from ecglang.embeddings.prototypes import PrototypeMatch
from ecglang.encoders.ecg_processing import demographic_tensors
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.scores.labels import LabelSpec


@dataclass
class Explanation:
    """Why one record got its score for one label.

    `signal`: the record as the model saw it (preprocessed, at `fs`) and `tokens` its beats, kept for the
    records a caller asked figures for (`keep_signals`), else None. `lead_attention [12]` / `beat_attention
    [n_beats]`: the tower's attention maps (None when not computed, or for a rhythm mixer without attention
    weights). `prototype_beat` and `prototypes`: the beat with the largest contribution and its nearest
    reference beats, when the classifier has a prototype index."""

    record_id: str
    label: str
    score: float  # the cosine the contributions decompose (in every mode; `result.scores` holds the mode's score)
    beat_contributions: np.ndarray  # [n_beats]
    lead_contributions: np.ndarray  # [12]: score minus the score without the lead; NaN for missing leads
    rpeaks: np.ndarray  # [n_beats] sample indices at `fs`
    fs: float
    snippets: list[dict[str, Any]]
    source: str | None = None  # the record's file, when it came from one
    signal: Ecg | None = None
    tokens: BeatTokens | None = None
    lead_attention: np.ndarray | None = None
    beat_attention: np.ndarray | None = None
    prototype_beat: int | None = None
    prototypes: list[PrototypeMatch] | None = None

    def top_leads(self, n: int = 3) -> list[str]:
        """The (at most) `n` leads that raise the score most: positive contributions, largest first. A lead with a
        negative one lowers the score (it is higher without the lead): `lowering_leads`."""
        return self._ranked_leads(n, 1.0)

    def lowering_leads(self, n: int = 3) -> list[str]:
        """The (at most) `n` leads whose removal raises the score most: negative contributions, lowest first."""
        return self._ranked_leads(n, -1.0)

    def _ranked_leads(self, n: int, sign: float) -> list[str]:
        signed = sign * np.asarray(self.lead_contributions, dtype=float)
        signed = np.where(np.isfinite(signed), signed, -np.inf)  # a missing lead (NaN) neither raises nor lowers
        return [CANONICAL_LEADS[i] for i in np.argsort(-signed, kind="stable")[:n] if signed[i] > 0]


def explain_record(
    out: Any,
    row: int,
    view: tuple[Ecg, BeatTokens],
    rid: str,
    cosines: np.ndarray,
    specs: Mapping[str, LabelSpec],
    sent_emb: torch.Tensor | None,
    keep_signal: bool = False,
    beat_prototypes: Sequence[list[PrototypeMatch]] | None = None,
    lead_scores: np.ndarray | None = None,
    lead_order: Sequence[int] | None = None,
) -> dict[str, Explanation]:
    """The explanations of batch row `row` (of `encode_ecg` output `out`) for every label in `specs`.

    `view`: the row's prepared record and beats; `cosines`: its `[n_labels]` scores; `sent_emb`: the labels'
    sentence-head embeddings (None or empty for a model without beat-level outputs: beat contributions are NaN).
    `beat_prototypes`: the nearest reference beats of each of the row's beats (`PrototypeIndex.search`).
    `lead_scores`: `[n_labels, 12]` lead contributions (`lead_occlusion`); None: NaN. `lead_order`: the model's
    input row of each lead (`LEAD_ORDERS` of the processor's `lead_order`; None: canonical): the lead attention
    comes back in that order and is put back in the canonical one the explanation is labelled in."""
    ecg, tokens = view
    result = {}
    n = int(tokens.n_beats)
    lead_att = beat_att = None
    if getattr(out, "lead_attention", None) is not None:
        lead_att = out.lead_attention[row].float().cpu().numpy()
        if lead_order is not None and list(lead_order) != list(range(len(CANONICAL_LEADS))):
            canonical = np.empty_like(lead_att)
            canonical[..., np.asarray(lead_order)] = lead_att  # model row i holds canonical lead lead_order[i]
            lead_att = canonical
    if getattr(out, "beat_attention", None) is not None:
        beat_att = out.beat_attention[row, :n].float().cpu().numpy()
    have_beats = out.beat_embeds is not None and sent_emb is not None and sent_emb.numel() > 0
    for j, (lab, spec) in enumerate(specs.items()):
        beat_c = np.full(n, np.nan, np.float32)
        lead_c = np.full(len(CANONICAL_LEADS), np.nan, np.float32)
        if have_beats:
            q = sent_emb[j]
            beats = unit_rows(out.beat_embeds[row, :n])
            beat_c = (beats @ q).numpy()
        if lead_scores is not None:
            lead_c = np.asarray(lead_scores[j], dtype=np.float32)
        best = most_contributing_beat(beat_c, beat_att) if beat_prototypes and n else None
        result[lab] = Explanation(
            rid, lab, float(cosines[j]), beat_c, lead_c, np.asarray(tokens.rpeaks[:n]), float(tokens.fs),
            spec.snippets, ecg.metadata.get("source_path"),
            ecg if keep_signal else None, tokens if keep_signal else None, lead_att, beat_att,
            best, None if best is None else list(beat_prototypes[best]),
        )  # fmt: skip
    return result


def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Float32 CPU rows of unit length. Scores are cosines, as the losses that trained the model: a projection
    with `normalize: false` leaves its embeddings' lengths, which would otherwise weigh in every score."""
    return torch.nn.functional.normalize(embeddings.float().cpu(), dim=-1)


def most_contributing_beat(beat_contributions: np.ndarray, beat_attention: np.ndarray | None = None) -> int:
    """The beat whose embedding is most similar to the label; without contributions (a model without beat
    outputs), the most attended beat; else the first."""
    for weights in (beat_contributions, beat_attention):
        if weights is not None and len(weights) and np.isfinite(weights).any():
            return int(np.nanargmax(weights))
    return 0


def lead_occlusion(
    model: Any,
    processor: Any,
    view: tuple[Ecg, BeatTokens],
    label_emb: torch.Tensor,
    scores: np.ndarray,
    precision: str = "fp32",
) -> np.ndarray:
    """`[n_labels, 12]`: each label's score (`scores`, the record's `[n_labels]` cosines as already computed) minus
    its score with one lead left out, NaN for missing leads.

    The record's beats are kept (the same R peaks) and each present lead in turn is masked and zeroed, as the
    processor encodes a record that lacks it; all of them in one batch through the rhythm path."""
    ecg, tokens = view
    present = np.flatnonzero(tokens.lead_mask)
    out = np.full((label_emb.shape[0], len(CANONICAL_LEADS)), np.nan, np.float32)
    if present.size == 0:
        return out
    variants = []
    for lead in present:
        beats = tokens.beats.copy()
        beats[:, lead] = 0.0
        mask = tokens.lead_mask.copy()
        mask[lead] = False
        variants.append(dataclasses.replace(tokens, beats=beats, lead_mask=mask))
    signals = None
    if processor.return_signal:
        signals = [ecg.signal.astype(np.float32, copy=True) for _ in variants]
        for signal, lead in zip(signals, present, strict=True):
            signal[lead] = 0.0
    batch = processor.collate(variants, signals)
    batch.update(demographic_tensors([ecg.metadata] * len(variants)))
    with encoding(model.device.type, precision):
        rhythm, _ = encode_rhythm(model, batch)
    without = (unit_rows(rhythm) @ label_emb.T).numpy()  # [n_present, n_labels]
    out[:, present] = (np.asarray(scores, dtype=np.float32)[None, :] - without).T
    return out
