"""Zero-shot classification: the score contract, prompt caching, knowledge retrieval, explanations, CLI."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecglang.cli.main import main as cli
from ecglang.errors import ConfigError, PromptError
from ecglang.record.io import load_ecg
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import clear_prompt_cache

LABELS = ["atrial fibrillation", "sinus rhythm", "left bundle branch block"]


@pytest.fixture(scope="module")
def records(ptbxl_dir) -> list[Path]:
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    return [ptbxl_dir / f for f in db["filename_hr"].head(6)]


def test_scores_shape_and_order_contract(model, records):
    clf = ZeroShotClassifier(model, knowledge=None)
    result = clf(records, labels=LABELS, progress=False)
    # Rows follow the input order, columns the label order; scores are cosines.
    assert list(result.scores.columns) == LABELS
    assert list(result.scores.index) == [p.name for p in records]
    assert result.scores.shape == (len(records), len(LABELS))
    assert np.all(result.scores.to_numpy() <= 1.0 + 1e-5) and np.all(result.scores.to_numpy() >= -1.0 - 1e-5)
    assert not result.failures

    # The same records given as Ecg objects give the same scores.
    again = clf([load_ecg(p) for p in records], labels=LABELS, progress=False)
    np.testing.assert_allclose(again.scores.to_numpy(), result.scores.to_numpy(), atol=1e-6)

    # Softmax rows sum to one and keep the cosine ranking; sigmoid is monotone in the cosine.
    soft = clf(records, labels=LABELS, mode="softmax", progress=False).scores.to_numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert (soft.argmax(1) == result.scores.to_numpy().argmax(1)).all()
    sig = clf(records, labels=LABELS, mode="sigmoid", progress=False).scores.to_numpy()
    assert np.all((sig > 0) & (sig < 1))
    order_cos = np.argsort(result.scores.to_numpy(), axis=1)
    assert (np.argsort(sig, axis=1) == order_cos).all()

    ranked = result.ranked(records[0].name)
    assert ranked["score"].is_monotonic_decreasing and set(ranked["label"]) == set(LABELS)
    top = result.top_label()
    assert list(top.index) == list(result.scores.index)
    assert [top[r] for r in top.index] == [result.ranked(r)["label"].iloc[0] for r in top.index]


def test_scores_equal_manual_cosine(model, records):
    """The score is exactly cos(rhythm embedding, mean prompt embedding)."""
    from ecglang.encoders.ecg_processing import EcgProcessor

    clf = ZeroShotClassifier(model, knowledge=None, drop_ambiguous_prompts=False)  # the arithmetic, every prompt kept
    prompts = {"af": ["atrial fibrillation", "irregularly irregular rhythm"], "sr": ["sinus rhythm"]}
    result = clf(records[:2], prompts=prompts, progress=False)
    batch = (model.processor or EcgProcessor())([load_ecg(p) for p in records[:2]])
    with torch.inference_mode():
        ecg = model.encode_ecg(**batch).rhythm_embeds
        text = model.encode_text(["atrial fibrillation", "irregularly irregular rhythm", "sinus rhythm"]).text_embeds
    af = torch.nn.functional.normalize(text[:2].mean(0), dim=0)
    expected = torch.stack([ecg @ af, ecg @ text[2]], dim=1).numpy()
    np.testing.assert_allclose(result.scores.to_numpy(), expected, atol=1e-5)


def test_prompt_embeddings_are_cached_per_model(model, records):
    clf = ZeroShotClassifier(model, knowledge=None)
    clear_prompt_cache(model)
    calls = {"n": 0}
    original = model.encode_text

    def counting(texts):
        calls["n"] += 1
        return original(texts)

    model.encode_text = counting
    try:
        clf(records[:2], labels=LABELS, progress=False)
        first = calls["n"]
        ZeroShotClassifier(model, knowledge=None)(records[:2], labels=LABELS, progress=False)
        assert first >= 1 and calls["n"] == first, "a second classifier on the same model re-embedded the prompts"
    finally:
        del model.encode_text


def test_prompt_cache_follows_weight_changes_and_scoring_keeps_the_models_mode(model, records):
    """The cache was keyed by the model object alone: after an in-place weight change (an optimizer step,
    `load_state_dict`) every later classifier reused the old prompt embeddings and gave stale scores. And
    building a classifier switched the caller's model to eval mode for good, which left dropout off for
    the rest of a training run that validated with it."""
    work = copy.deepcopy(model).train()
    before = ZeroShotClassifier(work, knowledge=None)(records[:1], labels=LABELS, progress=False).scores.to_numpy()
    assert work.training and all(m.training for m in work.modules()), "scoring left the model in eval mode"
    with torch.no_grad():
        for p in work.text_proj.parameters():
            p.mul_(-1)  # in place, as an optimizer step writes
    after = ZeroShotClassifier(work, knowledge=None)(records[:1], labels=LABELS, progress=False).scores.to_numpy()
    fresh = ZeroShotClassifier(copy.deepcopy(work), knowledge=None)(records[:1], labels=LABELS, progress=False)
    np.testing.assert_allclose(after, fresh.scores.to_numpy(), atol=1e-5)
    np.testing.assert_allclose(after, -before, atol=1e-5)  # the text side's sign flipped, the ECG side did not
    work.load_state_dict(model.state_dict())
    again = ZeroShotClassifier(work, knowledge=None)(records[:1], labels=LABELS, progress=False).scores.to_numpy()
    np.testing.assert_allclose(again, before, atol=1e-5)


def test_prompt_set_and_knowledge_change_prompts_and_report_snippets(model, records):
    plain = ZeroShotClassifier(model, knowledge=None)
    enriched = ZeroShotClassifier(model, knowledge="default", k=2)
    specs_plain = plain.label_specs("ptbxl_super")
    specs_know = enriched.label_specs("ptbxl_super")
    assert set(specs_plain) == {"HYP", "NORM", "MI", "CD", "STTC"}
    for code, spec in specs_know.items():
        assert spec.knowledge_prompts, f"no knowledge prompts for {code}"
        assert 1 <= len(spec.snippets) <= 2 and all(s["id"] and s["source"] for s in spec.snippets)
        assert not specs_plain[code].knowledge_prompts
    # Retrieval by code puts a snippet written for the label first (e.g. left bundle branch block for CLBBB).
    cpsc = enriched.label_specs("cpsc2018")
    assert "bundle" in cpsc["CLBBB"].snippets[0]["title"].lower()
    r_plain = plain(records[:3], labels="ptbxl_super", progress=False)
    r_know = enriched(records[:3], labels="ptbxl_super", progress=False)
    assert not np.allclose(r_plain.scores.to_numpy(), r_know.scores.to_numpy())
    assert r_know.ranked(records[0].name)["snippets"].str.len().min() > 0


def test_explanations_cover_beats_and_leads(model, records):
    result = ZeroShotClassifier(model, knowledge=None)(records[:2], labels=LABELS, explain=True, progress=False)
    rid = records[0].name
    exp = result.explanations[rid][LABELS[0]]
    assert exp.beat_contributions.shape == exp.rpeaks.shape and len(exp.rpeaks) >= 2
    assert exp.lead_contributions.shape == (12,) and np.isfinite(exp.lead_contributions).all()
    assert exp.score == pytest.approx(result.scores.loc[rid, LABELS[0]])
    assert len(exp.top_leads(3)) == 3
    assert exp.signal is None and exp.tokens is None  # not asked for: no signal kept


def test_beat_contributions_are_beat_embeddings_times_each_labels_sentence_embedding(model, records):
    """Each label's beat contributions are the record's beat embeddings (encoded here, outside the classifier)
    times that label's sentence-head embedding: not another label's, and not the same vector for every label."""
    from ecglang.encoders.ecg_processing import EcgProcessor

    clf = ZeroShotClassifier(model, knowledge=None)
    result = clf(records[:1], labels=LABELS, explain=True, progress=False)
    exps = result.explanations[records[0].name]
    batch = (model.processor or EcgProcessor())([load_ecg(records[0])])
    with torch.inference_mode():
        beats = model.encode_ecg(**batch).beat_embeds[0].float()
    q = torch.from_numpy(clf.label_matrix(clf.label_specs(LABELS), head="sentence", progress=False))
    assert q.shape[0] == len(LABELS)
    for j, label in enumerate(LABELS):
        got = exps[label].beat_contributions
        assert len(got) >= 2
        np.testing.assert_allclose(got, (beats[: len(got)] @ q[j]).numpy(), atol=1e-5, err_msg=label)
    assert not np.allclose(exps[LABELS[0]].beat_contributions, exps[LABELS[1]].beat_contributions, atol=1e-4)


def test_lead_contributions_are_what_leaving_the_lead_out_does(model, records):
    """A lead's contribution is the score minus the score of the record without that lead, as a user gets it by
    passing the other 11 leads. It was the mean cosine of the lead's token-head embeddings with the sentence-head
    label embedding, never trained to agree: on PTB-XL records it ranked leads against this (Spearman -0.45).
    Without the lead, R peaks may be found a few samples apart, so most leads match exactly and all by rank."""
    from ecglang.record.leads import CANONICAL_LEADS

    clf = ZeroShotClassifier(model, knowledge=None)
    result = clf(records[:1], labels=LABELS, explain=True, progress=False)
    rid, label = records[0].name, LABELS[1]
    contributions = result.explanations[rid][label].lead_contributions
    ecg = load_ecg(records[0])
    drops = []
    for lead in range(12):
        keep = [i for i in range(12) if i != lead]
        without = clf([ecg.signal[keep]], labels=LABELS, fs=ecg.fs, leads=[CANONICAL_LEADS[i] for i in keep],
                      progress=False)  # fmt: skip
        drops.append(result.scores.loc[rid, label] - without.scores.iloc[0][label])
    drops = np.array(drops)
    assert np.sum(np.isclose(contributions, drops, rtol=0, atol=1e-6)) >= 6, (contributions, drops)
    assert pd.Series(contributions).corr(pd.Series(drops), method="spearman") > 0.9


def test_explanations_keep_the_model_input_for_figures(model, records):
    """The pipeline hands the plot the record as the model saw it: no second read and preprocessing."""
    clf = ZeroShotClassifier(model, knowledge=None)
    result = clf(records[:3], labels=LABELS, explain=True, progress=False, keep_signals=2)
    kept = [rid for rid, exps in result.explanations.items() if exps[LABELS[0]].signal is not None]
    assert kept == [p.name for p in records[:2]]
    exp = result.explanations[kept[0]][LABELS[0]]
    reference = clf.processor.process(load_ecg(records[0]))[0]
    assert exp.signal.fs == exp.fs == reference.fs
    np.testing.assert_allclose(exp.signal.signal, reference.signal, atol=1e-6)
    np.testing.assert_array_equal(exp.tokens.rpeaks[: exp.tokens.n_beats], exp.rpeaks)


def test_reduced_leads_and_arrays(model, records):
    ecg = load_ecg(records[0])
    clf = ZeroShotClassifier(model, knowledge=None)
    two = clf([ecg.signal[[0, 1]]], labels=LABELS, fs=ecg.fs, leads=["I", "II"], progress=False)
    assert two.scores.shape == (1, 3) and np.isfinite(two.scores.to_numpy()).all()
    with pytest.raises(ConfigError, match="needs its sampling rate: pass fs="):  # the call's mistake: no empty table
        clf([ecg.signal], labels=LABELS, progress=False)


@pytest.mark.parametrize("bad", [[], ["a", "a"], [""]])
def test_bad_label_lists_are_typed_errors(model, bad):
    with pytest.raises(PromptError):
        ZeroShotClassifier(model, knowledge=None).label_specs(bad)


def test_cli_folder_with_a_corrupt_file(model_dir, records, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for rec in records[:3]:
        for suffix in (".hea", ".dat"):
            shutil.copy(rec.with_suffix(suffix), folder)
    (folder / "broken.hea").write_text("this is not a header\n")
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", str(folder), "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off"]
    status = cli([*argv, "--out", str(out), "--plot", str(tmp_path / "x.png")])
    captured = capsys.readouterr()
    assert status == 1
    assert "broken" in captured.err and "1 record(s) failed" in captured.err
    scores = pd.read_csv(out, index_col=0)
    assert len(scores) == 3 and list(scores.columns) == ["path", *LABELS]  # each record's file, then the labels
    assert all(Path(p).parent.samefile(folder) for p in scores["path"])
    failures = pd.read_csv(out.with_suffix(".failures.csv"))
    assert failures["record"].str.contains("broken").all() and len(failures) == 1
    assert len(list(tmp_path.glob("x_*.png"))) == 3
    assert "== " + records[0].name in captured.out


# ------------------------------------------------------------------ arrays, caches and the worker pipeline
def test_score_arrays_matches_records_and_workers_change_nothing(model, records):
    ecgs = [load_ecg(p) for p in records]
    signals = np.stack([e.signal for e in ecgs])
    ids = [e.record_id for e in ecgs]
    clf = ZeroShotClassifier(model, knowledge=None, batch_size=2)  # 3 batches: the worker path is used
    reference = clf(ecgs, labels=LABELS, progress=False, num_workers=0)
    threads = torch.get_num_threads()
    for workers in (0, 1):
        got = clf.score_arrays(signals, 500.0, LABELS, record_ids=ids, num_workers=workers, progress=False)
        assert list(got.scores.index) == ids and list(got.scores.columns) == LABELS and not got.failures
        np.testing.assert_allclose(got.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)
    assert torch.get_num_threads() == threads  # the scoring's own thread setting was undone
    pooled = clf(ecgs, labels=LABELS, progress=False, num_workers=1)  # __call__ through the worker too
    np.testing.assert_allclose(pooled.scores.to_numpy(), reference.scores.to_numpy(), atol=1e-6)


def test_rhythm_only_path_equals_the_full_encoder(model, records):
    from ecglang.embeddings.pipeline import encode_rhythm
    from ecglang.encoders.ecg_processing import EcgProcessor

    batch = (model.processor or EcgProcessor())([load_ecg(p) for p in records[:3]])
    with torch.inference_mode():
        full = model.encode_ecg(**batch).rhythm_embeds
        fast = encode_rhythm(model, batch)[0]
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-6)


def test_score_arrays_lists_bad_arrays_and_scores_the_rest(model, records):
    good = load_ecg(records[0]).signal
    flat = np.zeros_like(good)  # no usable lead: a processing failure
    signals = [good, good[:5], flat, good]
    masks = [np.ones(12, bool), np.ones(12, bool), np.ones(12, bool), np.ones(3, bool)]
    clf = ZeroShotClassifier(model, knowledge=None)
    result = clf.score_arrays(signals, 500.0, LABELS, lead_masks=masks, progress=False)
    assert list(result.scores.index) == ["array0"]
    stages = {f.record: f.stage for f in result.failures}
    assert stages == {"array1": "read", "array2": "process", "array3": "read"}
    assert "[12, n_samples]" in next(f.reason for f in result.failures if f.record == "array1")
    with pytest.raises(ConfigError):
        clf.score_arrays(signals, 500.0, LABELS, record_ids=["a"], progress=False)
    with pytest.raises(ConfigError):
        clf.score_arrays(signals, 0.0, LABELS, progress=False)


def test_score_cache_reads_rows_and_reports_failed_ones(model, records, tmp_path):
    from ecglang.data.cache import SignalCache
    from ecglang.signal.preprocess import PreprocessConfig

    broken = tmp_path / "broken.hea"
    broken.write_text("this is not a header\n")
    pairs = [(p.name, str(p)) for p in records[:4]] + [("broken", str(broken))]
    cache = SignalCache.build(pairs, tmp_path / "cache", progress=False)
    clf = ZeroShotClassifier(model, knowledge=None, batch_size=2)
    result = clf.score_cache(cache, LABELS, num_workers=1, progress=False)
    assert list(result.scores.index) == [p.name for p in records[:4]]
    assert [(f.record, f.stage) for f in result.failures] == [("broken", "read")]
    assert result.sources.tolist() == [str(p) for p in records[:4]]  # each row's file, as the cache was built
    # The same rows given as preprocessed arrays score the same; the float16 cache stays close to the files.
    signals, masks = cache.get_batch(range(4))
    arrays = clf.score_arrays(signals, cache.fs, LABELS, lead_masks=masks, record_ids=cache.ids[:4],
                              preprocessed=True, progress=False)  # fmt: skip
    np.testing.assert_allclose(result.scores.to_numpy(), arrays.scores.to_numpy(), atol=1e-6)
    direct = clf(records[:4], labels=LABELS, progress=False)
    np.testing.assert_allclose(result.scores.to_numpy(), direct.scores.to_numpy(), atol=2e-2)
    subset = clf.score_cache(tmp_path / "cache", LABELS, rows=[2, 0], progress=False)  # a folder works too
    assert list(subset.scores.index) == [records[2].name, records[0].name]
    assert subset.sources.tolist() == [str(records[2]), str(records[0])]

    other = SignalCache.build(pairs[:2], tmp_path / "other", PreprocessConfig(bandpass=None), progress=False)
    with pytest.raises(ConfigError, match="bandpass"):
        clf.score_cache(other, LABELS, progress=False)


def test_cli_writes_the_failures_file_only_when_asked(model_dir, tmp_path, monkeypatch, capsys):
    """No file appears without --out/--failures (docs/RELIABILITY.md); with --out it lands next to the scores,
    with the absolute file of each failure (`path`, as the scores have it)."""
    (tmp_path / "bad.hea").write_text("garbage\n")
    monkeypatch.chdir(tmp_path)
    base = ["zero-shot", "bad.hea", "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off"]
    assert cli(base) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hea"]  # nothing written
    assert "[read] bad.hea" in capsys.readouterr().err  # but every failure is printed
    assert cli([*base, "--out", "out/scores.csv"]) == 1
    rows = pd.read_csv(tmp_path / "out" / "scores.failures.csv")
    assert list(rows["record"]) == ["bad.hea"] and rows["stage"].tolist() == ["read"]
    assert list(rows.columns) == ["record", "path", "stage", "error"]
    assert rows["path"].tolist() == [str(tmp_path / "bad.hea")]
    assert cli([*base, "--failures", "mine.csv"]) == 1
    assert pd.read_csv(tmp_path / "mine.csv")["record"].tolist() == ["bad.hea"]
    assert "mine.csv" in capsys.readouterr().err


def test_cli_empty_folder_and_headerless_dat_fail_loudly(model_dir, tmp_path, capsys):
    """An empty folder, or a .dat that no header names, is an error with a message, not a silent exit 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off"]
    assert cli(["zero-shot", str(empty), *args]) != 0
    err = capsys.readouterr().err
    assert "[scan]" in err and "no ECG record in this folder" in err and str(empty) in err
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "00001_hr.dat").write_bytes(b"\x00" * 64)
    assert cli(["zero-shot", str(orphan), *args]) != 0
    err = capsys.readouterr().err
    assert "00001_hr.dat" in err and "no .hea header" in err
    assert "no ECG record in this folder" not in err  # its one record is listed once, not twice


