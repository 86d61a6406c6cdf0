"""Security: weights load from safetensors only, the package source never deserialises or executes untrusted
data, user knowledge/prompt files are data, and a Hub id without network fails fast with a way out."""

from __future__ import annotations

import ast
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from transformers import AutoModel

import ecglang
from ecglang.cli.main import main as cli
from ecglang.data.builders import build_ptbxl
from ecglang.encoders.modeling import EcgLangConfig, EcgLangModel
from ecglang.errors import EcgReadError, KnowledgeError, ModelLoadError, PromptError
from ecglang.knowledge.index import KnowledgeBase
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.prompts import load_external_prompts, load_prompt_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

PACKAGE = Path(ecglang.__file__).parent


class _Payload:
    """Unpickling this creates `marker`: proof that a file was unpickled (executed) rather than refused."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _code_payload(marker: Path) -> str:
    """Python source that creates `marker` if anything ever evaluates it."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


@pytest.fixture(scope="module")
def model(model_dir) -> EcgLangModel:
    return EcgLangModel.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """A 10 s, 500 Hz record with clear beats."""
    folder = tmp_path_factory.mktemp("rec")
    t = np.arange(5000) / 500
    qrs = sum(np.exp(-0.5 * ((t - r) / 0.012) ** 2) for r in np.arange(0.4, 10, 0.8))
    sig = np.outer(np.linspace(0.5, 1.5, 12), qrs) + np.random.default_rng(0).normal(0, 0.01, (12, 5000))
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), p_signal=sig.T, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))  # fmt: skip
    return folder / "rec.hea"


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------- weights
def test_the_payload_is_live(tmp_path):
    """Control: the payload used below really runs when unpickled, so 'marker absent' means 'refused'."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt"])
@pytest.mark.parametrize("with_config", [True, False])
def test_pickle_only_folders_are_refused_and_never_unpickled(tmp_path, name, with_config, capsys):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if with_config:
        EcgLangConfig().save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / name).write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    # AutoModel dispatches on config.json to EcgLangModel; without one it cannot know the folder is ecglang's.
    for load in (EcgLangModel.from_pretrained, AutoModel.from_pretrained) if with_config else (
        EcgLangModel.from_pretrained,
    ):  # fmt: skip
        with pytest.raises(ModelLoadError, match=rf"found \['{name}'\]: pickle checkpoints are not loaded, only "
                           "safetensors") as err:  # fmt: skip
            load(str(folder))
        assert str(folder) in str(err.value)
    if not with_config:
        with pytest.raises(ValueError, match="Unrecognized model"):  # transformers' own refusal
            AutoModel.from_pretrained(str(folder))
    assert cli(["zero-shot", str(folder), "--labels", "AF", "--model", str(folder), "--knowledge", "off"]) == 1
    assert "only safetensors" in _one_error_line(capsys.readouterr().err)
    assert not marker.exists()


def test_a_pickle_disguised_as_safetensors_is_refused(model_dir, tmp_path):
    folder = tmp_path / "ckpt"
    import shutil

    shutil.copytree(model_dir, folder)
    (folder / "checksums.json").unlink()  # a hand-made folder: nothing to verify against
    marker = tmp_path / "pwned"
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelLoadError, match="cannot read safetensors file"):
        EcgLangModel.from_pretrained(folder)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- source scan
_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Unsafe loading/execution in Python source, found on the syntax tree (comments and strings ignored).

    Flags: `torch.load` without `weights_only=True`; `pickle`-family `load`/`loads`/`Unpickler` (and
    `torch.serialization` pickling loaders); builtin `eval`/`exec`/`compile`/`__import__` calls;
    `trust_remote_code=True`; `numpy.load(..., allow_pickle=True)`; `yaml.load` without a safe loader;
    `subprocess`/`os.system` with `shell=True` or `os.system`/`os.popen` at all."""
    tree = ast.parse(source, filename)
    imported: dict[str, str] = {}  # local name -> dotted origin (from-imports and aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imported[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                imported[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = f"{imported.get(head, head)}.{rest}" if rest else imported.get(head, head)
        where = f"{filename}:{node.lineno}"
        weights_only = _keyword(node, "weights_only")
        if full == "torch.load" and not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            found.append(f"{where}: torch.load without weights_only=True")
        root, _, leaf = full.rpartition(".")
        if root.split(".")[0] in _PICKLE_MODULES and leaf in ("load", "loads", "Unpickler"):
            found.append(f"{where}: {full}")
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile", "__import__"):
            found.append(f"{where}: builtin {node.func.id}()")
        trc = _keyword(node, "trust_remote_code")
        if trc is not None and not (isinstance(trc, ast.Constant) and trc.value is False):
            found.append(f"{where}: trust_remote_code={ast.unparse(trc)}")
        allow = _keyword(node, "allow_pickle")
        if (
            full in ("numpy.load", "np.load")
            and allow is not None
            and not (isinstance(allow, ast.Constant) and allow.value is False)
        ):
            found.append(f"{where}: numpy.load with allow_pickle={ast.unparse(allow)}")
        loader = _keyword(node, "Loader")
        if full == "yaml.load" and not (loader is not None and "Safe" in ast.unparse(loader)):
            found.append(f"{where}: yaml.load without SafeLoader")
        shell = _keyword(node, "shell")
        if full.startswith("subprocess.") and isinstance(shell, ast.Constant) and shell.value is True:
            found.append(f"{where}: {full}(shell=True)")
        if full in ("os.system", "os.popen"):
            found.append(f"{where}: {full}")
    return found


