"""Hybrid knowledge retrieval picks the right condition (issue 14): evaluation set with thresholds, the
contradiction guard on the bundled prompt sets, abbreviations and misspellings. Real MiniLM + FAISS + BM25."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecglang.knowledge.aliases import normalize_tokens
from ecglang.knowledge.guard import conflicts, features
from ecglang.knowledge.index import KnowledgeIndex
from ecglang.knowledge.quality import load_cases, qualified_snomed_cases, score_retrieval, snomed_name_cases
from ecglang.knowledge.retrieval import compose_prompts, retrieve_for_label, retrieve_for_labels
from ecglang.scores.labels import knowledge_queries, retrieve_knowledge

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parents[1] / "prompts"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


def test_evaluation_set_precision_and_off_label(index: KnowledgeIndex) -> None:
    cases = load_cases(HERE / "retrieval_eval.jsonl")
    assert sum(bool(c.codes) for c in cases) >= 80 and sum(not c.codes for c in cases) >= 20
    score = score_retrieval(index, cases, k=3)
    print(f"\nevaluation set: {score.summary()}; misses: {score.misses}")
    assert score.precision >= 0.95, score.misses
    assert score.off_label_rate <= 0.01, score.misses
    assert score.coverage >= 0.95, score.misses  # the floor must not buy precision by retrieving nothing
    assert score.negatives_with_hits == 0, score.misses


def test_qualified_snomed_names_and_abbreviations(index: KnowledgeIndex) -> None:
    """The SNOMED CT names and abbreviations as users wrap them ("possible AVNRT", "old SAB noted", 1,696 labels):
    at the start of session 22, 72.2 % got any snippet (an abbreviation beside any other word got none),
    precision@3 0.997, off-label 0.31 %; 99.6 %, 0.999 and 0.09 % since qualifiers leave a short form whole."""
    cases = qualified_snomed_cases(index.kb)
    score = score_retrieval(index, cases, k=3)
    print(f"\n{score.summary()}")
    assert len(cases) > 1500
    assert score.coverage >= 0.98 and score.precision >= 0.99 and score.off_label_rate <= 0.005, score.misses[:20]


def test_snomed_names_top3_carry_their_code(index: KnowledgeIndex) -> None:
    """Issue 14's measurement (46 % on main): top-3 snippets for the SNOMED CT names carry the code. 92 names in
    the issue; 94 since the clinical review tagged the atrial-bigeminy (251173003) and Mobitz II (426183003)
    codes on the snippets that describe them; 104 since the fourth review (audit 18): five CinC 2020 codes that
    snippets carried were added to the name table (electrical alternans, low QRS voltage in the limb and in the
    precordial leads, Mobitz II 28189009, tall U wave) and five codes got snippets of their own (ventricular
    fibrillation and flutter, sinus node dysfunction, brady-tachy syndrome, accelerated idioventricular rhythm);
    106 since CinC 2020's multifocal atrial tachycardia (713423005) and partial AV block 2:1 (164903001) joined it."""
    cases = snomed_name_cases(index.kb)
    assert len(cases) == 106
    assert {(c.label, c.codes) for c in cases} >= {
        ("multifocal atrial tachycardia", (("snomed", "713423005"),)),
        ("partial atrioventricular block 2:1", (("snomed", "164903001"),)),
    }
    score = score_retrieval(index, cases, k=3)
    print(f"\nSNOMED CT names: {score.summary()}")
    assert score.precision >= 0.95 and score.coverage == 1.0, score.misses


@pytest.mark.parametrize(
    ("label", "forbidden"),
    [
        ("left bundle branch block", r"right bundle|rbbb"),
        ("sinus tachycardia", r"bradycardia"),
        ("right ventricular hypertrophy", r"^lvh|left ventricular"),
        ("1st degree AV block", r"second|third|mobitz"),
        ("hyperkalemia", r"hypertrophy|hypokal"),
        ("ST depression", r"elevation"),
        ("incomplete right bundle branch block", r"^crbbb|^clbbb|left"),
        ("left anterior fascicular block", r"posterior"),
    ],
)
def test_issue_examples_never_get_the_opposite_condition(index: KnowledgeIndex, label: str, forbidden: str) -> None:
    for k in (3, 10):
        hits = retrieve_for_label(index, label, [label], k=k)
        assert hits, label
        bad = [h.snippet.id for h in hits if re.search(forbidden, f"{h.snippet.id} {h.snippet.title}".lower())]
        assert bad == [], (label, bad)


