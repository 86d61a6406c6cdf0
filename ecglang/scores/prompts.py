"""Zero-shot prompt sets: loading, validation and normalisation of what users pass to zero-shot.

A prompt set is a JSON file in `prompts/` (schema in `prompts/README.md`) that maps each label code of one
dataset's label set to a clinical name, aliases and several short report-like prompts. Files are parsed as
data only (`ecglang.core.jsonio.parse_json`), never executed.

Three entry points matter to the rest of the package:

* `load_prompt_set(name_or_path)` reads and validates one set (`PromptError` on any problem);
* `resolve_prompts(labels, prompts)` turns every accepted user form into ``{label: [prompt, ...]}``;
* `load_external_prompts(path, for_labels)` reads a third-party ``{code: description}`` file (such as the
  published CKEPE prompt file) for side-by-side comparison, reporting the codes it lacks.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, TypeAlias

from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.core.paths import resource_dir
from ecglang.errors import PromptError

log = logging.getLogger(__name__)

__all__ = [
    "ExternalPrompts",
    "LabelPrompts",
    "PromptSet",
    "check_prompt_set",
    "clean_labels",
    "list_prompt_sets",
    "load_external_prompts",
    "load_prompt_set",
    "normalize_text",
    "prompt_set_hint",
    "prompt_source_problem",
    "resolve_prompts",
    "validate_prompt_set",
]

# A prompt or label is read by the text tower up to its max_length tokens (128 for the shipped models, a few
# hundred characters); one of 9 MB was tokenized whole (2.7 GB against 0.76 GB). Far above any real prompt.
MAX_PROMPT_CHARS = 4000


def _length_problem(text: str) -> str | None:
    """ "N characters (at most MAX_PROMPT_CHARS)" for a prompt, label or description that is too long; else None."""
    return f"{len(text):,} characters (at most {MAX_PROMPT_CHARS:,})" if len(text) > MAX_PROMPT_CHARS else None


_SET_KEYS = {"name", "dataset", "label_set", "description", "merl_split", "labels"}
_LABEL_KEYS = {"name", "aliases", "prompts", "codes", "note"}
# Phrases that give away unedited chat-model output pasted into a prompt file (seen in published files).
_CHAT_OUTPUT = re.compile(
    r"\b(based on the input|i (have )?generated|here (are|is) (the|a|some)|as an ai|sure[,!])", re.IGNORECASE
)


@dataclass(frozen=True)
class LabelPrompts:
    """One label of a prompt set.

    `codes` lists the source codes the label stands for when it is a group (PTB-XL statements of a
    (sub)class, SNOMED CT codes scored as one CinC class); empty means the label code itself.
    `note` records caveats about the label's ground truth (e.g. a known defect of a published split).
    """

    name: str
    aliases: tuple[str, ...]
    prompts: tuple[str, ...]
    codes: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class PromptSet:
    """A named set of labels with their prompts, e.g. ``ptbxl_super``."""

    name: str
    labels: dict[str, LabelPrompts]
    dataset: str = ""
    label_set: str = ""
    description: str = ""
    merl_split: str | None = None  # folder under merl/data_split whose CSV columns are this set's codes
    path: Path | None = field(default=None, compare=False)

    @property
    def codes(self) -> list[str]:
        """Label codes in file order."""
        return list(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def prompts(self) -> dict[str, list[str]]:
        """``{code: [prompt, ...]}`` in file order."""
        return {code: list(lp.prompts) for code, lp in self.labels.items()}

    def code_map(self) -> dict[str, str]:
        """``{source code: label code}``: each label code maps to itself and each code in its `codes`
        (e.g. PTB-XL ``"ASMI" -> "AMI"`` in ``ptbxl_sub``, SNOMED CT ``"59118001" -> "713427006|59118001"``
        in ``cinc2021``), to turn dataset annotations into this set's labels."""
        out = {code: code for code in self.labels}
        for code, lp in self.labels.items():
            for source in lp.codes:
                out.setdefault(source, code)
        return out


@dataclass(frozen=True)
class ExternalPrompts:
    """A third-party ``{code: description}`` prompt file, restricted to the requested codes.

    `missing` are requested codes the file lacks; `suspect` maps codes to a reason their text looks
    unusable as a prompt (e.g. pasted chat-model output); these are kept, only flagged.
    """

    path: Path
    prompts: dict[str, list[str]]
    missing: list[str]
    suspect: dict[str, str]