def test_scanner_finds_each_unsafe_pattern():
    """The scanner itself is checked: each pattern is found in code, none in comments or strings."""
    bad = textwrap.dedent(
        """
        import torch, pickle, yaml, subprocess, os
        import numpy as np
        from torch import load as tload
        import pickle as pk
        from transformers import AutoModel
        torch.load("a.pt")
        torch.load("a.pt", weights_only=False)
        tload("a.pt")
        pickle.load(f)
        pk.loads(b)
        eval(text)
        exec(code)
        AutoModel.from_pretrained("x", trust_remote_code=True)
        np.load("a.npy", allow_pickle=True)
        yaml.load(s)
        subprocess.run(cmd, shell=True)
        os.system(cmd)
        """
    )
    assert len(unsafe_calls(bad)) == 12, unsafe_calls(bad)
    good = textwrap.dedent(
        """
        # torch.load(path) and eval(x) in a comment; pickle.load in a string below
        import torch, ast, yaml
        import numpy as np
        doc = "never call pickle.load or eval( on user data"
        torch.load("a.pt", weights_only=True)
        model.eval()
        ast.literal_eval("{'a': 1}")
        np.load("a.npy")
        yaml.load(s, Loader=yaml.SafeLoader)
        yaml.safe_load(s)
        """
    )
    assert unsafe_calls(good) == []


def test_package_source_has_no_unsafe_loading_or_execution():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30  # the whole package, subpackages included
    found = [hit for f in files for hit in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE)))]
    assert found == []


