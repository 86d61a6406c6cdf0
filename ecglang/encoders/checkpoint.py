"""Complete checkpoint folders: save, load, Hub ids and checksums (the card: `model_card`).

A checkpoint folder holds:

    config.json              EcgLangConfig (the text base model by Hub id: sentence-transformers/all-MiniLM-L6-v2)
    model.safetensors        ECG tower, projection heads, logit scales (+ the text tower only when fully fine-tuned)
    text_adapter/            peft LoRA adapter (adapter_config.json + adapter_model.safetensors) when LoRA is on
    tokenizer.json, ...      the text tokenizer
    processor_config.json    the preprocessing contract (when one is set); config.json holds `"processor": null`
    README.md                model card (huggingface_hub.ModelCard: license, base_model, datasets, model-index)
    checksums.json           sha256 of every weight file, verified on load (the tokenizer is checked when read)

The processor contract is stored once, in processor_config.json, and read from there on load. Checkpoints
written before that rule hold it in config.json's `processor` section too; those still load unchanged.
Weights are read with safetensors only, never pickle, and no code from a checkpoint runs: transformers is
always called with `trust_remote_code=False`. Loading checks what it reads before using it: config.json's
types and sizes (the text model's too, before it is built), checksums.json's entries (files inside the
folder only), and the weights' dtypes and values (floating point, finite). A saved folder holds no absolute
path, so it can be moved or uploaded as it is (a local text base folder is stored by its name when the text
weights are inside the checkpoint; a LoRA or frozen text tower needs its base at load time, so its reference is
kept as given). A save replaces its folder as a whole: it refuses a folder that exists, is not empty and is
not an ecglang checkpoint. The functions here take the model (or its class) as an argument, so that this
module does not import `modeling` (which calls them).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedModel

from ecglang.core.atomic import atomic_directory
from ecglang.core.checksums import CHECKSUMS_NAME, sha256_file, verify_checksums, write_checksums
from ecglang.core.outputs import OutputPathError, check_replaceable_folder
from ecglang.core.paths import resource_dir
from ecglang.encoders.checkpoint_files import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    TOKENIZER_FILE,
    WEIGHTS_NAME,
    checkpoint_folders,
    hub_cache_state,
    is_hub_id,
)
from ecglang.encoders.configuration import EcgLangConfig, estimated_parameters
from ecglang.encoders.ecg_processing import PROCESSOR_CONFIG_NAME, EcgProcessor
from ecglang.encoders.model_card import model_card, read_card
from ecglang.encoders.text_encoder import PICKLE_SUFFIXES, config_vocab_size, hub_id_of, text_config_parameters
from ecglang.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- saving
# What a checkpoint folder holds; anything else in a save folder (the user's notes, logs) is kept on re-save.
_CHECKPOINT_ENTRIES = frozenset(
    {"config.json", WEIGHTS_NAME, ADAPTER_DIR, PROCESSOR_CONFIG_NAME, "README.md", CHECKSUMS_NAME}
)
_TOKENIZER_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "spiece", "sentencepiece")
# What tokenizers write: a user's `tokenizer_eval.csv` beside a checkpoint is not one of them.
_TOKENIZER_SUFFIXES = (".json", ".txt", ".model")


def is_user_file(name: str) -> bool:
    """True for a folder entry that no checkpoint save writes (the user's own notes, logs): kept on re-save.

    The old checkpoint's own files are not carried over: a stale LoRA adapter or processor contract would
    be loaded by mistake."""
    tokenizer_file = name.startswith(_TOKENIZER_PREFIXES) and name.endswith(_TOKENIZER_SUFFIXES)
    return not (name in _CHECKPOINT_ENTRIES or tokenizer_file)


def is_checkpoint_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds an ecglang checkpoint (a config.json with model_type 'ecglang'): the one kind of
    non-empty folder that a save may replace (keeping the user's own files in it, `is_user_file`)."""
    path = Path(folder) / "config.json"
    try:
        if path.stat().st_size > 1 << 24:  # far above any config: not one of ours, and not worth reading
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("model_type") == EcgLangConfig.model_type


def check_save_folder(save_directory: str | os.PathLike) -> Path:
    """The resolved folder a checkpoint save may replace; an error naming it otherwise.

    A save swaps in a new folder (`ecglang.core.atomic`), so the target must be new, empty or an ecglang
    checkpoint: a project folder's README.md, config.json or tokenizer files were deleted without a word.
    Nor may it be the current folder (or one above it): the process and the user's shell would be left
    in a deleted folder."""
    target = Path(save_directory).expanduser()
    if target.is_file():
        raise ModelLoadError(target.resolve(), "save_pretrained needs a folder, but a file exists at this path")
    target = check_replaceable_folder(target, is_checkpoint_folder, "ecglang checkpoint").resolve()
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted: nothing to protect
        return target
    if target == here or target in here.parents:
        where = "the current folder" if target == here else "a folder above the current one"
        raise OutputPathError(
            f"{target}: is {where}; a save replaces the folder as a whole, which would leave this process (and a "
            "shell in it) in a deleted folder: save into a new subfolder"
        )
    return target


def text_reference(name_or_path: str) -> str:
    """What a checkpoint whose text weights are inside it stores as its text base: the Hub id, or the name of
    a local folder (never its absolute path: the folder is not needed to load, and the path would travel
    with the checkpoint to other machines and the Hub)."""
    # A folder that exists is what transformers read, even one spelt like a Hub id ("merl/text-encoder"):
    # recorded as an id, it became the card's base_model, a link to another repo or to none.
    local = Path(name_or_path).expanduser()
    if not name_or_path.startswith("package:") and local.exists():
        return local.resolve().name or name_or_path
    name = hub_id_of(name_or_path)
    if is_hub_id(name):
        return name
    return re.split(r"[\\/]+", name.rstrip("\\/"))[-1] or name  # a folder of another machine, even C:\models\x


def save_pretrained(
    model: PreTrainedModel,
    save_directory: str | os.PathLike,
    processor: EcgProcessor | None = None,
    card: Mapping[str, Any] | None = None,
) -> None:
    """Write `model`'s complete checkpoint folder (see the module docstring), atomically.

    The folder is built beside the target and swapped in when complete (`ecglang.core.atomic`): a save killed
    half-way leaves the previous checkpoint (or none), never a half-written or mixed one. The target must be
    new, empty or an ecglang checkpoint (`check_save_folder`). processor: an `EcgProcessor` that becomes the
    contract (default: the config's). card: extra model-card fields."""
    target = check_save_folder(save_directory)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    stores_text = config.text_tower["finetune"] == "full"
    # A LoRA or frozen tower loads its base from this reference, so it is kept; full weights need none.
    name = config.text_tower["name_or_path"]
    config.text_tower["name_or_path"] = text_reference(name) if stores_text else hub_id_of(name)
    if processor is not None:  # the processor used in training becomes the checkpoint's contract
        config.set_processor(processor.to_dict())
    hf_config = model.text_tower.base_model.config.to_dict() if stores_text else None
    if hf_config is not None:  # transformers records the folder the base was read from
        hf_config["_name_or_path"] = config.text_tower["name_or_path"]
    config.text_tower["hf_config"] = hf_config
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
    dtype: torch.dtype | str | None = None,
    device: torch.device | None = None,
    force_download: bool = False,
) -> PreTrainedModel:
    """Load a checkpoint folder or Hub id into a `model_class` (see `EcgLangModel.from_pretrained`).

    dtype: a floating `torch.dtype`, None (float32) or "auto" (the dtype the weights are stored in); device:
    where the model goes (None: the CPU)."""
    folder = resolve_checkpoint(
        resolve_model_name(name_or_path), revision, token, cache_dir, local_files_only, force_download
    )
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
        check_claimed_size(weights, config, text_weights == "config")
        model = model_class(config, text_weights=text_weights)
    except ConfigError as exc:  # found while building: the text model's size, LoRA targets, pooler head...
        raise ModelLoadError(folder / "config.json", f"invalid config: {exc}") from exc
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelLoadError(weights, f"cannot read safetensors file: {exc}") from exc
    expected = model.state_dict()
    check_tensors(weights, state, expected)
    check_shapes(weights, state, expected)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # what check_shapes does not foresee: still one line
        raise ModelLoadError(weights, f"weights do not match config.json: {mismatch_summary(exc)}") from exc
    text_keys_optional = not (full_text and text_weights == "config")
    missing = [k for k in missing if not (text_keys_optional and k.startswith("text_tower."))]
    if missing or unexpected:
        raise ModelLoadError(
            weights, f"weights do not match config.json: {len(missing)} tensor(s) missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]} (config.json edited, or from other weights?)"
        )  # fmt: skip
    if model.text_tower.is_lora:
        _load_adapter(model.text_tower.model, folder / ADAPTER_DIR)
    model.text_tower.tokenizer = checkpoint_tokenizer(folder)
    model.loaded_card = read_card(folder)
    if dtype == "auto":  # as transformers: the dtype the weights were saved in
        dtype = next((t.dtype for t in state.values() if t.is_floating_point()), None)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