@pytest.mark.parametrize(
    ("typed", "snippet"),
    [
        ("LBBB", "clbbb-criteria"),
        ("AFib", "atrial-fibrillation-definition"),
        ("A-fib", "atrial-fibrillation-definition"),
        ("1AVB", "first-degree-av-block"),
        ("1st degree AVB", "first-degree-av-block"),
        ("WPW", "wpw-pattern"),
        ("PVCs", "pvc-definition"),
        ("atrial fibrilation", "atrial-fibrillation-definition"),
        ("sinus brachycardia", "sinus-bradycardia-definition"),
        ("left bundel branch block", "clbbb-criteria"),
        ("inferior ischaemia", "ischemia-inferior-leads"),
        ("Mobitz 2", "mobitz-ii"),
        ("164909002", "clbbb-criteria"),
        # a second review's misses: eponyms alone, dotted and lettered abbreviations, another word order
        ("Wellens", "wellens-pattern"),
        ("Sgarbossa", "lbbb-sgarbossa"),
        ("NSVT", "pvc-complexity-burden"),
        ("L.B.B.B.", "clbbb-criteria"),
        ("l-bbb", "clbbb-criteria"),
        ("lef bundle branch block", "clbbb-criteria"),
        ("1st degree heart block", "first-degree-av-block"),
        ("AV block first degree", "first-degree-av-block"),
    ],
)
def test_abbreviations_misspellings_and_codes_match_exactly(index: KnowledgeIndex, typed: str, snippet: str) -> None:
    hits = retrieve_for_label(index, typed, k=3)
    assert snippet in [h.snippet.id for h in hits], (typed, [h.snippet.id for h in hits])
    assert all(h.via in ("code", "alias", "contained") for h in hits)


def test_nonsense_gets_no_knowledge(index: KnowledgeIndex) -> None:
    labels = ["banana", "purple monkey dishwasher", "football match", "asdfgh", "pneumonia"]
    assert retrieve_for_labels(index, labels, k=3) == [[] for _ in labels]


def test_normalisation_and_guard_units() -> None:
    assert normalize_tokens("LBBB") == normalize_tokens("left bundle-branch block")
    assert normalize_tokens("1st degree AV block") == normalize_tokens("first-degree atrioventricular block")
    assert normalize_tokens("PVCs") == normalize_tokens("premature ventricular contraction")
    assert normalize_tokens("ischaemia") == ("ischemia",)
    assert normalize_tokens("Mobitz type II") == normalize_tokens("mobitz 2")
    left, right = features(normalize_tokens("LBBB")), features(normalize_tokens("Complete right bundle branch block"))
    assert conflicts(left, right) == ["side"]
    assert conflicts(features(("sinus", "tachycardia")), features(("sinus", "bradycardia"))) == ["rate"]
    assert conflicts(features(("hyperkalemia",)), features(("biventricular", "hypertrophy"))) == []
    assert conflicts(features(("hyperkalemia",)), features(("hypokalemia",))) == ["hyper/hypo kale"]
    assert conflicts(features(normalize_tokens("NSTEMI")), features(normalize_tokens("ST depression"))) == []
    assert conflicts(features(normalize_tokens("complete heart block")), features(normalize_tokens("2nd degree AVB")))
    assert conflicts(features(normalize_tokens("bundle branch block")), right) == []