# ------------------------------------------------------------------------------------- data files are data
def test_knowledge_files_are_parsed_as_data(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = _code_payload(marker)
    kb_file = tmp_path / "kb.jsonl"
    text = f"{payload}; exec({payload!r}) eval('1+1'); and a criterion in words"  # the words: a snippet needs one
    snippet = {"id": "payload-1", "title": payload, "text": text, "source": payload, "aliases": [payload],
               "codes": {"ptbxl": [payload]}}  # fmt: skip
    kb_file.write_text(json.dumps(snippet) + "\n", encoding="utf-8")
    kb = KnowledgeBase.load(kb_file)
    assert kb["payload-1"].title == payload and payload in kb["payload-1"].text  # kept as text
    # The CLI embeds it (the text goes through the sentence encoder) and searches it.
    assert cli(["knowledge", "build", "--kb", str(kb_file), "--out", str(tmp_path / "index")]) == 0
    assert cli(["knowledge", "search", "pathlib touch", "--index", str(tmp_path / "index")]) == 0
    assert "payload-1" in capsys.readouterr().out

    code_line = tmp_path / "code.jsonl"  # a line of Python, not JSON: rejected, not evaluated
    code_line.write_text(payload + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="line 1: invalid JSON"):
        KnowledgeBase.load(code_line)
    literal = tmp_path / "literal.jsonl"  # a Python dict literal with a call inside: rejected too
    literal.write_text("{'id': 'x', 'title': " + payload + ", 'text': 't', 'source': 's'}\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="line 1: invalid JSON"):
        KnowledgeBase.load(literal)
    assert not marker.exists()


def test_prompt_files_and_labels_are_parsed_as_data(model, record, tmp_path):
    marker = tmp_path / "pwned"
    payload = _code_payload(marker)
    prompt_set = {
        "name": "payload", "dataset": "test", "label_set": "test", "description": payload, "merl_split": None,
        "labels": {
            "A": {"name": payload, "prompts": [payload, f"exec({payload!r})"]},
            "B": {"name": "sinus rhythm", "prompts": ["sinus rhythm", "normal sinus rhythm"]},
        },
    }  # fmt: skip
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(prompt_set), encoding="utf-8")
    ps = load_prompt_set(path)
    assert ps.labels["A"].prompts == (payload, f"exec({payload!r})")
    result = ZeroShotClassifier(model, knowledge=None)(record, prompts=path, progress=False)
    assert list(result.scores.columns) == ["A", "B"] and result.labels["A"].prompts[0] == payload
    labels = ZeroShotClassifier(model, knowledge=None)(record, labels=[payload, "sinus rhythm"], progress=False)
    assert list(labels.scores.columns) == [payload, "sinus rhythm"]

    external = tmp_path / "external.json"
    external.write_text(json.dumps({"A": payload}), encoding="utf-8")
    assert load_external_prompts(external).prompts == {"A": [payload]}
    literal = tmp_path / "literal.json"  # Python, not JSON: refused, not evaluated
    literal.write_text("{'A': " + payload + "}", encoding="utf-8")
    for load in (load_prompt_set, load_external_prompts):
        with pytest.raises(PromptError, match=r"literal\.json"):
            load(literal)
    assert not marker.exists()


def test_metadata_cells_with_code_are_rejected_not_run(tmp_path):
    """PTB-XL's `scp_codes` column is a Python-literal dict: it is read with `ast.literal_eval`, so a cell
    holding a call is a listed failure and nothing runs."""
    marker = tmp_path / "pwned"
    root = tmp_path / "ptbxl"
    (root / "records500" / "00000").mkdir(parents=True)
    rows = []
    for ecg_id, codes in ((1, "{'NORM': 100.0}"), (2, "{'NORM': " + _code_payload(marker) + "}")):
        name = f"{ecg_id:05d}_hr"
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), p_signal=np.zeros((500, 12)),
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(root / "records500" / "00000"))  # fmt: skip
        rows.append({"ecg_id": ecg_id, "report": "sinusrhythmus", "scp_codes": codes, "strat_fold": 1,
                     "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
                     "filename_hr": f"records500/00000/{name}"})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    pd.DataFrame({"diagnostic": [1], "diagnostic_class": ["NORM"], "diagnostic_subclass": ["NORM"]},
                 index=["NORM"]).to_csv(root / "scp_statements.csv")  # fmt: skip
    ds, report = build_ptbxl(root, progress=False)
    assert ds["id"] == ["1"] and [f.record_id for f in report.failures] == ["2"]
    assert "bad scp_codes" in report.failures[0].reason
    assert not marker.exists()


