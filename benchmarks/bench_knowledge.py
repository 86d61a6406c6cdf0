"""Knowledge retrieval: the FAISS query per label over 10,000 snippets, and the index build time.

The 10,000 snippets are the bundled knowledge base (`KnowledgeBase.load()`, 203 snippets) paraphrase-
jittered: each variant keeps the title, aliases, codes and source of its original, reorders the text's
clauses, swaps terms for synonyms ("ms" → "milliseconds", "ECG" → "electrocardiogram", ...) and adds a
neutral lead-in, so every document is distinct and still says the same thing.

Rows:
- build: `KnowledgeIndex.build` (sentence-transformers embedding of every document + the FAISS index),
  timed once in full mode (it takes minutes), with the embedding's FLOPs (`FlopCounterMode` on a sample,
  scaled to the corpus's tokens) against the fp32 matmul peak of this machine: the lower bound on the time
  any exact fp32 run of that encoder needs here. The same bound in bfloat16 (its matmul peak measured too)
  and a bfloat16 embedding of a sample of the documents show that half precision does not reach the target
  either. The FAISS part alone is timed for all three index types.
- query: one FAISS search per label (the label's query vector → its k nearest snippets) over the flat,
  IVF and HNSW indexes; `retrieve_for_label` per label with the query embedding cached (every zero-shot
  call after the first) and uncached (the first call: embedding the label name and its prompts).
- quality: the hybrid retrieval on the bundled base: precision@3, off-label rate and latency per label on
  the evaluation set (`tests/knowledge/retrieval_eval.jsonl`) and on the SNOMED CT names that a snippet's codes
  cover (issue 14's 92; 94 since the clinical review, 104 since the second, 106 since its follow-up), and the
  batched retrieval of 10,000 labels (`many_labels`).

`labels`: 10,000 of those labels with knowledge on, through the real `ecglang zero-shot` command on two records
(a fresh process: start-up, retrieval for every label, prompt embedding and scoring inside the time; the index
comes from the harness's cache, as a user's first run leaves it). Target (issue 14): under 60 s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ecglang.knowledge.base import KnowledgeBase, Snippet, split_criteria
from ecglang.knowledge.index import KnowledgeIndex
from ecglang.knowledge.quality import load_cases, qualified_snomed_cases, score_retrieval, snomed_name_cases
from ecglang.knowledge.retrieval import retrieve_for_label, retrieve_for_labels, retriever_for
from ecglang.scores.prompts import load_prompt_set

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

QUERY_TARGET_MS = 1.0
BUILD_TARGET_S = 30.0
K = 3
SYNONYMS = {
    " ms": " milliseconds",
    " mV": " millivolts",
    "ECG": "electrocardiogram",
    " leads": " derivations",
    " lead ": " derivation ",
    "wave": "deflection",
    "beats": "complexes",
    "rhythm": "cardiac rhythm",
    "heart rate": "ventricular rate",
    " > ": " above ",
    " < ": " below ",
    " ≥ ": " at least ",
}
LEAD_INS = ("", "Criteria: ", "In summary, ", "By convention, ", "Diagnostic criteria: ", "Typically, ",
            "According to the guideline, ", "On the 12-lead ECG, ", "Key findings: ", "In adults, ")  # fmt: skip


def jittered_kb(n: int, seed: int = 0) -> KnowledgeBase:
    """`n` distinct paraphrase variants of the bundled snippets (ids `<id>-v<j>`)."""
    base = KnowledgeBase.load().snippets
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[Snippet] = []
    j = 0
    while len(out) < n:
        s = base[j % len(base)]
        j += 1
        clauses = split_criteria(s.text)  # never cut inside brackets: "(I, aVL; V1–V6; II, III, aVF)"
        rng.shuffle(clauses)
        text = "; ".join(clauses)
        for old, new in SYNONYMS.items():
            if rng.random() < 0.5:
                text = text.replace(old, new)
        text = LEAD_INS[int(rng.integers(len(LEAD_INS)))] + text + "."
        if text in seen:  # a rare repeat: make it distinct without changing its meaning
            text = f"{text} (Variant {j}.)"
        seen.add(text)
        out.append(Snippet(id=f"{s.id}-v{j}", title=s.title, text=text, source=s.source, aliases=s.aliases,
                           codes=dict(s.codes)))  # fmt: skip
    return KnowledgeBase(out)


def label_queries() -> list[tuple[str, list[str], tuple[str, str]]]:
    """(name, prompts, code) of every label of the PTB-XL superclass and CPSC 2018 prompt sets."""
    out = []
    for set_name, namespace in (("ptbxl_super", "ptbxl"), ("cpsc2018", "cpsc2018")):
        for code, lp in load_prompt_set(set_name).labels.items():
            out.append((lp.name, list(lp.prompts), (namespace, code)))
    return out


def embedding_flops(index: KnowledgeIndex, docs: list[str], sample: int) -> float:
    """FLOPs of embedding `docs`: counted on an evenly spaced sample, scaled by the corpus's token count."""
    tokenizer = index.encoder.tokenizer
    limit = index.encoder.max_seq_length
    tokens = np.array([min(len(ids), limit) for ids in tokenizer(docs)["input_ids"]])
    pick = np.linspace(0, len(docs) - 1, min(sample, len(docs))).astype(int)
    with FlopCounterMode(display=False) as counter:
        index.embed([docs[i] for i in pick], batch_size=64)
    return counter.get_total_flops() * tokens.sum() / tokens[pick].sum()


