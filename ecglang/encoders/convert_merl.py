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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoConfig, AutoModel

from ecglang.encoders.checkpoint import check_save_folder, first_line, load_tokenizer, text_reference
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
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or broken files
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


def map_merl_keys(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """`(ecglang state, MERL keys that map nowhere)`; keys MERL never uses at inference are dropped."""
    mapped, unmatched = {}, []
    for key, value in state.items():
        if key.startswith(UNUSED_PREFIXES):
            continue
        for merl_prefix, ours in _PREFIX_MAP:
            if key.startswith(merl_prefix):
                mapped[ours + key[len(merl_prefix) :]] = value
                break
        else:
            unmatched.append(key)
    return mapped, unmatched


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

    Raises `ModelLoadError` naming the unmatched, missing or mis-shaped keys."""
    state = read_merl_state_dict(checkpoint)
    if fill_from is not None:
        state = _fill(state, read_merl_state_dict(fill_from))
    found = detect_architecture(state)
    architecture = architecture or found
    if architecture is None:
        raise ModelLoadError(checkpoint, "no MERL ECG encoder (ecg_encoder.*) in the checkpoint")
    if found is not None and found != architecture:
        raise ModelLoadError(checkpoint, f"the weights are a {found} model, not {architecture}")
    source = resolve_text_model(text_model)
    if not any(k.startswith("lm_model.") for k in state):
        state.update(_text_model_weights(source))
    try:
        hf_config = AutoConfig.from_pretrained(source, trust_remote_code=False).to_dict()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(text_model, f"cannot read the text model's config: {exc}") from exc
    model = EcgLangModel(merl_config(architecture, text_model, hf_config), text_weights="config")
    model.text_tower.tokenizer = load_tokenizer(source)
    mapped, unmatched = map_merl_keys(state)
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