def normalize_text(text: str) -> str:
    """Case- and whitespace-insensitive key used to compare prompts and label codes."""
    return " ".join(text.split()).casefold()


# ---------------------------------------------------------------------------------------------- validation


def validate_prompt_set(ps: PromptSet) -> list[str]:
    """Return every problem of `ps` as a readable line; an empty list means the set is valid.

    Checks: non-empty set name and label names; at least one non-empty prompt per label; no label code
    repeated (compared case/whitespace-insensitively); no prompt repeated within a label or shared by two
    labels (compared case/whitespace-insensitively); no source code listed under two labels.
    Linear in the number of prompts.
    """
    problems: list[str] = []
    if not isinstance(ps.name, str) or not ps.name.strip():
        problems.append("the prompt set has an empty name")
    seen_codes: dict[str, str] = {}
    owner: dict[str, str] = {}  # normalised prompt -> first label using it
    source_owner: dict[str, str] = {}  # source code -> label listing it (code_map must be unambiguous)
    for code, lp in ps.labels.items():
        if not isinstance(code, str) or not code.strip():
            problems.append(f"label code {code!r} is empty or not a string")
            continue
        key = normalize_text(code)
        if key in seen_codes:
            problems.append(f"label code {code!r} duplicates label {seen_codes[key]!r}")
        else:
            seen_codes[key] = code
        if not isinstance(lp.name, str) or not lp.name.strip():
            problems.append(f"label {code!r} has an empty name")
        for source in lp.codes:
            first = source_owner.setdefault(source, code)
            if first != code:
                problems.append(f"source code {source!r} is listed under labels {first!r} and {code!r}")
        if not lp.prompts:
            problems.append(f"label {code!r} has no prompts")
        own: set[str] = set()
        for prompt in lp.prompts:
            if not isinstance(prompt, str) or not prompt.strip():
                problems.append(f"label {code!r} has an empty or non-string prompt {prompt!r}")
                continue
            if too_long := _length_problem(prompt):
                problems.append(f"label {code!r} has a prompt of {too_long}")
                continue
            pkey = normalize_text(prompt)
            if pkey in own:
                problems.append(f"label {code!r} repeats the prompt {prompt!r}")
            elif pkey in owner:
                problems.append(f"prompt {prompt!r} is shared by labels {owner[pkey]!r} and {code!r}")
            else:
                owner[pkey] = code
            own.add(pkey)
    return list(dict.fromkeys(problems))


def check_prompt_set(ps: PromptSet, path: str | PathLike | None = None) -> PromptSet:
    """Raise `PromptError` naming `path` (or the set's own path) and every problem; return `ps` if valid."""
    problems = validate_prompt_set(ps)
    if problems:
        where = path if path is not None else ps.path
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise PromptError(where, f"invalid prompt set {ps.name!r}: {shown}")
    return ps


# ------------------------------------------------------------------------------------------------- loading