def bf16_docs_per_s(index: KnowledgeIndex, docs: list[str], sample: int) -> float:
    """Documents per second of the same encoder in bfloat16 on an evenly spaced sample (after a warm-up)."""
    import copy

    encoder = copy.deepcopy(index.encoder).to(torch.bfloat16)
    pick = [docs[i] for i in np.linspace(0, len(docs) - 1, min(sample, len(docs))).astype(int)]
    encoder.encode(pick[:32], batch_size=32)
    t0 = time.perf_counter()
    encoder.encode(pick, batch_size=64)
    return len(pick) / (time.perf_counter() - t0)


def per_query_ms(fn: Any, queries: list[Any], repeats: int) -> float:
    """Median over repeats of the mean time per query (ms) of `fn(q)` over all `queries`."""
    fn(queries[0])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for q in queries:
            fn(q)
        times.append((time.perf_counter() - t0) / len(queries))
    return 1e3 * float(np.median(times))


def bench_knowledge(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 32 if ctx.quick else 10_000
    kb = jittered_kb(n)
    docs = [s.document() for s in kb]
    threads = torch.get_num_threads()
    t0, c0 = time.perf_counter(), time.process_time()
    flat = KnowledgeIndex.build(kb, show_progress=not ctx.quick)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    vectors = np.stack([flat.index.reconstruct(i) for i in range(len(kb))])
    size = 1024 if ctx.quick else 2048
    with ctx.threads(1):
        peak1 = ctx.matmul_peak(size)
    peak = max(ctx.matmul_peak(size), 2 * peak1)  # both cores, or twice one core when the other is busy
    flops = embedding_flops(flat, docs, 16 if ctx.quick else 256)
    bound_s = flops / (peak * 1e9)
    bf16_peak = ctx.matmul_peak(size, dtype=torch.bfloat16)
    bf16_rate = bf16_docs_per_s(flat, docs, 32 if ctx.quick else 512)
    case = f"{n} snippets (bundled {len(KnowledgeBase.load())} paraphrase-jittered)"
    met: bool | str = build_s <= BUILD_TARGET_S
    if not met and bound_s > BUILD_TARGET_S:
        met = "limit"
    rows: list[dict[str, Any]] = [
        {
            "case": case,
            "ours": "KnowledgeIndex.build (embedding + FAISS flat)",
            "ours s": build_s,
            "note": f"{n / build_s:.0f} docs/s, {threads} torch threads, CPU {build_cpu:.0f} s; embedding "
            f"{flops / 1e12:.1f} TFLOP ({flops / n / 1e9:.2f} GFLOP/doc) at this machine's fp32 matmul peak "
            f"({peak:.0f} GFLOP/s: the larger of 2 threads and twice 1 thread) needs ≥ {bound_s:.0f} s; the "
            f"{BUILD_TARGET_S:g} s target would need {flops / BUILD_TARGET_S / 1e9:.0f} GFLOP/s. In bfloat16: "
            f"matmul peak {bf16_peak:.0f} GFLOP/s (≥ {flops / (bf16_peak * 1e9):.0f} s); measured bf16 embedding "
            f"{bf16_rate:.0f} docs/s (≈ {n / bf16_rate:.0f} s for {n} docs)",
            **ctx.target_columns(f"build ≤ {BUILD_TARGET_S:g} s", f"{build_s:.1f} s (lower bound {bound_s:.0f} s)",
                                 met),
        }
    ]  # fmt: skip
    indexes = {"flat": flat}
    for index_type in ("flat", "ivf", "hnsw"):
        t = ctx.time(lambda it=index_type: KnowledgeIndex.from_embeddings(kb, vectors, index_type=it), repeats=3)
        if index_type != "flat":
            indexes[index_type] = KnowledgeIndex.from_embeddings(kb, vectors, index_type=index_type)
        rows.append({"case": case, "ours": f"FAISS {index_type} index from embeddings", "ours s": t.wall})

    labels = label_queries()[: 5 if ctx.quick else None]
    qvec = np.stack([flat.embed([name, *prompts]).mean(0) for name, prompts, _ in labels])
    qvec /= np.linalg.norm(qvec, axis=1, keepdims=True)
    for index_type, index in indexes.items():
        ms = per_query_ms(lambda v, ix=index: ix.search_embeddings(v[None, :], K), list(qvec), ctx.repeats)
        rows.append({
            "case": f"{case}, {len(labels)} labels, k={K}",
            "ours": f"FAISS {index_type} search, one query per label",
            "ours s": ms / 1e3,
            "note": f"{ms:.3f} ms per query",
            **ctx.target_columns(f"≤ {QUERY_TARGET_MS:g} ms per query", f"{ms:.3f} ms", ms <= QUERY_TARGET_MS),
        })  # fmt: skip
    for cached in (True, False):

        def retrieve(label: tuple[str, list[str], tuple[str, str]], cached: bool = cached) -> None:
            name, prompts, code = label
            if not cached:
                flat.clear_query_cache()  # forget the query embeddings: the first call's cost
            retrieve_for_label(flat, name, prompts, k=K, code=code)

        ms = per_query_ms(retrieve, labels, ctx.repeats)
        rows.append({
            "case": f"{case}, {len(labels)} labels, k={K}",
            "ours": f"retrieve_for_label, query embedding {'cached' if cached else 'computed'}",
            "ours s": ms / 1e3,
            "note": f"{ms:.2f} ms per label (name + prompts → mean query → FAISS + code-tagged snippets)",
        })  # fmt: skip
    rows += quality_rows(ctx)
    if ctx.quick:
        ctx.note(f"knowledge --quick: {n} snippets")
    return rows


EVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "knowledge" / "retrieval_eval.jsonl"
PRECISION_TARGET = 0.95
OFF_LABEL_TARGET = 0.01
MANY_LABELS_TARGET_S = 60.0


def quality_rows(ctx: BenchContext) -> list[dict[str, Any]]:
    """Hybrid retrieval on the bundled base: precision@3, off-label rate and latency on the evaluation set
    and on the SNOMED CT names that a snippet's codes cover; batched retrieval for many labels (10,000; 60 with
    --quick)."""
    # --quick: the cached default index (a smoke run times nothing that counts); else built here, as measured
    index = (
        KnowledgeIndex.default(show_progress=False)
        if ctx.quick
        else KnowledgeIndex.build(KnowledgeBase.load(), show_progress=False)
    )
    rows: list[dict[str, Any]] = []
    for case, cases in (("evaluation set (tests/knowledge/retrieval_eval.jsonl)", load_cases(EVAL_SET)),
                        ("SNOMED CT names that snippets cover (issue 14)", snomed_name_cases(index.kb)),
                        ("those names and abbreviations with qualifiers (possible …, … in lead II)",
                         qualified_snomed_cases(index.kb))):  # fmt: skip
        retriever_for(index).embed([], show_progress=False)  # retriever built before timing
        score = score_retrieval(index, cases, k=K)
        met = score.precision >= PRECISION_TARGET and score.off_label_rate <= OFF_LABEL_TARGET
        rows.append({
            "case": f"{case}, {len(cases)} labels, k={K}",
            "ours": "hybrid retrieval (alias/code, BM25 + FAISS RRF, floor, guard)",
            "ours s": score.seconds / len(cases),
            "note": score.summary(),
            **ctx.target_columns(f"precision@{K} ≥ {PRECISION_TARGET}, off-label ≤ {OFF_LABEL_TARGET:.0%}",
                                 f"{score.precision:.3f}, {score.off_label_rate:.2%}", met),
        })  # fmt: skip
    n = 60 if ctx.quick else 10_000
    labels = many_labels(n)
    t0 = time.perf_counter()
    found = retrieve_for_labels(index, labels, [[label] for label in labels], k=K)
    seconds = time.perf_counter() - t0
    rows.append({
        "case": f"{n} labels (many_labels), k={K}",
        "ours": "retrieve_for_labels, batched (retrieval side of zero-shot)",
        "ours s": seconds,
        "note": f"{1e3 * seconds / n:.2f} ms per label; {sum(not h for h in found)} labels with no knowledge",
        **ctx.target_columns(f"≤ {MANY_LABELS_TARGET_S:g} s for 10,000 labels (whole CLI)", f"{seconds:.1f} s",
                             seconds <= MANY_LABELS_TARGET_S),
    })  # fmt: skip
    return rows


LABELS_TARGET_S = 60.0


def bench_labels(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 60 if ctx.quick else 10_000
    labels = many_labels(n)
    records = ctx.record_files(2)
    out = ctx.work("labels") / f"scores-{n}.csv"
    cmd = [*ctx.cli_command(), "zero-shot", *map(str, records), "--labels", *labels, "--quiet", "--out", str(out)]
    stats = ctx.run_process(cmd, env=ctx.cli_env())
    if stats.returncode != 0:
        raise RuntimeError(f"ecglang zero-shot exited with {stats.returncode}:\n{stats.output[-3000:]}")
    header = out.read_text(encoding="utf-8").splitlines()[0]
    if header.count(",") < n:  # one column per label, beside the record id (and its path)
        raise RuntimeError(f"the score table has {header.count(',')} label columns, not {n}")
    if ctx.quick:
        ctx.note(f"labels --quick: {n} labels (the target is for 10,000)")
    return [
        {
            "case": f"{n} labels (many_labels), 2 records, knowledge default",
            "ours": "ecglang zero-shot (subprocess)",
            "ours s": stats.wall,
            "note": f"CPU {stats.cpu:.0f} s, peak RSS {stats.peak_rss / 1e9:.2f} GB",
            # the target is for 10,000 labels; a quick run checks its 60 against the same bound
            **ctx.target_columns(
                f"{n:,} labels < {LABELS_TARGET_S:g} s", f"{stats.wall:.1f} s", stats.wall < LABELS_TARGET_S
            ),
        }
    ]


def many_labels(n: int, seed: int = 0) -> list[str]:
    """`n` distinct labels as users might type them: SNOMED CT names, abbreviations and snippet aliases with
    hedges, qualifiers and places, and some words that name no ECG finding."""
    from ecglang.knowledge.aliases import snomed_name_table

    base = sorted({t for name, abbr, _ in snomed_name_table() for t in (name, abbr)}
                  | {a for s in KnowledgeBase.load() for a in s.aliases})  # fmt: skip
    base += ["banana", "zebra crossing", "tax return", "purple", "pizza delivery", "football match"]
    before = ("", "possible ", "probable ", "acute ", "new ", "old ", "borderline ", "marked ", "mild ",
              "intermittent ", "suspected ", "minor ")  # fmt: skip
    after = ("", " pattern", " on ECG", " present", " in lead II", " noted", " seen", " (confirmed)")
    rng = np.random.default_rng(seed)
    combos = [f"{b}{x}{a}" for x in base for b in before for a in after]
    rng.shuffle(combos)
    distinct = {" ".join(c.lower().split()): c for c in reversed(combos)}  # zero-shot compares labels so
    return list(reversed(distinct.values()))[:n]


BENCHMARKS = {"knowledge": bench_knowledge, "labels": bench_labels}
