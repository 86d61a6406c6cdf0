"""The model card (README.md) of a checkpoint folder: written from the config and the training run's figures
with `huggingface_hub.ModelCard` (YAML metadata: license, base model, datasets, model-index), and read back."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel

from ecglang.core.checksums import CHECKSUMS_NAME
from ecglang.encoders.checkpoint_files import ADAPTER_DIR, WEIGHTS_NAME, is_hub_id
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.ecg_processing import LEAD_ORDERS
from ecglang.encoders.layers import count_parameters
from ecglang.record.leads import CANONICAL_LEADS

logger = logging.getLogger(__name__)

CARD_TAGS = ["ecg", "electrocardiogram", "contrastive-learning", "zero-shot", "ecglang"]
_NO_TRAINING_DATA = "Not recorded with this checkpoint."
_NO_METRICS = "Not recorded."
_INTENDED_USE = "Research on ECG representation learning, zero-shot ECG classification and ECG-report retrieval."
_NOT_CLINICAL = "**Not for clinical use.**"
# What each `edge_pad` does at the record's first and last samples (ecglang.signal.preprocess, "Record edges").
_EDGE_PADS = {
    "odd": " (scipy's default: an odd extension of 3 × (2 × sections + 1) samples)",
    "even": " (a mirror image of the first and last 0.75 / low edge seconds)",
}
_LOSS_NAMES = {
    "rhythm": "rhythm CLIP",
    "beat": "beat-level sentence↔beat alignment",
    "token": "token-level late interaction",
}


def hub_base_model(text_base: str) -> str | None:
    """The card's `base_model`: the text base when it is a Hub id, None when it is a local folder. A folder that
    exists is what transformers reads, even one spelt like a Hub id (a relative `merl/text-encoder`): published as
    `base_model`, it linked to another repository or to none. (Its config.json names no Hub id to use instead:
    transformers does not save `_name_or_path`, and older files hold the model it was trained from, not itself.)"""
    if not is_hub_id(text_base) or Path(text_base).expanduser().exists():
        return None
    return text_base


def card_metadata(config: EcgLangConfig, card: Mapping[str, Any]) -> ModelCardData:
    """The card's YAML header: license, base_model (the text base's Hub id, left out for a local folder), datasets,
    tags, pipeline_tag and the metrics as model-index (`card["eval_results"]`: dicts of `EvalResult` fields)."""
    results = [EvalResult(**dict(r)) for r in card.get("eval_results") or []]
    return ModelCardData(
        license=card.get("license"),
        library_name="ecglang",
        base_model=hub_base_model(config.text_tower["name_or_path"]),
        datasets=list(card["datasets"]) if card.get("datasets") else None,
        tags=list(CARD_TAGS),
        pipeline_tag=card.get("pipeline_tag", "feature-extraction"),
        model_name=card.get("title", "ecglang ECG-language model") if results else None,
        eval_results=results or None,
    )


def read_card(folder: Path) -> dict[str, Any]:
    """What a checkpoint's README.md says that a re-save must keep, and the weights it describes.

    Returns `{"fields": card fields for model_card(...), "weights": {weight file: sha256}}`. The fields come
    from the YAML header (license, datasets, pipeline_tag, model-index) and from the sections that
    model_card writes (title, source, training data, the evaluation list, notes under intended use)."""
    folder = Path(folder)
    sums_path = folder / CHECKSUMS_NAME
    weights = None
    try:
        weights = json.loads(sums_path.read_text(encoding="utf-8")) if sums_path.is_file() else None
    except (OSError, ValueError):  # verify_checksums reports it; the card is then not carried
        weights = None
    try:
        card = ModelCard.load(folder / "README.md") if (folder / "README.md").is_file() else None
        fields = {} if card is None else _card_fields(card)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        # The card is documentation: one that does not parse (bad YAML, a python/ tag that safe_load refuses,
        # a malformed model-index) leaves the model loadable, with nothing to carry on re-save.
        logger.warning("%s: cannot read the model card, it is not carried on re-save: %s", folder / "README.md", exc)
        fields = {}
    return {"fields": fields, "weights": weights}


def _card_fields(card: ModelCard) -> dict[str, Any]:
    """The fields of a parsed model card that a re-save keeps (see `read_card`)."""
    fields: dict[str, Any] = {}
    data = card.data
    for key in ("license", "datasets", "pipeline_tag"):
        if getattr(data, key, None):
            fields[key] = getattr(data, key)
    if data.eval_results:
        fields["eval_results"] = [{k: v for k, v in vars(r).items() if v is not None} for r in data.eval_results]
    head, *parts = re.split(r"^## (.+)$", card.text, flags=re.M)
    title = re.search(r"^# (.+)$", head, flags=re.M)
    if title:
        fields["title"] = title.group(1).strip()
    sections = {name.strip(): text.strip() for name, text in zip(parts[::2], parts[1::2], strict=True)}
    if sections.get("Source"):
        fields["source"] = sections["Source"]
    if sections.get("Training data", _NO_TRAINING_DATA) != _NO_TRAINING_DATA:
        fields["training_data"] = sections["Training data"]
    evaluation = sections.get("Evaluation", "").splitlines()
    metrics = dict(line[2:].split(": ", 1) for line in evaluation if line.startswith("- ") and ": " in line)
    if metrics:
        fields["metrics"] = metrics
    protocol = "\n".join(line for line in evaluation if not line.startswith("- ")).strip()
    if protocol and protocol != _NO_METRICS:
        fields["protocol"] = protocol
    notes = sections.get("Intended use", "").split(_NOT_CLINICAL)[0].replace(_INTENDED_USE, "", 1).strip()
    if notes:
        fields["notes"] = notes
    return fields


def model_card(model: PreTrainedModel, config: EcgLangConfig, card: Mapping[str, Any] | None = None) -> str:
    """Markdown model card, built with `huggingface_hub.ModelCard`: YAML metadata (`card_metadata`), then
    architecture, preprocessing contract, training data, evaluation, intended use, limits.

    card: `title`, `source`, `training_data`, `protocol` (how the figures were measured: text before them),
    `metrics` (name -> text), `eval_results` (model-index), `notes`, `license`, `datasets`, `pipeline_tag`."""
    card = dict(card or {})
    ecg, text, proc = config.ecg_tower, config.text_tower, config.processor
    n_ecg = count_parameters(model.ecg_tower)
    n_text = count_parameters(model.text_tower)
    if ecg["type"] == "beat":
        tower = (
            f"`BeatEcgEncoder`: per-lead beat morphology CNN → (beat, lead) tokens with lead, beat-position and "
            f"RR embeddings → {ecg['n_layers']} factorised blocks (spatial attention across leads within a beat, "
            f"{ecg['rhythm_attention']} rhythm attention across beats), d_model={ecg['d_model']}, "
            f"{ecg['pooling']} pooling"
        )
    elif ecg["type"] == "merl_resnet18":
        tower = "MERL's ResNet1d-18 (no max-pool) → 1×1 downconv → attention pool (313 + 1 positions)"
    elif ecg["type"] == "merl_vit_tiny":
        tower = "MERL's ViT1d-tiny (patch 50, 12 blocks, width 192) → mean, LayerNorm → proj_e (with BatchNorm)"
    else:
        tower = f"`ResNet1dEncoder` (ResNet1d-18, MERL-style) on the raw signal, {ecg['pooling']} pooling"
    contract, order = "No preprocessing contract is stored with this checkpoint.", list(CANONICAL_LEADS)
    if proc is not None:
        order = [CANONICAL_LEADS[i] for i in LEAD_ORDERS[proc.get("lead_order", "canonical")]]
        contract = contract_table(proc, order, beat_tower=ecg["type"] == "beat")
    # Only what was trained: a converted MERL model (rhythm only) was described with all three losses.
    losses = ", ".join(
        f"{k}={w:g} ({_LOSS_NAMES.get(k, k)})" for k, w in config.loss["weights"].items() if k in config.active_losses
    )
    if ecg["type"].startswith("merl_"):  # converted, not trained here: MERL's own objectives made it
        losses = "MERL's CLIP loss and uni-modal alignment (UMA), in MERL's training; converted, not trained here"
    metrics = card.get("metrics")
    metrics_md = "\n".join(f"- {k}: {v}" for k, v in metrics.items()) if isinstance(metrics, Mapping) else _NO_METRICS
    if card.get("protocol"):  # how the figures were measured: a Hub reader has no repository README
        metrics_md = f"{card['protocol']}\n\n{metrics_md}"
    text_storage = "The base text model is stored by reference and must be available at load time."
    if text["finetune"] == "full":
        text_storage = "Its weights are inside model.safetensors."
    elif hub_base_model(text["name_or_path"]) is None and not text["name_or_path"].startswith("package:"):
        # a local folder: said here, not in the metadata
        text_storage = (
            f"The base text model is stored by reference: the local folder `{text['name_or_path']}`, not a Hub "
            "model (so the card names no base_model); it must be at that path, from the folder the model is "
            "loaded in."
        )
    files = [WEIGHTS_NAME, "config.json", "tokenizer files", CHECKSUMS_NAME]
    if proc is not None:
        files.insert(2, "processor_config.json")
    if text["finetune"] == "lora":
        files.insert(1, f"{ADAPTER_DIR}/ (LoRA adapter of the text model)")
    source = f"\n## Source\n{card['source']}\n" if card.get("source") else ""
    text_md = f"""
