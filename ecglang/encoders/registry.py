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
from ecglang.encoders.pretrained import PRETRAINED
from ecglang.errors import ConfigError, clip_text

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
        raise ConfigError(f"unknown model config {str(name_or_path)!r}; {_what_else(str(name_or_path))}known "
                          f"configs: {list_models()} (or pass a .json path)")  # fmt: skip
    return candidate


def _what_else(name: str) -> str:
    """What `name` is when it names no config: a bundled trained checkpoint or a published model (as
    `load_model` says of a config name that `create_model` builds); empty otherwise."""
    if name in {p.name for p in checkpoint_folders()}:
        return (f"{name!r} is a trained checkpoint: ecglang.load_model({name!r}) loads it (create_model builds an "
                "untrained model from a config); ")  # fmt: skip
    published = {m.name: m for m in PRETRAINED}.get(name)
    if published is None:
        return ""
    how = (f"convert its weights once ({published.weights}) with `{published.convert}`, then ecglang.load_model('DIR')"
           if published.convert else published.note)  # fmt: skip
    return f"{name!r} is a published model ({published.paper}: {published.architecture}), not a config: {how}; "


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
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected {list(_SECTIONS)}")
    # A mistake is blamed on where it is: the file, or the override argument(s) when the file alone is valid.
    given = f"model config {str(name_or_path)!r}"
    unknown = sorted(set(overrides) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"unknown override(s) {unknown} of {given}; the overrides are its sections: {list(_SECTIONS)}"
        )
    try:
        return EcgLangConfig(**_deep_merge(data, overrides))
    except ConfigError as exc:
        if overrides and _valid(data):  # the file alone is a valid config: the overrides made it invalid
            named = ", ".join(f"{key}={clip_text(repr(value), 200)}" for key, value in overrides.items())
            raise ConfigError(f"override{'s' if len(overrides) > 1 else ''} {named} of {given}: {exc}") from exc
        raise ConfigError(f"{path}: {exc}") from exc


def _valid(data: dict[str, Any]) -> bool:
    """Whether `data` (a config file's sections) builds an `EcgLangConfig` as it is."""
    try:
        EcgLangConfig(**copy.deepcopy(data))
    except ConfigError:
        return False
    return True


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
