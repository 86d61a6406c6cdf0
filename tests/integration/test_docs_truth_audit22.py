"""The docs state what is true now (docs audit, session 22: /tmp/s22/audit_docs/REPORT.md, findings 1–9).

Each test re-measures or re-reads what a doc sentence claims with the project's own code and commands, and
compares it with the sentence: a figure that drifts, or a description of behaviour that changed, fails here."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "checkpoints" / "ecglang-mini"


def flat(text: str) -> str:
    """Text with every run of whitespace one space: a sentence reads the same however it is wrapped."""
    return " ".join(text.split())


def read(relative: str) -> str:
    return (REPO / relative).read_text(encoding="utf-8")


def load_script(path: Path, name: str) -> ModuleType:
    # By file path, as `python scripts/x.py` runs it (scripts/ and benchmarks/ are not installed packages).
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------- finding 1
def test_knowledge_readme_gives_the_strict_and_lenient_audit21_figures_as_reliability_does() -> None:
    """Finding 1: knowledge/README.md gave the audit-21 independent set's figure after the fixes as 1.000 while
    counting a snippet that holds a condition and its opposite as off-label; under that (strict) counting it is
    0.962, as README.md and docs/RELIABILITY.md say; 1.000 is the lenient figure."""
    row = next(line for line in read("docs/RELIABILITY.md").splitlines() if "precision@3 strict / lenient" in line)
    before, after = (re.match(r"\s*([\d.]+) / ([\d.]+)", cell).groups() for cell in row.split("|")[2:4])
    text = flat(read("knowledge/README.md"))
    strict = re.search(r"independent set of 205 labels: precision@3 ([\d.]+) → ([\d.]+), counting a snippet that "
                       r"held both a condition and its opposite as off-label", text)  # fmt: skip
    assert strict is not None, "knowledge/README.md no longer states the audit-21 strict figure"
    assert strict.groups() == (before[0], after[0])
    lenient = re.search(r"as off-label; ([\d.]+) → ([\d.]+) without counting those", text)
    assert lenient is not None and lenient.groups() == (before[1], after[1])
    assert f"{after[0]} (3.8 %) after the fixes" in flat(read("README.md"))


# ------------------------------------------------------------------------------------------- finding 2
@pytest.mark.slow
@pytest.mark.shared_data
def test_the_bundled_cards_held_out_figures_are_what_its_refresh_measures_today(shared_data: Path, tmp_path) -> None:
    """Finding 2: the bundled model card and heldout_eval.json gave knowledge 0.766 (random 0.462) as "today's";
    `scripts/bundle_checkpoint.py --refresh`'s measurement (the card's own command) gives 0.769 (random 0.465)."""
    bundle = load_script(REPO / "scripts" / "bundle_checkpoint.py", "bundle_checkpoint_audit22")
    measured, _ = bundle.heldout_metrics(BUNDLED, shared_data, tmp_path, 1000)
    stored = json.loads((BUNDLED / "heldout_eval.json").read_text(encoding="utf-8"))["metrics"]
    card = (BUNDLED / "README.md").read_text(encoding="utf-8")
    for name, value in measured.items():
        assert stored[name] == value, f"heldout_eval.json: {name}: {stored[name]!r}, measured {value!r}"
        assert f"- {name}: {value}\n" in card, f"the card's figure for {name} is not the measured {value!r}"
        if "AUROC" in name:  # the model-index entry: the point value
            assert f"value: {value.split()[0]}\n      name: {name}\n" in card, name


# ------------------------------------------------------------------------------------------- finding 3
STALE_PLACEMENT = (
    "reading, preprocessing and beat cutting run in a DataLoader worker process while this process runs the encoder",
    "batches are prepared (in workers) while the encoder runs here.",
    "in a DataLoader worker while this process runs the encoder, torch on the remaining core",
    "the DataLoader worker that prepares records included",
    "(the DataLoader worker included)",
)
BOTH_STAGES = ("*and* runs the encoder", "prepares and encodes", "*and* encodes")


def placement_docs() -> dict[str, str]:
    from ecglang.embeddings.pipeline import encode_batches
    from ecglang.scores import classifier

    docs = {
        "ecglang/scores/classifier.py (Throughput)": classifier.__doc__.split("Throughput", 1)[1].split("\n\n")[0],
        "encode_batches": encode_batches.__doc__ or "",
    }
    for name in ("bench_zeroshot", "bench_memory", "bench_scaling"):
        path = REPO / "benchmarks" / f"{name}.py"
        docs[f"benchmarks/{name}.py"] = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return docs


@pytest.mark.shared_data
def test_docs_say_where_the_encoder_runs_on_few_cores(ptbxl_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Finding 3: docstrings said the encoder runs in the main process while a worker prepares; on a CPU with at
    most `MAX_ENCODING_WORKERS` cores every worker prepares and encodes and the main process only collects."""
    import torch

    from ecglang.embeddings import pipeline
    from ecglang.encoders.registry import create_model
    from ecglang.record.io import load_ecg
    from ecglang.scores.classifier import ZeroShotClassifier

    if not pipeline.workers_fork():
        pytest.skip("encoding in workers needs workers started by fork")
    # The docs' case: 2 usable cores (<= MAX_ENCODING_WORKERS), whatever the runner has.
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 2)
    log = tmp_path / "encoder_pids.txt"
    original = pipeline.encode_rhythm

    def spy(model, batch):  # the rhythm path's encoder call, in whichever process runs it
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        return original(model, batch)

    monkeypatch.setattr(pipeline, "encode_rhythm", spy)
    torch.manual_seed(0)
    clf = ZeroShotClassifier(create_model("ecglang-small").eval(), knowledge=None, batch_size=16)
    signal = load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr.hea").signal
    result = clf.score_arrays([signal.copy() for _ in range(48)], 500.0, ["sinus rhythm", "atrial fibrillation"],
                              progress=False)  # fmt: skip
    assert result.scores.shape == (48, 2) and not result.failures
    pids = [int(p) for p in log.read_text(encoding="utf-8").split()]
    assert len(pids) == 3 and os.getpid() not in pids and len(set(pids)) == 2  # 3 batches of 16, 2 workers
    for where, doc in placement_docs().items():
        text = flat(doc)
        assert not [s for s in STALE_PLACEMENT if s in text], f"{where} still says the main process encodes"
        assert any(s in text for s in BOTH_STAGES), f"{where} does not say that the workers encode on few cores"


