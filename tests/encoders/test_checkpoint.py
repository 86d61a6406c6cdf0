"""Complete Hugging Face checkpoints: save → load round trips, LoRA adapters, checksums, Hub ids offline,
and AutoModel/AutoConfig without trust_remote_code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel

from ecglang.core.outputs import OutputPathError
from ecglang.encoders.checkpoint import resolve_model_name
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.modeling import EcgLangConfig, EcgLangModel, load_model
from ecglang.encoders.registry import create_model
from ecglang.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

REPORTS = ["sinus rhythm. normal ecg.", "atrial fibrillation; left axis deviation.", "sinus tachycardia"]


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, n = 3, 40
    return {
        "beats": torch.randn(b, n, 12, 96, generator=g),
        "beat_mask": torch.arange(n)[None, :] < torch.tensor([[9], [14], [22]]),
        "lead_mask": torch.tensor([[True] * 12, [True] * 6 + [False] * 6, [True] + [False] * 11]),
        "rr": 0.6 + 0.4 * torch.rand(b, n, 2, generator=g),
        "times": torch.rand(b, n, generator=g) * 10,
    }


def _perturb(model: EcgLangModel, prefix: str, scale: float = 0.05) -> None:
    """Move weights away from their initial/pretrained values so a round trip cannot pass by reloading them."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(prefix) and p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g))


def _outputs(model: EcgLangModel) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        e = model.encode_ecg(**_batch())
        t = model.encode_text(REPORTS)
    return e.rhythm_embeds, e.beat_embeds, e.token_embeds, t.text_embeds, t.sentence_embeds, t.token_embeds


def _weight_keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory) -> tuple[EcgLangModel, Path]:
    torch.manual_seed(0)
    model = create_model("ecglang-small").eval()
    _perturb(model, "text_tower.")  # LoRA B starts at zero: make the adapter matter
    out = tmp_path_factory.mktemp("ckpt") / "lora"
    model.save_pretrained(out)
    return model, out


