"""`ecglang knowledge`: build the FAISS index of a knowledge base, search it as zero-shot does, show snippets."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from ecglang.cli import count, show_help
from ecglang.core.outputs import output_folder
from ecglang.errors import ConfigError, UsageError
from ecglang.knowledge.base import KnowledgeBase, Snippet
from ecglang.knowledge.index import INDEX_TYPES, Hit, KnowledgeIndex, check_index_target, default_index_dir
from ecglang.knowledge.retrieval import NO_KNOWLEDGE, retrieve_for_labels


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
        "--out",
        type=output_folder,
        metavar="DIR",
        help="output folder (default, flat index only: the user cache that `search` and zero-shot read; an ivf or hnsw "
        "index needs --out, then `search --index DIR` or `zero-shot --knowledge DIR`)",
    )
    build.add_argument("--index", choices=INDEX_TYPES, default="flat", help="FAISS index type (default: flat)")
    build.add_argument("--model", metavar="PATH", help="sentence-transformers model folder (default: all-MiniLM-L6-v2)")
    build.add_argument("--batch-size", type=count, default=64, help="snippets embedded at once (default 64)")
    build.add_argument("--nprobe", type=count, help="IVF lists searched per query (default: min(nlist, 8))")
    build.add_argument("--device", help="torch device for the embedding model (default: automatic)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar while the snippets are embedded")
    build.set_defaults(func=_build)

    search = actions.add_parser(
        "search",
        help="the snippets zero-shot attaches to a label (same retrieval), with their text",
        description="Retrieve knowledge for each QUERY exactly as zero-shot does for a label of that name: exact "
        "code/alias match, else BM25 fused with dense similarity, behind the contradiction guard and floor.",
    )
    search.add_argument(
        # "*", checked in _search: with "+", `--kb FILE QUERY` gave QUERY to --kb and argparse only said a QUERY
        # was required
        "query",
        nargs="*",
        help="one or more labels or queries (quote each); with --prompt-set, its label codes",
    )
    search.add_argument(
        "-k", type=count, default=1, help="snippets per query (default: 1, as zero-shot; -k 3 for more)"
    )
    search.add_argument(
        "--code", metavar="NAMESPACE:CODE", help="a prompt-set label code, e.g. ptbxl:CLBBB (as zero-shot passes it)"
    )
    search.add_argument(
        "--prompt-set",
        metavar="NAME|FILE",
        help="QUERY are this prompt set's label codes, retrieved exactly as zero-shot does for them (name, prompts, "
        "code and group members), e.g. --prompt-set ptbxl_super STTC MI",
    )
    search.add_argument(
        "--json", action="store_true", help="print JSON Lines for machines: one JSON object per query, one per line"
    )
    search.add_argument(
        "--index", dest="index_dir", type=Path, metavar="DIR", help="index folder written by `knowledge build --out`"
    )
    search.add_argument(
        "--kb", nargs="+", metavar="DIR|FILE", help="without --index: search this base (index cached on first use)"
    )
    search.add_argument("--model", metavar="PATH", help="sentence-transformers model folder")
    search.add_argument("--device", help="torch device for the embedding model (default: automatic)")
    search.add_argument(
        "--no-progress", action="store_true", help="no progress bar when the index is built (first use of a base)"
    )
    search.set_defaults(func=_search)

    show = actions.add_parser("show", help="print snippets by id (the ids zero-shot lists per label)")
    show.add_argument("ids", nargs="*", metavar="ID")  # "*": see search's query
    show.add_argument("--kb", nargs="+", metavar="DIR|FILE", help="knowledge base (default: the bundled one)")
    show.add_argument("--json", action="store_true", help="print JSON Lines: one JSON object per snippet, one per line")
    show.set_defaults(func=_show)

    parser.set_defaults(func=show_help(parser))


def _build(args: argparse.Namespace) -> int:
    if args.nprobe is not None and args.index != "ivf":
        raise UsageError(f"--nprobe applies to --index ivf only (got --index {args.index})")
    if args.index != "flat" and not args.out:
        # search and zero-shot read only the flat index from the user cache: an ivf/hnsw one there was never used
        raise UsageError(
            f"--index {args.index} needs --out DIR (search and zero-shot read only a flat index from the user cache; "
            "pass the folder as `search --index DIR` or `zero-shot --knowledge DIR`)"
        )
    kb = KnowledgeBase.load(args.kb)
    if args.out:
        check_index_target(args.out)  # before the embedding, not after it
    index = KnowledgeIndex.build(
        kb, model=args.model, index_type=args.index, batch_size=args.batch_size, show_progress=not args.no_progress,
        nprobe=args.nprobe, device=args.device,
    )  # fmt: skip
    out = Path(args.out) if args.out else default_index_dir(kb, index.model_name, args.index)
    index.save(out)
    print(f"built {args.index} index of {len(kb)} snippets (dim {index.dim}, model {index.model_name}) -> {out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    # Decided by the command line alone: usage errors (exit 2), before the index loads.
    _require_positionals(args.query, "QUERY", args.kb)
    if args.k < 1:
        raise UsageError(f"-k must be >= 1, got {args.k}")
    if args.code and args.prompt_set:
        raise UsageError("--code and --prompt-set: give one (a prompt set's labels carry their codes)")
    code = None
    if args.code:
        namespace, _, value = args.code.partition(":")
        if not namespace or not value:
            raise UsageError(f"--code must be NAMESPACE:CODE, e.g. ptbxl:CLBBB; got {args.code!r}")
        code = (namespace.strip().lower(), value.strip())
    if args.index_dir is not None:
        index = KnowledgeIndex.load(args.index_dir, model=args.model, device=args.device)
    else:
        kb = KnowledgeBase.load(args.kb) if args.kb else None
        index = KnowledgeIndex.default(kb=kb, model=args.model, show_progress=not args.no_progress, device=args.device)
    if code is not None and code[0] not in index.kb.namespaces:
        # an unknown namespace ("ptbx:CRBBB") tags no snippet, and the query fell back to its words unannounced
        raise ConfigError(f"--code: no snippet has a code of namespace {code[0]!r} (namespaces of this knowledge "
                          f"base: {', '.join(index.kb.namespaces)})")  # fmt: skip
    if args.prompt_set:
        from ecglang.scores.labels import knowledge_queries, retrieve_knowledge  # torch: only on this path

        queries = knowledge_queries(list(args.query), args.prompt_set)
        results = retrieve_knowledge(index, list(queries.values()), args.k)
        labels, names = list(queries), [q.name for q in queries.values()]
    else:
        results = retrieve_for_labels(index, args.query, k=args.k, codes=[code] * len(args.query))
        labels, names = list(args.query), [None] * len(args.query)
    if args.json:
        for query, name, hits in zip(labels, names, results, strict=True):
            record = {"query": query, **({"name": name} if name else {})}
            record["hits"] = [_hit_dict(rank, h) for rank, h in enumerate(hits, 1)]
            print(json.dumps(record, ensure_ascii=False))
        return 0
    for query, name, hits in zip(labels, names, results, strict=True):
        print(f"query: {query}" + (f" ({name})" if name else ""))
        if not hits:
            print(f"  {NO_KNOWLEDGE} (a label like this is scored on its own words)")
        for rank, hit in enumerate(hits, start=1):
            print(f"{rank}. {hit.snippet.id}  score {hit.score:.3f}  ({hit.via})  codes: {_codes(hit.snippet)}")
            print(_text(hit.snippet))
        print()
    return 0


def _show(args: argparse.Namespace) -> int:
    _require_positionals(args.ids, "ID", args.kb)
    kb = KnowledgeBase.load(args.kb) if args.kb else KnowledgeBase.load()
    missing = [i for i in args.ids if i not in kb]
    if missing:
        # say which base was searched: ids that `zero-shot --knowledge DIR` printed are in DIR, not the bundled one
        if args.kb:
            raise ConfigError(f"no snippet with id {', '.join(missing)} in the knowledge base {' '.join(args.kb)}")
        raise ConfigError(
            f"no snippet with id {', '.join(missing)} in the bundled knowledge base; for the ids of a knowledge base "
            "of your own (`zero-shot --knowledge DIR`) add --kb DIR (its folder, .jsonl files or index)"
        )
    for snippet_id in args.ids:
        snippet = kb[snippet_id]
        if args.json:
            print(json.dumps(snippet.to_dict(), ensure_ascii=False))
        else:
            print(f"{snippet.id}  codes: {_codes(snippet)}")
            print(_text(snippet))
            print()
    return 0


def _require_positionals(given: list[str], name: str, kb: list[str] | None) -> None:
    """At least one `name`; where `--kb` (several values) took them, say so instead of "required"."""
    if given:
        return
    if kb and len(kb) > 1:
        raise UsageError(f"no {name} given: --kb takes several values and took {' '.join(kb[1:])!r} as knowledge "
                         f"files too; put --kb after the {name.lower()}s, or give them first")  # fmt: skip
    raise UsageError(f"give at least one {name}")


def _hit_dict(rank: int, hit: Hit) -> dict:
    return {"rank": rank, "id": hit.snippet.id, "score": round(hit.score, 6), "via": hit.via,
            "title": hit.snippet.title, "codes": {ns: list(c) for ns, c in hit.snippet.codes.items()},
            "text": hit.snippet.text, "source": hit.snippet.source}  # fmt: skip


def _codes(snippet: Snippet) -> str:
    return "; ".join(f"{ns} {', '.join(codes)}" for ns, codes in snippet.codes.items()) or "-"


def _text(snippet: Snippet) -> str:
    body = textwrap.fill(f"{snippet.title}. {snippet.text}", width=100, initial_indent="   ", subsequent_indent="   ")
    return f"{body}\n   source: {snippet.source}"