# Opposite words, read from raw text (independently of the guard's normalisation): a label naming one side
# and not the other must never get a snippet whose title names only the other side.
OPPOSITES = [(r"\bleft\b", r"\bright\b"), (r"tachy", r"brady"), (r"elevation", r"depression"),
             (r"\b(first|1st)\b", r"\b(second|2nd|third|3rd)\b"), (r"\b(second|2nd)\b", r"\b(first|1st|third|3rd)\b"),
             (r"\b(third|3rd)\b", r"\b(first|1st|second|2nd)\b"), (r"hyperkal", r"hypokal"), (r"hypokal", r"hyperkal"),
             (r"\bincomplete\b", r"(?<!in)complete\b"),
             (r"\banterior\b.*fascic", r"\bposterior\b.*fascic")]  # fmt: skip


def _contradictions(label: str, title: str) -> list[tuple[str, str]]:
    label, title = label.lower(), title.lower()
    found = []
    for a, b in OPPOSITES:
        for x, y in ((a, b), (b, a)):
            if re.search(x, label) and not re.search(y, label) and re.search(y, title) and not re.search(x, title):
                found.append((x, y))
    return found


def test_prompt_set_labels_have_no_contradictions(index: KnowledgeIndex) -> None:
    # As zero-shot retrieves for each label (name, prompts, code, group members), and by the name alone.
    queries = [q for path in sorted(PROMPTS.glob("*.json")) for q in knowledge_queries(None, str(path)).values()]
    assert len(queries) == 132 and all(q.code for q in queries)
    names = [q.name for q in queries]
    bad = []
    for found in (retrieve_knowledge(index, queries, k=5), retrieve_for_labels(index, names, k=5)):
        bad += [(q.name, h.snippet.id) for q, hits in zip(queries, found, strict=True) for h in hits
                if _contradictions(q.name, h.snippet.title)]  # fmt: skip
    assert bad == []
    assert all(retrieve_knowledge(index, queries, k=3))  # every prompt-set label still gets knowledge


# A second review's contradictions: every one got past the guard before (the ids in the comments).
@pytest.mark.parametrize(
    ("label", "forbidden"),
    [
        ("ventricular fibrillation", r"atrial|third-degree"),  # the AF f-wave snippet: its title names "ventricular"
        ("VF", r"atrial|wpw"),
        ("NSTEMI", r"^stemi"),  # "non ST elevation" named nothing, so STEMI criteria passed
        ("non-ST elevation myocardial infarction", r"^stemi"),
        ("partial left bundle branch block", r"^clbbb|strict|sgarbossa"),  # complete-block criteria
        ("incomplete left bundle branch block", r"^clbbb|strict"),
        ("normal axis", r"right-axis|left-axis"),
        ("prolonged QRS", r"long-qt"),
        ("QRS prolongation", r"long-qt|hyperkalemia"),
        ("short QRS", r"short-pr|preexcited"),
        ("ventricular flutter", r"sinus"),
        ("AV block first degree", r"high-grade|second|third"),
        ("lef bundle branch block", r"crbbb|right"),  # "lef" is left, not an unsided block
        # a third review: an escape beat got atrial fibrillation's differential and premature-beat criteria; the
        # unsided axis deviation only the extreme (northwest) axis, which is neither left nor right
        ("atrial escape beat", r"fibrillation|premature|pac-"),
        ("axis deviation", r"extreme"),
        ("fascicular block", r"bifascicular|rbbb"),
    ],
)
def test_second_review_labels_never_get_another_condition(index: KnowledgeIndex, label: str, forbidden: str) -> None:
    for k in (1, 3):
        hits = retrieve_for_label(index, label, [label], k=k)
        bad = [h.snippet.id for h in hits if re.search(forbidden, h.snippet.id)]
        assert bad == [], (label, k, bad)


@pytest.mark.parametrize("label", ["no atrial fibrillation", "not left bundle branch block", "no LBBB",
                                   "without ST elevation", "absent P waves"])  # fmt: skip
