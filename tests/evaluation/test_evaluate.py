"""`ecglang evaluate`: the zero-shot protocol end to end on real PTB-XL records, bad-record handling,
and the random-encoder baseline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from scipy.stats import mannwhitneyu

from ecglang.cli.main import main
from ecglang.errors import ConfigError, EcgReadError, PromptError
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import load_label_set, load_labels_csv
from ecglang.evaluation.probe import probe_parts
from ecglang.evaluation.protocol import PromptSource, random_encoder_baseline
from ecglang.evaluation.store import processor_for
from ecglang.record.leads import CANONICAL_LEADS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SOURCES = ["names", "prompts", "knowledge"]


@pytest.fixture(scope="module")
def model():
    from ecglang.encoders.registry import create_model

    torch.manual_seed(1234)  # not the baseline's seed (0): an untrained model would equal its baseline
    return create_model("ecglang-small").eval()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def split_root(shared_data: Path) -> Path:
    return shared_data / "merl" / "data_split"


def _sample_ids(ptbxl_dir: Path) -> set[str]:
    """ecg_ids whose 500 Hz record is on disk, listed independently of the code under test."""
    return {str(int(p.name.split("_")[0])) for p in ptbxl_dir.glob("records500/*/*_hr.hea")}


def test_end_to_end_on_ptbxl(model_dir, ptbxl_dir, split_root, shared_data, tmp_path):
    out = tmp_path / "out"
    external = shared_data / "merl" / "CKEPE_prompt.json"
    argv = [
        "evaluate", "--model", str(model_dir), "--label-sets", "ptbxl_super", "--split-root", str(split_root),
        "--data-root", str(ptbxl_dir), "--part", "train", "--limit", "24",
        "--sources", *SOURCES, f"external:{external}",
        "--probe", "--probe-train", "train", "--probe-train-folds", "1", "2", "3", "4", "5", "6", "7",
        "--probe-test", "train", "--probe-test-folds", "8", "--probe-epochs", "60",
        "--retrieval", "--retrieval-folds", "8", "--retrieval-limit", "20",
        "--out", str(out), "--no-progress", "--save-scores",
    ]  # fmt: skip
    assert main(argv) == 0

    res = json.loads((out / "results.json").read_text())
    for key in ("protocol", "model", "random_baseline", "label_sets", "retrieval", "failures", "outputs"):
        assert key in res
    assert res["protocol"]["drop_ambiguous_prompts"] is False  # the default, said in the results
    entry = res["label_sets"]["ptbxl_super"]

    # honest record accounting, checked against the split file and the folder listing
    split = pd.read_csv(split_root / "ptbxl/super_class/ptbxl_super_class_train.csv")
    on_disk = _sample_ids(ptbxl_dir) & {str(i) for i in split["ecg_id"]}
    rec = entry["records"]
    assert rec["rows"] == len(split)
    assert rec["found"] == len(on_disk) and 0 < rec["found"] < rec["rows"]
    assert rec["missing"] == len(split) - len(on_disk)
    assert rec["evaluated"] == 24 and rec["failed"] == 0 and rec["left_out_by_limit"] == len(on_disk) - 24
    with open(out / "missing.csv", newline="") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == rec["missing"]

    codes = ["NORM", "MI", "STTC", "CD", "HYP"]
    ext_key = "external:CKEPE_prompt"
    assert list(entry["sources"]) == [*SOURCES, ext_key]
    for src, r in entry["sources"].items():
        for which in ("model", "random"):
            m = r[which]
            assert m["n_records"] == 24 and m["n_resamples"] == 1000
            ci = m["macro_auroc"]  # a percentile interval need not contain its point; it is ordered
            assert 0 <= ci["low"] <= ci["high"] <= 1 and 0 <= ci["point"] <= 1 and ci["n_valid"] > 900, ci
            assert ci["point"] == pytest.approx(np.mean(list(m["per_class_auroc"].values())))
            assert set(m["per_class_auroc"]) | set(m["skipped"]) == set(codes)
            assert 0 <= m["macro_max_f1"]["point"] <= 1
        # the same records scored by a different (random) encoder give different figures
        assert r["model"]["per_class_auroc"] != r["random"]["per_class_auroc"], src
    assert entry["sources"][ext_key]["labels_missing"] == []
    assert entry["sources"][ext_key]["labels_scored"] == codes
    assert entry["sources"]["names"]["prompts"]["MI"] == ["myocardial infarction"]
    know = entry["sources"]["knowledge"]
    assert all(know["snippets"][c] for c in codes) and all(know["knowledge_prompts"][c] for c in codes)

    # every record's scores: the reported AUROCs recompute from them, and the truth is the split file's
    saved = pd.read_csv(out / "scores_ptbxl_super.csv", dtype={"record_id": str})
    assert set(saved["source"]) == {*SOURCES, ext_key} and set(saved["side"]) == {"model", "random"}
    assert len(saved) == 24 * len(codes) * len(entry["sources"]) * 2
    truth = split.assign(record_id=split["ecg_id"].astype(str)).set_index("record_id")
    for (src, side, code), part in saved.groupby(["source", "side", "label"]):
        assert (part["truth"].to_numpy() == truth.loc[part["record_id"], code].to_numpy()).all()
        if code in entry["sources"][src][side]["per_class_auroc"]:
            pos, neg = part["score"][part["truth"] == 1], part["score"][part["truth"] == 0]
            recomputed = mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))  # AUROC = U / (n₁ n₀)
            assert recomputed == pytest.approx(entry["sources"][src][side]["per_class_auroc"][code], abs=1e-4)

    probe = entry["probe"]
    assert probe["train"]["folds"] == [1, 2, 3, 4, 5, 6, 7] and probe["test"]["folds"] == [8]
    for which in ("model", "random"):
        n_train = [probe[which][f]["meta"]["n_train"] for f in ("1 %", "10 %", "100 %")]
        assert n_train == sorted(n_train) and n_train[-1] == probe["train"]["records"] == 24
        assert probe[which]["100 %"]["n_records"] == probe["test"]["records"] == 24

    ret = res["retrieval"]
    assert ret["folds"] == [8] and 2 <= ret["pairs"] <= 20
    for which in ("model", "random"):
        for direction in ("ecg_to_report", "report_to_ecg"):
            m = ret[which][direction]
            assert m["n_queries"] == ret["pairs"]
            assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1

    md = (out / "results.md").read_text()
    assert "macro AUROC (95 % CI)" in md
    assert "| label set | names · model | names · random | prompts · model |" in md
    assert "| ptbxl_super | " in md and "## Linear probe" in md and "## Retrieval" in md
    assert f"| ptbxl_super | train | {len(split)} | {len(on_disk)} | {len(split) - len(on_disk)} |" in md
    for png in ("roc_ptbxl_super.png", "probe_ptbxl_super.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    with open(out / "failures.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["record", "stage", "error", "label_sets"]]


def _link_record(src: Path, folder: Path) -> None:
    for ext in (".hea", ".dat"):
        (folder / f"{src.name}{ext}").symlink_to(src.with_name(src.name + ext))


def test_bad_records_are_listed_and_the_rest_evaluated(model_dir, ptbxl_dir, tmp_path):
    from ecglang.data.builders import build_ptbxl

    ds, _ = build_ptbxl(ptbxl_dir, progress=False)
    rows = ds.select(range(12)).to_list()
    folder = tmp_path / "records"
    folder.mkdir()
    for row in rows:
        _link_record(Path(row["path"]), folder)
    # a truncated signal file (read failure) and an all-flat record (processing failure)
    first = Path(rows[0]["path"])
    header = first.with_name(first.name + ".hea").read_text().replace(first.name, "truncated_hr")
    (folder / "truncated_hr.hea").write_text(header)
    (folder / "truncated_hr.dat").write_bytes(first.with_name(first.name + ".dat").read_bytes()[:1000])
    wfdb.wrsamp("flat_hr", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), p_signal=np.zeros((5000, 12)),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))  # fmt: skip
    labels = [{"record_id": Path(r["path"]).name, "NORM": int("NORM" in r["superclass"])} for r in rows]
    labels[0]["NORM"], labels[1]["NORM"] = 1, 0  # both classes present whatever the sample holds
    labels = [{**r, "ABN": 1 - r["NORM"]} for r in labels]
    labels += [{"record_id": "truncated_hr", "NORM": 1, "ABN": 0}, {"record_id": "flat_hr", "NORM": 0, "ABN": 1},
               {"record_id": "ghost_hr", "NORM": 1, "ABN": 0}]  # fmt: skip
    csv_path = tmp_path / "labels.csv"
    pd.DataFrame(labels).to_csv(csv_path, index=False)

    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model_dir), "--labels-csv", str(csv_path), "--records", str(folder),
            "--sources", "names", "prompts", "--n-boot", "100", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 1

    with open(out / "failures.csv", newline="") as fh:
        failures = {Path(r["record"]).stem: r for r in csv.DictReader(fh)}
    assert set(failures) == {"truncated_hr", "flat_hr"}
    assert failures["truncated_hr"]["stage"] == "read" and "truncated" in failures["truncated_hr"]["error"]
    assert failures["flat_hr"]["stage"] == "process" and "flat" in failures["flat_hr"]["error"]
    assert failures["flat_hr"]["label_sets"] == "labels"
    res = json.loads((out / "results.json").read_text())
    entry = res["label_sets"]["labels"]
    assert entry["records"] == {**entry["records"], "rows": 15, "found": 14, "missing": 1, "failed": 2, "evaluated": 12}
    assert entry["records"]["missing_examples"] == ["ghost_hr"]
    assert res["n_failures"] == 2
    for src in ("names", "prompts"):
        assert entry["sources"][src]["model"]["n_records"] == 12
        assert entry["sources"][src]["model"]["per_class_auroc"].keys() == {"NORM", "ABN"}
    assert entry["sources"]["prompts"]["note"]  # no prompt set: says that the names are the prompts
    md = (out / "results.md").read_text()
    assert "2 record(s) could not be read or processed" in md and "truncated_hr" in md


def test_random_baseline_differs_but_shares_the_text_tower(model, ptbxl_dir):
    from ecglang.record.io import load_ecg

    with torch.no_grad():  # make the LoRA adapter non-trivial, as after training, so copying is visible
        for name, p in model.text_tower.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)
    base = random_encoder_baseline(model, seed=1)
    text_m, text_b = model.text_tower.state_dict(), base.text_tower.state_dict()
    assert text_m.keys() == text_b.keys() and any("lora_B" in k for k in text_m)
    assert all(torch.equal(text_m[k], text_b[k]) for k in text_m)
    assert base.text_tower.tokenizer is model.text_tower.tokenizer
    ecg_m, ecg_b = model.ecg_tower.state_dict(), base.ecg_tower.state_dict()
    weights = [k for k, v in ecg_m.items() if v.is_floating_point() and v.numel() > 1 and v.std() > 0]
    assert weights and all(not torch.equal(ecg_m[k], ecg_b[k]) for k in weights)
    pairs = zip(model.rhythm_proj.parameters(), base.rhythm_proj.parameters(), strict=True)
    assert not any(torch.equal(a, b) for a, b in pairs)
    # same seed → same baseline; the caller's RNG is left alone
    state = torch.get_rng_state()
    again = random_encoder_baseline(model, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, again.ecg_tower.state_dict()[k]) for k, v in ecg_b.items())

    with torch.inference_mode():
        tm, tb = model.encode_text(["atrial fibrillation"]), base.encode_text(["atrial fibrillation"])
        assert torch.allclose(tm.text_features, tb.text_features)  # shared text tower
        assert not torch.allclose(tm.text_embeds, tb.text_embeds)  # random text projection
        proc = processor_for(model, "default", "ptbxl")
        batch = proc([load_ecg(next(ptbxl_dir.glob("records500/*/*_hr.hea")))])
        em, eb = model.encode_ecg(**batch).rhythm_embeds, base.encode_ecg(**batch).rhythm_embeds
    assert not torch.allclose(em, eb)


def test_merl_compat_processor_keeps_the_model_beats(model):
    proc = processor_for(model, "merl_compat", "cpsc2018")
    default = processor_for(model, "default", "cpsc2018")
    assert proc.preprocess_config.keep_samples == 2500 and proc.preprocess_config.normalize == "record_minmax"
    assert processor_for(model, "merl_compat", "ptbxl").preprocess_config.keep_samples is None
    assert proc.beat_config.to_dict() == default.beat_config.to_dict()
    # Anything else is refused: "model" once gave MERL's min-max input to the composition check unnoticed.
    with pytest.raises(ConfigError, match=r"default.*merl_compat.*'model'"):
        processor_for(model, "model", "ptbxl")


def test_missing_test_fold_is_counted(ptbxl_dir, split_root):
    data = load_label_set("ptbxl_super", split_root, [str(ptbxl_dir)], part="test")
    split = pd.read_csv(split_root / "ptbxl/super_class/ptbxl_super_class_test.csv")
    assert data.n_rows == len(split) and data.n_found == 0 and len(data.missing) == len(split)
    assert data.missing[0].reason.startswith("not on disk")


def test_probe_refuses_overlapping_parts(ptbxl_dir, split_root, model_dir):
    data = load_label_set("ptbxl_super", split_root, [str(ptbxl_dir)], part="train", limit=10)
    cfg = EvaluateConfig(model=model_dir, label_sets=["ptbxl_super"], split_root=split_root,
                         data_roots=[str(ptbxl_dir)], probe=True, probe_train="train", probe_test="train",
                         probe_train_folds=[1, 2, 8], probe_test_folds=[8], limit=10)  # fmt: skip
    with pytest.raises(ConfigError, match="would share records"):
        probe_parts(data, cfg)


def test_labels_csv_matching(tmp_path, ptbxl_dir):
    folder = tmp_path / "recs"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    src = next(ptbxl_dir.glob("records500/*/*_hr.hea")).with_suffix("")
    for sub in ("a", "b"):
        _link_record(src, folder / sub)
    csv_path = tmp_path / "l.csv"
    pd.DataFrame({"record": [src.name, f"a/{src.name}", "nope"], "X": [1, 0, 1], "age": [50, 60, 70]}).to_csv(
        csv_path, index=False
    )
    data = load_labels_csv(csv_path, folder)
    assert data.label_codes == ["X"]  # 'age' is metadata
    assert data.record_ids == [f"a/{src.name}"]
    reasons = {m.record: m.reason for m in data.missing}
    assert reasons[src.name].startswith("ambiguous") and reasons["nope"].startswith("not on disk")


def test_a_label_column_with_a_bad_value_is_an_error_not_a_dropped_column(tmp_path, ptbxl_dir):
    """A 0/1 column with one 'x' (or an empty cell) was silently left out of the evaluation; now an error naming
    the column and line. Columns that are not labels at all are listed in the report's notes."""
    folder = tmp_path / "recs"
    folder.mkdir()
    src = next(ptbxl_dir.glob("records500/*/*_hr.hea")).with_suffix("")
    _link_record(src, folder)
    csv_path = tmp_path / "l.csv"
    for bad, held in (("x", "'x'"), ("", "an empty cell")):  # not np.float64(nan), what pandas made of it
        csv_path.write_text(f"record,AF,NORM\n{src.name},1,0\nother,0,1\nthird,{bad},1\n")
        with pytest.raises(EcgReadError, match=rf"column 'AF' holds 0/1 labels but line 4 holds {held}; fix"):
            load_labels_csv(csv_path, folder)
    csv_path.write_text(f"record,AF,comment\n{src.name},1,ok\nother,0,fine\nthird,1.0,x\n")
    data = load_labels_csv(csv_path, folder)
    assert data.label_codes == ["AF"] and data.labels.tolist() == [[1]]  # 1.0 read as 1
    assert data.notes["columns_not_labels"] == {"comment": "not 0/1 values (e.g. 'ok', 'fine', 'x')"}


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("record,af,af", r"column\(s\) named twice: \['af'\]"),
        ("record,,sinus rhythm", r"column\(s\) \[2\] have no name"),
    ],
)
def test_a_labels_csv_with_a_repeated_or_unnamed_column_is_refused(tmp_path, header, problem):
    """pandas read `af,af` as labels 'af' and 'af.1', and an empty name as 'Unnamed: 1': both were scored, exit 0."""
    csv_path = tmp_path / "l.csv"
    csv_path.write_text(f"{header}\nr1,1,0\nr2,0,1\n")
    with pytest.raises(EcgReadError, match=rf"l\.csv: {problem}; give every column one name of its own"):
        load_labels_csv(csv_path, tmp_path)


