"""The knowledge encoder embeds texts in batches of one token count: sentence-transformers sorts a call's texts
by characters, which pads short-worded texts to long-worded ones. Real all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from ecglang.knowledge.index import KnowledgeIndex


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


def test_batches_hold_one_token_count_and_match_one_by_one(index: KnowledgeIndex, monkeypatch) -> None:
    encoder = index.encoder
    tokenizer = encoder.tokenizer
    # "st" and "block" are one token each: two texts per token count, of different character counts
    texts = [" ".join([w] * n + [end]) for n in range(1, 9) for w, end in (("st", "block"), ("block", "st"))]
    texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]
    assert sorted(texts, key=len) != sorted(texts, key=lambda t: len(tokenizer(t)["input_ids"]))

    alone = np.stack([index.embed([t])[0] for t in texts])
    batches: list[list[int]] = []
    encode = encoder.encode

    def spy(sentences, *args, **kwargs):
        batches.append(sorted({len(tokenizer(t)["input_ids"]) for t in sentences}))
        return encode(sentences, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", spy)
    together = index.embed(texts, batch_size=2)
    assert len(batches) == len(texts) // 2 and all(len(b) == 1 for b in batches), batches
    np.testing.assert_allclose(together, alone, atol=1e-5)