def test_a_label_that_says_a_condition_is_absent_gets_no_knowledge(index: KnowledgeIndex, label: str) -> None:
    """The criteria of the excluded condition pulled the label onto it: "no atrial fibrillation" scored 0.064
    beside "atrial fibrillation" 0.073 with knowledge, -0.033 and 0.006 without."""
    assert retrieve_for_label(index, label, [label], k=3) == []
    assert retrieve_for_label(index, "irregularly irregular rhythm without P waves", k=1)  # a negation that describes


@pytest.mark.parametrize(
    ("label", "code", "sides"),
    [
        ("bundle branch block", None, {"clbbb-criteria", "crbbb-criteria"}),
        ("bundle branch block", ("snomed", "6374002"), {"clbbb-criteria", "crbbb-criteria"}),  # a CinC 2021 class
        ("left anterior/left posterior fascicular block", ("ptbxl", "LAFB/LPFB"), {"lafb-criteria", "lpfb-criteria"}),
        ("incomplete bundle branch block", None, {"ilbbb-criteria", "irbbb-criteria"}),
        # a third review: the bifascicular block passed as the overview of "fascicular block"; "hemiblock" got the
        # anterior fascicle only (the posterior one, named by its alias, fell below the floors); "atrial
        # abnormality" got atrial fibrillation's differential (it is left or right atrial abnormality)
        ("fascicular block", None, {"lafb-criteria", "lpfb-criteria"}),
        ("hemiblock", None, {"lafb-criteria", "lpfb-criteria"}),
        ("atrial abnormality", None, {"left-atrial-enlargement", "right-atrial-enlargement"}),
        ("atrial enlargement", None, {"left-atrial-enlargement", "right-atrial-enlargement"}),
    ],
)
def test_a_label_open_between_sides_gets_both(index: KnowledgeIndex, label: str, code, sides: set[str]) -> None:
    """An unsided label got one side only: "bundle branch block" (CinC 2021's 6374002) only right bundle branch
    block criteria (first in the file), PTB-XL's LAFB/LPFB only the rare posterior block (21 of its 23 sample
    records are anterior, whose axis criterion is the opposite). With k = 1 both sides come, one each."""
    hits = retrieve_for_labels(index, [label], k=1, codes=[code])[0]
    assert {h.snippet.id for h in hits} == sides


def test_the_guard_reads_negated_compounds_and_unmarked_complete_blocks() -> None:
    """With a user's base (a STEMI snippet, an LBBB snippet), NSTEMI got the STEMI criteria and "incomplete left
    bundle branch block" the complete block's: "non ST elevation" named nothing, and only an unmarked label
    against an incomplete-block snippet was read as a conflict, not the reverse."""
    stemi = features(normalize_tokens("ST elevation myocardial infarction"))
    assert conflicts(features(normalize_tokens("NSTEMI")), stemi) == ["st"]
    assert conflicts(features(normalize_tokens("non-ST elevation myocardial infarction")), stemi) == ["st"]
    assert conflicts(features(normalize_tokens("STEMI")), features(normalize_tokens("NSTEMI"))) == ["st"]
    lbbb = features(normalize_tokens("Left bundle branch block"))
    assert conflicts(features(normalize_tokens("incomplete left bundle branch block")), lbbb) == ["completeness"]
    assert conflicts(features(normalize_tokens("non-sustained ventricular tachycardia")),
                     features(normalize_tokens("Ventricular tachycardia"))) == []  # fmt: skip  # "non" reaches one word


