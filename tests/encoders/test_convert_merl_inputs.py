"""`ecglang convert merl` on inputs the fixture's files are not (audit 17, findings 3, 4 and 8): corrupt weights,
MERL files from older transformers, files that are not torch checkpoints and mistyped text model folders. Each
is a typed one-line error naming the file and the problem, or (old transformers) converts to the same model."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglang.cli.main import main
from ecglang.encoders.convert_merl import build_merl_model, convert_merl, read_merl_state_dict
from ecglang.errors import ModelLoadError

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "merl"
TEXT = str(FIXTURE / "text-encoder")
FULL = FIXTURE / "merl_resnet18_tinytext.pth"

pytestmark = pytest.mark.skipif(
    not (FIXTURE / "reference.npz").is_file(),
    reason=f"MERL fixture {FIXTURE} not found (it ships beside the repo in ../shared/fixtures/merl)",
)


@pytest.fixture(scope="module")
def merl_state() -> dict[str, torch.Tensor]:
    return read_merl_state_dict(FULL)


def _saved(state: dict[str, torch.Tensor], path: Path, **changes: torch.Tensor) -> Path:
    torch.save({**state, **changes}, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_refused_naming_the_merl_file_and_key(merl_state, tmp_path, value) -> None:
    """Finding 3: a NaN weight converted with exit 0; the loader then refused the output, naming model.safetensors."""
    weight = merl_state["downconv.weight"].clone()
    weight[0, 0, 0] = value
    bad = _saved(merl_state, tmp_path / "nan.pth", **{"downconv.weight": weight})
    with pytest.raises(ModelLoadError, match=r"tensor 'downconv\.weight' holds 1 non-finite value") as err:
        convert_merl(bad, TEXT, tmp_path / "out")
    assert err.value.path == str(bad)
    assert not (tmp_path / "out").exists()


def test_an_integer_weight_is_refused_not_cast(merl_state, tmp_path) -> None:
    """Finding 3: an int64 weight was cast to float by load_state_dict without a word."""
    weight = (merl_state["downconv.weight"] * 100).to(torch.int64)
    bad = _saved(merl_state, tmp_path / "int.pth", **{"downconv.weight": weight})
    with pytest.raises(ModelLoadError, match=r"tensor 'downconv\.weight' is stored as torch\.int64") as err:
        build_merl_model(bad, TEXT)
    assert err.value.path == str(bad) and "floating point" in str(err.value)


def test_a_corrupt_weight_in_the_fill_from_file_names_that_file(merl_state, tmp_path) -> None:
    """The error names the file the tensor came from: here `fill_from`, which supplies proj_t to an encoder-only
    file."""
    proj = merl_state["proj_t.0.weight"].clone()
    proj[1, 2] = float("nan")
    fill = _saved(merl_state, tmp_path / "full.pth", **{"proj_t.0.weight": proj})
    with pytest.raises(ModelLoadError, match=r"'proj_t\.0\.weight' holds 1 non-finite") as err:
        build_merl_model(FIXTURE / "merl_resnet18_encoder.pth", TEXT, fill_from=fill)
    assert err.value.path == str(fill)


def test_the_cli_refuses_a_nan_file_with_exit_1(merl_state, tmp_path, capsys) -> None:
    weight = merl_state["att_pool_head.c_proj.weight"].clone()
    weight[:, 0] = float("nan")
    bad = _saved(merl_state, tmp_path / "nan.pth", **{"att_pool_head.c_proj.weight": weight})
    out = tmp_path / "out"
    assert main(["convert", "merl", str(bad), "--text-model", TEXT, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: tensor 'att_pool_head.c_proj.weight' holds 256 non-finite"), err
    assert not out.exists()


def _embeddings(model: torch.nn.Module, ref: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.ones(4, 12, dtype=torch.bool)
    with torch.no_grad():
        ecg = model.encode_ecg(signal=torch.from_numpy(ref["ecg"]), lead_mask=mask).rhythm_embeds
        text = model.encode_text([str(p) for p in ref["prompts"]]).text_embeds
    return ecg, text


def test_a_file_from_transformers_before_4_31_converts_to_the_same_model(merl_state, tmp_path) -> None:
    """Finding 4: files holding BERT's then-persistent `position_ids` (and a `token_type_ids` buffer) were
    refused as "unmatched keys ['text_tower.model.embeddings.position_ids']"."""
    old = _saved(merl_state, tmp_path / "old.pth", **{
        "lm_model.embeddings.position_ids": torch.arange(512)[None],
        "lm_model.embeddings.token_type_ids": torch.zeros(1, 512, dtype=torch.long),
    })  # fmt: skip
    with np.load(FIXTURE / "reference.npz", allow_pickle=False) as z:
        ref = {k: z[k] for k in ("ecg", "prompts", "resnet18_ecg_emb_norm", "resnet18_text_emb")}
    ecg, text = _embeddings(build_merl_model(old, TEXT), ref)
    assert np.abs(ecg.numpy() - ref["resnet18_ecg_emb_norm"]).max() < 1e-5
    assert np.abs(text.numpy() - ref["resnet18_text_emb"]).max() < 1e-5


@pytest.mark.parametrize(
    "position_ids",
    [torch.arange(512).flip(0)[None], torch.zeros(1, 512, dtype=torch.long), torch.arange(512).repeat(2, 1)],
    ids=["reversed", "zeros", "two-rows"],
)
def test_position_ids_other_than_a_range_are_refused_by_name(merl_state, tmp_path, position_ids) -> None:
    """Dropping them would silently give another model: older transformers did load this buffer."""
    bad = _saved(merl_state, tmp_path / "pos.pth", **{"lm_model.embeddings.position_ids": position_ids})
    with pytest.raises(ModelLoadError, match=r"'lm_model\.embeddings\.position_ids' .* is not 0, 1") as err:
        build_merl_model(bad, TEXT)
    assert err.value.path == str(bad)


def _not_torch_files(folder: Path) -> dict[str, Path]:
    files = {
        "text": b"hello world not a torch file",  # torch said "cannot read as a weights-only torch file: 101"
        "empty": b"",
        "json": b'{"a": 1}\n',
        "html": b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>",
        "bad-pickle": b"\x80\x02hello",
    }
    out = {name: folder / f"{name}.pth" for name in files}
    for name, data in files.items():
        out[name].write_bytes(data)
    out["zip"] = folder / "zip.pth"
    with zipfile.ZipFile(out["zip"], "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return out


@pytest.mark.parametrize("kind", ["text", "empty", "json", "html", "bad-pickle", "zip"])
def test_a_file_that_is_not_a_torch_checkpoint_says_so(tmp_path, kind, capsys) -> None:
    """Finding 8: torch's KeyError(101) reached the user as "101"; other bytes were said to hold pickled objects."""
    path = _not_torch_files(tmp_path)[kind]
    argv = ["convert", "merl", str(path), "--text-model", TEXT, "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: not a torch checkpoint (zip or legacy pickle)"), err
    assert "\n" not in err and "101" not in err and "pickled Python objects" not in err
    assert not (tmp_path / "out").exists()


