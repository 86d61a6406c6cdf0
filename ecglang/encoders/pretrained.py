"""Known published ECG-language models, and whether ecglang can load their weights today.

Like open_clip's `list_pretrained()`: a table to look up before hunting for weights. Plain data, no torch, so
`ecglang models --pretrained` answers at once. "convert" names the ecglang command that turns the published
files into an ecglang checkpoint; None means not yet, and `note` says why.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ecglang.core.paths import resource_dir


@dataclass(frozen=True)
class PretrainedModel:
    """One published model: where its weights are, under which licence, and how (or whether) ecglang loads it."""

    name: str
    architecture: str
    weights: str  # where the published weight files are
    license: str
    convert: str | None  # the ecglang command that converts them, or None (not yet)
    paper: str
    note: str = ""
    ecg_tower: str | None = None  # `ecg_tower.type` of the checkpoint that `convert` writes
    text_model: str | None = None  # the text model `convert` takes (`--text-model`)

    @property
    def convertible(self) -> bool:
        return self.convert is not None

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "convertible": self.convertible}


_MERL_WEIGHTS = "Google Drive links in the README of github.com/cheliu-computation/MERL-ICML2024 (.pth files)"
_MERL_TEXT = "ncbi/MedCPT-Query-Encoder"
_FAIRSEQ = (
    "its ECG encoder is a fairseq-signals wav2vec 2.0 model; ecglang has no port of that architecture yet, "
    "so the weights cannot be converted exactly"
)

PRETRAINED: tuple[PretrainedModel, ...] = (
    PretrainedModel(
        name="merl-resnet18",
        architecture=f"MERL ResNet1d-18 + attention pool (merl_resnet18) / {_MERL_TEXT} pooler + proj_t",
        weights=_MERL_WEIGHTS,
        license="MIT (MERL repository)",
        convert=f"ecglang convert merl RESNET_CKPT.pth --text-model {_MERL_TEXT} --out DIR",
        paper="Liu et al., ICML 2024",
        note="verified against a numerical fixture made with MERL's own code (1e-5, float32)",
        ecg_tower="merl_resnet18",
        text_model=_MERL_TEXT,
    ),
    PretrainedModel(
        name="merl-vit-tiny",
        architecture=f"MERL ViT1d-tiny + proj_e (merl_vit_tiny) / {_MERL_TEXT} pooler + proj_t",
        weights=_MERL_WEIGHTS,
        license="MIT (MERL repository)",
        convert=f"ecglang convert merl VIT_CKPT.pth --text-model {_MERL_TEXT} --out DIR",
        paper="Liu et al., ICML 2024",
        note="verified against a numerical fixture made with MERL's own code (1e-5, float32)",
        ecg_tower="merl_vit_tiny",
        text_model=_MERL_TEXT,
    ),
    PretrainedModel(
        name="melp",
        architecture="ECG-FM-style wav2vec 2.0 ECG encoder + MedCPT-derived text encoder (token/beat/rhythm alignment)",
        weights="huggingface.co/fuyingw/MELP_Encoder (ECG encoder only); code github.com/HKU-MedAI/MELP",
        license="Apache-2.0 (model card)",
        convert=None,
        paper="Wang, Xu and Yu, ICML 2025",
        note=f"not yet: {_FAIRSEQ}; the Hub files also hold the ECG encoder only, without the text side",
    ),
    PretrainedModel(
        name="d-beta",
        architecture="masked ECG-text auto-encoder with a fairseq-signals ECG encoder",
        weights="huggingface.co/Manhph2211/D-BETA; code github.com/manhph2211/D-BETA",
        license="see the repository",
        convert=None,
        paper="Pham, Saeed and Ma, ICML 2025",
        note=f"not yet: {_FAIRSEQ}",
    ),
    PretrainedModel(
        name="ecg-fm",
        architecture="wav2vec 2.0 + CMSC + RLM ECG encoder (ECG only, no text tower)",
        weights="huggingface.co/wanglab/ecg-fm-preprint (.pt files); code github.com/bowang-lab/ECG-FM",
        license="MIT (Hub model card)",
        convert=None,
        paper="McKeen et al., 2024 (arXiv)",
        note=f"not yet: {_FAIRSEQ}; it has no text tower, so zero-shot prompting would need one trained on top",
    ),
)


def list_pretrained(convertible_only: bool = False) -> list[PretrainedModel]:
    """The known published models, with where their weights are and how ecglang converts them (`convertible_only`:
    just those it can convert today). Trained checkpoints that load by name: `list_checkpoints()`."""
    return [m for m in PRETRAINED if m.convertible or not convertible_only]


def get_pretrained(name: str) -> PretrainedModel:
    """The entry called `name`; `KeyError` listing the known names otherwise."""
    for model in PRETRAINED:
        if model.name == name:
            return model
    raise KeyError(f"unknown published model {name!r}; known: {[m.name for m in PRETRAINED]}")


def same_name_config(name: str) -> str | None:
    """What the bundled model config that has the name of the published model `name` builds, for messages: one
    sentence saying that `create_model(name)` gives that config's untrained model and how its towers differ from
    the published model's (`merl-resnet18`: a MERL-style baseline of this project, not MERL's architecture).
    None when no config has that name. Plain JSON: nothing is built or imported."""
    path = resource_dir("configs") / "model" / f"{name}.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        ecg, text = config["ecg_tower"]["type"], config["text_tower"]["name_or_path"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # load_model_config names the problem when it is built
        return f"ecglang.create_model({name!r}) builds the model config of the same name ({path}), untrained"
    published = {m.name: m for m in PRETRAINED}.get(name)
    ecg_differs = published is not None and published.ecg_tower not in (None, ecg)
    text_differs = published is not None and published.text_model not in (None, text)
    return (
        f"ecglang.create_model({name!r}) builds the model config of the same name, untrained: ECG tower {ecg}"
        f"{f' (published: {published.ecg_tower})' if ecg_differs else ''}, text tower {text}"
        f"{f' (published: {published.text_model})' if text_differs else ''}"
        f"{'; not the published architecture, and without its weights' if ecg_differs or text_differs else ''}"
    )


__all__ = ["PRETRAINED", "PretrainedModel", "get_pretrained", "list_pretrained", "same_name_config"]