def _read_json(path: Path) -> Any:
    """The parsed file; `PromptError` naming it for an unreadable file or unusable JSON (`ecglang.core.jsonio`:
    syntax errors, a repeated key, too deep nesting, over-long integers, NaN, lone surrogates)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(path, f"cannot read the file: {exc}") from None
    try:
        return parse_json(text)
    except JsonInputError as exc:
        hint = " (duplicate label?)" if exc.kind == "duplicate_key" else ""
        raise PromptError(path, f"not valid JSON: {exc}{hint}") from None


def _str_list(value: Any, path: Path, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise PromptError(path, f"{what} must be a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise PromptError(path, f"{what} must contain only strings, found {item!r}")
    return tuple(value)


def _parse_prompt_set(data: Any, path: Path) -> PromptSet:
    if not isinstance(data, dict):
        raise PromptError(path, f"top level must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - _SET_KEYS
    if unknown:
        raise PromptError(path, f"unknown top-level keys {sorted(unknown)}; allowed: {sorted(_SET_KEYS)}")
    for key in ("name", "labels"):
        if key not in data:
            raise PromptError(path, f"missing required key {key!r}")
    for key in ("name", "dataset", "label_set", "description"):
        if key in data and not isinstance(data[key], str):
            raise PromptError(path, f"{key!r} must be a string, got {type(data[key]).__name__}")
    merl_split = data.get("merl_split")
    if merl_split is not None and not isinstance(merl_split, str):
        raise PromptError(path, f"'merl_split' must be a string or null, got {type(merl_split).__name__}")
    raw_labels = data["labels"]
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise PromptError(path, "'labels' must be a non-empty object mapping label code -> label entry")
    labels: dict[str, LabelPrompts] = {}
    for code, entry in raw_labels.items():
        if not isinstance(entry, dict):
            raise PromptError(path, f"label {code!r} must be an object, got {type(entry).__name__}")
        unknown = set(entry) - _LABEL_KEYS
        if unknown:
            raise PromptError(path, f"label {code!r} has unknown keys {sorted(unknown)}")
        if "name" not in entry or "prompts" not in entry:
            raise PromptError(path, f"label {code!r} needs 'name' and 'prompts'")
        if not isinstance(entry["name"], str):
            raise PromptError(path, f"label {code!r}: 'name' must be a string")
        note = entry.get("note", "")
        if not isinstance(note, str):
            raise PromptError(path, f"label {code!r}: 'note' must be a string")
        labels[code] = LabelPrompts(
            name=entry["name"],
            aliases=_str_list(entry.get("aliases", []), path, f"label {code!r} 'aliases'"),
            prompts=_str_list(entry["prompts"], path, f"label {code!r} 'prompts'"),
            codes=_str_list(entry.get("codes", []), path, f"label {code!r} 'codes'"),
            note=note,
        )
    return PromptSet(
        name=data["name"],
        labels=labels,
        dataset=data.get("dataset", ""),
        label_set=data.get("label_set", ""),
        description=data.get("description", ""),
        merl_split=merl_split,
        path=path,
    )


def list_prompt_sets() -> list[str]:
    """Names of the prompt sets shipped with ecglang (the ``*.json`` files of the prompts folder)."""
    return sorted(p.stem for p in resource_dir("prompts").glob("*.json"))


def _looks_like_path(value: str | PathLike) -> bool:
    text = str(value)
    return isinstance(value, PathLike) or text.endswith(".json") or "/" in text or "\\" in text


def prompt_source_problem(value: str | PathLike) -> str | None:
    """Why `value` names no prompt set (neither a shipped name nor a path to a JSON file), or None: what a command
    line can be told before anything loads (the file's own content is checked when it is read)."""
    if _looks_like_path(value) or str(value).strip() in list_prompt_sets():
        return None
    return _not_a_prompt_set(str(value))


def load_prompt_set(name_or_path: str | PathLike) -> PromptSet:
    """Load and validate a prompt set by shipped name (``"ptbxl_super"``) or from a JSON file path.

    Raises `PromptError` naming the file for an unknown name, unreadable or malformed JSON, a schema
    violation, or any problem `validate_prompt_set` finds.
    """
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
    else:
        name = str(name_or_path).strip()
        path = resource_dir("prompts") / f"{name}.json"
        if not name or not path.is_file():
            raise PromptError(
                None, f"unknown prompt set {name_or_path!r}; shipped sets: {', '.join(list_prompt_sets())}"
            )
    ps = _parse_prompt_set(_read_json(path), path)
    return check_prompt_set(ps, path)


# --------------------------------------------------------------------------------------------- resolution


def clean_labels(labels: Sequence[Any]) -> list[str]:
    """Labels as given (stripped); `PromptError` for a non-string, an empty or over-long label and a duplicate
    (compared as `normalize_text` does). The CLI runs it on `--labels` before the model loads (a usage error)."""
    if len(labels) == 0:
        raise PromptError(None, "the label list is empty; pass at least one label")
    out: list[str] = []
    seen: dict[str, str] = {}
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise PromptError(None, f"label #{i} is {type(label).__name__} {label!r}, expected a string")
        text = label.strip()
        if not text:
            raise PromptError(None, f"label #{i} is empty")
        if too_long := _length_problem(text):
            raise PromptError(None, f"label #{i} has {too_long}")
        key = normalize_text(text)
        if key in seen:
            raise PromptError(None, f"duplicate label {label!r} (same as {seen[key]!r})")
        seen[key] = label
        out.append(text)
    return out


def _clean_mapping(mapping: Mapping[Any, Any]) -> dict[str, list[str]]:
    """``{label: prompt | [prompts]}`` as ``{label: [prompts]}``, refusing bad types and empty prompts."""
    codes = clean_labels(list(mapping.keys()))
    out: dict[str, list[str]] = {}
    for code, value in zip(codes, mapping.values(), strict=True):
        if isinstance(value, str):
            value = [value]
        elif not isinstance(value, (list, tuple)):
            raise PromptError(
                None,
                f"prompts of label {code!r} must be a string or list of strings, got {type(value).__name__}",
            )
        if not value:
            raise PromptError(None, f"label {code!r} has no prompts")
        prompts = []
        for prompt in value:
            if not isinstance(prompt, str):
                raise PromptError(None, f"label {code!r} has a non-string prompt {prompt!r}")
            if not prompt.strip():
                raise PromptError(None, f"label {code!r} has an empty prompt")
            if too_long := _length_problem(prompt):
                raise PromptError(None, f"label {code!r} has a prompt of {too_long}")
            prompts.append(prompt.strip())
        out[code] = prompts
    return out


# What zero-shot takes as `prompts`: a shipped prompt-set name or a JSON path, a `PromptSet`, or
# {label: prompt or prompts}; and as `labels`: label names (or codes of the prompt source), or a prompt source alone.
# Real unions, not strings: `LabelsArg | None` in a signature must evaluate (typing.get_type_hints, sphinx).
PromptSource: TypeAlias = str | PathLike | PromptSet | Mapping[str, Sequence[str] | str]
LabelsArg: TypeAlias = Iterable[str] | PromptSource


def resolve_prompts(labels: LabelsArg | None = None, prompts: PromptSource | None = None) -> dict[str, list[str]]:
    """Normalise what a user passes to zero-shot into ``{label: [prompt, ...]}`` (order kept).

    Accepted forms:

    * ``labels=["atrial fibrillation", "sinus rhythm"]``: each label is its own single prompt;
    * ``prompts="ptbxl_super"`` (a shipped name or JSON path) or a `PromptSet`: all its labels;
    * ``prompts={"AFIB": ["atrial fibrillation", ...], "SR": "sinus rhythm"}``;
    * ``labels=[codes]`` together with a prompt source: those labels of the source, in that order.

    A prompt source passed as `labels` alone is accepted too. Raises `PromptError` for an empty or
    duplicated label, an empty or non-string prompt, labels missing from the source, or a prompt shared
    by two labels (compared case/whitespace-insensitively).
    """
    if prompts is None and labels is not None and not _is_label_list(labels):
        labels, prompts = None, labels  # a prompt source given positionally
    if labels is not None and not _is_label_list(labels):
        raise PromptError(None, f"labels must be a list of strings when prompts are given, got {labels!r:.80}")
    if labels is not None:
        labels = list(labels)

    if prompts is None:
        if labels is None:
            raise PromptError(None, "no labels and no prompts given")
        table = {label: [label] for label in clean_labels(labels)}
    else:
        if isinstance(prompts, PromptSet):
            table = check_prompt_set(prompts).prompts()
        elif isinstance(prompts, Mapping):
            table = _clean_mapping(prompts)
        elif isinstance(prompts, (str, PathLike)):
            if (problem := prompt_source_problem(prompts)) is not None:
                raise PromptError(None, problem)
            table = load_prompt_set(prompts).prompts()
        else:
            raise PromptError(
                None,
                "prompts must be a prompt-set name or path, a PromptSet, or a dict label -> prompts; "
                f"got {type(prompts).__name__}",
            )
        if labels is not None:
            wanted = clean_labels(labels)
            missing = [label for label in wanted if label not in table]
            if missing:
                named = ", ".join(_with_suggestion(label, table) for label in missing[:20])
                raise PromptError(
                    None,
                    f"{len(missing)} label(s) have no prompts: {named}"
                    f"{' ...' if len(missing) > 20 else ''}; available: {', '.join(list(table)[:40])}",
                )
            table = {label: table[label] for label in wanted}

    check_prompt_set(PromptSet(name="<resolved>", labels=_as_labels(table)))
    return table


# Suffixes of files that are not prompt sets but were given as one (a labels list, a table): never a label name.
_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".yaml", ".yml", ".xlsx")
# The smallest prompt set, shown where a file of labels was given in another form.
_PROMPT_SET_EXAMPLE = (
    '{"name": "mine", "labels": {"AF": {"name": "atrial fibrillation", "prompts": ["atrial fibrillation"]}}}'
)