def test_a_truncated_legacy_file_says_it_ends_early(merl_state, tmp_path) -> None:
    path = tmp_path / "legacy.pth"
    torch.save(merl_state, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="ends early"):
        read_merl_state_dict(path)


@pytest.mark.parametrize("text_model", ["/nonexistent/dir", "./not/here", "~/no-such-text-model", "a/b/c"])
def test_a_text_model_folder_that_is_not_there_is_named_as_one(tmp_path, text_model, capsys) -> None:
    """Finding 8: `--text-model /nonexistent/dir` gave transformers' "Repo id must be in the form ..."."""
    argv = ["convert", "merl", str(FULL), "--text-model", text_model, "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {text_model}: text model folder not found (and it is not a Hub id: 'owner/name')", err


def test_a_text_model_that_is_a_file_or_a_folder_without_config_is_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        build_merl_model(FULL, str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match=r"must be a folder .* not a file"):
        build_merl_model(FULL, str(FIXTURE / "README.md"))


def test_an_uncached_hub_id_is_one_line(tmp_path) -> None:
    """A Hub-id-shaped name is left to transformers (offline here); its two-line message is cut to one."""
    with pytest.raises(ModelLoadError, match="cannot read the text model's config") as err:
        build_merl_model(FULL, "acme-nonexistent/text-model-xyz")
    assert "\n" not in str(err.value)