def test_prompt_source_parsing(tmp_path):
    assert PromptSource.parse("names").key == "names"
    f = tmp_path / "mine.json"
    f.write_text('{"NORM": "normal ECG"}')
    assert PromptSource.parse(f"external:{f}").key == "external:mine"
    with pytest.raises(ConfigError):
        PromptSource.parse("nonsense")
    with pytest.raises(PromptError):
        PromptSource.parse(f"external:{tmp_path / 'absent.json'}")


def test_part_all_joins_parts_whose_label_columns_are_in_another_order(ptbxl_dir, split_root):
    """ptbxl_sub's val split lists its label columns in another order than train/test (issue 13, item 11)."""
    parts = {p: pd.read_csv(split_root / "ptbxl" / "sub_class" / f"ptbxl_sub_class_{p}.csv", nrows=0).columns
             for p in ("train", "val", "test")}  # fmt: skip
    assert list(parts["val"]) != list(parts["train"]) and set(parts["val"]) == set(parts["train"])
    every = load_label_set("ptbxl_sub", split_root, {"default": ptbxl_dir}, part="all")
    assert every.n_rows == sum(
        load_label_set("ptbxl_sub", split_root, {"default": ptbxl_dir}, part=p).n_rows for p in ("train", "val", "test")
    )
    # Each record keeps its own labels: the joined table agrees with each part read alone, column by name.
    rows = {rid: i for i, rid in enumerate(every.record_ids)}
    checked = 0
    for p in ("train", "val", "test"):
        alone = load_label_set("ptbxl_sub", split_root, {"default": ptbxl_dir}, part=p)
        cols = [every.label_codes.index(c) for c in alone.label_codes]
        for i, rid in enumerate(alone.record_ids):
            np.testing.assert_array_equal(every.labels[rows[rid], cols], alone.labels[i])
            checked += 1
    assert checked == len(every.record_ids) > 0