# A config.json may describe a model far larger than its weights file (a hand-edited size): the model is built,
# and its memory allocated, before the weights are compared. Each part's size is estimated from the config and
# compared with what the file's header says it holds; the estimates of the shipped models are 1.4-3.6× their size.
CLAIM_SLACK, CLAIM_FLOOR = 16, 20_000_000


def check_claimed_size(weights: Path, config: EcgLangConfig, text_in_file: bool) -> None:
    """`ModelLoadError` naming the weights file when config.json describes an ECG side (or, with `text_in_file`, a
    text model) many times larger than the tensors the file holds, read from its header before anything is built
    (a d_model of 2048 over a 2 MB file took 6 GB and 23 s before failing on the shapes)."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            sizes = {key: math.prod(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelLoadError(weights, f"cannot read safetensors file: {exc}") from exc
    stored_text = sum(n for key, n in sizes.items() if key.startswith("text_tower."))
    parts = [
        ("an ECG side", estimated_parameters(config.ecg_tower, config.projection), sum(sizes.values()) - stored_text)
    ]
    if text_in_file:
        parts.append(("a text model", text_config_parameters(config.text_tower["hf_config"]), stored_text))
    for what, claimed, stored in parts:
        if claimed > CLAIM_SLACK * stored + CLAIM_FLOOR:
            raise ModelLoadError(
                weights, f"config.json describes {what} of about {claimed / 1e6:,.0f} M parameters, but this file "
                f"holds {stored / 1e6:,.2f} M for it: config.json edited, or from other weights? (nothing was built)"
            )  # fmt: skip


def check_shapes(path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """`ModelLoadError` in one line when tensors of the file have other shapes than the model that config.json
    describes (a hand-edited size): their count and the first one, instead of torch's line per tensor."""
    wrong = [(k, state[k].shape, t.shape) for k, t in expected.items() if k in state]  # in the model's order
    wrong = [(k, stored, built) for k, stored, built in wrong if stored != built]
    if wrong:
        name, stored, built = wrong[0]
        raise ModelLoadError(
            path, f"weights do not match config.json: {len(wrong)} tensor(s) have other shapes, the first "
            f"{name!r} is {list(stored)} in the file and {list(built)} by config.json (config.json edited, or "
            "from other weights?)"
        )  # fmt: skip


