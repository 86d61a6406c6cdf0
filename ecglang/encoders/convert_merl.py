"""Convert a MERL checkpoint (`.pth`, Liu et al. ICML 2024) into a complete ecglang checkpoint folder.

MERL's trainer saves plain `state_dict`s: the whole `ECGCLIP` (`*_ckpt.pth`, `*_final_total.pth`; ECG encoder,
its head, `proj_t` and the BERT text model as `lm_model.*`) or the ECG encoder only (`*_encoder.pth`). This
module reads them with `torch.load(weights_only=True)` (no pickled code runs), maps every key onto
`EcgLangModel` with a `merl_resnet18` / `merl_vit_tiny` tower (`ecglang.encoders.merl`) and MERL's text side
(BERT `pooler_output` -> `proj_t`), checks every key and shape, and saves with `save_pretrained`: safetensors,
config, `processor_config.json` with MERL's preprocessing, the tokenizer and a model card naming the source.

Where the parts come from, first match wins: the checkpoint itself; `fill_from` (another MERL checkpoint,
e.g. the full file next to an encoder-only one, or one holding `lm_model.*`); for the BERT weights only, the
text model folder or Hub id (`text_model`, which always provides the tokenizer and the BERT config).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoConfig, AutoModel

from ecglang.encoders.checkpoint import check_save_folder, first_line, load_tokenizer, tensor_problem, text_reference
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.text_encoder import resolve_text_model
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.signal.preprocess import PreprocessConfig

MERL_REPOSITORY = "https://github.com/cheliu-computation/MERL-ICML2024"
MERL_COMMIT = "38799b7deb1c9958f41badcfacc6a95192787cc4"
MERL_LICENSE = "mit"
MERL_PAPER = (
    "Liu et al., Zero-Shot ECG Classification with Multimodal Learning and Test-time Clinical Knowledge "
    "Enhancement, ICML 2024"
)

# MERL keys that zero-shot inference never uses: the uni-modal training branch and ResNet's unused head.
UNUSED_PREFIXES = ("linear1.", "linear2.", "ecg_encoder.linear.")

# BERT buffers that transformers < 4.31 saved in state dicts (MERL files trained then hold them) and that
# transformers itself ignores on load: the model rebuilds both. position_ids is checked to be 0..N-1 first,
# since older transformers did load it (other values would be a different model); token_type_ids was never
# loaded by any version (always zeros at run time), so it is dropped as it is.
LEGACY_TEXT_BUFFERS = ("lm_model.embeddings.position_ids", "lm_model.embeddings.token_type_ids")

# MERL key prefix -> EcgLangModel key prefix. Module names below the prefix are the same on both sides.
_PREFIX_MAP = (
    ("ecg_encoder.", "ecg_tower.ecg_encoder."),
    ("downconv.", "ecg_tower.downconv."),
    ("att_pool_head.", "ecg_tower.att_pool_head."),
    ("proj_e.", "ecg_tower.proj_e."),
    ("lm_model.", "text_tower.model."),
    ("proj_t.0.", "text_proj.net.0."),
    ("proj_t.2.", "text_proj.net.2."),
)


def read_merl_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a MERL `.pth`, read with `weights_only=True`; a `module.` prefix (DataParallel) is dropped.

    An encoder-only file (keys like `conv1.weight`, `pos_embedding`) gets the `ecg_encoder.` prefix, so that
    every file is keyed as a full `ECGCLIP` state dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(path, "MERL checkpoint file not found")
    _check_torch_format(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or broken files
        if isinstance(exc, EOFError):  # torch's text is empty or "Ran out of input"
            raise ModelLoadError(path, "the torch file ends early (truncated, or an interrupted download?)") from exc
        if isinstance(exc, KeyError):  # a pickle opcode referring to a memo entry that is not there: bytes, not data
            raise ModelLoadError(path, f"{_NOT_TORCH}: a corrupt legacy pickle") from exc
        # torch's own text for a pickle advises loading with weights_only=False: never passed on.
        if str(exc).startswith("Weights only load failed"):
            raise ModelLoadError(
                path, f"not a plain state dict: it holds pickled Python objects ({_pickled_globals(path, exc)}); "
                "ecglang reads weights only and never unpickles code: save the model's state_dict() instead"
            ) from exc  # fmt: skip
        raise ModelLoadError(path, f"cannot read as a weights-only torch file: {first_line(exc)}") from exc
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        raise ModelLoadError(path, "not a MERL state dict (expected a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    if not any(k.startswith(("ecg_encoder.", "lm_model.", "proj_t.")) for k in state):
        state = {f"ecg_encoder.{k}": v for k, v in state.items()}
    return state


_NOT_TORCH = "not a torch checkpoint (zip or legacy pickle)"


def _check_torch_format(path: Path) -> None:
    """`ModelLoadError` for a file that is neither of torch's two formats, read from its first bytes: torch's
    own error for one is meaningless ("101", a KeyError of its unpickler) or wrongly says "pickled objects"."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise ModelLoadError(path, f"{_NOT_TORCH}: the file is empty")
    if head.startswith(b"PK\x03\x04"):  # a zip: torch's format holds <archive>/data.pkl
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return  # a truncated zip: torch's reader says so
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            raise ModelLoadError(path, f"{_NOT_TORCH}: a zip archive without data.pkl")
        return
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle opcode PROTO 2-5: torch's legacy format
        return
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        what = "an HTML page (a failed download?)"
    elif head[8:9] == b"{":  # 8-byte header length, then the JSON header
        what = "a safetensors file (MERL publishes .pth state dicts)"
    else:
        what = f"the file starts with {head[:8]!r}"
    raise ModelLoadError(path, f"{_NOT_TORCH}: {what}")