def test_cli_flags_are_the_config_fields():
    """`ecglang evaluate` parses into EvaluateConfig through from_dict: no hand-written mirror to drift."""
    import argparse
    import dataclasses

    from ecglang.data.builders import SPLIT_PARTS
    from ecglang.evaluation.config import PARTS, add_arguments, from_args

    assert PARTS == (*SPLIT_PARTS, "all")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = from_args(parser.parse_args(["--model", "m"]))
    assert defaults == EvaluateConfig(model="m", device="auto")  # the CLI's only own default: --device auto
    args = parser.parse_args(["--model", "m", "--data-root", "a", "ptbxl=b", "-k", "5", "--no-progress",
                              "--probe", "--probe-fractions", "0.5", "--retrieval-folds", "9", "10"])  # fmt: skip
    cfg = from_args(args)
    assert (cfg.data_roots, cfg.k, cfg.progress, cfg.probe) == (["a", "ptbxl=b"], 5, False, True)
    assert (cfg.probe_fractions, cfg.retrieval_folds) == ([0.5], [9, 10])
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in dataclasses.fields(EvaluateConfig)}
    with pytest.raises(ConfigError, match="unknown key"):
        EvaluateConfig.from_dict({"model": "m", "bogus": 1})
    # the evaluation scores as zero-shot does by default (the config does not import the classifier)
    import inspect

    from ecglang.cli.main import build_parser
    from ecglang.scores.classifier import ZeroShotClassifier
    from ecglang.scores.labels import DEFAULT_KNOWLEDGE_K, DEFAULT_KNOWLEDGE_WEIGHT

    assert defaults.knowledge_weight == DEFAULT_KNOWLEDGE_WEIGHT and not defaults.drop_ambiguous_prompts
    # every entry point retrieves as many snippets per label as the library does (the CLIs keep literals)
    cli = build_parser()
    assert defaults.k == DEFAULT_KNOWLEDGE_K == inspect.signature(ZeroShotClassifier).parameters["k"].default
    assert cli.parse_args(["zero-shot", "x.hea", "--labels", "a"]).k == DEFAULT_KNOWLEDGE_K
    assert cli.parse_args(["knowledge", "search", "LBBB"]).k == DEFAULT_KNOWLEDGE_K
    assert from_args(parser.parse_args(["--model", "m", "--drop-ambiguous-prompts"])).drop_ambiguous_prompts


