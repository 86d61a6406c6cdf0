"""The explanation figure and notes, audit 22 (explanations): matches drawn from another index, a lead the record
lacks, and leads that lower the score. Real PTB-XL records, the bundled checkpoint, real indexes."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from ecglang.cli.zero_shot import plot_notes
from ecglang.embeddings.prototypes import build_prototypes
from ecglang.encoders.modeling import load_model
from ecglang.errors import ConfigError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.report.plotting import plot_explanation
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.explain import Explanation

matplotlib.use("Agg")

REFERENCE = ("00002_hr", "00003_hr", "00004_hr")
LABELS = ["sinus rhythm", "atrial fibrillation"]


@pytest.fixture(scope="module")
def setting(ptbxl_dir: Path, one_torch_thread, tmp_path_factory):
    """(model, the index of 3 reference records, [the same records rebuilt in another order, and with 2 beats
    each], folder)."""
    model = load_model(None, "cpu")
    folder = ptbxl_dir / "records500" / "00000"
    root = tmp_path_factory.mktemp("audit22-fig")
    full, _ = build_prototypes(model, [folder / r for r in REFERENCE], root / "full", num_workers=0, progress=False)
    rotated = [folder / r for r in (*REFERENCE[1:], REFERENCE[0])]
    others = [build_prototypes(model, rotated, root / "rotated", num_workers=0, progress=False)[0]]
    others += [build_prototypes(model, [folder / r for r in REFERENCE], root / "fewer", beats_per_record=2,
                                num_workers=0, progress=False)[0]]  # fmt: skip
    return model, full, others, folder


def test_matches_drawn_with_another_index_are_refused(setting) -> None:
    """Finding 3: `plot_explanation(exp, other_index)` drew other beats (the rows of the index given) under the
    matched records' names and beat numbers, without a word (a rebuild in another order: as many rows, other
    beats), or failed with an untyped IndexError from the memmap (a smaller rebuild)."""
    model, full, others, folder = setting
    clf = ZeroShotClassifier(model, knowledge="off", prototypes=full)
    exp = clf(folder / "00001_hr", labels=LABELS, keep_signals=1, progress=False).explanations["00001_hr"][LABELS[0]]
    assert exp.prototypes
    fig = plot_explanation(exp, full)  # the index the matches came from: drawn, each panel its own beat
    for match, ax in zip(exp.prototypes, fig.axes[1:], strict=False):
        drawn = ax.lines[0].get_ydata()
        np.testing.assert_allclose(drawn, full.window(match.row)[CANONICAL_LEADS.index("II")])
    rotated, fewer = others
    assert len(rotated) == len(full) and any(
        rotated.records[rotated.beat_record[m.row]]["id"] != m.record_id for m in exp.prototypes
    )
    for other in (rotated, fewer):
        with pytest.raises(ConfigError, match=r"these matches come from another prototype index: match \d \("):
            plot_explanation(exp, other)


def test_a_lead_the_record_lacks_is_not_drawn_as_a_beat(setting) -> None:
    """Finding 4: `lead="II"` on a record without lead II drew the masked lead's zeros as the input beat, under
    the title 'input beat 0 of n (lead II)'. Now the panel says the lead is not recorded and names those that are,
    as the prototype panels do for their records."""
    model, full, _, folder = setting
    ecg = load_ecg(folder / "00001_hr.hea")
    keep = [CANONICAL_LEADS.index(name) for name in ("I", "V2", "V5")]
    clf = ZeroShotClassifier(model, knowledge="off", prototypes=full)
    result = clf(np.asarray(ecg.signal)[keep], fs=ecg.fs, leads=["I", "V2", "V5"], labels=LABELS, keep_signals=1,
                 progress=False)  # fmt: skip
    exp = next(iter(result.explanations.values()))[LABELS[0]]
    fig = plot_explanation(exp, full, lead="II")
    panel = fig.axes[0]
    assert panel.get_title().startswith("input beat") and "(lead II)" in panel.get_title()
    assert not panel.lines  # no flat line drawn as a beat
    assert [t.get_text() for t in panel.texts] == ["lead II not recorded\n(recorded: I, V2, V5)"]
    drawn = plot_explanation(exp, full, lead="V2").axes[0]  # a recorded lead is drawn as before
    np.testing.assert_array_equal(
        drawn.lines[0].get_ydata(), exp.tokens.beats[int(exp.prototype_beat), CANONICAL_LEADS.index("V2")]
    )


def test_lead_contributions_are_labelled_as_score_drops(setting) -> None:
    """Finding 5: the lead panel's axis and legend read 'contribution (cos)', though a lead's contribution is the
    score's drop without the lead (occlusion); only beat contributions are cosines."""
    model, _, _, folder = setting
    clf = ZeroShotClassifier(model, knowledge="off")
    result = clf(folder / "00001_hr", labels=LABELS, explain=True, keep_signals=1, progress=False)
    fig = plot_explanation(result.explanations["00001_hr"][LABELS[0]])
    panels = {a.get_title(): a for a in fig.axes if a.get_title().endswith("contribution and attention")}
    leads, beats = panels["leads: contribution and attention"], panels["beats: contribution and attention"]
    assert leads.get_ylabel() == "score drop without the lead"
    assert beats.get_ylabel() == "cosine with the label"
    assert leads.get_legend_handles_labels()[1] == ["score drop without the lead"]
    assert beats.get_legend_handles_labels()[1] == ["cosine with the label"]