# A fourth clinical review (audit 18). Which snippet a label gets: a diagnosis snippet tagged with a code or an
# alias of another meaning was its evidence, and common conditions had no snippet. Every case failed before.
@pytest.mark.parametrize(
    ("label", "first", "never"),
    [
        # the bare abbreviation of acute MI reached the LBBB-only Sgarbossa points through the SNOMED CT name table
        ("AMI", {"stemi-criteria", "mi-overview"}, "lbbb-sgarbossa"),
        # the contained alias "ST elevation" won: generic ST elevation, STEMI and LV aneurysm
        ("ST elevation in aVR", {"avr-st-elevation-left-main"}, "ventricular-aneurysm"),
        ("left main occlusion", {"avr-st-elevation-left-main"}, "proximal-lad-occlusion"),
        ("posterior STEMI", {"posterior-mi"}, None),  # the contained "STEMI": the generic thresholds only
        ("inferior STEMI", {"inferior-mi"}, None),
        ("septal infarct", {"anteroseptal-mi"}, None),  # nothing: "infarct" is not "infarction"
        # conditions without a snippet (nothing, or a neighbour by the hybrid stage)
        ("ventricular fibrillation", {"ventricular-fibrillation"}, None),
        ("ventricular flutter", {"ventricular-flutter"}, None),
        ("torsades de pointes", {"polymorphic-vt-torsades"}, "long-qt"),
        ("polymorphic VT", {"polymorphic-vt-torsades"}, None),
        ("ARVC", {"arvc-ecg"}, None),
        ("epsilon wave", {"arvc-ecg"}, None),
        ("pulmonary embolism", {"pulmonary-embolism-ecg"}, "q-wave-differential"),
        ("S1Q3T3", {"pulmonary-embolism-ecg"}, None),
        ("sick sinus syndrome", {"sinus-node-dysfunction"}, None),
        ("brady-tachy syndrome", {"sinus-node-dysfunction"}, "bradycardia-escape-rhythms"),
        ("AIVR", {"accelerated-idioventricular-rhythm"}, None),
        # a generic chamber label is left or right: not the combined (biatrial, biventricular) criteria
        ("atrial hypertrophy", {"hypertrophy-overview"}, "biatrial-enlargement"),
        ("ventricular hypertrophy", {"hypertrophy-overview"}, "biventricular-hypertrophy"),
        # tall T waves are not only hyperkalemia (hyperacute T, early repolarization, LVH, LBBB)
        ("high T voltage", {"tall-t-waves-differential"}, "peaked-t-hyperkalemia"),
        ("tall T waves", {"tall-t-waves-differential"}, "u-wave"),
    ],
)
def test_fourth_review_labels_get_their_own_snippet(
    index: KnowledgeIndex, label: str, first: set[str], never: str | None
) -> None:
    hits = retrieve_for_label(index, label, [label], k=1)
    assert hits and hits[0].snippet.id in first, (label, [h.snippet.id for h in hits])
    for k in (3, 5):
        ids = [h.snippet.id for h in retrieve_for_label(index, label, [label], k=k)]
        assert never not in ids, (label, k, ids)


@pytest.mark.parametrize(
    ("label", "code", "never"),
    [
        # PTB-XL STE_/STD_ are *non-specific* ST deviation (infarction and ischemia have codes of their own);
        # CPSC 2018 STE/STD are findings: neither is evidence of STEMI, NSTE-ACS or an LV aneurysm
        ("non-specific ST elevation", ("ptbxl", "STE_"), {"stemi-criteria", "ventricular-aneurysm"}),
        ("non-specific ST depression", ("ptbxl", "STD_"), {"nstemi-st-depression-criteria"}),
        ("ST elevation", ("cpsc2018", "STE"), {"stemi-criteria"}),
        ("ST depression", ("cpsc2018", "STD"), {"nstemi-st-depression-criteria"}),
        ("acute myocardial infarction", ("snomed", "57054005"), {"lbbb-sgarbossa"}),
        # PTB-XL AMI is the anterior-MI subclass, not acute MI
        ("anterior myocardial infarction", ("ptbxl", "AMI"), {"rbbb-acute-mi", "hyperacute-t-waves"}),
        ("ST tilt up", ("chapman", "STTU"), {"de-winter-pattern"}),  # upsloping ST is mostly rate-related
        ("clockwise rotation", ("chapman", "CR"), {"poor-r-wave-progression"}),
        ("atrial hypertrophy", ("snomed", "195126007"), {"biatrial-enlargement"}),
        ("ventricular hypertrophy", ("snomed", "266249003"), {"biventricular-hypertrophy"}),
        ("high t-voltage", ("snomed", "251259000"), {"peaked-t-hyperkalemia"}),
    ],
)
def test_fourth_review_codes_never_attach_a_snippet_of_another_meaning(
    index: KnowledgeIndex, label: str, code: tuple[str, str], never: set[str]
) -> None:
    for k in (1, 3, 12):
        ids = {h.snippet.id for h in retrieve_for_label(index, label, [label], k=k, code=code)}
        assert ids and not ids & never, (label, code, k, sorted(ids))