def test_cli_prompt_set_help_names_no_missing_command(capsys):
    with pytest.raises(SystemExit):
        cli(["zero-shot", "--help"])
    out = capsys.readouterr().out
    assert "ecglang prompts" not in out and "ptbxl_super" in out


def test_bf16_precision_runs_the_encoder_in_bfloat16_and_stays_close(model, records):
    ecgs = [load_ecg(p) for p in records]
    exact = ZeroShotClassifier(model, knowledge=None)(ecgs, labels=LABELS, progress=False, num_workers=0)
    fast_clf = ZeroShotClassifier(model, knowledge=None, precision="bf16")
    fast = fast_clf(ecgs, labels=LABELS, progress=False, num_workers=0)
    diff = np.abs(fast.scores.to_numpy() - exact.scores.to_numpy())
    assert diff.max() > 0  # the encoder really ran in bfloat16 (fp32 and bf16 cannot agree to the last bit)
    assert diff.max() < 0.05  # cosine scores: bfloat16 keeps ~3 significant digits
    explained = fast_clf(ecgs[:2], labels=LABELS, progress=False, explain=True)  # the explanation path too
    np.testing.assert_allclose(explained.scores.to_numpy(), fast.scores.to_numpy()[:2], atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "int8", "float32"])
def test_unsupported_precision_is_a_config_error(model, precision):
    with pytest.raises(ConfigError, match="precision"):
        ZeroShotClassifier(model, knowledge=None, precision=precision)