# {card.get("title", "ecglang ECG-language model")}

An ECG encoder aligned contrastively with a clinical text encoder, for zero-shot ECG classification and
ECG-report retrieval with the `ecglang` Python package.
{source}
## Architecture
- ECG tower: {tower} ({n_ecg / 1e6:.2f} M parameters).
- Text tower: `{text["name_or_path"]}` ({text["pooling"]} pooling, max {text["max_length"]} tokens,
  fine-tuning: {text["finetune"]}; {n_text / 1e6:.1f} M parameters). {text_storage}
- Shared space: {config.projection["dim"]}-d{" L2-normalised" if config.projection["normalize"] else ""} embeddings.
- Training losses: {losses or "none"}.

## Preprocessing contract
Inputs must be prepared exactly like this (`ecglang.encoders.ecg_processing.EcgProcessor` does it, from
`processor_config.json`):

{contract}

Model input lead order: {", ".join(order)} (records are read in any order and rearranged by the processor);
any subset of leads may be present.

## Training data
{card.get("training_data", _NO_TRAINING_DATA)}

## Evaluation
{metrics_md}

## Intended use
{_INTENDED_USE}
{card.get("notes", "")}

{_NOT_CLINICAL} This model is not a medical device; it has not been validated for diagnosis,
triage or any decision about a patient. Its outputs can be wrong, and its training reports can carry
the biases of the devices and hospitals they came from.