def test_normal_ecg_knowledge_calls_av_block_normal_only_in_athletes(index: KnowledgeIndex) -> None:
    """First-degree AV block and Mobitz I are training-related in athletes only (Sharma 2017); in a general
    adult they are abnormal statements. NORM-tagged snippets listed "first-degree AV block" as a criterion of
    its own ("Findings compatible with a normal ECG in healthy adults and athletes: ...; first-degree AV block;
    ..."), and the athletes' rhythm variants were tagged NORM."""
    queries = [knowledge_queries(None, str(PROMPTS / f"{name}.json"))["NORM"]
               for name in ("ptbxl_super", "ptbxl_sub", "cpsc2018")]  # fmt: skip
    for query, hits in zip(queries, retrieve_knowledge(index, queries, k=12), strict=True):
        ids = [h.snippet.id for h in hits]
        assert ids and "sinus-rhythm-variants" not in ids, (query.code, ids)
        for prompt in compose_prompts(query.name, hits):
            if re.search(r"AV block|Mobitz|PR (up to|<|≤)", prompt):
                assert "athlete" in prompt, (query.code, prompt)


def test_fourth_review_text_corrections(index: KnowledgeIndex) -> None:
    """Sentences the review quoted as imprecise are gone, and what replaced them says what the sources say."""
    text = {s.id: s.text for s in index.kb}
    wrong = ["Arm–leg reversals can produce a nearly flat lead",  # a flat lead needs the right-leg electrode
             "over-corrects above about 90 bpm",  # Bazett is exact only at 60 bpm
             "infarction Q waves (≥ 40 ms)", "Q waves (≥ 30–40 ms)",  # Fourth UDMI: ≥ 30 ms, > 20 ms in V2–V3
             "QTc ≤ 320 ms, or QTc ≤ 360 ms with arrhythmic events",  # ESC 2022: ≤ 360 ms needs more
             "QRS duration ≥ 110 ms"]  # fmt: skip  # 110 ms was both normal (≤ 110) and abnormal
    assert [(i, w) for w in wrong for i, t in text.items() if w in t] == []
    assert "RA–RL → flat II, LA–RL → flat III" in text["lead-reversal"]
    assert "over-corrects at heart rates above 60 bpm" in text["qt-correction-formulas"]
    assert "≥ 30 ms and ≥ 0.1 mV by the Fourth UDMI" in text["septal-hypertrophy"]
    assert "(≥ 30 ms, or > 20 ms in V2–V3)" in text["mi-evolution"]
    assert "QTc ≤ 360 ms plus a pathogenic variant" in text["short-qt"]
    assert "QRS duration > 110 ms" in text["abnormal-qrs"]
    assert "QRS 70–110 ms (≤ 110 ms)" in text["normal-ecg-intervals"]
    assert "Hancock" in index.kb["rvh-patterns"].source  # pressure overload and emphysema: not the PE guideline