# ------------------------------------------------------------------------------------------- finding 4
def test_ablation_300_is_what_its_report_command_writes(tmp_path: Path, monkeypatch) -> None:
    """Finding 4: docs/ABLATION_300.md quoted the latent-beats and masked-beats runs from before session 20's
    blanking fix; ABLATION.md's own command for it (`--report-only --max-steps 300`) writes the retrained runs."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    ablation = load_script(REPO / "scripts" / "ablation.py", "ablation_audit22")
    report = tmp_path / "ABLATION_300.md"
    argv = ["--report-only", "--max-steps", "300", "--report", str(report), "--runs", str(tmp_path / "runs"),
            "--results", str(REPO / "docs" / "ablation_results.jsonl"),
            "--knowledge-results", str(REPO / "docs" / "ablation_knowledge.jsonl")]  # fmt: skip
    assert ablation.main(argv) == 0
    assert report.read_text(encoding="utf-8") == read("docs/ABLATION_300.md")


# ------------------------------------------------------------------------------------------- finding 5
def test_the_quick_benchmark_run_is_not_said_to_take_seconds() -> None:
    """Finding 5: `benchmarks/run.py --quick`'s help said "a few seconds" and benchmarks/README.md 45–60 s; it
    took 141–207 s on 2 shared cores (2026-12-08), and the harness test 146 s."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--help"], capture_output=True,
                         text=True, env=env, check=True).stdout  # fmt: skip
    quick = flat(out.split("--quick", 2)[2].split("--repeats", 1)[0])
    assert "few seconds" not in quick and "minutes" in quick, quick
    readme = flat(read("benchmarks/README.md"))
    assert "45–60 s" not in readme and "It takes minutes rather than seconds" in readme


# ------------------------------------------------------------------------------------------- finding 6
@pytest.mark.slow
@pytest.mark.shared_data
def test_the_readme_names_the_prototype_figures_a_folder_run_writes(ptbxl_dir, tmp_path, capsys, one_torch_thread):
    """Finding 6: README's folder example (`zero-shot my_records/ --prototypes protos/ --plot fig.png`) said it
    writes `fig_prototypes.png`; with several records it writes `fig_<record>_prototypes.png` for each."""
    from ecglang.cli.main import main

    source = ptbxl_dir / "records500" / "00000"
    records = tmp_path / "my_records"
    records.mkdir()
    for stem in ("00001_hr", "00002_hr"):
        for suffix in (".hea", ".dat"):
            (records / f"{stem}{suffix}").symlink_to(source / f"{stem}{suffix}")
    refs = [str(source / r) for r in ("00003_hr", "00004_hr", "00005_hr")]
    protos = tmp_path / "protos"
    assert main(["prototypes", "build", "--records", *refs, "--out", str(protos), "--num-workers", "0"]) == 0
    plots = tmp_path / "plots"
    plots.mkdir()
    argv = ["zero-shot", str(records), "--knowledge", "off", "--prototypes", str(protos), "--prototypes-out",
            str(tmp_path / "nearest.json"), "--plot", str(plots / "fig.png")]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    written = {p.name for p in plots.iterdir()}
    assert written == {f"fig_{r}{end}" for r in ("00001_hr", "00002_hr") for end in (".png", "_prototypes.png")}
    readme = flat(read("README.md"))
    assert "--prototypes protos/ --prototypes-out nearest.json --plot fig.png" in readme
    assert "`fig_<record>_prototypes.png` beside each `fig_<record>.png`" in readme


