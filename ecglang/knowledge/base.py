"""Clinical knowledge base (`knowledge/*.jsonl`): snippets, their validation and loading, code lookups.

The knowledge base is a set of short snippets of ECG criteria, each tagged with the label codes it was
written for (PTB-XL SCP statements, CPSC 2018, Chapman-Shaoxing acronyms, SNOMED CT codes of the
PhysioNet/CinC 2021 challenge). The file format is documented in `knowledge/README.md`.
JSONL files are parsed as data only (`ecglang.core.jsonio.parse_json`); nothing in them is executed. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.core.paths import resource_dir
from ecglang.errors import KnowledgeError
from ecglang.text.sentences import split_sentences

__all__ = [
    "KNOWN_NAMESPACES",
    "KnowledgeBase",
    "Snippet",
    "normalize_code",
    "split_criteria",
]

#: Namespaces used by the bundled knowledge base. User files may add others (lower-case identifiers).
KNOWN_NAMESPACES: tuple[str, ...] = ("ptbxl", "cpsc2018", "chapman", "snomed")

_REQUIRED_FIELDS = ("id", "title", "text", "source")
_OPTIONAL_FIELDS = ("aliases", "codes")
_ID_RE = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")
_NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# Criteria break where report sentences do (`split_sentences`), except inside balanced brackets: "(I, aVL; V1–V6;
# II, III, aVF)" or "(≥ 1 mm; in V2–V3 ≥ 2 mm ...)" is one clause. Separators inside a bracket pair are masked with
# private-use characters that the text does not hold for the split, and given back after it.
_BRACKETS = {")": "(", "]": "["}
_SEPARATORS = ";\n\r."


def split_criteria(text: str) -> list[str]:
    """The criteria of a snippet's `text`: its clauses and sentences (`split_sentences` with three words at
    least), never cut inside balanced `()` or `[]`; an unmatched bracket protects nothing."""
    inside = [False] * len(text)
    opened: list[tuple[str, int]] = []
    for i, c in enumerate(text):
        if c in "([":
            opened.append((c, i))
        elif c in _BRACKETS and opened and opened[-1][0] == _BRACKETS[c]:
            start = opened.pop()[1]
            inside[start:i] = [True] * (i - start)
    free = (chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
    mask = dict(zip(_SEPARATORS, free, strict=False))
    masked = "".join(mask.get(c, c) if inside[i] else c for i, c in enumerate(text))
    unmask = str.maketrans({v: k for k, v in mask.items()})
    return [s.translate(unmask) for s in split_sentences(masked, min_words=3)]


@lru_cache(maxsize=8192)  # asked once per label a snippet is a candidate of: 10,000 labels re-split it ~20,000 times
def _criteria_of(text: str) -> tuple[str, ...]:
    return tuple(split_criteria(text))


def normalize_code(code: str) -> str:
    """Canonical form of a label code for lookups: trimmed, upper-case, without the leading/trailing
    underscores that PTB-XL uses in some SCP codes (`NST_`, `_AVB`), so `nst_` matches `NST`."""
    return str(code).strip().upper().strip("_")


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
        """The criteria of `text`, one per clause or sentence of at least three words (`split_criteria`)."""
        return list(_criteria_of(self.text))

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
        if not split_criteria(obj["text"]):  # a snippet shown beside a score must add to it
            raise ValueError("field 'text' holds no criterion (a clause or sentence of at least three words)")
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
    """The snippets of one JSONL file, read a line at a time. Lines end at "\\n" only (`str.splitlines` would also
    split at U+2028 and other separators that `write_jsonl` leaves unescaped inside strings)."""
    snippets: list[Snippet] = []
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:  # a byte-order mark opening the file (Windows Notepad writes one) is not text
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise KnowledgeError(
                        path, f"line {lineno}: not UTF-8 text ({exc.reason} at byte offset {exc.start} of the line)"
                    ) from None
                if not line.strip():
                    continue
                try:
                    obj = parse_json(line)
                except JsonInputError as exc:
                    raise KnowledgeError(path, f"line {lineno}: invalid JSON ({exc.in_line()})") from None
                try:
                    snippets.append(Snippet.from_dict(obj, origin=f"{path}:{lineno}"))
                except ValueError as exc:
                    raise KnowledgeError(path, f"line {lineno}: {exc}") from exc
    except OSError as exc:
        raise KnowledgeError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not snippets:
        raise KnowledgeError(path, "file contains no snippets")
    return snippets