def _pickled_globals(path: Path, exc: BaseException) -> str:
    """The Python names a pickle refers to, read from its opcodes (nothing is unpickled), for the message."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an old (non-zip) file or a torch without the helper: torch's message names the first
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))[:1]
    if not names:
        return "classes it does not name"
    shown = ", ".join(f"`{n}`" for n in names[:5])
    return shown if len(names) <= 5 else f"{shown} and {len(names) - 5} more"


def detect_architecture(state: Mapping[str, Tensor]) -> str | None:
    """`"merl_vit_tiny"`, `"merl_resnet18"`, or None when the state dict holds no ECG encoder."""
    if "ecg_encoder.pos_embedding" in state or "ecg_encoder.to_patch_embedding.weight" in state:
        return "merl_vit_tiny"
    if "ecg_encoder.layer1.0.conv1.weight" in state:
        return "merl_resnet18"
    return None


def merl_config(architecture: str, text_model: str, hf_config: Mapping[str, Any]) -> EcgLangConfig:
    """The `EcgLangConfig` of a MERL model: its tower, BERT pooler -> `proj_t`, no logit scale (plain cosine),
    and MERL's preprocessing (500 Hz, 5000 samples, no filter, whole-record min-max, MIMIC lead order)."""
    if architecture not in ("merl_resnet18", "merl_vit_tiny"):
        raise ConfigError(f"MERL architecture must be 'merl_resnet18' or 'merl_vit_tiny', got {architecture!r}")
    return EcgLangConfig(
        ecg_tower={"type": architecture},
        text_tower={
            "name_or_path": text_model, "pooling": "pooler", "max_length": 256, "lowercase": True,
            "finetune": "full", "hf_config": dict(hf_config),
        },
        projection={"dim": 256, "ecg_type": "identity", "text_type": "mlp", "hidden_dim": 256, "normalize": True},
        loss={"weights": {"rhythm": 1.0, "beat": 0.0, "token": 0.0}, "logit_scale_init": 0.0},
        processor={"preprocess": PreprocessConfig.merl_compat().to_dict(), "lead_order": "mimic"},
    )  # fmt: skip


def _our_key(key: str) -> str | None:
    """The `EcgLangModel` key of a MERL key, or None when it maps nowhere."""
    for merl_prefix, ours in _PREFIX_MAP:
        if key.startswith(merl_prefix):
            return ours + key[len(merl_prefix) :]
    return None


def map_merl_keys(
    state: Mapping[str, Tensor], origins: Mapping[str, str | os.PathLike] | None = None
) -> tuple[dict[str, Tensor], list[str]]:
    """`(ecglang state, MERL keys that map nowhere)`; keys MERL never uses at inference are dropped, and so are
    the `LEGACY_TEXT_BUFFERS` (a `position_ids` that is not 0..N-1 is a `ModelLoadError` naming the file that
    `origins` gives for the key)."""
    mapped, unmatched = {}, []
    for key, value in state.items():
        if key.startswith(UNUSED_PREFIXES):
            continue
        if key in LEGACY_TEXT_BUFFERS:
            if key.endswith("position_ids") and not _is_range(value):
                raise ModelLoadError(
                    (origins or {}).get(key), f"tensor {key!r} {list(value.shape)} is not 0, 1, ..., N-1 (what "
                    "transformers < 4.31 saved): BERT would see other positions than the converted model"
                )  # fmt: skip
            continue
        ours = _our_key(key)
        if ours is None:
            unmatched.append(key)
        else:
            mapped[ours] = value
    return mapped, unmatched