# ------------------------------------------------------------------------------------- Hub ids offline
def test_hub_id_offline_fails_fast_in_process(record, capsys):
    """HF_HUB_OFFLINE=1 (set by conftest): the API and the CLI answer in well under 2 s, saying how to load a
    folder instead. (tests/test_checkpoint.py checks the same for another id and the message's folder hint.)"""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"someone/ecglang-model: .*offline.*from_pretrained\('DIR'\)"):
        EcgLangModel.from_pretrained("someone/ecglang-model")
    api = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert cli(["zero-shot", str(record), "--labels", "AF", "--model", "someone/x", "--knowledge", "off"]) == 1
    cli_s = time.perf_counter() - t0
    line = _one_error_line(capsys.readouterr().err)
    assert "someone/x" in line and "`hf download someone/x --local-dir DIR`" in line
    assert api < 2.0 and cli_s < 2.0, (api, cli_s)
    print(f"offline Hub id: API {api * 1000:.0f} ms, CLI {cli_s * 1000:.0f} ms")


_NO_NETWORK = textwrap.dedent(
    """
    import json, sys, time
    from ecglang.cli.main import build_parser, main
    from ecglang.errors import ModelLoadError
    from ecglang.encoders.modeling import EcgLangModel

    import ecglang.scores.classifier  # noqa: F401  imported first: the timings are of the Hub lookup, not of imports

    build_parser()
    t0 = time.perf_counter()
    try:
        EcgLangModel.from_pretrained("someone/ecglang-model")
        message = None
    except ModelLoadError as exc:
        message = str(exc)
    api = time.perf_counter() - t0
    t0 = time.perf_counter()
    status = main(["zero-shot", sys.argv[1], "--labels", "AF", "--model", "someone/x", "--knowledge", "off"])
    cli_s = time.perf_counter() - t0
    print(json.dumps({"api": api, "cli": cli_s, "status": status, "message": message}))
    """
)


def _run_without_offline_flag(record: Path, tmp_path: Path, endpoint: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # an empty Hub cache
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    run = subprocess.run([sys.executable, "-c", _NO_NETWORK, str(record)], capture_output=True, text=True, env=env,
                         timeout=20)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "Traceback" not in run.stderr and "error: someone/x:" in run.stderr
    return out


def test_hub_id_without_network_and_without_offline_flag_fails_fast(record, tmp_path):
    """HF_HUB_OFFLINE unset, no network (this machine has none): the real network path, bounded."""
    out = _run_without_offline_flag(record, tmp_path)
    assert out["status"] == 1 and "someone/ecglang-model" in out["message"]
    assert "from_pretrained('DIR')" in out["message"]
    assert out["api"] < 2.0 and out["cli"] < 2.0, out
    print(f"no network, HF_HUB_OFFLINE unset: API {out['api'] * 1000:.0f} ms, CLI {out['cli'] * 1000:.0f} ms")


def test_hub_id_with_a_stalled_network_fails_fast(record, tmp_path):
    """A network that accepts connections but never answers (a black-holed proxy or firewall): the Hub
    client itself has no timeout on this request, so the load is bounded by ecglang's reachability probe."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # connections complete in the kernel; nothing is ever read or answered
        out = _run_without_offline_flag(record, tmp_path, endpoint=f"http://127.0.0.1:{server.getsockname()[1]}")
    assert out["status"] == 1 and "did not answer" in out["message"] and "from_pretrained('DIR')" in out["message"]
    assert out["api"] < 2.0 and out["cli"] < 2.0, out
    print(f"stalled network: API {out['api'] * 1000:.0f} ms, CLI {out['cli'] * 1000:.0f} ms")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_numpy_records_are_refused_not_run(tmp_path, suffix):
    """NumPy writes object arrays as pickles; `load_ecg` reads arrays with allow_pickle=False."""
    marker = tmp_path / "pwned"
    arr = np.empty((12, 3), dtype=object)
    arr[0, 0] = _Payload(marker)
    path = tmp_path / f"rec{suffix}"
    if suffix == ".npy":
        np.save(path, arr, allow_pickle=True)
    else:
        np.savez(path, signal=arr, fs=500.0)
    with pytest.raises(EcgReadError, match=r"cannot read NP[YZ] file: .*allow_pickle=False") as err:
        load_ecg(path, fs=500.0, leads=list(CANONICAL_LEADS))
    assert str(path) in str(err.value)
    assert not marker.exists()
