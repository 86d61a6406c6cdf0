"""Build models from the named configs in `configs/model/*.json` (or any JSON file of the same form), and list
them beside the bundled trained checkpoints (`checkpoints/`), the names that `--model` and `load_model` take."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ecglang.core.paths import resource_dir
from ecglang.encoders.checkpoint_files import checkpoint_folders
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.errors import ConfigError

_SECTIONS = ("ecg_tower", "text_tower", "projection", "loss", "processor")


def _model_config_dir() -> Path:
    return resource_dir("configs") / "model"


def list_models() -> list[str]:
    """Names of the bundled model configs (`ecglang-small`, `ecglang-base`, `merl-resnet18`, ...)."""
    folder = _model_config_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def model_config_path(name_or_path: str | Path) -> Path:
    """The JSON file for a bundled name or an explicit path; `ConfigError` if neither exists."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: model config file not found")
        return path
    candidate = _model_config_dir() / f"{name_or_path}.json"
    if not candidate.is_file():
        raise ConfigError(f"unknown model {str(name_or_path)!r}; known: {list_models()} (or pass a .json path)")
    return candidate


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_model_config(name_or_path: str | Path, **overrides: Any) -> EcgLangConfig:
    """Read a model config JSON and apply `overrides` (section dicts, merged key by key), e.g.
    `load_model_config("ecglang-small", text_tower={"finetune": "full"}, loss={"weights": {"token": 0}})`."""
    path = model_config_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable model config: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config must be a JSON object")
    data.pop("description", None)
    unknown = sorted((set(data) | set(overrides)) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected {list(_SECTIONS)}")
    merged = _deep_merge(data, overrides)
    try:
        return EcgLangConfig(**merged)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def create_model(name_or_path: str | Path, **overrides: Any) -> Any:
    """A freshly initialised `EcgLangModel` (pretrained text tower, random ECG tower) from a named config.

    To load trained weights use `EcgLangModel.from_pretrained(folder_or_hub_id)` instead. `"merl-resnet18"` is this
    project's MERL-style baseline (`resnet1d18` ECG tower, MiniLM text tower), not the published MERL model of the
    same name (`list_pretrained()`: `merl_resnet18` tower, MedCPT text model), whose weights `ecglang convert merl`
    turns into a folder that `load_model` loads."""
    from ecglang.encoders.modeling import EcgLangModel  # torch/transformers only when a model is built

    return EcgLangModel(load_model_config(name_or_path, **overrides))


def describe_models() -> dict[str, str]:
    """`{name: description}` of the bundled configs (for `--help` texts and docs)."""
    out = {}
    for name in list_models():
        try:
            out[name] = json.loads(model_config_path(name).read_text(encoding="utf-8")).get("description", "")
        except (OSError, json.JSONDecodeError):
            out[name] = "(unreadable)"
    return out


def describe_checkpoints() -> dict[str, str]:
    """`{name: description}` of the bundled trained checkpoints, from their config.json (plain JSON: no model
    is built): the ECG tower and the text tower."""
    out = {}
    for folder in checkpoint_folders():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            ecg, text = config["ecg_tower"], config["text_tower"]
            tower = f"{ecg['type']} ECG tower"
            if "d_model" in ecg and "n_layers" in ecg:
                tower += f" (d_model {ecg['d_model']}, {ecg['n_layers']} blocks)"
            out[folder.name] = f"{tower}, text {text['name_or_path']} ({text['finetune']})"
        except (OSError, ValueError, KeyError, TypeError):
            out[folder.name] = "(unreadable config.json)"
    return out