@pytest.mark.parametrize(
    ("label", "first"),
    [
        ("multifocal atrial tachycardia", "multifocal-atrial-tachycardia"),
        ("MAT", "multifocal-atrial-tachycardia"),
        ("MATach", "multifocal-atrial-tachycardia"),  # CinC 2020's abbreviation: focal atrial tachycardia before
        ("713423005", "multifocal-atrial-tachycardia"),
        ("partial atrioventricular block 2:1", "two-to-one-av-block"),  # CinC 2020's name: nothing before
        ("2:1 AV block", "two-to-one-av-block"),
        ("2:1 AVB", "two-to-one-av-block"),
        ("2 to 1 AV block", "two-to-one-av-block"),
        ("two to one AV block", "two-to-one-av-block"),  # the AV-block overviews before
        ("164903001", "two-to-one-av-block"),
        ("PAVB21", "two-to-one-av-block"),
    ],
)
def test_multifocal_atrial_tachycardia_and_2_to_1_av_block_by_name_and_spelling(
    index: KnowledgeIndex, label: str, first: str
) -> None:
    """CinC 2020's multifocal atrial tachycardia (713423005, MATach) and partial AV block 2:1 (164903001, PAVB21) are
    rows of the SNOMED CT name table; the name that CinC gives 2:1 AV block reads as a first- or second-degree block to
    the guard (`test_a_partial_av_block_is_a_first_or_second_degree_block`)."""
    for k in (1, 3):
        hits = retrieve_for_label(index, label, [label], k=k)
        assert hits and hits[0].snippet.id == first, (label, k, [h.snippet.id for h in hits])
        wrong = r"third|complete|atrial-tachycardia-(focal|localization)"  # another block, focal atrial tachycardia
        assert [h.snippet.id for h in hits if re.search(wrong, h.snippet.id)] == [], label


def test_a_partial_av_block_is_a_first_or_second_degree_block() -> None:
    """CinC's "partial atrioventricular block 2:1" was an incomplete block against the unmarked (so complete) "2:1 AV
    block" snippet; a partial AV block is one of first or second degree, and an incomplete bundle branch block is
    still the incomplete form of the complete one."""
    partial = features(normalize_tokens("partial atrioventricular block 2:1"))
    assert conflicts(partial, features(normalize_tokens("2:1 AV block"))) == []
    assert conflicts(partial, features(normalize_tokens("Third-degree (complete) AV block"))) == ["degree"]
    assert conflicts(partial, features(normalize_tokens("Second-degree AV block, Mobitz type II"))) == []
    incomplete_rbbb = features(normalize_tokens("incomplete right bundle branch block"))  # a bundle branch: as before
    assert conflicts(incomplete_rbbb, features(normalize_tokens("Complete right bundle branch block"))) == [
        "completeness"]  # fmt: skip


@pytest.mark.parametrize("label", ["football match", "match", "attach", "lead attach", "matched pair"])
def test_a_misspelling_is_never_corrected_to_an_abbreviation(index: KnowledgeIndex, label: str) -> None:
    """Spelling correction read "match" as CinC's abbreviation "MATach" once the name table had it (MAT criteria for
    "football match"), and "attach" as "ATach" (atrial tachycardia): abbreviations are matched, not corrected to."""
    assert retrieve_for_label(index, label, [label], k=3) == []


# The diagnoses of an acute coronary syndrome (and its sequel, the LV aneurysm) among the ST snippets.
ACS = {"stemi-criteria", "proximal-lad-occlusion", "inferior-stemi-culprit", "ventricular-aneurysm",
       "nstemi-st-depression-criteria", "subendocardial-injury-anterior", "subendocardial-injury-inferior",
       "avr-st-elevation-left-main"}  # fmt: skip


@pytest.mark.parametrize(
    ("label", "code", "differential"),
    [
        # Chapman-Shaoxing's STE ("ST extension") and STDD ("ST drop down") and the SNOMED CT findings ST elevation
        # (164931005) and ST depression (429622005) are ST deviation of any cause, as PTB-XL's STE_/STD_ and CPSC's
        # STE/STD (the second review): not evidence of STEMI, NSTE-ACS, subendocardial injury or an LV aneurysm
        ("ST extension", ("chapman", "STE"), "st-elevation-differential"),
        ("ST drop down", ("chapman", "STDD"), "st-depression-differential"),
        ("ST elevation", ("snomed", "164931005"), "st-elevation-differential"),
        ("ST depression", ("snomed", "429622005"), "st-depression-differential"),
        ("ST-T change", ("chapman", "STTC"), "nonspecific-st-changes"),  # Chapman's STTC: ST-T change of any cause
        # typed as users do (free text, or a code without its namespace)
        ("ST elevation", None, "st-elevation-differential"),
        ("st depression", None, "st-depression-differential"),
        ("STE", None, "st-elevation-differential"),
        ("STD_", None, "st-depression-differential"),
        ("STDD", None, "st-depression-differential"),
        ("164931005", None, "st-elevation-differential"),
        ("429622005", None, "st-depression-differential"),
    ],
)
def test_a_non_specific_st_deviation_label_gets_its_differential_not_an_acute_coronary_syndrome(
    index: KnowledgeIndex, label: str, code: tuple[str, str] | None, differential: str
) -> None:
    for k in (1, 3, 12):
        ids = [h.snippet.id for h in retrieve_for_label(index, label, [label], k=k, code=code)]
        assert ids and not set(ids) & ACS, (label, code, k, ids)
    assert differential in ids, (label, code, ids)