## Usage
```python
import ecglang

model = ecglang.load_model("path/or/hub-id")  # as ecglang.EcgLangModel.from_pretrained, in eval mode
clf = ecglang.ZeroShotClassifier(model)  # knowledge retrieval on by default (knowledge=None: off)
result = clf(["path/to/record.hea"], labels=["sinus rhythm", "atrial fibrillation"])
print(result.scores)  # records × labels, cosine similarity; result.failures: records left out, and why

processor = ecglang.EcgLangProcessor.from_model(model)  # this contract, and the text tower's tokenizer
ecg_features = model.get_ecg_features(**processor(ecgs=["path/to/record.hea"]))  # [records, {config.projection["dim"]}]
cosine = ecg_features @ model.get_text_features(["sinus rhythm", "atrial fibrillation"]).T
```
After `import ecglang`, `transformers.AutoModel.from_pretrained("path/or/hub-id")` loads it too.

Files: {", ".join(files)}.
"""
    return str(ModelCard(f"---\n{card_metadata(config, card).to_yaml()}\n---\n{text_md}"))


def contract_table(proc: Mapping[str, Any], order: list[str], beat_tower: bool = True) -> str:
    """The card's preprocessing contract: a table of what the settings do, then every setting of the processor
    (`EcgProcessor.to_dict()`: `processor_config.json`) as it is saved, since any of them can change scores.
    `order`: the model input's lead order; `beat_tower`: the beats are cut (a MERL or ResNet tower reads the
    signal whole, and its beat settings are not used)."""
    pre, beats = proc["preprocess"], proc["beats"]
    fs, n, keep, band = pre.get("target_fs"), pre.get("target_samples"), pre.get("keep_samples"), pre.get("bandpass")
    length = f"{n} samples" if n else "as recorded"
    if n and fs:
        length += f" ({n / fs:g} s)"
    length += f", crop {pre.get('crop')}, pad {pre.get('pad')}" + (f", first {keep} samples kept" if keep else "")
    norm = f"{'robust ' if pre.get('robust') else ''}{pre.get('normalize')} per lead"
    if pre.get("normalize") == "record_minmax":
        norm = "min-max to [0, 1] over the whole record (one min and one max for all leads)"
    elif pre.get("normalize") in ("mm", "none"):
        norm = {"mm": "none: mm at 10 mm/mV, each lead minus its median", "none": "none: mV"}[pre["normalize"]]
    norm += ", statistics with the padding" if pre.get("pad_then_normalize") else ", statistics before padding"
    filtering = "none"
    if band:
        edge = pre.get("edge_pad")
        filtering = (
            f"Butterworth band-pass {band[0]:g}–{band[1]:g} Hz, order {pre.get('filter_order')}, zero-phase (forward "
            f'and backward, `sosfiltfilt`); record edges: edge_pad "{edge}"{_EDGE_PADS.get(edge, "")}'
        )
    mostly_flat = "off"
    if pre.get("flat_block_ptp_mv"):
        mostly_flat = (
            f"{pre.get('flat_block_fraction'):g} of its 1 s blocks < {pre['flat_block_ptp_mv']:g} mV peak-to-peak"
        )
    unusable = (
        f"flat: peak-to-peak < {pre.get('flat_ptp_mv'):g} mV or std < {pre.get('flat_std_mv'):g} mV; mostly flat: "
        f"{mostly_flat}; saturated: {pre.get('saturation_fraction'):g} of it at a rail; NaN gaps over "
        f"{pre.get('max_gap_s'):g} s: {pre.get('on_long_gap')} (shorter ones interpolated)"
    )
    rows = [
        "| item | value |",
        "|---|---|",
        f"| sampling rate | {f'{fs:g} Hz (polyphase resampling)' if fs else 'as recorded'} |",
        f"| length | {length} |",
        f"| lead order | {', '.join(order)} (missing leads zeroed and masked) |",
        f"| filtering | {filtering} |",
        f"| normalisation | {norm} |",
        f"| unusable leads (zeroed and masked) | {unusable} |",
    ]
    if beat_tower:
        rows.append(
            f"| beat windows | {beats['pre_s']:g} s before to {beats['post_s']:g} s after each R peak, resampled to "
            f"{beats['beat_len']} samples; at most {beats['max_beats']} beats |"
        )
    settings = [
        "",
        "Every setting the processor reads from `processor_config.json` (each can change scores; a file of an older "
        "format gets the values it was made with):",
        "",
    ]
    for part in ("preprocess", "beats") if beat_tower else ("preprocess",):
        settings.append(f"- `{part}`: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in proc[part].items()))
    return "\n".join(rows + settings)


__all__ = ["CARD_TAGS", "card_metadata", "contract_table", "hub_base_model", "model_card", "read_card"]
