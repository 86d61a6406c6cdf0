"""Known published ECG-language models, and whether ecglang can load their weights today.

Like open_clip's `list_pretrained()`: a table to look up before hunting for weights. Plain data, no torch, so
`ecglang models --pretrained` answers at once. "convert" names the ecglang command that turns the published
files into an ecglang checkpoint; None means not yet, and `note` says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    ),
    PretrainedModel(
        name="merl-vit-tiny",
        architecture=f"MERL ViT1d-tiny + proj_e (merl_vit_tiny) / {_MERL_TEXT} pooler + proj_t",
        weights=_MERL_WEIGHTS,
        license="MIT (MERL repository)",
        convert=f"ecglang convert merl VIT_CKPT.pth --text-model {_MERL_TEXT} --out DIR",
        paper="Liu et al., ICML 2024",
        note="verified against a numerical fixture made with MERL's own code (1e-5, float32)",
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


__all__ = ["PRETRAINED", "PretrainedModel", "get_pretrained", "list_pretrained"]