def prompt_set_hint() -> str:
    """`e.g. {...} (schema: .../prompts/README.md)`: the smallest prompt-set file and where its schema is written
    (the installed copy where there is one), for errors about a file of labels given in another form."""
    try:
        schema = resource_dir("prompts") / "README.md"
    except FileNotFoundError:  # a broken install: the error this is part of must still be said
        schema = None
    where = str(schema) if schema is not None and schema.is_file() else "prompts/README.md of the ecglang repository"
    return f"e.g. {_PROMPT_SET_EXAMPLE} (schema: {where})"


def _not_a_prompt_set(value: str) -> str:
    """Why `value` is no prompt source. A word is offered as a label; a file never is (`--labels prompts.csv`
    scored the file's name as a label): a prompt-set file is JSON."""
    shipped = f"not a shipped prompt set ({', '.join(list_prompt_sets())})"
    path = Path(value).expanduser()
    if path.is_file() or path.suffix.lower() in _FILE_SUFFIXES:
        what = "a file" if path.is_file() else "no such file"
        return (f"{value!r} is {what} and {shipped}: a prompt-set file is a JSON file (.json) mapping each label to "
                f"its name and prompts, {prompt_set_hint()}")  # fmt: skip
    return (f"{value!r} is {shipped} nor a .json path; to use label names as their own prompts pass a list: "
            f"[{value!r}] (CLI: --labels {value!r})")  # fmt: skip