def mismatch_summary(exc: BaseException) -> str:
    """torch's `load_state_dict` error (a line per mismatched tensor) as one line: the count and the first."""
    lines = [line.strip() for line in str(exc).splitlines()]
    sizes = [line.removeprefix("size mismatch for ") for line in lines if line.startswith("size mismatch for ")]
    if sizes:
        return f"{len(sizes)} tensor(s) have other shapes, the first {sizes[0]}"
    return first_line(exc)


def check_tensors(path: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Refuse (`ModelLoadError` naming the file and the tensor) weights that would load as silent garbage
    (`tensor_problem`). Tensors the model does not have are checked too (they are refused as unexpected
    afterwards)."""
    for name, tensor in state.items():
        if problem := tensor_problem(name, tensor, expected.get(name)):
            raise ModelLoadError(path, problem)


def tensor_problem(name: str, tensor: torch.Tensor, reference: torch.Tensor | None) -> str | None:
    """Why `tensor` cannot be loaded where the model holds `reference` (None: a tensor the model lacks), else None.

    A tensor the model holds in floating point must be stored in floating point (`load_state_dict` would cast
    booleans or int8 without a word), a non-floating buffer (BatchNorm's step count) with the model's dtype,
    and every floating value must be finite: one NaN weight makes every score NaN."""
    wants_float = reference is None or reference.is_floating_point()
    if wants_float and not tensor.is_floating_point():
        return f"tensor {name!r} is stored as {tensor.dtype}; weights must be floating point"
    if not wants_float and tensor.dtype != reference.dtype:
        return f"tensor {name!r} is stored as {tensor.dtype}, expected {reference.dtype}"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        return (
            f"tensor {name!r} holds {bad} non-finite value(s) (NaN or infinity) of {tensor.numel()}: the weights "
            "are corrupt (a diverged training run?)"
        )
    return None


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
    return [p.name for p in checkpoint_folders()]


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
        raise ModelLoadError(name, f"not a folder, Hub id or bundled checkpoint; {_what_name_is(name)}")
    return str(bundled)


def _what_name_is(name: str) -> str:
    """Why `name` does not load, for the three name spaces users meet (checkpoints, configs, published). A name
    in two of them (`merl-resnet18`: the published MERL model and a baseline config) is said to be both."""
    # only for this message: keeps the module's imports lean
    from ecglang.encoders.pretrained import PRETRAINED, same_name_config

    published = {m.name: m for m in PRETRAINED}
    if name in published:
        model = published[name]
        how = (
            f"ecglang ships no weights of it: convert them once (their files: {model.weights}) with "
            f"`{model.convert}`, then ecglang.load_model('DIR')"
            if model.convert
            else model.note
        )
        config = same_name_config(name)
        return f"{name!r} is a published model ({model.paper}: {model.architecture}); {how}" + (
            f". Another model has this name: {config}" if config else ""
        )
    if (resource_dir("configs") / "model" / f"{name}.json").is_file():  # a name of `registry.list_models()`
        return f"{name!r} is an architecture config: ecglang.create_model({name!r}) builds it untrained"
    return f"bundled checkpoints: {list_checkpoints()}"


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
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
    if not is_hub_id(text):
        raise ModelLoadError(path, "checkpoint folder not found (and it is not a Hub id like 'org/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline_env = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    offline = local_files_only or offline_env
    unreachable = not offline and not _hub_answers()
    how = (
        f"download it once with network (`hf download {text} --local-dir DIR`, huggingface_hub's command line) "
        "and load the folder: EcgLangModel.from_pretrained('DIR')"
    )
    try:
        local = snapshot_download(
            text, revision=revision, token=token, cache_dir=cache_dir, local_files_only=offline or unreachable,
            force_download=force_download and not (offline or unreachable),
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.md", "*.model", f"{ADAPTER_DIR}/*"],
        )  # fmt: skip
    except LocalEntryNotFoundError as exc:
        if offline:  # named by what set it: the caller's argument or the environment
            given = ["local_files_only=True"] if local_files_only else []
            given += [f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set"] if offline_env else []
            state = f"loading is offline ({' and '.join(given)})"
        elif unreachable:
            state = f"the Hugging Face Hub did not answer within {HUB_PROBE_TIMEOUT_S:g} s (no network?)"
        else:
            state = "the Hugging Face Hub could not be reached"
        cached = hub_cache_state(text, revision, cache_dir)
        raise ModelLoadError(text, f"no local folder of this name, {cached} and {state}; {how}") from exc
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


def load_tokenizer(source: str | Path, *, what: str = "text model") -> Any:
    """`AutoTokenizer.from_pretrained(source)`, with a `ModelLoadError` naming the source.

    `trust_remote_code=False`: code named by a tokenizer_config.json's `auto_map` is never run, and
    transformers never asks whether to run it. A local folder with an `auto_map` is refused before
    transformers reads it; the tokenizer must be one of transformers' own classes. Without its vocabulary
    transformers builds a tokenizer of the special tokens only: a local folder must hold the vocabulary files
    (`_check_vocabulary_files`), and no tokenizer may be far smaller than its config's vocab_size
    (`_check_vocabulary_size`). what: the kind of folder, for the message ("text model", "checkpoint")."""
    refusal = "it names custom code (auto_map), and ecglang never runs code from a checkpoint or model folder"
    config = Path(source) / "tokenizer_config.json"
    if config.is_file():
        try:
            auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelLoadError(config, f"unreadable tokenizer config: {exc}") from exc
        if auto_map:
            raise ModelLoadError(config, f"cannot load the tokenizer: {refusal}; remove the auto_map entry")
    _check_tokenizer_file(Path(source) / TOKENIZER_FILE)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    except MemoryError:  # not a file problem; the hostile-checkpoint tests must see it as it is
        raise
    except Exception as exc:  # transformers and tokenizers raise many types (tokenizers: plain Exception)
        if isinstance(exc, KeyError) and (Path(source) / TOKENIZER_FILE).is_file():  # a bare KeyError: 'added_tokens'
            raise ModelLoadError(
                Path(source) / TOKENIZER_FILE, f"not a whole tokenizers file: it lacks the entry {exc} (corrupt?)"
            ) from exc
        reason = refusal if "trust_remote_code" in str(exc) else first_line(exc)  # never advise trust_remote_code
        raise ModelLoadError(source, f"cannot load the tokenizer: {reason}") from exc
    if Path(source).is_dir():
        _check_vocabulary_files(Path(source), tokenizer, what)
    _check_vocabulary_size(source, tokenizer)
    return tokenizer


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message: errors reach users as one line."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _check_tokenizer_file(path: Path) -> None:
    """A tokenizer.json that is there must be a whole one: transformers' message for a truncated file named
    only the folder (and a JSON object without a model raised a bare KeyError)."""
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelLoadError(path, f"unreadable tokenizer file (truncated or corrupt?): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelLoadError(path, "not a tokenizers file (it has no 'model' object): corrupt or not a tokenizer")


def _check_vocabulary_files(folder: Path, tokenizer: Any, what: str = "checkpoint") -> None:
    """The folder (a checkpoint, or a text model's: `what`) holds the files the tokenizer reads its vocabulary
    from: tokenizer.json, or all of its class's own files (vocab.txt for BERT). Without them transformers builds
    a tokenizer of the special tokens only (5 for BERT): every word became [UNK] and every text the same
    embedding, without an error."""
    names = dict(getattr(type(tokenizer), "vocab_files_names", None) or {})
    if not names:  # a byte or character tokenizer (ByT5, CANINE): it has no vocabulary file to lose
        return
    whole = names.pop("tokenizer_file", TOKENIZER_FILE)
    if (folder / whole).is_file() or (names and all((folder / n).is_file() for n in names.values())):
        return
    other = f" (nor its {' + '.join(sorted(names.values()))})" if names else ""
    raise ModelLoadError(
        folder / whole, f"missing{other}: the tokenizer ({type(tokenizer).__name__}) would have no vocabulary; the "
        f"{what} is incomplete (a partial copy or download?): copy the file from where the {what} came from"
    )  # fmt: skip


def _check_vocabulary_size(source: str | Path, tokenizer: Any) -> None:
    """A tokenizer under half its model's vocab_size lost its vocabulary (a Hub id whose cache holds no
    vocabulary file gives BERT's 5 special tokens; a checkpoint saved from one holds them in a whole
    tokenizer.json). Models pad vocab_size a little above their tokenizer's size (to a multiple of 64, say)."""
    expected = config_vocab_size(source)
    if expected is None or 2 * len(tokenizer) >= expected:
        return
    raise ModelLoadError(
        source, f"the tokenizer ({type(tokenizer).__name__}) holds {len(tokenizer)} tokens but the model's vocab_size "
        f"(config.json) is {expected}: its vocabulary is missing or cut short (a partial copy or download?), and "
        "every word would become [UNK]: copy the tokenizer files from where the model came from"
    )  # fmt: skip


def checkpoint_tokenizer(folder: Path) -> Any:
    """The tokenizer stored in a checkpoint folder (`save_pretrained` always writes it).

    A folder without tokenizer_config.json is a `ModelLoadError`, not a silent fall-back to the text base
    model's tokenizer: the checkpoint's texts must be tokenized the way it was trained."""
    if not (Path(folder) / "tokenizer_config.json").is_file():
        raise ModelLoadError(
            folder, "tokenizer files are missing (tokenizer_config.json); a checkpoint saved by save_pretrained "
            "holds them: copy them from the text base model the checkpoint was trained with, or save it again"
        )  # fmt: skip
    return load_tokenizer(folder, what="checkpoint")


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
        raise ModelLoadError(weights, f"cannot load the LoRA adapter: {mismatch_summary(exc)}") from exc
    expected = {k for k in peft_model.state_dict() if "lora_" in k}
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing or getattr(result, "unexpected_keys", []) or not state or len(state) != len(expected):
        raise ModelLoadError(
            weights,
            f"adapter does not match config.json (text_tower.lora): {len(state)} tensors for {len(expected)} "
            f"LoRA weights, missing {missing[:3]}, unexpected {list(getattr(result, 'unexpected_keys', []))[:3]}",
        )


__all__ = [
    "ADAPTER_DIR",
    "DEFAULT_CHECKPOINT",
    "WEIGHTS_NAME",
    "check_save_folder",
    "check_shapes",
    "check_tensors",
    "checkpoint_tokenizer",
    "first_line",
    "from_pretrained",
    "is_checkpoint_folder",
    "is_user_file",
    "list_checkpoints",
    "load_config",
    "load_tokenizer",
    "mismatch_summary",
    "read_processor_contract",
    "resolve_checkpoint",
    "resolve_model_name",
    "save_adapter",
    "save_pretrained",
    "tensor_problem",
    "text_reference",
]