def test_lora_round_trip_is_exact_and_small(lora_checkpoint) -> None:
    model, folder = lora_checkpoint
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "text_adapter", "tokenizer.json", "tokenizer_config.json",
            "processor_config.json", "README.md", "checksums.json"} <= names  # fmt: skip
    assert (folder / "text_adapter" / "adapter_config.json").is_file()
    assert (folder / "text_adapter" / "adapter_model.safetensors").is_file()
    assert (folder / "model.safetensors").stat().st_size < 10 * 2**20
    keys = _weight_keys(folder / "model.safetensors")
    assert not [k for k in keys if k.startswith("text_tower.")]  # the text base is stored by reference
    assert any(k.startswith("ecg_tower.") for k in keys) and "loss_fn.logit_scale.rhythm" in keys
    config = json.loads((folder / "config.json").read_text())
    assert config["text_tower"]["name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"  # by its Hub id
    assert config["model_type"] == "ecglang" and "auto_map" not in config  # no remote code

    loaded = EcgLangModel.from_pretrained(folder)
    assert not loaded.training
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(a, b)
    # the adapter really is part of the result: without it the text embeddings differ
    fresh = create_model("ecglang-small").eval()
    assert not torch.allclose(_outputs(fresh)[3], _outputs(loaded)[3], atol=1e-4)


def test_full_finetune_round_trip_is_exact_and_self_contained(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("ecglang-small", text_tower={"finetune": "full"}).eval()
    _perturb(model, "text_tower.", scale=0.01)  # the saved text weights differ from the pretrained ones
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "text_adapter").exists()
    keys = _weight_keys(tmp_path / "model.safetensors")
    assert any(k.startswith("text_tower.model.encoder.") for k in keys)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["text_tower"]["hf_config"]["model_type"] == "bert"
    # not the folder the base was read from (site-packages): it would travel with the checkpoint
    assert config["text_tower"]["hf_config"]["_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    # The text weights are inside the checkpoint: an unreachable base reference must not matter.
    config["text_tower"]["name_or_path"] = "someone/not-available-offline"
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = EcgLangModel.from_pretrained(tmp_path)
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(a, b)


def test_checksum_mismatch_is_refused(lora_checkpoint, tmp_path: Path) -> None:
    _, folder = lora_checkpoint
    for name in ("model.safetensors", "text_adapter/adapter_model.safetensors"):
        copy = tmp_path / name.replace("/", "_")
        import shutil

        shutil.copytree(folder, copy)
        data = bytearray((copy / name).read_bytes())
        data[-5] ^= 0xFF  # flip bits in the tensor data
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(ModelLoadError, match="checksum mismatch") as err:
            EcgLangModel.from_pretrained(copy)
        assert name.split("/")[-1] in str(err.value)


def test_missing_and_pickle_only_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        EcgLangModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=r"config\.json is missing"):
        EcgLangModel.from_pretrained(tmp_path)
    EcgLangConfig().save_pretrained(tmp_path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only safetensors"):
        EcgLangModel.from_pretrained(tmp_path)


def test_offline_hub_id_fails_fast_with_a_folder_hint(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained("ecglang/not-cached-anywhere")
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    message = str(err.value)
    assert "ecglang/not-cached-anywhere" in message and "offline" in message
    assert "from_pretrained('DIR')" in message  # tells the user how to load from a folder


def test_model_card_and_processor_contract(lora_checkpoint) -> None:
    _, folder = lora_checkpoint
    card = (folder / "README.md").read_text()
    for needle in ("Not for clinical use", "500 Hz", "5000 samples", "I, II, III, aVR, aVL, aVF, V1", "robust zscore",
                   "Training data", "Intended use", "library_name: ecglang"):  # fmt: skip
        assert needle in card, needle
    proc = EcgProcessor.from_pretrained(folder)  # the processor module reads the mirrored contract
    assert proc.preprocess_config.target_fs == 500.0 and proc.preprocess_config.target_samples == 5000
    assert proc.beat_config.beat_len == 96 and proc.beat_config.max_beats == 40
    assert proc.to_dict() == EcgLangModel.from_pretrained(folder).get_processor().to_dict()
    sums = json.loads((folder / "checksums.json").read_text())
    assert set(sums) == {"model.safetensors", "text_adapter/adapter_model.safetensors"}


def test_auto_classes_round_trip(lora_checkpoint) -> None:
    model, folder = lora_checkpoint
    cfg = AutoConfig.from_pretrained(folder)
    assert isinstance(cfg, EcgLangConfig) and cfg.ecg_tower == model.config.ecg_tower
    auto = AutoModel.from_pretrained(folder)
    assert isinstance(auto, EcgLangModel)
    assert torch.equal(_outputs(model)[0], _outputs(auto)[0])


def test_auto_model_works_after_plain_import_ecglang(lora_checkpoint) -> None:
    """A fresh interpreter: `import ecglang` alone must register the Auto classes (no trust_remote_code)."""
    _, folder = lora_checkpoint
    code = (
        "import ecglang, sys\n"
        "from transformers import AutoModel\n"
        f"m = AutoModel.from_pretrained({str(folder)!r})\n"
        "print(type(m).__name__)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, (
        "`import ecglang` must import ecglang.encoders.modeling (which registers the Auto classes):\n"
        + res.stderr[-2000:]
    )
    assert res.stdout.strip().splitlines()[-1] == "EcgLangModel"


def test_load_model_for_inference(lora_checkpoint) -> None:
    model, folder = lora_checkpoint
    loaded = load_model(folder, device="cpu")
    assert not loaded.training and loaded.device.type == "cpu"
    assert torch.equal(_outputs(model)[0], _outputs(loaded)[0])
    assert loaded.processor.to_dict() == model.get_processor().to_dict()
    with pytest.raises(ModelLoadError, match="bundled"):
        load_model("no-such-checkpoint-name")


def test_console_script_starts_without_torch_and_lazy_names_resolve() -> None:
    """`ecglang --help` must not wait for torch + transformers (~4 s); the model names still resolve lazily."""
    code = (
        "import sys\n"
        "sys.argv = ['/usr/local/bin/ecglang', '--help']\n"  # how the console script starts
        "import ecglang.cli.main\n"
        "print('torch' in sys.modules, 'transformers.modeling_utils' in sys.modules)\n"
        "print(ecglang.ZeroShotClassifier.__name__, ecglang.EcgLangModel.__name__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    first, second = res.stdout.strip().splitlines()[-2:]
    assert first == "False False"
    assert second == "ZeroShotClassifier EcgLangModel"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        import ecglang

        ecglang.NoSuchThing  # noqa: B018


def test_processor_contract_is_stored_once_and_read_from_processor_config(lora_checkpoint, tmp_path: Path) -> None:
    """config.json holds no copy of the contract; processor_config.json is what a load reads."""
    import shutil

    _, folder = lora_checkpoint
    assert json.loads((folder / "config.json").read_text())["processor"] is None
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    contract = json.loads((copy / "processor_config.json").read_text())
    contract["preprocess"]["target_fs"] = 250.0
    contract["preprocess"]["bandpass"] = [0.5, 100.0]
    (copy / "processor_config.json").write_text(json.dumps(contract))
    for loaded in (EcgLangModel.from_pretrained(copy), AutoModel.from_pretrained(copy)):
        assert loaded.get_processor().preprocess_config.target_fs == 250.0
    (copy / "processor_config.json").unlink()
    assert EcgLangModel.from_pretrained(copy).processor is None


def test_bundled_checkpoint_with_the_contract_in_config_json_still_loads_it(tmp_path: Path) -> None:
    """Checkpoints saved before the contract was stored once hold it in config.json; that still loads."""
    import shutil

    bundled = Path(resolve_model_name(None))
    # The bundled checkpoint's metadata was regenerated (issue 13): its contract is in processor_config.json
    # only. The old layout is rebuilt from it: the contract in config.json, no processor_config.json.
    saved = json.loads((bundled / "processor_config.json").read_text())
    # read as the format it was written in (format 1: the "odd" band-pass edges), written back as today's
    expected = EcgProcessor.from_dict(saved).to_dict()
    assert expected["preprocess"]["edge_pad"] == "odd"
    assert json.loads((bundled / "config.json").read_text())["processor"] is None
    assert EcgLangModel.from_pretrained(bundled).get_processor().to_dict() == expected
    old = tmp_path / "old"
    shutil.copytree(bundled, old)
    config = json.loads((old / "config.json").read_text())
    config["processor"] = saved
    (old / "config.json").write_text(json.dumps(config))
    (old / "processor_config.json").unlink()
    (old / "checksums.json").unlink()
    assert EcgLangModel.from_pretrained(old).get_processor().to_dict() == expected


def test_a_saved_checkpoint_is_readable_by_others_under_the_usual_umask(lora_checkpoint) -> None:
    """Folders were renamed in from `mkdtemp` (0700) and weights written 0600: a checkpoint saved into a shared
    folder could not be read by a teammate or a service account."""
    import os
    import stat

    _, folder = lora_checkpoint
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))


def _bundled_copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(resolve_model_name(None), folder)
    return folder


def test_a_missing_or_truncated_tokenizer_file_is_a_one_line_error(lora_checkpoint, tmp_path: Path) -> None:
    """Finding 1: a copy of the bundled checkpoint without tokenizer.json loaded with a 5-token vocabulary (every
    word [UNK], every prompt the same embedding), and evaluate reported plausible AUROCs from it; a truncated
    one was an error naming only the folder. checksums.json lists the weights only: the tokenizer file itself
    is checked, in the bundled checkpoint as in a fresh save."""
    missing = _bundled_copy(tmp_path, "missing")
    (missing / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained(missing)
    message = str(err.value)
    assert message.startswith(f"{missing / 'tokenizer.json'}: missing (nor its vocab.txt)") and "\n" not in message
    truncated = _bundled_copy(tmp_path, "truncated")
    data = (truncated / "tokenizer.json").read_bytes()
    (truncated / "tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=re.escape(f"{truncated / 'tokenizer.json'}: unreadable tokenizer file")):
        EcgLangModel.from_pretrained(truncated)
    _, saved = lora_checkpoint
    fresh = tmp_path / "fresh"
    shutil.copytree(saved, fresh)
    with open(fresh / "tokenizer.json", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelLoadError, match=re.escape(f"{fresh / 'tokenizer.json'}: unreadable tokenizer file")):
        EcgLangModel.from_pretrained(fresh)
    (fresh / "tokenizer.json").write_text('{"version": "1.0"}')  # JSON, but no vocabulary
    with pytest.raises(ModelLoadError, match=re.escape(f"{fresh / 'tokenizer.json'}: not a tokenizers file")):
        EcgLangModel.from_pretrained(fresh)
    (fresh / "tokenizer.json").write_text('{"model": {}}')  # was "cannot load the tokenizer: 'added_tokens'"
    with pytest.raises(ModelLoadError, match=re.escape(f"{fresh / 'tokenizer.json'}: not a whole tokenizers file: it "
                                                       "lacks the entry 'added_tokens'")):  # fmt: skip
        EcgLangModel.from_pretrained(fresh)


def test_a_save_refuses_a_folder_that_is_not_a_checkpoint(lora_checkpoint, tmp_path: Path, monkeypatch) -> None:
    """Finding 3: saving into a project folder deleted its README.md, config.json, tokenizer*/vocab* files and
    text_adapter/; `--out .` swapped the current folder for a new one under the user's shell."""
    model, saved = lora_checkpoint
    project = tmp_path / "project"
    files = {"README.md": "# Study notes\n", "config.json": '{"cohort": "A"}', "tokenizer_eval.csv": "a,b\n",
             "text_adapter/mine.txt": "keep\n", "results.csv": "1\n"}  # fmt: skip
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    with pytest.raises(OutputPathError, match=re.escape(f"{project}: the folder holds other files")):
        model.save_pretrained(project)
    assert {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()} == set(files)
    assert all((project / name).read_text() == text for name, text in files.items())
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    # The current folder is never swapped out from under the process, even an empty one.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(OutputPathError, match="is the current folder"):
        model.save_pretrained(".")
    # A checkpoint is re-saved in place (a user's csv beside it is kept); a new or empty folder is written.
    again = tmp_path / "again"
    shutil.copytree(saved, again)
    (again / "tokenizer_eval.csv").write_text("a,b\n")
    model.save_pretrained(again)
    assert (again / "tokenizer_eval.csv").read_text() == "a,b\n"
    (tmp_path / "empty").mkdir()
    model.save_pretrained(tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


def test_from_pretrained_takes_dtype_names_and_refuses_unknown_keywords(lora_checkpoint) -> None:
    """Finding 9: dtype='bfloat16', torch_dtype='float16' and device_map were ignored (float32 on the CPU), and a
    misspelt option went unnoticed, through AutoModel too."""
    _, folder = lora_checkpoint
    cases = [
        ({"dtype": "bfloat16"}, torch.bfloat16),
        ({"torch_dtype": "float16"}, torch.float16),
        ({"dtype": "auto"}, torch.float32),
        ({"torch_dtype": torch.float64, "device_map": "cpu"}, torch.float64),
    ]
    for kwargs, dtype in cases:
        loaded = EcgLangModel.from_pretrained(folder, **kwargs)
        assert {p.dtype for p in loaded.parameters()} == {dtype} and loaded.device.type == "cpu", kwargs
    assert AutoModel.from_pretrained(folder, dtype="bfloat16").dtype == torch.bfloat16
    for load in (EcgLangModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(TypeError, match="no_such_option"):
            load(folder, no_such_option=1)
    with pytest.raises(ConfigError, match="'bfloat' is not a torch dtype"):
        EcgLangModel.from_pretrained(folder, dtype="bfloat")
    with pytest.raises(ConfigError, match="not a floating point type"):
        EcgLangModel.from_pretrained(folder, torch_dtype="int8")
    with pytest.raises(ConfigError, match="not split across devices"):
        EcgLangModel.from_pretrained(folder, device_map={"ecg_tower": "cpu", "text_tower": "cpu"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            EcgLangModel.from_pretrained(folder, device_map="cuda:7")


def test_a_config_that_does_not_match_the_weights_is_one_line(tmp_path: Path) -> None:
    """Finding 12: a hand-edited config.json (ecg_tower.d_model 64 -> 32) gave torch's 58-line size-mismatch dump;
    an edited LoRA rank the same through peft."""
    folder = _bundled_copy(tmp_path, "edited")
    config = json.loads((folder / "config.json").read_text())
    config["ecg_tower"]["d_model"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained(folder)
    message = str(err.value)
    assert "\n" not in message, message
    assert re.match(
        re.escape(f"{folder / 'model.safetensors'}: weights do not match config.json: ")
        + r"\d{2} tensor\(s\) have other shapes, the first '[\w.]+' is \[\d+(, \d+)*\] in the file and \[", message
    ), message  # fmt: skip
    config["ecg_tower"]["d_model"] = 64
    config["text_tower"]["lora"]["r"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained(folder)
    message = str(err.value)
    assert "\n" not in message and "tensor(s) have other shapes, the first" in message, message
    assert message.startswith(f"{folder / 'text_adapter' / 'adapter_model.safetensors'}: cannot load the LoRA")


def test_the_card_says_how_its_figures_were_measured_and_keeps_it_on_resave(tmp_path: Path) -> None:
    """A Hub reader has only the card: its figures came with no protocol (prompt set, labels, split, score,
    bootstrap, command), and its file list left out processor_config.json, which it tells readers to use."""
    torch.manual_seed(0)
    protocol = "Zero-shot: fold 8, cosine of the rhythm embedding, 1000 bootstrap resamples."
    create_model("ecglang-small").save_pretrained(
        tmp_path / "a", card={"protocol": protocol, "metrics": {"zero-shot macro AUROC": "0.700 (0.6–0.8)"}}
    )
    card = (tmp_path / "a" / "README.md").read_text()
    assert f"## Evaluation\n{protocol}\n\n- zero-shot macro AUROC: 0.700 (0.6–0.8)\n" in card
    assert "config.json, processor_config.json, tokenizer files" in card
    EcgLangModel.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")  # a re-save carries the card
    assert (tmp_path / "b" / "README.md").read_text() == card
    bundled = (Path(__file__).resolve().parents[2] / "checkpoints" / "ecglang-mini" / "README.md").read_text()
    assert "Reproduce with `ecglang evaluate --model MODEL --label-sets ptbxl_super" in bundled