@pytest.mark.shared_data
def test_the_composition_check_scores_report_labels_with_the_models_own_input(tiny_model, ptbxl_dir, monkeypatch):
    """`python -m ecglang.evaluation.composition` runs end to end on real reports, through the model's processor."""
    from ecglang.evaluation import composition, store

    seen = []
    real = store.processor_for
    monkeypatch.setattr(composition, "processor_for", lambda m, p, d: seen.append(p) or real(m, p, d))
    out = composition.run_check(tiny_model(False), str(ptbxl_dir), folds=(8,), ks=(1, 3), n_boot=50)
    assert seen == ["default", "default"] or seen == ["default"]
    assert out["records"] == 44 and out["folds"] == [8] and not out["cross_fitted"]
    names = out["variants"]["names"]["minus_names"]
    assert names["point"] == names["low"] == names["high"] == 0.0
    for k in (1, 3):
        assert {f"k={k} · {v}" for v in ("blend 0.25", "blend 0.5", "blend 0.75", "ensemble", "knowledge only")} <= set(
            out["variants"]
        )
    best = out["best_keeping_the_labels_words"]
    assert best != "names" and "knowledge only" not in best
    assert out["variants_minus_best"][best]["point"] == 0.0


@pytest.mark.shared_data
def test_the_cross_fitted_composition_check_puts_each_folds_model_on_one_scale(tiny_model, ptbxl_dir, monkeypatch):
    """Cross-fitted, each fold has its own model and so its own score scale: the check z-scores each fold's
    scores before pooling, so a model whose scores sit higher and wider changes nothing (pooled raw, it would)."""
    from ecglang.evaluation import composition

    models = {7: tiny_model(False), 8: tiny_model(True)}
    real = composition._score_block

    def shifted(model, *args):
        y, scores = real(model, *args)
        return y, {v: 3.0 * s + 5.0 if model is models[8] else s for v, s in scores.items()}

    plain = composition.run_check(models, str(ptbxl_dir), folds=(7, 8), ks=(1,), n_boot=20)
    monkeypatch.setattr(composition, "_score_block", shifted)
    moved = composition.run_check(models, str(ptbxl_dir), folds=(7, 8), ks=(1,), n_boot=20)
    assert plain["cross_fitted"] and plain["records"] == moved["records"] > 44
    # Equal up to float rounding: a tiny untrained model scores many records almost alike, and 3 s + 5 rounds
    # the last bits, which can swap a near-tie (1e-4 seen). Pooled raw, every fold-8 score (3 cos + 5 >= 2) would
    # sit above every fold-7 one, ranking records by fold instead of by score.
    for v, r in plain["variants"].items():
        assert r["macro_auroc"]["point"] == pytest.approx(moved["variants"][v]["macro_auroc"]["point"], abs=2e-3)


