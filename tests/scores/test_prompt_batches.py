"""Prompt embedding batches hold texts of one token count (`embed_texts` pads each batch to its longest text)."""

from __future__ import annotations

import numpy as np
import torch

from ecglang.scores.labels import by_token_count, embed_texts, prompt_cache

# Character count and token count disagree: a long run of one common word is few characters per token,
# abbreviations and digits split into many pieces per character.
TEXTS = ["st st st st st st st st st st st st", "1avb 2avb 3avb", "normal ecg", "x7q9z", "sinus rhythm present"]


def token_counts(model, texts):
    return [int(model.tokenize([t])["attention_mask"].sum()) for t in texts]


def test_order_follows_tokens_not_characters(model):
    counts = dict(zip(TEXTS, token_counts(model, TEXTS), strict=True))
    assert sorted(TEXTS, key=len) != sorted(TEXTS, key=counts.get)  # the texts tell the two orders apart
    ordered = by_token_count(model, TEXTS, chunk=2)  # chunks: the counts of several tokenizer calls join up
    assert sorted(ordered) == sorted(TEXTS)
    assert [counts[t] for t in ordered] == sorted(counts.values())


def test_batches_pad_little_and_embeddings_match_one_by_one(model, monkeypatch):
    # "st" and "block" are one token each: a pair of texts per token count, of different character counts
    texts = [" ".join([w] * n + [end]) for n in range(1, 9) for w, end in (("st", "block"), ("block", "st"))]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    padded = []
    encode = model.encode_text

    def spy(batch):
        enc = model.tokenize(batch)
        padded.append(enc["attention_mask"].numel() - int(enc["attention_mask"].sum()))
        return encode(batch)

    monkeypatch.setattr(model, "encode_text", spy)
    prompt_cache(model).clear()
    together = embed_texts(model, texts, batch_size=2, progress=False)
    # sorted by token count, every batch of 2 holds the two texts of one count: no padding at all
    assert len(padded) == len(texts) // 2 and sum(padded) == 0
    prompt_cache(model).clear()
    with torch.inference_mode():
        alone = np.stack([embed_texts(model, [t], progress=False)[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