@pytest.mark.parametrize(
    ("label", "code", "first"),
    [
        ("STEMI", None, "stemi-criteria"),
        ("ST elevation myocardial infarction", ("snomed", "57054005"), "stemi-criteria"),
        ("acute myocardial infarction", ("snomed", "57054005"), "stemi-criteria"),
        ("NSTEMI", None, "nstemi-st-depression-criteria"),
        ("non-ST-elevation ACS", None, "nstemi-st-depression-criteria"),
        ("ischemic ST depression", None, "nstemi-st-depression-criteria"),
        ("subendocardial injury", None, "subendocardial-injury-anterior"),
    ],
)
def test_acute_coronary_syndrome_labels_keep_their_snippets(
    index: KnowledgeIndex, label: str, code: tuple[str, str] | None, first: str
) -> None:
    hits = retrieve_for_label(index, label, [label], k=3, code=code)
    assert hits and hits[0].snippet.id == first, (label, [h.snippet.id for h in hits])


@pytest.mark.parametrize(
    ("typed", "first"),
    [
        ("RAO/RAE", "right-atrial-enlargement"),  # biatrial enlargement came first: it carries fewer codes
        ("LAO/LAE", "left-atrial-enlargement"),
        ("713426002", "irbbb-criteria"),  # nothing: the digits were an unmarked, so complete, block to the guard
        ("164903001", "two-to-one-av-block"),
        # an earlier attempt (the share of a code over only the namespaces that carry it) lost these three
        ("SR", "sinus-rhythm-definition"),
        ("UW", "u-wave"),
        ("SVARR", "supraventricular-arrhythmia-overview"),
    ],
)
def test_a_code_typed_bare_gets_the_snippet_most_about_it_first(index: KnowledgeIndex, typed: str, first: str) -> None:
    hits = retrieve_for_label(index, typed, k=3)
    assert hits and hits[0].snippet.id == first, (typed, [h.snippet.id for h in hits])


def test_prompt_set_codes_typed_bare_share_a_snippet_with_their_set(index: KnowledgeIndex) -> None:
    """A bundled prompt set's code typed without its namespace gets, at zero-shot's default k = 1, a snippet that the
    set attaches to it (any set holding the code): 89 of the 112 with the share of codes alone, 91 since the code's
    own words name a snippet first (RAO/RAE) and a SNOMED CT code is read by its name (713426002)."""
    queries = [q for path in sorted(PROMPTS.glob("*.json")) for q in knowledge_queries(None, str(path)).values()]
    attached: dict[str, list[set[str]]] = {}
    for q, hits in zip(queries, retrieve_knowledge(index, queries, k=1), strict=True):
        attached.setdefault(q.code[1], []).append({h.snippet.id for h in hits})
    codes = sorted(attached)
    bare = retrieve_for_labels(index, codes, k=1)
    shared = [
        c for c, hits in zip(codes, bare, strict=True) if any({h.snippet.id for h in hits} & s for s in attached[c])
    ]
    print(f"\n{len(shared)} of {len(codes)} prompt-set codes typed bare share a snippet with their set")
    assert len(codes) == 112 and len(shared) >= 91, sorted(set(codes) - set(shared))