def test_folds_with_only_a_labels_csv_is_refused() -> None:
    """`--folds 8` beside a --labels-csv table was ignored: every row was evaluated. It is refused, and the
    message no longer says the table has no folds (a CSV with a strat_fold column has them)."""
    from ecglang.evaluation.config import EvaluateConfig

    cfg = EvaluateConfig(model="m", labels_csv="labels.csv", records="recs", folds=[8])
    with pytest.raises(ConfigError, match="--folds applies only to --label-sets") as err:
        cfg.validate()
    assert "has none" not in str(err.value) and "--probe-train-folds" in str(err.value)
    EvaluateConfig(model="m", labels_csv="labels.csv", records="recs").validate()  # without --folds: fine


def _zero_padded_records(ptbxl_dir: Path, folder: Path, n: int) -> list[str]:
    """`n` PTB-XL records renamed `00012.hea/.dat` (ids with leading zeros, as many hospital exports have)."""
    folder.mkdir()
    names = []
    for hea in sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))[:n]:
        old = hea.stem
        new = old.removesuffix("_hr")
        (folder / f"{new}.hea").write_text(hea.read_text().replace(old, new))
        (folder / f"{new}.dat").symlink_to(hea.with_suffix(".dat"))
        names.append(new)
    return names


def _linked_records(ptbxl_dir: Path, folder: Path, n: int) -> list[str]:
    """`n` PTB-XL records linked into `folder` under their own names (`00001_hr`)."""
    folder.mkdir()
    heads = sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))[:n]
    for hea in heads:
        _link_record(hea.with_suffix(""), folder)
    return [h.stem for h in heads]