# ------------------------------------------------------------------------------------------- finding 7
COMPOSITION_ROWS = {  # README row (first cell) -> the variants of docs/composition_check.json it gives, in order
    "names": ["names"],
    "k = 3, weight ¼ / ½ / ¾": ["k=3 · blend 0.25", "k=3 · blend 0.5", "k=3 · blend 0.75"],
    "k = 2, weight ¾": ["k=2 · blend 0.75"],
    "**k = 1, weight ¾**": ["k=1 · blend 0.75"],
    "k = 1, flat CLIP-style ensemble (each prompt counts once)": ["k=1 · ensemble"],
    "k = 1, knowledge replacing the label's words (breaks the rule; reference only)": ["k=1 · knowledge only"],
}


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_composition_table_is_what_its_command_gives_today(ptbxl_dir: Path) -> None:
    """Finding 7: README's bundled-checkpoint composition column and docs/composition_check.json had drifted by up
    to 0.0014 from what `python -m ecglang.evaluation.composition` gives (k = 1 at ¾: 0.823 stated, 0.824 now)."""
    from ecglang.encoders.modeling import load_model
    from ecglang.evaluation.composition import run_check

    now = run_check(load_model(str(BUNDLED)), str(ptbxl_dir))
    stored = json.loads(read("docs/composition_check.json"))
    assert stored["records"] == now["records"] == 308
    for name, variant in now["variants"].items():
        np.testing.assert_allclose(stored["variants"][name]["macro_auroc"]["point"], variant["macro_auroc"]["point"],
                                   atol=1e-4, err_msg=name)  # fmt: skip
    header = "| composition | bundled checkpoint, folds 1–7 (308 records it trained on) |"
    table = read("README.md").split(header, 1)[1].split("\n\n", 1)[0]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in table.splitlines()[2:]}
    for row, variants in COMPOSITION_ROWS.items():
        stated = [float(x) for x in re.findall(r"\d\.\d{3}", rows[row].split("(")[0])]
        measured = [round(now["variants"][v]["macro_auroc"]["point"], 3) for v in variants]
        assert stated == measured, (row, stated, measured)
    ci = now["variants"]["k=1 · blend 0.75"]["macro_auroc"]
    assert f"({ci['low']:.3f}–{ci['high']:.3f})" in rows["**k = 1, weight ¾**"]
    k3 = now["variants_minus_best"]["k=3 · blend 0.75"]
    assert (f"On the bundled checkpoint, k = 3 is {-k3['point']:.3f} below ({k3['low']:.3f} to {k3['high']:+.3f})"
            .replace("-", "−") in flat(read("README.md")))  # fmt: skip


# ------------------------------------------------------------------------------------------- finding 8
@pytest.mark.shared_data
def test_model_md_counts_the_training_pairs_and_their_distinct_reports(ptbxl_dir: Path) -> None:
    """Finding 8 (the brief's 7): docs/MODEL.md said "the 309 PTB-XL sample training reports hold 148 distinct
    texts"; folds 1–7 hold 309 records, of which one has an empty report and is left out: 308 training pairs,
    138 distinct report texts as the text tower reads them (147 as written in the table, 148 with the empty one)."""
    from ecglang.data.registry import build_dataset
    from ecglang.text.reports import normalize_report
    from ecglang.training.pairs import heldout_split

    dataset, _ = build_dataset("ptbxl", ptbxl_dir, progress=False)
    train_idx, _ = heldout_split(dataset, [8])  # configs/pretrain/ptbxl-mini.yaml: val_folds [8]
    reports = [str(dataset["report"][int(i)]) for i in train_idx]
    originals = [str(dataset["report_original"][int(i)]) for i in train_idx]
    pairs = [r for r in reports if r.strip()]  # training leaves out an empty report (training.setup)
    assert reports == [normalize_report(o) for o in originals]
    written = {o.strip() for o, r in zip(originals, reports, strict=True) if r.strip()}
    text = flat(read("docs/MODEL.md"))
    claim = (f"the {len(pairs)} training pairs of the PTB-XL sample (folds 1–7 hold {len(reports)} records; one with "
             f"an empty report is left out) hold {len(set(pairs))} distinct report texts as the text tower reads them "
             f"(`ecglang.text.reports.normalize_report`: English, lower-case, \"Edit:\" notes removed; {len(written)} "
             "as written in `ptbxl_database.csv`)")  # fmt: skip
    assert claim in text
    assert len(reports) - len(pairs) == 1
    readme = flat(read("README.md"))
    assert f"sample's {len(pairs)} training pairs" in readme and f"({len(pairs)} records it trained on)" in readme


# ------------------------------------------------------------------------------------------- finding 9
def test_gpu_check_says_which_labels_it_scores() -> None:
    """Finding 9: scripts/gpu_check.sh's header said it scores with the ptbxl_super prompts; it scores five bare
    PTB-XL superclass names (`labels = [...]`), not the prompt set."""
    script = read("scripts/gpu_check.sh")
    labels = ast.literal_eval(re.search(r"^labels = (\[.*\])$", script, flags=re.M).group(1))
    header = flat("\n".join(line.lstrip("# ") for line in script.splitlines() if line.startswith("#")))
    assert "ptbxl_super prompts" not in header
    assert len(labels) == 5 and "the five PTB-XL superclass names as bare labels" in header
