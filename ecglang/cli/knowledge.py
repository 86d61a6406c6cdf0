"""`ecglang knowledge`: build the FAISS index of a knowledge base and search it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecglang.knowledge.index import INDEX_TYPES, KnowledgeBase, KnowledgeIndex, default_index_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "knowledge",
        help="clinical knowledge base: build its FAISS index, search it",
        description="Build and search the sentence-embedding index of the ECG knowledge base (knowledge/*.jsonl).",
    )
    actions = parser.add_subparsers(dest="knowledge_action", metavar="ACTION")

    build = actions.add_parser("build", help="embed a knowledge base and write its index")
    build.add_argument(
        "--kb", nargs="+", metavar="DIR|FILE", help="knowledge folders or .jsonl files (default: the bundled base)"
    )
    build.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: the user cache that `search` reads)"
    )
    build.add_argument("--index", choices=INDEX_TYPES, default="flat", help="FAISS index type (default: flat)")
    build.add_argument("--model", metavar="PATH", help="sentence-transformers model folder (default: all-MiniLM-L6-v2)")
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--nprobe", type=int, help="IVF lists searched per query (default: min(nlist, 8))")
    build.add_argument("--device", help="torch device for the embedding model (default: automatic)")
    build.set_defaults(func=_build)

    search = actions.add_parser("search", help="print the snippets nearest to a query")
    search.add_argument("query", nargs="+", help="one or more queries (quote each)")
    search.add_argument("-k", type=int, default=5, help="number of snippets per query (default: 5)")
    search.add_argument(
        "--index", dest="index_dir", type=Path, metavar="DIR", help="index folder written by `knowledge build --out`"
    )
    search.add_argument(
        "--kb", nargs="+", metavar="DIR|FILE", help="without --index: search this base (index cached on first use)"
    )
    search.add_argument("--model", metavar="PATH", help="sentence-transformers model folder")
    search.add_argument("--device", help="torch device for the embedding model (default: automatic)")
    search.set_defaults(func=_search)

    parser.set_defaults(func=lambda args: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _build(args: argparse.Namespace) -> int:
    kb = KnowledgeBase.load(args.kb)
    index = KnowledgeIndex.build(
        kb, model=args.model, index_type=args.index, batch_size=args.batch_size, nprobe=args.nprobe, device=args.device
    )
    out = args.out or default_index_dir(kb, index.model_name, args.index)
    index.save(out)
    print(f"built {args.index} index of {len(kb)} snippets (dim {index.dim}, model {index.model_name}) -> {out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    if args.index_dir is not None:
        index = KnowledgeIndex.load(args.index_dir, model=args.model, device=args.device)
    else:
        kb = KnowledgeBase.load(args.kb) if args.kb else None
        index = KnowledgeIndex.default(kb=kb, model=args.model, device=args.device)
    for query, hits in zip(args.query, index.search(args.query, k=args.k), strict=True):
        rows = [(str(rank), f"{h.score:.3f}", h.snippet.id, _cut(h.snippet.title, 56), _cut(h.snippet.source, 72))
                for rank, h in enumerate(hits, start=1)]  # fmt: skip
        print(f"query: {query}")
        print(_table(("rank", "score", "id", "title", "source"), rows))
        print()
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])  # fmt: skip