def test_labels_csv_ids_keep_their_leading_zeros(tmp_path, ptbxl_dir):
    """`pd.read_csv` turned "00012" into 12, so no row matched `00012.hea` and the message showed `12`."""
    names = _zero_padded_records(ptbxl_dir, tmp_path / "recs", 4)
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("record,X\n" + "".join(f"{r},{i % 2}\n" for i, r in enumerate(names)))
    data = load_labels_csv(csv_path, tmp_path / "recs")
    assert data.record_ids == names and not data.missing and "no_match" not in data.notes


def test_a_labels_csv_matching_no_record_names_its_id_column_and_the_one_that_matches(tmp_path, ptbxl_dir):
    """A MERL/PTB-XL split CSV is matched on the guessed `ecg_id` (12) while the files are `00012_hr`: every row
    was "not on disk" with no hint that `--id-column filename_hr` finds them."""
    hea = sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))[:3]
    csv_path = tmp_path / "split.csv"
    rows = [f"{int(h.stem[:5])},{i % 2},records500/{h.parent.name}/{h.stem}" for i, h in enumerate(hea)]
    csv_path.write_text("ecg_id,NORM,filename_hr\n" + "\n".join(rows) + "\n")
    data = load_labels_csv(csv_path, ptbxl_dir)
    assert data.record_ids == [] and len(data.missing) == 3
    hint = data.notes["no_match"]
    assert "no row's 'ecg_id' value names a record" in hint and "--id-column filename_hr matches 3 of 3 rows" in hint
    assert load_labels_csv(csv_path, ptbxl_dir, id_column="filename_hr").record_ids == [r.split(",")[2] for r in rows]