def _with_suggestion(label: str, table: Mapping[str, Any]) -> str:
    """`'norm' (did you mean 'NORM'?)`: codes are case-sensitive (a prompt file may hold both `AF` and `af`), so a
    near miss is named rather than taken."""
    folded = [code for code in table if code.casefold() == label.casefold()]
    close = folded or difflib.get_close_matches(label, list(table), n=1, cutoff=0.7)
    return f"{label!r} (did you mean {close[0]!r}?)" if close else repr(label)


def _is_label_list(value: Any) -> bool:
    """A plain collection of label names (list, tuple, array), as opposed to a prompt source."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, PathLike, Mapping, PromptSet))


def _as_labels(table: dict[str, list[str]]) -> dict[str, LabelPrompts]:
    return {code: LabelPrompts(name=code, aliases=(), prompts=tuple(ps)) for code, ps in table.items()}


# --------------------------------------------------------------------------------------- external prompts


def load_external_prompts(
    path: str | PathLike,
    for_labels: Iterable[str] | PromptSet | str | None = None,
) -> ExternalPrompts:
    """Read a third-party ``{code: description}`` JSON file for comparison with our prompt sets.

    Each description (or list of descriptions) becomes that code's prompts, unchanged. `for_labels`
    picks codes (a list, a `PromptSet`, or a shipped set name); the requested codes the file lacks are
    returned in `missing` (and logged), never silently dropped. Entries that look like pasted chat-model
    output are returned in `suspect`. Raises `PromptError` for unreadable or malformed files.
    """
    path = Path(path).expanduser()
    data = _read_json(path)
    if not isinstance(data, dict):
        raise PromptError(path, f"expected a JSON object {{code: description}}, got {type(data).__name__}")
    table: dict[str, list[str]] = {}
    for code, value in data.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise PromptError(path, f"code {code!r}: description must be a string or list of strings")
        items = [v.strip() for v in items if v.strip()]
        if not items:
            raise PromptError(path, f"code {code!r} has an empty description")
        if too_long := _length_problem(max(items, key=len)):
            raise PromptError(path, f"code {code!r}: a description of {too_long}")
        table[code] = items

    if for_labels is None:
        wanted = list(table)
    elif isinstance(for_labels, PromptSet):
        wanted = for_labels.codes
    elif isinstance(for_labels, str):
        wanted = load_prompt_set(for_labels).codes
    else:
        wanted = list(for_labels)
    missing = [code for code in wanted if code not in table]
    if missing:
        log.warning("%s lacks %d of %d requested codes: %s", path, len(missing), len(wanted), missing)
    picked = {code: table[code] for code in wanted if code in table}
    suspect = {
        code: "looks like pasted chat-model output"
        for code, items in picked.items()
        if any(_CHAT_OUTPUT.search(text) for text in items)
    }
    return ExternalPrompts(path=path, prompts=picked, missing=missing, suspect=suspect)
