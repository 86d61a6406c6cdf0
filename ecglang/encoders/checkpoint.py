"""Complete checkpoint folders: save, load, Hub ids, the model card and checksums.

A checkpoint folder holds:

    config.json              EcgLangConfig (the text base model by Hub id: sentence-transformers/all-MiniLM-L6-v2)
    model.safetensors        ECG tower, projection heads, logit scales (+ the text tower only when fully fine-tuned)
    text_adapter/            peft LoRA adapter (adapter_config.json + adapter_model.safetensors) when LoRA is on
    tokenizer.json, ...      the text tokenizer
    processor_config.json    the preprocessing contract (when one is set); config.json holds `"processor": null`
    README.md                model card (huggingface_hub.ModelCard: license, base_model, datasets, model-index)
    checksums.json           sha256 of every weight file, verified on load

The processor contract is stored once, in processor_config.json, and read from there on load. Checkpoints
written before that rule hold it in config.json's `processor` section too; those still load unchanged.
Weights are read with safetensors only, never pickle, and no code from a checkpoint runs: transformers is
always called with `trust_remote_code=False`. Loading checks what it reads before using it: config.json's
types and sizes (the text model's too, before it is built), checksums.json's entries (files inside the
folder only), and the weights' dtypes and values (floating point, finite). A saved folder holds no absolute
path, so it can be moved or uploaded as it is. The functions here take the model (or its class) as an
argument, so that this module does not import `modeling` (which calls them).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedModel

from ecglang.core.atomic import atomic_directory
from ecglang.core.checksums import CHECKSUMS_NAME, sha256_file, verify_checksums, write_checksums
from ecglang.core.paths import resource_dir
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.ecg_processing import LEAD_ORDERS, PROCESSOR_CONFIG_NAME, EcgProcessor
from ecglang.encoders.layers import count_parameters
from ecglang.encoders.text_encoder import PICKLE_SUFFIXES, hub_id_of
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.record.leads import CANONICAL_LEADS

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "text_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- saving
# What a checkpoint folder holds; anything else in a save folder (the user's notes, logs) is kept on re-save.
_CHECKPOINT_ENTRIES = frozenset(
    {"config.json", WEIGHTS_NAME, ADAPTER_DIR, PROCESSOR_CONFIG_NAME, "README.md", CHECKSUMS_NAME}
)
_TOKENIZER_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "spiece", "sentencepiece")


def is_user_file(name: str) -> bool:
    """True for a folder entry that no checkpoint save writes (the user's own notes, logs): kept on re-save.

    The old checkpoint's own files are not carried over: a stale LoRA adapter or processor contract would
    be loaded by mistake."""
    return not (name in _CHECKPOINT_ENTRIES or name.startswith(_TOKENIZER_PREFIXES))


def save_pretrained(
    model: PreTrainedModel,
    save_directory: str | os.PathLike,
    processor: EcgProcessor | None = None,
    card: Mapping[str, Any] | None = None,
) -> None:
    """Write `model`'s complete checkpoint folder (see the module docstring), atomically.

    The folder is built beside the target and swapped in when complete (`ecglang.core.atomic`): a save killed
    half-way leaves the previous checkpoint (or none), never a half-written or mixed one. processor: an
    `EcgProcessor` that becomes the contract (default: the config's). card: extra model-card fields."""
    target = Path(save_directory).expanduser().resolve()
    if target.is_file():
        raise ModelLoadError(target, "save_pretrained needs a folder, but a file exists at this path")
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.text_tower["name_or_path"] = hub_id_of(config.text_tower["name_or_path"])
    if processor is not None:  # the processor used in training becomes the checkpoint's contract
        config.set_processor(processor.to_dict())
    stores_text = config.text_tower["finetune"] == "full"
    config.text_tower["hf_config"] = model.text_tower.base_model.config.to_dict() if stores_text else None
    with atomic_directory(target, keep=is_user_file) as out:
        contract, config.processor = config.processor, None  # stored once: processor_config.json
        config.save_pretrained(out)
        config.processor = contract
        state = {
            k: v.detach().contiguous().clone()
            for k, v in model.state_dict().items()
            if stores_text or not k.startswith("text_tower.")
        }
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        weight_files = [WEIGHTS_NAME]
        if model.text_tower.is_lora:
            save_adapter(model.text_tower.model, out / ADAPTER_DIR, config.text_tower["name_or_path"])
            weight_files.append(f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
        if model.text_tower.tokenizer is not None:
            model.text_tower.tokenizer.save_pretrained(str(out))
        if contract is not None:
            EcgProcessor.from_dict(dict(contract)).save_pretrained(out)
        write_checksums(out, weight_files)
        fields = dict(card or {})
        loaded = getattr(model, "loaded_card", None)
        if loaded is not None and loaded.get("weights") == {name: sha256_file(out / name) for name in weight_files}:
            fields = {**loaded["fields"], **fields}  # the same weights: their card (data, metrics) still holds
        (out / "README.md").write_text(model_card(model, config, fields), encoding="utf-8")


def save_adapter(peft_model: Any, folder: Path, base_model: str) -> None:
    """peft's adapter files, with the base model recorded as `base_model` (a Hub id) instead of the local
    folder it was loaded from, and without peft's template model card (which repeats that folder)."""
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    path = folder / "adapter_config.json"
    adapter = json.loads(path.read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = base_model
    if isinstance(adapter.get("target_modules"), list):  # peft writes a set's order: sorted, saves are reproducible
        adapter["target_modules"] = sorted(adapter["target_modules"])
    path.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "README.md").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ loading
def from_pretrained(
    model_class: type[PreTrainedModel],
    name_or_path: str | os.PathLike | None,
    config: EcgLangConfig | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    dtype: Any = None,
) -> PreTrainedModel:
    """Load a checkpoint folder or Hub id into a `model_class` (see `EcgLangModel.from_pretrained`)."""
    folder = resolve_checkpoint(resolve_model_name(name_or_path), revision, token, cache_dir, local_files_only)
    verify_checksums(folder, required=False)
    if config is None:
        config = load_config(folder)
    read_processor_contract(folder, config)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(folder, f"{WEIGHTS_NAME} is missing{_pickle_hint(folder)}")
    full_text = config.text_tower["finetune"] == "full"
    text_weights = "config" if full_text and config.text_tower.get("hf_config") else "pretrained"
    try:
        model = model_class(config, text_weights=text_weights)
    except ConfigError as exc:  # found while building: the text model's size, LoRA targets, pooler head...
        raise ModelLoadError(folder / "config.json", f"invalid config: {exc}") from exc
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelLoadError(weights, f"cannot read safetensors file: {exc}") from exc
    check_tensors(weights, state, model.state_dict())
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: the config does not match the weights
        raise ModelLoadError(weights, f"weights do not match config.json: {exc}") from exc
    text_keys_optional = not (full_text and text_weights == "config")
    missing = [k for k in missing if not (text_keys_optional and k.startswith("text_tower."))]
    if missing or unexpected:
        raise ModelLoadError(weights, f"weights do not match config.json: missing {missing}, unexpected {unexpected}")
    if model.text_tower.is_lora:
        _load_adapter(model.text_tower.model, folder / ADAPTER_DIR)
    model.text_tower.tokenizer = checkpoint_tokenizer(folder)
    model.loaded_card = read_card(folder)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    model.eval()
    return model


def check_tensors(path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Refuse (`ModelLoadError` naming the file and the tensor) weights that would load as silent garbage.

    A tensor the model holds in floating point must be stored in floating point (`load_state_dict` would cast
    booleans or int8 without a word), a non-floating buffer (BatchNorm's step count) with the model's dtype,
    and every floating value must be finite: one NaN weight makes every score NaN. Tensors the model does not
    have are checked too (they are refused as unexpected afterwards)."""
    for name, tensor in state.items():
        reference = expected.get(name)
        wants_float = reference is None or reference.is_floating_point()
        if wants_float and not tensor.is_floating_point():
            raise ModelLoadError(
                path, f"tensor {name!r} is stored as {tensor.dtype}; weights must be floating point (corrupt or "
                "not an ecglang checkpoint)"
            )  # fmt: skip
        if not wants_float and tensor.dtype != reference.dtype:
            raise ModelLoadError(path, f"tensor {name!r} is stored as {tensor.dtype}, expected {reference.dtype}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelLoadError(
                path, f"tensor {name!r} holds {bad} non-finite value(s) (NaN or infinity) of {tensor.numel()}: "
                "the weights are corrupt (a diverged training run?)"
            )  # fmt: skip


def read_processor_contract(folder: Path, config: EcgLangConfig) -> None:
    """Set `config.processor` from the folder's processor_config.json, the one place it is stored.

    Without the file, the config keeps what config.json says: a contract (checkpoints saved before the
    contract was stored once) or none."""
    path = Path(folder) / PROCESSOR_CONFIG_NAME
    if not path.is_file():
        return
    try:
        config.set_processor(EcgProcessor.from_pretrained(path).to_dict())
    except ConfigError as exc:
        raise ModelLoadError(path, f"invalid processor contract: {exc}") from exc


# ------------------------------------------------------------------------------------ names and Hub
DEFAULT_CHECKPOINT = "ecglang-mini"


def list_checkpoints() -> list[str]:
    """Names of the bundled trained checkpoints: what `load_model(name)` loads by name (`list_models()` names
    architecture configs, which `create_model` builds untrained; `list_pretrained()` published models)."""
    try:
        folder = resource_dir("checkpoints")
    except FileNotFoundError:
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())


def resolve_model_name(name_or_path: str | os.PathLike | None) -> str:
    """A folder, a Hub id, or a bundled checkpoint name (None = the bundled default) → what to load."""
    name = DEFAULT_CHECKPOINT if name_or_path is None else str(name_or_path)
    if Path(name).expanduser().exists() or "/" in name:
        return name
    try:
        bundled = resource_dir("checkpoints") / name
    except FileNotFoundError as exc:
        raise ModelLoadError(name, f"no bundled checkpoints are installed: {exc}") from exc
    if not bundled.is_dir():
        raise ModelLoadError(name, f"not a folder, Hub id or bundled checkpoint ({_what_name_is(name)})")
    return str(bundled)


def _what_name_is(name: str) -> str:
    """Why `name` does not load, for the three name spaces users meet (checkpoints, configs, published)."""
    from ecglang.encoders.pretrained import PRETRAINED  # only for this message: keeps the module's imports lean

    published = {m.name: m for m in PRETRAINED}
    if name in published:
        model = published[name]
        how = f"convert its weights first ({model.convert}), then load that folder" if model.convert else model.note
        return f"{name!r} is a published model: {how}"
    if (resource_dir("configs") / "model" / f"{name}.json").is_file():  # a name of `registry.list_models()`
        return f"{name!r} is an architecture config: ecglang.create_model({name!r}) builds it untrained"
    return f"bundled checkpoints: {list_checkpoints()}"


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local checkpoint folder for `name_or_path`: the folder itself, or a Hub snapshot (download/cache)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(path, f"not an ecglang checkpoint folder (config.json is missing){_pickle_hint(path)}")
        return path
    text = str(name_or_path)
    if path.exists():
        raise ModelLoadError(path, "expected a checkpoint folder, found a file")
    previous = path.with_name(f".{path.name}.old") if path.name else None
    if previous is not None and previous.is_dir():  # core.atomic.swap_in killed between its two renames
        raise ModelLoadError(
            path, f"checkpoint folder not found: a save into it was interrupted; the previous complete "
            f"checkpoint is in {previous} (rename it back, or save again)"
        )  # fmt: skip
    if not _HUB_ID.match(text) or text.startswith((".", "~")):
        raise ModelLoadError(path, "checkpoint folder not found (and it is not a Hub id like 'org/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    unreachable = not offline and not _hub_answers()
    how = (
        f"download it once with network (`huggingface-cli download {text} --local-dir DIR`) and load the "
        "folder: EcgLangModel.from_pretrained('DIR')"
    )
    try:
        local = snapshot_download(
            text, revision=revision, token=token, cache_dir=cache_dir, local_files_only=offline or unreachable,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.md", "*.model", f"{ADAPTER_DIR}/*"],
        )  # fmt: skip
    except LocalEntryNotFoundError as exc:
        if offline:
            state = "offline (HF_HUB_OFFLINE=1)"
        elif unreachable:
            state = f"the Hugging Face Hub did not answer within {HUB_PROBE_TIMEOUT_S:g} s (no network?)"
        else:
            state = "the Hugging Face Hub could not be reached"
        raise ModelLoadError(
            text, f"no local folder of this name, the Hub id is not in the local cache and {state}; {how}"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(text, f"no such model repository on the Hub (or it is private); {how}") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(text, f"cannot fetch from the Hub ({type(exc).__name__}: {exc}); {how}") from exc
    return Path(local)


HUB_PROBE_TIMEOUT_S = 1.0


def _pickle_hint(folder: Path) -> str:
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    return f" (found {pickled}: pickle checkpoints are not loaded, only safetensors)" if pickled else ""


def _hub_answers(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint answers an HTTP request within `timeout` seconds.

    huggingface_hub's first request of a snapshot has no timeout: without network it waits on name resolution
    or on a connection that never answers, for a minute or more. The probe runs in a daemon thread, so that
    even name resolution (which socket timeouts do not bound) holds the caller at most `timeout`. Any HTTP
    status, or a TLS error, is an answer: the network is there and huggingface_hub reports the details."""
    import ssl
    import threading
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    done, answered = threading.Event(), threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
            answered.set()
        except urllib.error.HTTPError:
            answered.set()
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                answered.set()
        except OSError:  # refused, reset, timed out
            pass
        finally:
            done.set()

    threading.Thread(target=probe, name="ecglang-hub-probe", daemon=True).start()
    done.wait(timeout)
    return answered.is_set()


def load_config(folder: Path) -> EcgLangConfig:
    """The folder's config.json as an `EcgLangConfig`; `ModelLoadError` naming the file when it is not one."""
    path = folder / "config.json"
    try:
        # json, not parse_json: a NaN in a typed field is reported by the field checks, naming the field
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested beyond json's reach
        raise ModelLoadError(path, f"unreadable config: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(path, f"not an ecglang config: it holds a JSON {type(data).__name__}, not an object")
    if data.get("model_type") != EcgLangConfig.model_type:
        raise ModelLoadError(path, f"model_type is {data.get('model_type')!r}, not 'ecglang'")
    if data.pop("auto_map", None) is not None:  # names remote code: never used here, and not carried on re-save
        logger.warning("%s: ignoring its auto_map (ecglang never runs code from a checkpoint)", path)
    try:
        config = EcgLangConfig.from_dict(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # ConfigError, or transformers' own checks
        raise ModelLoadError(path, f"invalid config: {exc}") from exc
    config.name_or_path = str(folder)
    return config


def load_tokenizer(source: str | Path) -> Any:
    """`AutoTokenizer.from_pretrained(source)`, with a `ModelLoadError` naming the source.

    `trust_remote_code=False`: code named by a tokenizer_config.json's `auto_map` is never run, and
    transformers never asks whether to run it. A local folder with an `auto_map` is refused before
    transformers reads it; the tokenizer must be one of transformers' own classes."""
    refusal = "it names custom code (auto_map), and ecglang never runs code from a checkpoint or model folder"
    config = Path(source) / "tokenizer_config.json"
    if config.is_file():
        try:
            auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelLoadError(config, f"unreadable tokenizer config: {exc}") from exc
        if auto_map:
            raise ModelLoadError(config, f"cannot load the tokenizer: {refusal}; remove the auto_map entry")
    try:
        return AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        reason = refusal if "trust_remote_code" in str(exc) else str(exc)  # never advise trust_remote_code=True
        raise ModelLoadError(source, f"cannot load the tokenizer: {reason}") from exc


def checkpoint_tokenizer(folder: Path) -> Any:
    """The tokenizer stored in a checkpoint folder (`save_pretrained` always writes it).

    A folder without tokenizer_config.json is a `ModelLoadError`, not a silent fall-back to the text base
    model's tokenizer: the checkpoint's texts must be tokenized the way it was trained."""
    if not (Path(folder) / "tokenizer_config.json").is_file():
        raise ModelLoadError(
            folder, "tokenizer files are missing (tokenizer_config.json); a checkpoint saved by save_pretrained "
            "holds them: copy them from the text base model the checkpoint was trained with, or save it again"
        )  # fmt: skip
    return load_tokenizer(folder)


def _load_adapter(peft_model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict

    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(adapter_dir, f"config says LoRA but {ADAPTER_WEIGHTS} is missing")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelLoadError(weights, f"cannot load the LoRA adapter: {exc}") from exc
    check_tensors(weights, state, {})  # every LoRA weight is floating point
    try:
        result = set_peft_model_state_dict(peft_model, state)
    except Exception as exc:
        raise ModelLoadError(weights, f"cannot load the LoRA adapter: {exc}") from exc
    expected = {k for k in peft_model.state_dict() if "lora_" in k}
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing or getattr(result, "unexpected_keys", []) or not state or len(state) != len(expected):
        raise ModelLoadError(
            weights,
            f"adapter does not match config.json (text_tower.lora): {len(state)} tensors for {len(expected)} "
            f"LoRA weights, missing {missing[:3]}, unexpected {list(getattr(result, 'unexpected_keys', []))[:3]}",
        )


# ----------------------------------------------------------------------------------------- model card
CARD_TAGS = ["ecg", "electrocardiogram", "contrastive-learning", "zero-shot", "ecglang"]
_NO_TRAINING_DATA = "Not recorded with this checkpoint."
_NO_METRICS = "Not recorded."
_INTENDED_USE = "Research on ECG representation learning, zero-shot ECG classification and ECG-report retrieval."
_NOT_CLINICAL = "**Not for clinical use.**"


def card_metadata(config: EcgLangConfig, card: Mapping[str, Any]) -> ModelCardData:
    """The card's YAML header: license, base_model (the text base's Hub id), datasets, tags, pipeline_tag
    and the metrics as model-index (`card["eval_results"]`: dicts of `huggingface_hub.EvalResult` fields)."""
    text_base = config.text_tower["name_or_path"]
    results = [EvalResult(**dict(r)) for r in card.get("eval_results") or []]
    return ModelCardData(
        license=card.get("license"),
        library_name="ecglang",
        base_model=text_base if _HUB_ID.match(text_base) else None,
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
    metrics = dict(
        line[2:].split(": ", 1) for line in sections.get("Evaluation", "").splitlines()
        if line.startswith("- ") and ": " in line
    )  # fmt: skip
    if metrics:
        fields["metrics"] = metrics
    notes = sections.get("Intended use", "").split(_NOT_CLINICAL)[0].replace(_INTENDED_USE, "", 1).strip()
    if notes:
        fields["notes"] = notes
    return fields


def model_card(model: PreTrainedModel, config: EcgLangConfig, card: Mapping[str, Any] | None = None) -> str:
    """Markdown model card, built with `huggingface_hub.ModelCard`: YAML metadata (`card_metadata`), then
    architecture, preprocessing contract, training data, evaluation, intended use, limits.

    card: `title`, `source`, `training_data`, `metrics` (name -> text), `eval_results` (model-index),
    `notes`, `license`, `datasets`, `pipeline_tag`."""
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
        pre, beats = proc["preprocess"], proc["beats"]
        fs, n = pre.get("target_fs"), pre.get("target_samples")
        band = pre.get("bandpass")
        norm = f"{'robust ' if pre.get('robust') else ''}{pre.get('normalize')} per lead"
        if pre.get("normalize") == "record_minmax":
            norm = "min-max to [0, 1] over the whole record (one min and one max for all leads)"
        elif pre.get("normalize") in ("mm", "none"):
            norm = {"mm": "none: mm at 10 mm/mV, each lead minus its median", "none": "none: mV"}[pre["normalize"]]
        order = [CANONICAL_LEADS[i] for i in LEAD_ORDERS[proc.get("lead_order", "canonical")]]
        contract = "\n".join(
            [
                "| item | value |",
                "|---|---|",
                f"| sampling rate | {f'{fs:g} Hz' if fs else 'as recorded'} |",
                f"| length | {f'{n} samples' if n else 'as recorded'}"
                f"{f' ({n / fs:g} s)' if n and fs else ''}, crop {pre.get('crop')}, pad {pre.get('pad')} |",
                f"| lead order | {', '.join(order)} (missing leads zeroed and masked) |",
                f"| filtering | {f'band-pass {band[0]:g}–{band[1]:g} Hz (zero-phase)' if band else 'none'} |",
                f"| normalisation | {norm} |",
                f"| beat windows | {beats['pre_s']:g} s before to {beats['post_s']:g} s after each R peak, "
                f"resampled to {beats['beat_len']} samples; at most {beats['max_beats']} beats |",
            ]
        )
    losses = ", ".join(f"{k}={w:g}" for k, w in config.loss["weights"].items() if k in config.active_losses)
    metrics = card.get("metrics")
    metrics_md = "\n".join(f"- {k}: {v}" for k, v in metrics.items()) if isinstance(metrics, Mapping) else _NO_METRICS
    text_storage = (
        "Its weights are inside model.safetensors."
        if text["finetune"] == "full"
        else "The base text model is stored by reference and must be available at load time."
    )
    files = [WEIGHTS_NAME, "config.json", "tokenizer files", CHECKSUMS_NAME]
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
- Training losses: {losses} (rhythm CLIP, beat-level sentence↔beat alignment, token-level late interaction).

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
from ecglang.encoders.modeling import EcgLangModel
model = EcgLangModel.from_pretrained("path/or/hub-id")
# or, after `import ecglang`: transformers.AutoModel.from_pretrained("path/or/hub-id")
```

Files: {", ".join(files)}.
"""
    return str(ModelCard(f"---\n{card_metadata(config, card).to_yaml()}\n---\n{text_md}"))


__all__ = [
    "ADAPTER_DIR",
    "CARD_TAGS",
    "DEFAULT_CHECKPOINT",
    "WEIGHTS_NAME",
    "card_metadata",
    "check_tensors",
    "checkpoint_tokenizer",
    "from_pretrained",
    "is_user_file",
    "list_checkpoints",
    "load_config",
    "load_tokenizer",
    "model_card",
    "read_card",
    "read_processor_contract",
    "resolve_checkpoint",
    "resolve_model_name",
    "save_adapter",
    "save_pretrained",
]