def test_a_labels_csv_run_says_its_records_and_leads(model_dir, ptbxl_dir, tmp_path, capsys):
    """results.md said "split part: `test`" for a --labels-csv run (no split part exists) and nothing about
    `--leads II`: a one-lead table read like a twelve-lead one."""
    names = _linked_records(ptbxl_dir, tmp_path / "recs", 6)
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("record,X\n" + "".join(f"{r},{i % 2}\n" for i, r in enumerate(names)))
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model_dir), "--labels-csv", str(csv_path), "--records", str(tmp_path / "recs"),
            "--sources", "names", "--n-boot", "20", "--leads", "ii", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    header = (out / "results.md").read_text().split("\n\n")[1]
    assert "split part: `" not in header and "records: all of mine (no split part)" in header
    assert "leads: `II` only (the other 11 masked" in header
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["leads"] == "II" and res["protocol"]["part_applies_to"] == []
    assert res["label_sets"]["mine"]["records"]["evaluated"] == 6
    assert "leads: `II` only" in capsys.readouterr().out  # the console table too


def test_a_run_that_computes_no_figure_exits_1(model_dir, ptbxl_dir, tmp_path, capsys):
    """Every class single-valued (all positive here): `| n/a | n/a |` and exit status 0 before."""
    names = _linked_records(ptbxl_dir, tmp_path / "recs", 4)
    csv_path = tmp_path / "onecls.csv"
    csv_path.write_text("record,NORM,SR\n" + "".join(f"{r},1,1\n" for r in names))
    argv = ["evaluate", "--model", str(model_dir), "--labels-csv", str(csv_path), "--records", str(tmp_path / "recs"),
            "--sources", "names", "--n-boot", "10", "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: no macro AUROC for onecls: no class has both values (0 and 1)" in err