def _is_range(tensor: Tensor) -> bool:
    """Whether `tensor` is `arange(n)`, as [n] or [1, n] (BERT's `position_ids` buffer)."""
    if tensor.dim() not in (1, 2) or (tensor.dim() == 2 and tensor.shape[0] != 1) or tensor.dtype == torch.bool:
        return False
    flat = tensor.reshape(-1)
    return bool((flat == torch.arange(flat.numel(), dtype=flat.dtype)).all())


def _check_merl_tensors(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], origins: Mapping[str, str | os.PathLike]
) -> None:
    """Refuse (`ModelLoadError` naming the source file and the MERL key) weights that would convert into a
    checkpoint the loader refuses or into silent garbage (`checkpoint.tensor_problem`, the loader's own rule),
    before `load_state_dict` (which casts an integer weight to float without a word) and by MERL's names (any
    floating precision converts). `expected` is keyed by our names; keys MERL never uses at inference are not
    checked."""
    for key, tensor in state.items():
        ours = _our_key(key)
        reference = expected.get(ours) if ours is not None else None
        if reference is None:  # unused by inference (linear1/2, legacy buffers), or refused as unmatched
            continue
        if problem := tensor_problem(key, tensor, reference):  # checked before load_state_dict would cast it
            raise ModelLoadError(origins.get(key), f"{problem}; not converted")


def _part(key: str) -> str:
    """Which part of a MERL model a key belongs to: text (BERT), proj_t, encoder or head."""
    if key.startswith("lm_model."):
        return "text"
    if key.startswith("proj_t."):
        return "proj_t"
    return "encoder" if key.startswith("ecg_encoder.") else "head"