def explanation(lead_contributions: dict[str, float]) -> Explanation:
    leads = np.full(12, np.nan, np.float32)
    for name, value in lead_contributions.items():
        leads[CANONICAL_LEADS.index(name)] = value
    return Explanation("r", "atrial fibrillation", 0.145, np.zeros(3, np.float32), leads, np.arange(3), 500.0, [])


def test_leads_that_lower_the_score_are_not_leads_behind_it(setting) -> None:
    """Finding 5: `top_leads` ranked every recorded lead, so a lead whose removal raises the score (MIT-BIH 100's
    V5: -0.026) was listed among the 'leads behind' the top label. Missing leads (NaN) are in neither list."""
    exp = explanation({"II": 0.0472, "V5": -0.0255, "I": 0.01, "V2": -0.03})
    assert exp.top_leads(3) == ["II", "I"]
    assert exp.lowering_leads(3) == ["V2", "V5"]
    assert explanation({"V5": -0.02}).top_leads(3) == []
    model, _, _, folder = setting
    clf = ZeroShotClassifier(model, knowledge="off")
    result = clf(folder / "00001_hr", labels=LABELS, explain=True, progress=False)
    exp = result.explanations["00001_hr"][LABELS[0]]
    exp.lead_contributions = explanation({"II": 0.0472, "V5": -0.0255}).lead_contributions
    note = plot_notes(result, "00001_hr", LABELS[0])[0]
    assert note.endswith("leads raising it: II; lowering it: V5"), note


def test_lead_attention_is_labelled_in_canonical_order_under_another_lead_order(ptbxl_dir) -> None:
    """Finding 7: with a processor whose `lead_order` is "mimic" (aVF before aVL), the lead attention came back in
    the model's row order and was labelled canonically: a record without aVL showed zero attention at aVF, while
    its lead contributions (computed on canonical tokens) were missing at aVL."""
    from ecglang.encoders.ecg_processing import EcgProcessor
    from ecglang.encoders.modeling import load_model
    from ecglang.record.ecg import Ecg
    from ecglang.record.io import load_ecg
    from ecglang.record.leads import CANONICAL_LEADS
    from ecglang.scores.classifier import ZeroShotClassifier

    model = load_model(None, "cpu")
    ecg = load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr")
    keep = [i for i, name in enumerate(CANONICAL_LEADS) if name != "aVL"]
    no_avl = Ecg.from_array(ecg.signal[keep], ecg.fs, leads=[CANONICAL_LEADS[i] for i in keep], record_id="noavl")
    mimic = EcgProcessor(preprocess=model.processor.preprocess_config, beats=model.processor.beat_config,
                         lead_order="mimic")  # fmt: skip
    for processor in (model.processor, mimic):
        clf = ZeroShotClassifier(model, processor=processor, knowledge=None)
        exp = clf(no_avl, labels=["sinus rhythm"], explain=True, progress=False).explanations["noavl"]["sinus rhythm"]
        zero = [CANONICAL_LEADS[i] for i in np.flatnonzero(exp.lead_attention == 0)]
        missing = [CANONICAL_LEADS[i] for i in np.flatnonzero(~np.isfinite(exp.lead_contributions))]
        assert zero == missing == ["aVL"], (processor.lead_order, zero, missing)
