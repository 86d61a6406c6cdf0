"""The clinical knowledge base (knowledge/*.jsonl) and its FAISS index (ecglang.knowledge.index).

Real MiniLM embeddings and real FAISS indexes throughout; the bundled base is embedded once per module.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from ecglang.cli import main as cli
from ecglang.data.snomed import CINC2021_EQUIVALENT_CODES, CINC2021_SCORED
from ecglang.errors import ConfigError, KnowledgeError, PromptError
from ecglang.knowledge.base import KNOWN_NAMESPACES, KnowledgeBase, Snippet, normalize_code, split_criteria
from ecglang.knowledge.index import Hit, KnowledgeIndex, default_index_dir
from ecglang.knowledge.retrieval import ComposedPrompt, compose_prompts, retrieve_for_label
from ecglang.scores.labels import knowledge_queries, resolve_knowledge
from ecglang.scores.prompts import load_prompt_set
from ecglang.text.sentences import split_sentences

# -- label sets ------------------------------------------------------------------------------------
# Label columns of the MERL split CSVs start after these columns.
_SPLITS = {
    "ptbxl_super": ("merl/data_split/ptbxl/super_class", "super_class", "ptbxl"),
    "ptbxl_sub": ("merl/data_split/ptbxl/sub_class", "sub_class", "ptbxl"),
    "ptbxl_form": ("merl/data_split/ptbxl/form", "form", "ptbxl"),
    "ptbxl_rhythm": ("merl/data_split/ptbxl/rhythm", "rhythm", "ptbxl"),
    "cpsc2018": ("merl/data_split/icbeb", "scp_codes", "cpsc2018"),
    "chapman": ("merl/data_split/chapman", "diagnose", "chapman"),
}

# Query names for PTB-XL labels that are diagnostic classes/subclasses, not SCP statements (PTB-XL paper).
PTBXL_GROUP_NAMES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
    "LAFB/LPFB": "left anterior or left posterior fascicular block",
    "ISCA": "ischemic in anterior leads",
    "ISCI": "ischemic in inferior leads",
    "AVB": "atrioventricular block",
}
# CPSC 2018 classes as named by the challenge (MERL column codes).
CPSC_NAMES = {
    "NORM": "normal",
    "AFIB": "atrial fibrillation",
    "1AVB": "first-degree atrioventricular block",
    "CLBBB": "left bundle branch block",
    "CRBBB": "right bundle branch block",
    "PAC": "premature atrial contraction",
    "VPC": "premature ventricular contraction",
    "STD": "ST-segment depression",
    "STE": "ST-segment elevation",
}
# Chapman-Shaoxing acronyms spelled out as in Zheng et al. 2020 (their own wording, not cleaned up).
CHAPMAN_NAMES = {
    "AQW": "abnormal Q wave",
    "UW": "U wave",
    "SR": "sinus rhythm",
    "WPW": "Wolff-Parkinson-White syndrome",
    "2AVB": "second degree atrioventricular block",
    "AT": "atrial tachycardia",
    "VB": "ventricular bigeminy",
    "ARS": "axis right shift",
    "STTC": "ST-T change",
    "SA": "sinus arrhythmia",
    "STE": "ST extension",
    "VPB": "ventricular premature beat",
    "TWO": "T wave opposite",
    "STTU": "ST tilt up",
    "ALS": "axis left shift",
    "APB": "atrial premature beats",
    "2AVB1": "second degree atrioventricular block type one",
    "PRIE": "PR interval extension",
    "CCR": "counterclockwise rotation",
    "CR": "clockwise rotation",
    "AF": "atrial flutter",
    "AVB": "atrioventricular block",
    "QTIE": "QT interval extension",
    "LBBB": "left bundle branch block",
    "VEB": "ventricular escape beat",
    "SVT": "supraventricular tachycardia",
    "RBBB": "right bundle branch block",
    "1AVB": "first degree atrioventricular block",
    "STDD": "ST drop down",
    "MI": "myocardial infarction",
    "AFIB": "atrial fibrillation",
    "TWC": "T wave change",
    "PWC": "P wave change",
    "ERV": "early repolarization of the ventricles",
    "RVH": "right ventricle hypertrophy",
    "LVH": "left ventricle hypertrophy",
    "ST": "sinus tachycardia",
    "JEB": "junctional escape beat",
}


def _header_labels(folder: Path, after: str) -> list[str]:
    labels: dict[str, None] = {}
    files = sorted(folder.glob("*.csv"))
    assert files, f"no split CSVs in {folder}"
    for path in files:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh))
        labels.update(dict.fromkeys(header[header.index(after) + 1 :]))
    return list(labels)


def label_sets(shared: Path) -> dict[str, tuple[str, list[str]]]:
    """Label set name -> (knowledge namespace, label codes from the split CSV headers)."""
    out = {name: (ns, _header_labels(shared / folder, after)) for name, (folder, after, ns) in _SPLITS.items()}
    out["cinc2021"] = ("snomed", list(CINC2021_SCORED))
    return out


def scp_descriptions(shared: Path) -> dict[str, str]:
    with (shared / "ptbxl-sample" / "scp_statements.csv").open(newline="") as fh:
        return {normalize_code(row[""]): row["description"] for row in csv.DictReader(fh)}


def label_queries(shared: Path) -> list[tuple[str, str, str]]:
    """(namespace, code, query name) for every distinct label of every label set."""
    scp = scp_descriptions(shared)
    names = {
        "ptbxl": {**scp, **PTBXL_GROUP_NAMES},
        "cpsc2018": CPSC_NAMES,
        "chapman": CHAPMAN_NAMES,
        "snomed": {code: name for code, (_, name) in CINC2021_SCORED.items()},
    }
    out: dict[tuple[str, str], str] = {}
    for ns, codes in label_sets(shared).values():
        for code in codes:
            out[(ns, code)] = names[ns][normalize_code(code)]
    return [(ns, code, name) for (ns, code), name in out.items()]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


@pytest.fixture(scope="module")
def flat(kb: KnowledgeBase) -> KnowledgeIndex:
    return KnowledgeIndex.build(kb, show_progress=False)


@pytest.fixture(scope="module")
def doc_embeddings(flat: KnowledgeIndex) -> np.ndarray:
    return flat.index.reconstruct_n(0, len(flat))


@pytest.fixture(scope="module")
def title_vectors(flat: KnowledgeIndex, kb: KnowledgeBase) -> np.ndarray:
    """Query embeddings of every snippet title (short texts: cheap to embed)."""
    return flat.embed([s.title for s in kb])


def _write_jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record(i: str, title: str, text: str, codes: dict | None = None) -> dict:
    return {"id": i, "title": title, "aliases": [], "codes": codes or {}, "text": text, "source": "Test (2024)"}


SMALL = [
    _record("af", "Atrial fibrillation", "Irregular RR intervals; no P waves; f waves at 350–600 /min in V1.",
            {"snomed": ["164889003"]}),
    _record("pvc", "Ventricular premature complex", "Premature QRS ≥ 120 ms without a preceding P wave.",
            {"snomed": ["17338001"]}),
    _record("lvh", "Left ventricular hypertrophy", "SV1 + RV5 ≥ 3.5 mV; R in aVL ≥ 1.1 mV."),
    _record("brady", "Sinus bradycardia", "Sinus rhythm below 60 bpm with normal P waves in II."),
]  # fmt: skip


# -- the bundled base: schema and content ----------------------------------------------------------
CRITERIA_RE = re.compile(
    r"\d+(?:\.\d+)?\s*(?:ms|s\b|mV|mm|bpm|/min|°|%|mmol/L|points?)"
    r"|\b(?:I|II|III|aVR|aVL|aVF|V[1-9]R?)\b"
)


def test_bundled_base_size_and_schema(kb: KnowledgeBase) -> None:
    assert len(kb) >= 150
    assert len(set(kb.ids)) == len(kb)
    assert len(kb.files) >= 6 and all(f.suffix == ".jsonl" for f in kb.files)
    for s in kb:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.id), s.id
        assert s.title and s.text and s.aliases, s.id
        assert set(s.codes) <= set(KNOWN_NAMESPACES), (s.id, s.codes)
        assert all(c.isdigit() for c in s.codes.get("snomed", ())), s.id
        assert s.origin and ".jsonl:" in s.origin


def test_every_snippet_has_concrete_criteria_and_a_named_dated_source(kb: KnowledgeBase) -> None:
    for s in kb:
        assert CRITERIA_RE.search(s.text), f"{s.id}: no number+unit or lead name in {s.text!r}"
        assert re.search(r"[A-Za-z]{4,}", s.source) and re.search(r"\b(19|20)\d\d\b", s.source), s.id
        assert len(s.sentences()) >= 2, f"{s.id}: criteria should split into several prompts"


@pytest.mark.shared_data
def test_every_label_of_every_label_set_is_covered(kb: KnowledgeBase, shared_data: Path) -> None:
    sets = label_sets(shared_data)
    expected_sizes = {"ptbxl_super": 5, "ptbxl_sub": 23, "ptbxl_form": 19, "ptbxl_rhythm": 12, "cpsc2018": 9}
    for name, size in expected_sizes.items():
        assert len(sets[name][1]) == size, name
    assert len(sets["chapman"][1]) >= 30
    missing = {
        name: [code for code in codes if not kb.snippets_for_code(ns, code)] for name, (ns, codes) in sets.items()
    }
    assert all(not codes for codes in missing.values()), missing


@pytest.mark.shared_data
def test_every_ptbxl_scp_statement_is_covered(kb: KnowledgeBase, ptbxl_dir: Path) -> None:
    statements = scp_descriptions(ptbxl_dir.parent)
    assert len(statements) == 71
    assert [code for code in statements if not kb.snippets_for_code("ptbxl", code)] == []


def test_cinc2021_scored_list_is_covered(kb: KnowledgeBase) -> None:
    assert len(CINC2021_SCORED) == 30
    assert all(a in CINC2021_SCORED and b in CINC2021_SCORED for a, b in CINC2021_EQUIVALENT_CODES)
    assert [code for code in CINC2021_SCORED if not kb.snippets_for_code("snomed", code)] == []


PROMPT_SET_NAMESPACES = {
    "ptbxl_super": "ptbxl",
    "ptbxl_sub": "ptbxl",
    "ptbxl_form": "ptbxl",
    "ptbxl_rhythm": "ptbxl",
    "cpsc2018": "cpsc2018",
    "chapman": "chapman",
    "cinc2021": "snomed",
}


def test_prompt_set_codes_are_covered(kb: KnowledgeBase) -> None:
    """Every label and source code of the shipped prompt sets (prompts/*.json) has a snippet."""
    folder = Path(__file__).resolve().parents[2] / "prompts"
    files = [folder / f"{stem}.json" for stem in PROMPT_SET_NAMESPACES if (folder / f"{stem}.json").is_file()]
    if not files:
        pytest.skip(f"no prompt sets in {folder}")
    uncovered = []
    for path in files:
        ns = PROMPT_SET_NAMESPACES[path.stem]
        for key, label in json.loads(path.read_text(encoding="utf-8"))["labels"].items():
            for code in {*key.split("|"), *label.get("codes", [])}:
                if not kb.snippets_for_code(ns, code):
                    uncovered.append((path.name, key, code))
    assert uncovered == []
    cinc = folder / "cinc2021.json"
    if cinc.is_file():
        labels = json.loads(cinc.read_text(encoding="utf-8"))["labels"]
        assert {c for key in labels for c in key.split("|")} == set(CINC2021_SCORED)


def test_snippets_for_code_normalises_codes(kb: KnowledgeBase) -> None:
    nst = kb.snippets_for_code("ptbxl", "NST")
    assert nst and nst == kb.snippets_for_code("PTBXL", "nst_")
    assert all(s.has_code("ptbxl", "NST") for s in nst)
    assert kb.snippets_for_code("ptbxl", "NO-SUCH-CODE") == []
    assert kb.snippets_for_code("nowhere", "AFIB") == []
    assert {s.id for s in kb.snippets_for_code("chapman", "AF")} >= {"atrial-flutter-typical"}
    assert "atrial-flutter-typical" not in {s.id for s in kb.snippets_for_code("chapman", "AFIB")}


def test_split_sentences_keeps_decimals_and_leads() -> None:
    text = "ST depression ≥ 0.5 mm in V5. T inversion > 1 mm in I; QTc 450 ms in men. Ok."
    parts = split_sentences(text, min_words=3)  # knowledge criteria: fragments under three words are dropped
    assert parts == ["ST depression ≥ 0.5 mm in V5", "T inversion > 1 mm in I", "QTc 450 ms in men"]


def test_criteria_are_never_cut_inside_brackets(kb: KnowledgeBase) -> None:
    """A knowledge prompt built from "... contiguous group (I, aVL; V1–V6; II, III, aVF)" was cut at the semicolons
    inside the brackets: "... (I, aVL" and "II, III, aVF)" were two prompts, neither a criterion."""
    text = "Q wave ≥ 30 ms in two leads of a contiguous group (I, aVL; V1–V6; II, III, aVF); R wave ≥ 40 ms in V1"
    assert split_criteria(text) == ["Q wave ≥ 30 ms in two leads of a contiguous group (I, aVL; V1–V6; II, III, aVF)",
                                     "R wave ≥ 40 ms in V1"]  # fmt: skip
    assert split_criteria("Rate [see text. It varies; often 150 bpm] in adults; flutter waves seen") == [
        "Rate [see text. It varies; often 150 bpm] in adults", "flutter waves seen"]  # fmt: skip
    # an unmatched bracket protects nothing (it would otherwise swallow the rest of the text)
    assert split_criteria("An open ( bracket here; the next clause stands alone") == [
        "An open ( bracket here", "the next clause stands alone"]  # fmt: skip
    assert split_criteria("Closed ) first here; then the second clause (with a note)") == [
        "Closed ) first here", "then the second clause (with a note)"]  # fmt: skip
    # text that holds private-use characters keeps them (they are no masks of its own)
    assert split_criteria("Rate \ue000 varies (a; b) in adults; \ue003 the next clause") == [
        "Rate \ue000 varies (a; b) in adults", "\ue003 the next clause"]  # fmt: skip
    cut = [(s.id, c) for s in kb for c in s.sentences() if c.count("(") != c.count(")") or c.count("[") != c.count("]")]
    assert cut == []
    hit = Hit(kb["prior-mi-q-waves"], 1.0, "code")
    assert any("(I, aVL; V1–V6; II, III, aVF)" in p for p in compose_prompts("old MI", [hit], max_words=1000))


# -- loading errors --------------------------------------------------------------------------------
def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [SMALL[0], "", '{"id": "x", "title": '])
    with pytest.raises(KnowledgeError, match=r"line 3: invalid JSON") as err:
        KnowledgeBase.load(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({k: v for k, v in SMALL[1].items() if k != "source"}, r"line 2: missing required field\(s\) \['source'\]"),
        ({**SMALL[1], "text": "  "}, r"line 2: field 'text' must be a non-empty string"),
        ({**SMALL[1], "alias": ["x"]}, r"line 2: unknown field\(s\) \['alias'\]"),
        ({**SMALL[1], "codes": {"snomed": "17338001"}}, r"line 2: codes\['snomed'\] must be a list"),
        ({**SMALL[1], "id": "Has Spaces"}, r"line 2: id 'Has Spaces'"),
        ([1, 2], r"line 2: expected a JSON object"),
    ],
)
def test_invalid_record_names_file_and_line(tmp_path: Path, record: object, problem: str) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text(json.dumps(SMALL[0]) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=problem) as err:
        KnowledgeBase.load(path)
    assert str(path) in str(err.value)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    first = _write_jsonl(tmp_path / "a.jsonl", SMALL[:2])
    _write_jsonl(tmp_path / "b.jsonl", [SMALL[2], {**SMALL[3], "id": "af"}])
    with pytest.raises(KnowledgeError, match=r"duplicate snippet id 'af' \(first defined at .*a\.jsonl:1\)") as err:
        KnowledgeBase.load(tmp_path)
    assert "b.jsonl:2" in str(err.value)
    assert len(KnowledgeBase.load(first)) == 2


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="not found") as err:
        KnowledgeBase.load(tmp_path / "nope.jsonl")
    assert err.value.path == str(tmp_path / "nope.jsonl")
    with pytest.raises(KnowledgeError, match=r"no \*\.jsonl"):
        KnowledgeBase.load(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="no snippets"):
        KnowledgeBase.load(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"id": "é"}'.encode("latin-1"))
    with pytest.raises(KnowledgeError, match="not UTF-8"):
        KnowledgeBase.load(tmp_path / "latin1.jsonl")


def test_load_accepts_files_folders_and_lists(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", SMALL[:2])
    sub = tmp_path / "more"
    sub.mkdir()
    _write_jsonl(sub / "b.jsonl", SMALL[2:])
    both = KnowledgeBase.load([a, sub])
    assert both.ids == ["af", "pvc", "lvh", "brady"]
    reordered = KnowledgeBase([both["brady"], both["lvh"], both["af"], both["pvc"]])
    assert reordered.checksum == both.checksum  # order-independent
    changed = KnowledgeBase([Snippet(**{**SMALL[0], "aliases": ("AF",), "codes": {}})])
    assert changed.checksum != KnowledgeBase([Snippet.from_dict(SMALL[0])]).checksum


# -- retrieval -------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_alias_queries_retrieve_their_label_at_top1(flat: KnowledgeIndex, shared_data: Path) -> None:
    labels = label_queries(shared_data)
    assert len(labels) >= 120
    hits = flat.search([name for _, _, name in labels], k=1)
    misses = [(ns, code, name, h[0].snippet.id) for (ns, code, name), h in zip(labels, hits, strict=True)
              if not h[0].snippet.has_code(ns, code)]  # fmt: skip
    rate = 1 - len(misses) / len(labels)
    print(f"\nknowledge retrieval top-1 by label name: {rate:.1%} of {len(labels)} labels; misses: {misses}")
    assert rate >= 0.90, misses


def test_search_ranks_and_scores(flat: KnowledgeIndex, kb: KnowledgeBase) -> None:
    [hits] = flat.search("complete left bundle branch block criteria", k=5)
    assert len(hits) == 5
    assert hits[0].snippet.has_code("ptbxl", "CLBBB")
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1.0 + 1e-5
    many = flat.search(["sinus tachycardia", "U wave"], k=len(kb) + 10)
    assert [len(h) for h in many] == [len(kb), len(kb)]  # k is clipped to the corpus size
    assert flat.search([], k=3) == []
    with pytest.raises(ConfigError):
        flat.search("x", k=0)
    with pytest.raises(ConfigError):
        flat.search(["ok", "  "])


def test_flat_scores_are_exact_cosine(flat: KnowledgeIndex, doc_embeddings: np.ndarray) -> None:
    query = flat.embed(["prolonged QT interval"])
    [hits] = flat.search_embeddings(query, k=3)
    exact = doc_embeddings @ query[0]
    assert [h.snippet.id for h in hits] == [flat.kb.snippets[i].id for i in np.argsort(-exact)[:3]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(exact)[::-1][:3], rtol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_flat(
    flat: KnowledgeIndex, kb: KnowledgeBase, doc_embeddings: np.ndarray, title_vectors: np.ndarray, index_type: str
) -> None:
    approx = KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type=index_type)
    assert approx.index.metric_type == faiss.METRIC_INNER_PRODUCT
    if index_type == "ivf":
        assert isinstance(approx.index, faiss.IndexIVFFlat)
        assert approx.params["nlist"] == round(len(kb) ** 0.5) and approx.index.nprobe == approx.params["nprobe"]
    else:
        assert isinstance(approx.index, faiss.IndexHNSWFlat)
    exact = [h[0].snippet.id for h in flat.search_embeddings(title_vectors, k=1)]
    approx_top = [h[0].snippet.id for h in approx.search_embeddings(title_vectors, k=1)]
    agreement = np.mean([a == b for a, b in zip(exact, approx_top, strict=True)])
    assert agreement >= 0.9, agreement


def test_build_rejects_bad_options(kb: KnowledgeBase, doc_embeddings: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="index_type"):
        KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type="lsh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shape"):
        KnowledgeIndex.from_embeddings(kb, doc_embeddings[:-1])
    with pytest.raises(ConfigError, match="nprobe"):
        KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type="ivf", nlist=4, nprobe=9)
    for index_type in ("flat", "hnsw"):  # IVF settings on another index: refused, not silently ignored
        with pytest.raises(ConfigError, match="'ivf' index only"):
            KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type=index_type, nprobe=3)
        with pytest.raises(ConfigError, match="'ivf' index only"):
            KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type=index_type, nlist=2)


# -- persistence -----------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_results(
    flat: KnowledgeIndex, kb: KnowledgeBase, doc_embeddings: np.ndarray, tmp_path: Path
) -> None:
    queries = ["inferior myocardial infarction", "Wenckebach", "low QRS voltage", "digoxin effect"]
    for index in (flat, KnowledgeIndex.from_embeddings(kb, doc_embeddings, index_type="ivf", nprobe=3)):
        folder = index.save(tmp_path / index.index_type)
        assert {p.name for p in folder.iterdir()} == {"vectors.npy", "snippets.jsonl", "meta.json"}
        loaded = KnowledgeIndex.load(folder, kb=kb)
        assert (loaded.index_type, loaded.model_name, loaded.dim) == (index.index_type, index.model_name, 384)
        assert loaded.params == index.params
        before, after = index.search(queries, k=4), loaded.search(queries, k=4)
        assert [[h.snippet.id for h in r] for r in before] == [[h.snippet.id for h in r] for r in after]
        np.testing.assert_allclose([[h.score for h in r] for r in before], [[h.score for h in r] for r in after])
        ids = [kb.snippets[3].id, kb.snippets[0].id]
        np.testing.assert_allclose(loaded.vectors(ids), doc_embeddings[[3, 0]], atol=1e-6)


def test_stale_or_tampered_index_is_refused(flat: KnowledgeIndex, kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = flat.save(tmp_path / "idx")
    edited = KnowledgeBase([*kb.snippets[1:], Snippet.from_dict({**kb.snippets[0].to_dict(), "text": "QRS ≥ 99 ms."})])
    with pytest.raises(KnowledgeError, match="stale index"):
        KnowledgeIndex.load(folder, kb=edited)

    lines = (folder / "snippets.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "snippets.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"does not match meta\.json"):
        KnowledgeIndex.load(folder)

    folder = flat.save(tmp_path / "idx2")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "model": "/no/such/model"}))
    with pytest.raises(KnowledgeError, match="not available"):
        KnowledgeIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "dim": 128}))
    n = len(kb)
    with pytest.raises(KnowledgeError, match=rf"holds \({n}, 384\) float32; the metadata says \({n}, 128\)"):
        KnowledgeIndex.load(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(KnowledgeError, match="invalid JSON"):
        KnowledgeIndex.load(folder)
    (folder / "meta.json").write_text("[" * 100_000 + "]" * 100_000)  # json's own RecursionError before
    with pytest.raises(KnowledgeError, match="invalid JSON: nested deeper than"):
        KnowledgeIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(KnowledgeError, match="not the index's vectors: not an NPY file"):
        KnowledgeIndex.load(folder)
    with pytest.raises(KnowledgeError, match="not found"):
        KnowledgeIndex.load(tmp_path / "missing")


def test_default_index_is_cached_per_knowledge_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGLANG_CACHE", str(tmp_path / "cache"))
    small = KnowledgeBase.load(_write_jsonl(tmp_path / "kb.jsonl", SMALL))
    first = KnowledgeIndex.default(kb=small, show_progress=False)
    folder = default_index_dir(small, first.model_name, "flat")
    assert folder.parent == tmp_path / "cache" / "knowledge" and (folder / "meta.json").is_file()
    stamp = (folder / "vectors.npy").stat().st_mtime_ns

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("a valid cached index must be loaded, not rebuilt")

    monkeypatch.setattr(KnowledgeIndex, "build", no_rebuild)
    second = KnowledgeIndex.default(kb=small, show_progress=False)
    assert (folder / "vectors.npy").stat().st_mtime_ns == stamp
    query = "premature wide QRS complex without a P wave"
    assert [(h.snippet.id, round(h.score, 5)) for h in second.search(query, k=4)[0]] == [
        (h.snippet.id, round(h.score, 5)) for h in first.search(query, k=4)[0]
    ]
    assert second.search(query, k=1)[0][0].snippet.id == "pvc"


def test_the_cached_index_follows_what_is_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key was the snippets and the model alone: code that composes the embedded text otherwise (a new
    ecglang) kept reading vectors embedded from the old text, and a broken `document()` passed every retrieval
    test on a warm cache."""
    monkeypatch.setenv("ECGLANG_CACHE", str(tmp_path / "cache"))
    small = KnowledgeBase.load(_write_jsonl(tmp_path / "kb.jsonl", SMALL))
    first = KnowledgeIndex.default(kb=small, show_progress=False)
    monkeypatch.setattr(Snippet, "document", lambda self: "ecg.")  # every snippet embeds the same text
    changed = KnowledgeIndex.default(kb=small, show_progress=False)
    assert default_index_dir(small, first.model_name, "flat").is_dir()  # built anew under its own key
    ids = [snippet.id for snippet in small]
    assert len({v.tobytes() for v in changed.vectors(ids)}) == 1  # the new text's vectors, not the cached ones
    assert len({v.tobytes() for v in first.vectors(ids)}) == len(small)


# -- knowledge-enriched prompts --------------------------------------------------------------------
def test_retrieve_for_label_and_compose_prompts(flat: KnowledgeIndex) -> None:
    hits = retrieve_for_label(flat, "atrial fibrillation", ["irregularly irregular rhythm without P waves"], k=3)
    assert len(hits) == 3 and hits[0].snippet.has_code("ptbxl", "AFIB")
    tokenizer = flat.encoder.tokenizer
    prompts = compose_prompts("atrial fibrillation", hits, tokenizer=tokenizer, max_tokens=128)
    assert len(prompts) >= 6
    assert all(isinstance(p, ComposedPrompt) and isinstance(p, str) for p in prompts)
    # Each prompt names the condition its criterion was written for (shared by every label that retrieves it).
    assert all(p.startswith(f"{flat.kb[p.snippet_id].title}: ") for p in prompts)
    assert all(p.label == "atrial fibrillation" for p in prompts)
    assert {p.snippet_id for p in prompts} <= {h.snippet.id for h in hits}
    assert prompts[0].snippet_id == hits[0].snippet.id and prompts[0].score == pytest.approx(hits[0].score)
    assert all(len(tokenizer(p)["input_ids"]) <= 128 for p in prompts)
    assert len(set(prompts)) == len(prompts)
    clone = pickle.loads(pickle.dumps(prompts[0]))
    assert clone == prompts[0] and clone.snippet_id == prompts[0].snippet_id
    assert compose_prompts("atrial fibrillation", hits, max_prompts=2) == prompts[:2]
    with pytest.raises(PromptError):
        retrieve_for_label(flat, "  ")


def test_retrieve_for_label_with_code_puts_tagged_snippets_first(flat: KnowledgeIndex, kb: KnowledgeBase) -> None:
    hits = retrieve_for_label(flat, "left bundle branch block", k=4, code=("snomed", "164909002"))
    tagged = {s.id for s in kb.snippets_for_code("snomed", "164909002")}
    assert len(hits) == 4 and all(h.snippet.id in tagged for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    few = retrieve_for_label(flat, "bundle branch block", k=12, code=("snomed", "6374002"))
    n_tagged = len(kb.snippets_for_code("snomed", "6374002"))
    # Fewer snippets rather than off-label ones: a known code is never padded with untagged neighbours.
    assert 0 < n_tagged < 12 and len(few) == n_tagged
    assert all(h.snippet.has_code("snomed", "6374002") and h.via == "code" for h in few)
    assert len({h.snippet.id for h in few}) == n_tagged
    # The guard applies to tagged snippets too: RBBB-tagged "bundle branch block" snippets never reach LBBB.
    left = retrieve_for_label(flat, "left bundle branch block", k=12, code=("snomed", "6374002"))
    assert left and all("right" not in h.snippet.title.lower() for h in left)
    plain = retrieve_for_label(flat, "bundle branch block", k=3, code=("snomed", "000"))
    assert [h.snippet.id for h in plain] == [h.snippet.id for h in retrieve_for_label(flat, "bundle branch block", k=3)]


def test_code_tagged_snippets_that_define_the_condition_come_before_group_and_red_flag_lists(
    flat: KnowledgeIndex, kb: KnowledgeBase
) -> None:
    # File order put "Other ST-T statements" (a group snippet written for six PTB-XL codes) first for NDT, and
    # the athletes' red-flag list (NORM, INVT, CLBBB) first for INVT, ahead of the snippets that define them.
    ndt = retrieve_for_label(flat, "non-diagnostic T abnormalities", k=3, code=("ptbxl", "NDT"))
    assert ndt[0].snippet.id == "non-diagnostic-t-abnormalities"
    invt = [h.snippet.id for h in retrieve_for_label(flat, "inverted T waves", k=3, code=("ptbxl", "INVT"))]
    assert "t-wave-inversion" in invt and "abnormal-athlete-ecg" not in invt
    # A cause that also moves the other way (hypercalcemia shortens QT) or a condition that merely includes the
    # finding (hypothermia's bradycardia) is not tagged as if it defined it.
    for label, code, off in (("prolonged QT interval", ("snomed", "111975006"), "calcium-disorders"),
                             ("long QT interval", ("ptbxl", "LNGQT"), "calcium-disorders"),
                             ("bradycardia", ("snomed", "426627000"), "hypothermia-osborn")):  # fmt: skip
        for c in (code, None):
            assert off not in [h.snippet.id for h in retrieve_for_label(flat, label, k=12, code=c)], (label, c)
    # "AVB" means AV block of any degree (PTB-XL's _AVB subclass, Chapman's unspecified AVB). It was also an
    # alias of the third-degree snippet, which tied on the name and led by file order for both labels.
    general = (("atrioventricular block (first, second or third degree)", ("ptbxl", "AVB")),
               ("atrioventricular block (degree not specified)", ("chapman", "AVB")), ("AVB", None))  # fmt: skip
    for label, code in general:
        assert retrieve_for_label(flat, label, k=3, code=code)[0].snippet.id == "av-block-overview", (label, code)
    # An alias several snippets share leads to the snippet whose title opens with it, not to one that lists it
    # as a mimic or a dataset's wording of it (both came first in file order).
    for label, first in (("sinus pause", "sinus-pause-sa-block"), ("T wave inversion", "t-wave-inversion"),
                         ("negative T waves", "t-wave-inversion")):  # fmt: skip
        assert retrieve_for_label(flat, label, k=3)[0].snippet.id == first, label
    # A group label (PTB-XL's STTC superclass stands for NDT, NST_, DIG, ...): "fewer codes first" put its
    # narrowest members ("ST tilt up", "aVR ST elevation") beside the overview; the snippets whose codes
    # cover the group come first instead.
    members = load_prompt_set("ptbxl_super").labels["STTC"].codes
    assert knowledge_queries("ptbxl_super", None)["STTC"].members == members and "NDT" in members
    sttc = [h.snippet.id for h in retrieve_for_label(flat, "ST/T change", k=3, code=("ptbxl", "STTC"), members=members)]
    assert sttc[:2] == ["st-t-change-overview", "st-t-other-statements"]
    assert not {"st-tilt-up", "avr-st-elevation-left-main"} & set(sttc)
    # A snippet about one dataset's wording ("T wave opposite (Chapman-Shaoxing TWO)") serves that dataset's
    # label; it led PTB-XL's INVT and took places from the general snippets for PTB-XL, CPSC and free text.
    others = (("inverted T waves", ("ptbxl", "INVT")), ("ST depression", ("cpsc2018", "STD")),
              ("ST elevation", ("ptbxl", "STE")), ("T wave inversion", None), ("ST depression", None))  # fmt: skip
    for label, code in others:
        ids = [h.snippet.id for h in retrieve_for_label(flat, label, k=3, code=code)]
        assert ids and not any(i.startswith("chapman-") for i in ids), (label, code, ids)
    two = retrieve_for_label(flat, "T wave opposite", k=3, code=("chapman", "TWO"))
    assert two[0].snippet.id == "chapman-t-wave-opposite"
    # A label whose code is a class of equivalent codes (CinC's "733534002|164909002") is tagged nowhere as
    # such: its members' snippets are the candidates, whatever its name says.
    lbbb = retrieve_for_label(flat, "zz label", k=12, code=("snomed", "733534002|164909002"),
                              members=("733534002", "164909002"))  # fmt: skip
    tagged = {x.id for c in ("733534002", "164909002") for x in kb.snippets_for_code("snomed", c)}
    assert lbbb and {h.snippet.id for h in lbbb} == tagged and all(h.via == "code" for h in lbbb)
    # Without a name that names a snippet, the snippets written for fewer codes come first.
    by_code = retrieve_for_label(flat, "zz label", k=12, code=("ptbxl", "LNGQT"))
    n = [len(h.snippet.codes.get("ptbxl", ())) for h in by_code]
    assert len(by_code) == len(kb.snippets_for_code("ptbxl", "LNGQT")) and n == sorted(n) and n[0] < n[-1]


def test_every_retrieved_snippet_contributes_within_the_prompt_budget(kb: KnowledgeBase) -> None:
    # A snippet with many criteria first used to fill all of `max_prompts`: the others were shown as the
    # score's evidence but added nothing to it.
    longest = max(kb, key=lambda s: len(s.sentences()))
    long_first = [longest, *[s for s in kb if s.id != longest.id and len(s.sentences()) >= 2][:2]]
    assert len(long_first[0].sentences()) >= 9
    prompts = compose_prompts("x", [Hit(s, 1.0) for s in long_first], max_prompts=9)
    assert len(prompts) == 9 and {p.snippet_id for p in prompts} == {s.id for s in long_first}
    # In turns: the first criterion of each snippet, then the second ...
    assert [p.snippet_id for p in prompts[:3]] == [s.id for s in long_first]


def test_composed_prompts_fit_a_small_token_budget(flat: KnowledgeIndex, kb: KnowledgeBase) -> None:
    tokenizer = flat.encoder.tokenizer
    hits = [Hit(s, 1.0) for s in kb]
    # a label naming no side, degree or direction: the guard over criteria (audit 21) leaves every snippet in
    prompts = compose_prompts("abnormal ECG", hits, tokenizer=tokenizer, max_tokens=32)
    assert len({p.snippet_id for p in prompts}) == len(kb)  # every snippet contributes criteria
    assert max(len(tokenizer(p)["input_ids"]) for p in prompts) <= 32
    word_cut = compose_prompts("x", hits, max_words=12)
    assert max(len(p.split()) for p in word_cut) <= 12


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_build_and_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb_file = _write_jsonl(tmp_path / "kb.jsonl", SMALL)
    out = tmp_path / "index"
    assert cli.main(["knowledge", "build", "--kb", str(kb_file), "--out", str(out), "--index", "hnsw"]) == 0
    assert "4 snippets" in capsys.readouterr().out
    assert json.loads((out / "meta.json").read_text())["index_type"] == "hnsw"

    assert cli.main(["knowledge", "search", "premature wide QRS complex", "-k", "2", "--index", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(line for line in lines if line.startswith("1. "))
    assert first.split()[1] == "pvc" and "codes: snomed 17338001" in first
    assert 0 < float(first.split("score ")[1].split()[0]) <= 1
    assert any("Premature QRS ≥ 120 ms without a preceding P wave" in line for line in lines)  # the text itself

    assert cli.main(["knowledge", "search", "pvc", "zebra crossing", "--json", "--index", str(out)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in records] == ["pvc", "zebra crossing"]
    assert records[0]["hits"][0]["id"] == "pvc" and records[0]["hits"][0]["codes"] == {"snomed": ["17338001"]}
    assert records[0]["hits"][0]["text"].startswith("Premature QRS") and records[1]["hits"] == []
    assert cli.main(["knowledge", "search", "zebra crossing", "--index", str(out)]) == 0
    assert "no knowledge found" in capsys.readouterr().out

    assert cli.main(["knowledge", "show", "af", "--kb", str(kb_file)]) == 0
    shown = capsys.readouterr().out
    assert "af  codes: snomed 164889003" in shown and "Irregular RR intervals" in shown
    assert cli.main(["knowledge", "show", "nope", "--kb", str(kb_file)]) == 1
    assert "nope" in capsys.readouterr().err

    assert cli.main(["knowledge", "build", "--kb", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    assert cli.main(["knowledge", "search", "x", "--index", str(tmp_path / "nowhere")]) == 1
    assert "not found" in capsys.readouterr().err
    # --nprobe without --index ivf: a usage error before any embedding, not a setting silently dropped
    assert cli.main(["knowledge", "build", "--kb", str(kb_file), "--out", str(tmp_path / "i2"), "--nprobe", "2"]) == 2
    assert "--index ivf only" in capsys.readouterr().err and not (tmp_path / "i2").exists()


# -- query embedding cache -------------------------------------------------------------------------
def test_repeated_queries_are_not_embedded_again(flat: KnowledgeIndex) -> None:
    texts = ["second degree AV block", "Mobitz type I", "progressive PR prolongation"]
    first = flat.embed(texts)
    calls = {"n": 0}
    original = flat.encoder.encode

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    flat.encoder.encode = counting
    try:
        again = flat.embed(texts)
        assert calls["n"] == 0, "a repeated query ran the encoder again"
        np.testing.assert_array_equal(again, first)
        again[:] = 0  # callers get a copy: the cached embedding is untouched
        np.testing.assert_array_equal(flat.embed(texts), first)
        flat.embed([*texts, "a new query"])  # a different list is embedded
        assert calls["n"] == 1
        assert [h.snippet.id for h in retrieve_for_label(flat, "Wenckebach", texts[1:], k=2)] == [
            "mobitz-i-wenckebach"  # the one snippet the alias names, found without running the encoder
        ]
        assert calls["n"] == 1
        label = "progressive PR prolongation before a dropped QRS"  # named by no alias: the hybrid stage embeds it
        hits = retrieve_for_label(flat, label, texts[1:], k=2)
        retrieve_for_label(flat, label, texts[1:], k=2)
        assert calls["n"] == 2  # the label's query: embedded once for both calls
        assert hits and all(h.via == "hybrid" for h in hits)
        flat.clear_query_cache()
        np.testing.assert_allclose(flat.embed(texts), first, atol=1e-6)
        assert calls["n"] == 3  # forgotten: embedded again
    finally:
        del flat.encoder.encode


def test_an_index_refuses_an_edited_base_and_a_knowledge_folder(tmp_path: Path, capsys) -> None:
    """An index kept serving the old snippets after its base was edited (no warning, though loading a stale
    index was documented as a KnowledgeError), and `build --kb my_kb --out my_kb` wrote snippets.jsonl beside
    the base's own files, so the folder then read every id twice."""
    kb_dir = tmp_path / "my_kb"
    kb_dir.mkdir()
    kb_file = _write_jsonl(kb_dir / "notes.jsonl", SMALL)
    assert cli.main(["knowledge", "build", "--kb", str(kb_dir), "--out", str(kb_dir)]) == 1
    assert "holds knowledge files (notes.jsonl): write the index to another folder" in capsys.readouterr().err
    assert sorted(p.name for p in kb_dir.iterdir()) == ["notes.jsonl"]  # refused before anything was written

    out = tmp_path / "idx"
    assert cli.main(["knowledge", "build", "--kb", str(kb_dir), "--out", str(out)]) == 0
    assert cli.main(["knowledge", "search", "sinus bradycardia", "--index", str(out)]) == 0
    assert "1. brady" in capsys.readouterr().out
    _write_jsonl(kb_file, [r for r in SMALL if r["id"] != "brady"])  # the user deletes a snippet
    assert cli.main(["knowledge", "search", "sinus bradycardia", "--index", str(out)]) == 1
    assert "stale index" in capsys.readouterr().err
    with pytest.raises(KnowledgeError, match="stale index"):
        resolve_knowledge(out)  # zero-shot's --knowledge FOLDER reads it the same way
    shutil.move(str(kb_dir), str(tmp_path / "elsewhere"))
    assert KnowledgeIndex.load(out).kb.ids == [r["id"] for r in SMALL]  # sources gone (a moved index): used as is


def test_options_that_would_do_nothing_are_refused(tmp_path: Path, capsys) -> None:
    """A mistyped --code namespace tagged no snippet and the words were matched instead, without a word; -k with
    --knowledge off was ignored."""
    kb_file = _write_jsonl(tmp_path / "kb.jsonl", SMALL)
    out = tmp_path / "idx"
    assert cli.main(["knowledge", "build", "--kb", str(kb_file), "--out", str(out)]) == 0
    assert cli.main(["knowledge", "search", "pvc", "--code", "snomd:17338001", "--index", str(out)]) == 1
    assert "no snippet has a code of namespace 'snomd' (namespaces of this knowledge base: snomed)" in (
        capsys.readouterr().err
    )
    assert cli.main(["knowledge", "search", "pvc", "--code", "snomed:17338001", "--index", str(out)]) == 0
    assert cli.main(["zero-shot", "x.hea", "--knowledge", "off", "-k", "3", "--labels", "a"]) == 2  # usage error
    assert "-k sets the snippets retrieved per label: it does nothing with --knowledge off" in capsys.readouterr().err


@pytest.mark.parametrize("params", [{"hnsw_m": 1_000_000}, {"hnsw_m": 3_000_000_000}, {"ef_search": 10**12},
                                    {"ef_construction": 0}])  # fmt: skip
def test_hnsw_sizes_in_an_index_folder_are_bounded(flat: KnowledgeIndex, tmp_path: Path, params: dict) -> None:
    """An index folder is data: hnsw_m 10⁶ in its meta.json made loading take 2.1 GB for 195 snippets (10⁸: a
    std::bad_alloc traceback; 3·10⁹: a SWIG TypeError traceback). Refused, naming meta.json, before any graph."""
    folder = flat.save(tmp_path / "idx")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "index_type": "hnsw", "params": params}))
    with pytest.raises(KnowledgeError, match=r"meta\.json.*'params': hnsw_m must be in 2\.\.1024"):
        KnowledgeIndex.load(folder, model=flat.encoder)