@pytest.mark.parametrize(("name", "value"), [("k", 0), ("batch_size", -1), ("prototype_k", 0), ("k", 1.5)])
def test_a_bad_count_names_itself(model, name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must be an integer >= 1, got {value}"):
        ZeroShotClassifier(model, knowledge=None, **{name: value})


def test_tensors_batches_and_files_of_another_rate_mix_in_one_call(model, records):
    """A torch tensor aborted the call (`TypeError: expected str, bytes or os.PathLike object, not Tensor`), a
    `[N, 12, T]` batch (which `score_arrays` takes) was one failure, and `fs=`/`leads=` (meant for arrays) were
    given to every file too, so a 500 Hz WFDB record failed beside a 250 Hz array."""
    from scipy.signal import resample_poly

    clf = ZeroShotClassifier(model, knowledge=None)
    ecgs = [load_ecg(p) for p in records[:2]]
    signals = np.stack([e.signal for e in ecgs])  # [2, 12, 5000] at 500 Hz
    reference = clf(ecgs, labels=LABELS, progress=False).scores.to_numpy()
    for given in (signals, torch.from_numpy(signals), [torch.from_numpy(s) for s in signals]):
        result = clf(given, labels=LABELS, fs=500, progress=False)
        assert not result.failures, result.failures
        assert list(result.scores.index) == ["array0", "array1"]
        np.testing.assert_allclose(result.scores.to_numpy(), reference, atol=1e-5)
    slow = resample_poly(signals[0], 1, 2, axis=1).astype(np.float32)  # the first record at 250 Hz
    mixed = clf([slow, records[1]], labels=LABELS, fs=250, progress=False)
    assert not mixed.failures, mixed.failures
    assert list(mixed.scores.index) == ["array0", records[1].name]
    np.testing.assert_allclose(mixed.scores.to_numpy()[1], reference[1], atol=1e-5)
    bad = clf([np.zeros((3, 3, 3, 3))], labels=LABELS, fs=500, progress=False)
    assert [f.record for f in bad.failures] == ["array0"]  # failed under the name it would be scored under


def test_an_ecg_outside_the_supported_sampling_rates_is_refused_like_a_file():
    """The 50-20000 Hz rule was checked on files only: `Ecg(x, 10)` or an array with fs=10 was scored silently."""
    from ecglang.errors import EcgReadError
    from ecglang.record.ecg import Ecg

    x = np.zeros((12, 100), np.float32)
    for fs in (10, 0.5, 1e6, float("nan"), "500", True):
        with pytest.raises((EcgReadError, ValueError), match=r"Ecg|sampling rate"):
            Ecg(x, fs)
    a, b = Ecg(x, 500), Ecg(x.copy(), 500.0)
    assert a == b and a != Ecg(x + 1, 500) and a != Ecg(x, 250)  # equality compared arrays with == and raised


def test_python_and_the_cli_retrieve_knowledge_by_default(model):
    """`ZeroShotClassifier(model)` had knowledge off while `ecglang zero-shot` had it on: the same labels gave
    other scores in Python than on the command line."""
    import inspect

    from ecglang.cli.main import build_parser

    specs = ZeroShotClassifier(model).label_specs(labels=["left bundle branch block"])
    assert specs["left bundle branch block"].snippets, "no knowledge retrieved by default"
    cli_default = build_parser().parse_args(["zero-shot", "x.hea"]).knowledge
    assert inspect.signature(ZeroShotClassifier).parameters["knowledge"].default == cli_default == "default"


def test_ranked_names_an_unknown_record_and_dir_lists_the_lazy_names(model, records):
    """`result.ranked("nope")` raised a bare KeyError('nope'); `dir(ecglang)` hid load_model, ZeroShotClassifier
    and the other lazily imported names from tab completion."""
    import ecglang

    result = ZeroShotClassifier(model, knowledge=None)(records[:1], labels=LABELS, progress=False)
    with pytest.raises(KeyError, match="no scores for record 'nope'; scored records: 00001_hr"):
        result.ranked("nope")
    assert {"load_model", "ZeroShotClassifier", "load_ecg", "list_pretrained"} <= set(dir(ecglang))


def test_a_threshold_without_sigmoid_is_refused_and_dtypes_name_precisions(model, records):
    """`threshold=` was dropped without a word unless mode="sigmoid"; `precision=torch.bfloat16` was refused
    where "bf16" was taken."""
    clf = ZeroShotClassifier(model, knowledge=None, precision=torch.float32)
    assert clf.precision == "fp32"
    with pytest.raises(ConfigError, match="read by mode='sigmoid' only"):
        clf(records[:1], labels=LABELS, threshold=0.2, progress=False)
    scores = clf(records[:1], labels=LABELS, mode="sigmoid", threshold=0.2, progress=False).scores.to_numpy()
    assert ((scores > 0) & (scores < 1)).all()


def test_a_result_is_plain_data_for_json(model, records, tmp_path):
    """`json.dumps(result.failures)` raised TypeError and no result had a dict form (transformers' pipelines
    return plain dicts)."""
    import json

    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((12, 10), np.float32))
    result = ZeroShotClassifier(model)([records[0], bad], labels=["left bundle branch block"], progress=False, fs=500)
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data["scores"]) == ["00001_hr"]
    assert data["scores"]["00001_hr"]["left bundle branch block"] == pytest.approx(
        float(result.scores.iloc[0, 0]), abs=1e-6
    )
    assert data["labels"]["left bundle branch block"]["snippets"][0]["id"].startswith("clbbb")
    assert data["failures"][0]["record"] == "x" and data["failures"][0]["stage"] in ("read", "process")
    assert data["failures"][0]["path"] == str(bad)  # the id the record would have had, and its file