def _fill(state: dict[str, Tensor], extra: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` plus the parts of `extra` that `state` lacks entirely. ECG heads and `proj_t` were trained
    with their encoder, so they are taken only from a file of the same architecture; BERT from any file."""
    have = {_part(k) for k in state}
    same = detect_architecture(extra) in (None, detect_architecture(state))
    taken = {k: v for k, v in extra.items() if _part(k) not in have and (same or _part(k) == "text")}
    return {**state, **taken}


# A Hub id: "name" or "owner/name" (letters, digits, ".", "_", "-"). A value with a path separator that is not
# of this form ("/x/y", "a/b/c", "C:\\x", "./x", "~/x") can only be a folder.
_HUB_ID_FORM = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _check_text_model(text_model: str) -> None:
    """`ModelLoadError` for a `text_model` that names a local folder that is not there (or is a file, or has no
    config.json), before transformers reads it as a Hub id ("Repo id must be in the form ..."). Hub ids and
    `package:` names pass; whether a Hub id exists is up to transformers."""
    if text_model.startswith("package:"):
        return
    local = Path(text_model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(text_model, "not a text model folder: it has no config.json")
        return
    if local.exists():
        raise ModelLoadError(text_model, "the text model must be a folder (config.json, tokenizer) or a Hub id, "
                             "not a file")  # fmt: skip
    separators = ("/", "\\", os.sep)
    if text_model.startswith(("~", ".")) or (
        any(sep in text_model for sep in separators) and not _HUB_ID_FORM.fullmatch(text_model)
    ):
        raise ModelLoadError(text_model, "text model folder not found (and it is not a Hub id: 'owner/name')")


def _text_model_weights(source: str) -> dict[str, Tensor]:
    """The BERT weights of the text model folder / Hub id, keyed as `lm_model.*` (empty if it has none)."""
    try:
        model = AutoModel.from_pretrained(source, trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError):
        return {}
    return {f"lm_model.{k}": v for k, v in model.state_dict().items()}


def build_merl_model(
    checkpoint: str | os.PathLike,
    text_model: str,
    fill_from: str | os.PathLike | None = None,
    architecture: str | None = None,
) -> EcgLangModel:
    """An `EcgLangModel` holding the MERL checkpoint's weights (see the module docstring for the sources).

    Raises `ModelLoadError` naming the unmatched, missing or mis-shaped keys, or the file and key of a weight
    that is not finite or not floating point."""
    _check_text_model(text_model)  # before reading anything: a mistyped folder is named as one
    state = read_merl_state_dict(checkpoint)
    origins: dict[str, str | os.PathLike] = dict.fromkeys(state, checkpoint)  # which file each key came from
    if fill_from is not None:
        state = _fill(state, read_merl_state_dict(fill_from))
        origins = {k: origins.get(k, fill_from) for k in state}
    found = detect_architecture(state)
    architecture = architecture or found
    if architecture is None:
        raise ModelLoadError(checkpoint, "no MERL ECG encoder (ecg_encoder.*) in the checkpoint")
    if found is not None and found != architecture:
        raise ModelLoadError(checkpoint, f"the weights are a {found} model, not {architecture}")
    source = resolve_text_model(text_model)
    if not any(k.startswith("lm_model.") for k in state):
        text_state = _text_model_weights(source)
        state.update(text_state)
        origins.update(dict.fromkeys(text_state, text_model))
    try:
        hf_config = AutoConfig.from_pretrained(source, trust_remote_code=False).to_dict()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(text_model, f"cannot read the text model's config: {first_line(exc)}") from exc
    model = EcgLangModel(merl_config(architecture, text_model, hf_config), text_weights="config")
    model.text_tower.tokenizer = load_tokenizer(source)
    mapped, unmatched = map_merl_keys(state, origins)
    own = model.state_dict()
    unmatched += [k for k in mapped if k not in own]
    wrong = [
        f"{k}: {list(v.shape)} vs {list(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in mapped and not k.startswith("loss_fn.")]
    if unmatched or wrong or missing:
        hint = ""
        if any(k.startswith("text_tower.") for k in missing):
            hint += "; the BERT weights (lm_model.*) are in no source: pass fill_from / --fill-from a full MERL file"
        if any(
            k.startswith(("ecg_tower.downconv", "ecg_tower.att_pool_head", "ecg_tower.proj_e", "text_proj"))
            for k in missing
        ):
            hint += "; an encoder-only file has no projection heads: pass the full MERL checkpoint as fill_from"
        raise ModelLoadError(
            checkpoint,
            f"MERL weights do not match a {architecture} model: unmatched keys {unmatched[:10]}, wrong shapes "
            f"{wrong[:10]}, missing {missing[:10]} ({len(unmatched)} / {len(wrong)} / {len(missing)} in all){hint}",
        )
    _check_merl_tensors(state, own, origins)  # load_state_dict would cast integers and copy NaN silently
    model.load_state_dict(mapped, strict=False)  # loss_fn.* keeps its (unit) logit scale
    return model.eval()


def convert_merl(
    checkpoint: str | os.PathLike,
    text_model: str,
    out: str | os.PathLike,
    fill_from: str | os.PathLike | None = None,
    architecture: str | None = None,
) -> Path:
    """Convert a MERL `.pth` into a complete ecglang checkpoint folder `out`; returns its path.

    checkpoint: a full MERL state dict (`*_ckpt.pth`, `*_final_total.pth`) or an encoder-only one.
    text_model: MERL's text model (Hub id `ncbi/MedCPT-Query-Encoder`, or a folder): its tokenizer and config,
        and its weights when no MERL file holds `lm_model.*`.
    fill_from: another MERL checkpoint supplying the keys `checkpoint` lacks (heads, `proj_t`, `lm_model.*`).
    architecture: `"merl_resnet18"` or `"merl_vit_tiny"` (default: detected from the keys).
    out: a new or empty folder, or an ecglang checkpoint to replace (checked before the conversion).
    The result loads with `EcgLangModel.from_pretrained(out)` and, after `import ecglang`, with
    `transformers.AutoModel.from_pretrained(out)` (no remote code)."""
    check_save_folder(out)  # before the work: a project folder is refused, not half-replaced after it
    model = build_merl_model(checkpoint, text_model, fill_from=fill_from, architecture=architecture)
    name = Path(checkpoint).name
    card = {
        "title": f"MERL {model.config.ecg_tower['type'].removeprefix('merl_')} converted to ecglang",
        "license": MERL_LICENSE,
        "source": (
            f"Converted from the MERL checkpoint `{name}`{f' (+ `{Path(fill_from).name}`)' if fill_from else ''} "
            f"with `ecglang convert merl`. MERL: {MERL_PAPER}; code {MERL_REPOSITORY} at commit {MERL_COMMIT}, "
            f"MIT licence (Copyright (c) 2024 Che Liu). Text model: `{text_reference(text_model)}` (its own licence "
            "applies). "
            "Zero-shot logits are MERL's plain cosine (no temperature)."
        ),
        "training_data": "MIMIC-IV-ECG ECG-report pairs (MERL pre-training), as published by the MERL authors.",
    }
    model.save_pretrained(out, card=card)
    return Path(out)


__all__ = [
    "MERL_COMMIT",
    "MERL_REPOSITORY",
    "build_merl_model",
    "convert_merl",
    "detect_architecture",
    "map_merl_keys",
    "merl_config",
    "read_merl_state_dict",
]