# ------------------------------------------------------------------------------------- long records
def test_long_records_say_which_part_was_scored(model, records, shared_data):
    """A 30-minute MIT-BIH record (read only as far as used) was scored on its first 10 s without a word: the
    result now gives each record's whole length and names the records longer than the part scored."""
    mitbih = shared_data / "mitbih" / "100.hea"
    result = ZeroShotClassifier(model, knowledge="off")([records[0], mitbih], labels=LABELS, progress=False)
    assert result.window == (10.0, "start")
    assert result.durations["00001_hr"] == pytest.approx(10.0)
    assert result.durations["100"] == pytest.approx(650000 / 360)  # the whole file, not the 20 s read of it
    assert result.long_records() == ["100"]
    assert result.to_dict()["seconds"]["100"] == pytest.approx(650000 / 360)
    arrays = ZeroShotClassifier(model, knowledge="off").score_arrays(
        [load_ecg(records[0]).signal, np.tile(load_ecg(records[1]).signal, 3)],
        fs=500, labels=LABELS, progress=False,
    )  # fmt: skip
    assert list(arrays.durations) == pytest.approx([10.0, 30.0]) and arrays.long_records() == ["array1"]


def test_cli_notes_long_records_and_gives_logging_back(model_dir, records, shared_data, capsys):
    import logging

    logger = logging.getLogger("ecglang.scores.classifier")
    before = logger.level
    argv = ["zero-shot", "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off", "--quiet"]
    assert cli([*argv, str(records[0])]) == 0
    assert "note:" not in capsys.readouterr().err
    assert cli([*argv, str(records[0]), str(shared_data / "mitbih" / "100.hea")]) == 0
    err = capsys.readouterr().err
    assert "1 record(s) longer than 10 s, each scored on its first 10 s only" in err and ": 100" in err
    assert logger.level == before  # the command quietened the classifier's warning only while it ran


def test_no_progress_means_no_prompt_embedding_bar(model, records, monkeypatch, capsys):
    """`--no-progress` / `progress=False` still drew the "embedding prompts" bar for thousands of labels."""
    from ecglang.scores import labels as label_embeddings

    monkeypatch.setattr(label_embeddings, "PROGRESS_MIN_TEXTS", 2)  # a bar for any batch, as for 10,000 labels
    clf = ZeroShotClassifier(model, knowledge="off")
    clf([records[0]], labels=["quiet label one", "quiet label two", "quiet label three"], progress=False)
    assert "embedding prompts" not in capsys.readouterr().err
    clf([records[0]], labels=["loud label one", "loud label two", "loud label three"], progress=True)
    assert "embedding prompts" in capsys.readouterr().err
