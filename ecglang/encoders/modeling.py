"""`EcgLangModel` (a transformers `PreTrainedModel`) and its output dataclasses.

Saving and loading live in `ecglang.encoders.checkpoint`; the towers in `ecg_encoders` and `text_encoder`.
Importing this module (and so `import ecglang`, which imports it) registers `EcgLangConfig` / `EcgLangModel`
with `AutoConfig` / `AutoModel`: `AutoModel.from_pretrained(folder)` works without `trust_remote_code`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from ecglang.encoders import checkpoint
from ecglang.encoders.checkpoint import load_tokenizer
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.ecg_encoders import build_ecg_tower
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.layers import ModelInputError, Projection
from ecglang.encoders.loss import EcgLangLoss
from ecglang.encoders.text_encoder import TextEncoder
from ecglang.errors import ConfigError

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------- outputs
@dataclass
class EcgEncoderOutput(ModelOutput):
    """ECG embeddings in the shared space (L2-normalised by default); padded positions are zero.

    rhythm_embeds `[B, D]`; beat_embeds `[B, N, D]`; token_embeds `[B, N, 12, D]` (None for the ResNet tower);
    beat_mask `[B, N]`, lead_mask `[B, 12]`; rhythm_features `[B, d]`: the pooled tower features before
    projection (for linear probes). With `output_attentions=True` (beat tower only): lead_attention `[B, 12]`
    and beat_attention `[B, N]` (None for a rhythm mixer without attention weights); see
    `ecglang.encoders.ecg_encoders.attention_maps`."""

    rhythm_embeds: Tensor | None = None
    beat_embeds: Tensor | None = None
    token_embeds: Tensor | None = None
    beat_mask: Tensor | None = None
    lead_mask: Tensor | None = None
    rhythm_features: Tensor | None = None
    lead_attention: Tensor | None = None
    beat_attention: Tensor | None = None


@dataclass
class TextEncoderOutput(ModelOutput):
    """Report embeddings in the shared space.

    text_embeds `[B, D]`; token_embeds `[B, T, D]` with token_mask `[B, T]` (real, non-special tokens);
    sentence_embeds `[B, S, D]` with sentence_mask `[B, S]`; text_features `[B, H]` before projection."""

    text_embeds: Tensor | None = None
    token_embeds: Tensor | None = None
    token_mask: Tensor | None = None
    sentence_embeds: Tensor | None = None
    sentence_mask: Tensor | None = None
    text_features: Tensor | None = None


@dataclass
class EcgLangOutput(ModelOutput):
    """Output of `EcgLangModel.forward`.

    loss: weighted total (None with `return_loss=False`); losses: `{"rhythm", "beat", "token"}` → scalar;
    logits_per_ecg `[B_ecg, B_text]` = rhythm logit scale × cosine of the local batch, logits_per_text its
    transpose; rhythm_embeds / text_embeds: the global embeddings; ecg_outputs / text_outputs: everything."""

    loss: Tensor | None = None
    logits_per_ecg: Tensor | None = None
    logits_per_text: Tensor | None = None
    rhythm_embeds: Tensor | None = None
    text_embeds: Tensor | None = None
    ecg_outputs: EcgEncoderOutput | None = None
    text_outputs: TextEncoderOutput | None = None
    losses: dict[str, Tensor] | None = None


# ---------------------------------------------------------------------------------------------- model
class EcgLangModel(PreTrainedModel):
    """ECG-language model: an ECG tower and a text tower projected into one embedding space.

    Build with `EcgLangModel(EcgLangConfig(...))`, `ecglang.encoders.registry.create_model("ecglang-small")` or
    `EcgLangModel.from_pretrained(folder_or_hub_id)`. Inputs are the dict produced by
    `ecglang.encoders.ecg_processing.EcgProcessor` (beats, beat_mask, lead_mask, rr, times, signal).
    """

    config_class = EcgLangConfig
    base_model_prefix = "ecglang"
    main_input_name = "beats"
    supports_gradient_checkpointing = False

    def __init__(self, config: EcgLangConfig, text_weights: str = "pretrained") -> None:
        """`text_weights="pretrained"` loads the text tower from `text_tower.name_or_path`;
        `"config"` only builds its architecture from `text_tower.hf_config` (weights come from a checkpoint)."""
        super().__init__(config)
        ecg_cfg, proj = config.ecg_tower, config.projection
        self.ecg_tower = build_ecg_tower(ecg_cfg)
        hf_config = config.text_tower.get("hf_config") if text_weights == "config" else None
        if text_weights == "config" and hf_config is None:
            raise ConfigError("text_weights='config' needs text_tower.hf_config in the config")
        self.text_tower = TextEncoder(config.text_tower, hf_config=hf_config)
        d_ecg, d_text = self.ecg_tower.d_model, self.text_tower.hidden_size
        ecg_kind, text_kind = proj["ecg_type"] or proj["type"], proj["text_type"] or proj["type"]
        self.rhythm_proj = Projection(d_ecg, proj, ecg_kind)
        self.text_proj = Projection(d_text, proj, text_kind)
        if config.is_beat_model:
            self.beat_proj = Projection(d_ecg, proj, ecg_kind)
            self.ecg_token_proj = Projection(d_ecg, proj, ecg_kind)
            self.sentence_proj = Projection(d_text, proj, text_kind)
            self.text_token_proj = Projection(d_text, proj, text_kind)
        active = config.active_losses
        skipped = [k for k, w in config.loss["weights"].items() if w > 0 and k not in active]
        if skipped:
            logger.info("ECG tower %r has no beats: losses %s are skipped", ecg_cfg["type"], skipped)
        self.loss_fn = EcgLangLoss(config.loss, active)
        self.post_init()
        if text_weights == "pretrained":
            self.text_tower.tokenizer = load_tokenizer(self.text_tower.source)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Keep PyTorch's default initialisation (and the pretrained text weights) untouched."""

    # ------------------------------------------------------------------------------------ encoding
    def get_processor(self) -> EcgProcessor:
        """The `EcgProcessor` of this model's preprocessing contract (`config.processor`)."""
        if self.config.processor is None:
            raise ConfigError("this model has no processor contract (config.processor is None)")
        return EcgProcessor.from_dict(copy.deepcopy(self.config.processor))

    @property
    def processor(self) -> EcgProcessor | None:
        """`get_processor()`, or None for a model without a processor contract."""
        return None if self.config.processor is None else self.get_processor()

    def get_tokenizer(self) -> Any:
        """The text tower's tokenizer (a transformers fast tokenizer)."""
        return self.text_tower.tokenizer

    def tokenize(self, texts: str | Sequence[str]) -> dict[str, Tensor]:
        """Tokenize reports: input_ids, attention_mask, token_mask, sentence_ids (see `TextEncoder.tokenize`)."""
        return self.text_tower.tokenize(texts)

    def encode_ecg(
        self,
        beats: Tensor | None = None,
        beat_mask: Tensor | None = None,
        lead_mask: Tensor | None = None,
        rr: Tensor | None = None,
        times: Tensor | None = None,
        signal: Tensor | None = None,
        *,
        rhythm_only: bool = False,
        age: Tensor | None = None,
        sex: Tensor | None = None,
        output_attentions: bool = False,
    ) -> EcgEncoderOutput:
        """Embed a processor batch (`EcgBatch`: its keys are exactly these arguments; an unknown name is a
        `TypeError`, so a misspelt option is never ignored). Floating inputs are cast to the model's dtype, so
        a model loaded or cast to bfloat16/float16/float64 takes the processor's float32 batches.

        `rhythm_only=True` returns the whole-ECG embeddings and features only (beat and token embeddings None):
        what scoring, retrieval and probes need; the beat tower then skips building its padded beat and token
        outputs, which costs as much as several encoder layers. `age`/`sex` reach a tower with demographics.
        `output_attentions=True`: the beat tower's lead and beat attention maps too (None for other towers)."""
        dev, dtype = self.device, self.dtype
        given = {"beats": beats, "beat_mask": beat_mask, "lead_mask": lead_mask, "rr": rr, "times": times}
        for name, value in {**given, "signal": signal}.items():
            if value is not None and not isinstance(value, Tensor):
                raise ModelInputError(f"model input {name!r} must be a torch.Tensor, got {type(value).__name__}")
        beats, rr, times, signal, age = (
            None if t is None else t.to(device=dev, dtype=dtype if t.is_floating_point() else t.dtype)
            for t in (beats, rr, times, signal, age)
        )
        if lead_mask is None:
            raise ModelInputError("model input 'lead_mask' [B, 12] is missing")
        lead_mask = lead_mask.to(dev).bool()
        if self.config.is_beat_model:
            missing = [k for k, v in given.items() if v is None]
            if missing:
                raise ModelInputError(
                    f"model input(s) {missing} missing (the beat tower needs beats, masks, rr, times)"
                )
            extra = {} if age is None and sex is None else {"age": age, "sex": sex}
            if output_attentions:
                extra["output_attentions"] = True
            out = self.ecg_tower(beats, beat_mask.to(dev), lead_mask, rr, times, rhythm_only=rhythm_only, **extra)
            bm = out["beat_mask"]
            maps = {k: out.get(k) for k in ("lead_attention", "beat_attention")}
            if rhythm_only:
                return EcgEncoderOutput(
                    rhythm_embeds=self.rhythm_proj(out["rhythm"]), beat_mask=bm, lead_mask=lead_mask,
                    rhythm_features=out["rhythm"], **maps,
                )  # fmt: skip
            token_keep = bm[:, :, None] & lead_mask[:, None, :]
            return EcgEncoderOutput(
                rhythm_embeds=self.rhythm_proj(out["rhythm"]),
                beat_embeds=self.beat_proj(out["beats"], bm),
                token_embeds=self.ecg_token_proj(out["tokens"], token_keep),
                beat_mask=bm,
                lead_mask=lead_mask,
                rhythm_features=out["rhythm"],
                **maps,
            )
        if signal is None:
            raise ModelInputError(
                f"model input 'signal' [B, 12, T] is missing (the {self.config.ecg_tower['type']} tower needs it)"
            )
        out = self.ecg_tower(signal, lead_mask)
        features = out.get("features")
        return EcgEncoderOutput(
            rhythm_embeds=self.rhythm_proj(out["rhythm"]),
            lead_mask=lead_mask,
            rhythm_features=out["rhythm"] if features is None else features,
        )

    def encode_text(self, texts: str | Sequence[str] | Mapping[str, Tensor]) -> TextEncoderOutput:
        """Embed reports given as strings or as the dict returned by `tokenize` (input_ids, attention_mask,
        optional token_mask and sentence_ids)."""
        enc = self.tokenize(texts) if not isinstance(texts, Mapping) else texts
        if enc.get("input_ids") is None or enc.get("attention_mask") is None:
            raise ModelInputError("tokenized text needs 'input_ids' and 'attention_mask'")
        dev = self.device
        out = self.text_tower(
            enc["input_ids"].to(dev),
            enc["attention_mask"].to(dev),
            None if enc.get("token_mask") is None else enc["token_mask"].to(dev),
            None if enc.get("sentence_ids") is None else enc["sentence_ids"].to(dev),
        )
        local: dict[str, Tensor] = {}
        if self.config.is_beat_model:
            local = {
                "token_embeds": self.text_token_proj(out["tokens"], out["token_mask"]),
                "token_mask": out["token_mask"],
                "sentence_embeds": self.sentence_proj(out["sentences"], out["sentence_mask"]),
                "sentence_mask": out["sentence_mask"],
            }
        # every field at construction: transformers before 5.3 drops ModelOutput fields set afterwards
        return TextEncoderOutput(text_embeds=self.text_proj(out["pooled"]), text_features=out["pooled"], **local)

    def get_ecg_features(self, **batch: Tensor) -> Tensor:
        """`[B, D]` whole-ECG embeddings of a processor batch (`model.get_ecg_features(**processor(ecgs))`):
        `encode_ecg(**batch, rhythm_only=True).rhythm_embeds`, as transformers' `CLIPModel.get_image_features`."""
        return self.encode_ecg(**batch, rhythm_only=True).rhythm_embeds

    def get_text_features(self, texts: str | Sequence[str] | Mapping[str, Tensor]) -> Tensor:
        """`[N, D]` whole-report embeddings (`encode_text(texts).text_embeds`), as `CLIPModel.get_text_features`.
        With `get_ecg_features`, `ecg @ text.T` is the cosine that zero-shot scores (both are unit length where
        the config's `projection.normalize` is on, as in every shipped config; else normalise them first)."""
        return self.encode_text(texts).text_embeds

    def forward(
        self,
        beats: Tensor | None = None,
        beat_mask: Tensor | None = None,
        lead_mask: Tensor | None = None,
        rr: Tensor | None = None,
        times: Tensor | None = None,
        signal: Tensor | None = None,
        texts: Sequence[str] | None = None,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_mask: Tensor | None = None,
        sentence_ids: Tensor | None = None,
        return_loss: bool = True,
        age: Tensor | None = None,
        sex: Tensor | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
    ) -> EcgLangOutput | tuple[Any, ...]:
        """Encode a batch of ECG-report pairs; compute the weighted loss when `return_loss`.

        Reports are given as `texts` (strings) or pre-tokenized (`input_ids`, `attention_mask`, ...).
        `return_dict=False` gives `EcgLangOutput.to_tuple()` (the fields that are set, in order), as in
        transformers. An unknown keyword is a `TypeError`: a misspelt `return_loss` must not compute a loss."""
        ecg = self.encode_ecg(
            beats, beat_mask, lead_mask, rr, times, signal, age=age, sex=sex, output_attentions=output_attentions
        )
        if texts is not None:
            text = self.encode_text(texts)
        elif input_ids is not None:
            text = self.encode_text(
                {"input_ids": input_ids, "attention_mask": attention_mask, "token_mask": token_mask,
                 "sentence_ids": sentence_ids}
            )  # fmt: skip
        else:
            raise ModelInputError("forward needs reports: pass texts=[...] or input_ids/attention_mask")
        if text.text_embeds.shape[0] != ecg.rhythm_embeds.shape[0] and return_loss:
            raise ModelInputError(
                f"{ecg.rhythm_embeds.shape[0]} ECGs but {text.text_embeds.shape[0]} reports: pairs must match"
            )
        # Cosines, as the losses score pairs, also for a projection that leaves its outputs' lengths (`normalize`).
        unit = torch.nn.functional.normalize
        logits_per_ecg = (
            self.loss_fn.scale("rhythm") * unit(ecg.rhythm_embeds, dim=-1) @ unit(text.text_embeds, dim=-1).T
        )
        loss, losses = self.loss_fn(ecg, text) if return_loss else (None, None)
        output = EcgLangOutput(
            loss=loss,
            logits_per_ecg=logits_per_ecg,
            logits_per_text=logits_per_ecg.T,
            rhythm_embeds=ecg.rhythm_embeds,
            text_embeds=text.text_embeds,
            ecg_outputs=ecg,
            text_outputs=text,
            losses=losses,
        )
        return output if return_dict is None or return_dict else output.to_tuple()

    # ---------------------------------------------------------------------------------- checkpoints
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        processor: Any = None,
        card: Mapping[str, Any] | None = None,
        is_main_process: bool = True,
        **kwargs: Any,
    ) -> None:
        """Write a complete checkpoint folder (`ecglang.encoders.checkpoint`), atomically. The folder must be new,
        empty or an ecglang checkpoint (whose other files are kept); any other is refused (`OutputPathError`).

        processor: an `EcgProcessor` (written as processor_config.json); default: the config's processor
            contract. card: extra model-card fields (`training_data`, `metrics`, `notes`).
        transformers' keywords that ask for what this does anyway are accepted (`safe_serialization=True`,
        `max_shard_size`: one small file, `save_function`: the main process writes); any other is a `TypeError`
        (`push_to_hub=True` was ignored without a word: upload with `push_to_hub(repo_id)`)."""
        _check_neutral_kwargs(f"{type(self).__name__}.save_pretrained", kwargs, _NEUTRAL_SAVE_KWARGS)
        if is_main_process:
            checkpoint.save_pretrained(self, save_directory, processor=processor, card=card)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None = None,
        *model_args: Any,
        config: EcgLangConfig | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device_map: str | int | torch.device | Mapping[str, Any] | None = None,
        force_download: bool = False,
        **kwargs: Any,
    ) -> EcgLangModel:
        """Load a checkpoint from a local folder, a bundled name or a Hub id (`huggingface_hub.snapshot_download`).

        dtype (or its older name torch_dtype): a floating `torch.dtype`, its name as transformers takes it
        ("bfloat16", "float16", "half"...), or "auto" (the dtype the weights are stored in); default float32.
        device_map: one device ("cpu", "cuda:0", 0, a `torch.device`, `{"": device}`), or "auto" (CUDA when
        available); the model is small, so it is never split across devices.
        Raises `ModelLoadError` for a missing folder, a Hub id that cannot be fetched (offline: in well under
        2 s, with how to load from a folder instead), missing/corrupt files or a checksum mismatch; `TypeError`
        for a keyword it does not know (a misspelt option is never ignored). The model is returned in eval mode."""
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained() takes one positional argument (the folder or Hub id)")
        _check_load_kwargs(cls.__name__, kwargs)
        return checkpoint.from_pretrained(
            cls, pretrained_model_name_or_path, config=config, revision=revision, token=token, cache_dir=cache_dir,
            local_files_only=local_files_only, dtype=resolve_dtype(dtype, torch_dtype),
            device=None if device_map is None else _device_of_map(device_map), force_download=bool(force_download),
        )  # fmt: skip

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str = "Upload ecglang model", commit_description: str | None = None,
                    revision: str | None = None, create_pr: bool = False, processor: Any = None,
                    card: Mapping[str, Any] | None = None) -> str:  # fmt: skip
        """Save the complete checkpoint (with ecglang's model card) to a temporary folder and upload it; returns
        the commit's URL (the pull request's with `create_pr`).

        transformers' own push_to_hub would replace README.md with a generic card; this keeps ours. `revision`:
        the branch to commit to (created from main when missing); `create_pr`: open a pull request instead of
        committing; `token`: a token, True/None for the stored login, False for none. Any other keyword is a
        `TypeError` (create_pr and revision were dropped: the upload went to main)."""
        import tempfile  # here: only an upload needs them (huggingface_hub is imported when asked for)

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, processor=processor, card=card)
            info = api.upload_folder(repo_id=repo, folder_path=tmp, commit_message=commit_message,
                                     commit_description=commit_description, revision=revision,
                                     create_pr=create_pr)  # fmt: skip
        return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


# What transformers' AutoModel passes along (or users copy from transformers) that has nothing to do here:
# accepted at the value that asks for nothing, refused otherwise. Any other keyword is a TypeError.
_NEUTRAL_LOAD_KWARGS: dict[str, Any] = {
    "_from_auto": None,  # any value: AutoModel's marker
    "adapter_kwargs": None,  # any value: AutoModel's lookup of a root adapter_config.json; ours is text_adapter/
    "trust_remote_code": None,  # any value: no code from a checkpoint ever runs
    "proxies": (None,),
    "subfolder": (None, ""),
    "use_safetensors": (None, True),  # only safetensors are read
    "low_cpu_mem_usage": (None, True, False),
}


# transformers' save_pretrained keywords that ask for what `save_pretrained` does anyway (None: any value).
_NEUTRAL_SAVE_KWARGS: dict[str, Any] = {
    "safe_serialization": (None, True),  # only safetensors are written
    "max_shard_size": None,  # any value: the checkpoint is a few MB, one file
    "save_function": None,  # any value (accelerate passes its own): the main process writes, once
    "push_to_hub": (None, False),
    "variant": (None,),
}


def _check_neutral_kwargs(owner: str, kwargs: Mapping[str, Any], neutral: Mapping[str, Any]) -> None:
    """`TypeError` for a keyword not in `neutral`, or at a value that asks for something this does not do."""
    unknown = sorted(k for k in kwargs if k not in neutral)
    asked = sorted(k for k, v in kwargs.items() if k in neutral and not _is_neutral(v, neutral[k]))
    if unknown or asked:
        raise TypeError(
            f"{owner}() got keyword argument(s) it does not take: {unknown + asked}"
            + ("; upload with push_to_hub(repo_id)" if "push_to_hub" in asked else "")
        )


def _check_load_kwargs(owner: str, kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in kwargs if k not in _NEUTRAL_LOAD_KWARGS)
    if unknown:
        raise TypeError(
            f"{owner}.from_pretrained() got unexpected keyword argument(s) {unknown}; it takes config, revision, "
            "token, cache_dir, local_files_only, force_download, dtype (torch_dtype) and device_map"
        )
    for key, value in kwargs.items():
        allowed = _NEUTRAL_LOAD_KWARGS[key]
        if not _is_neutral(value, allowed):
            raise ConfigError(f"{owner}.from_pretrained(): {key}={value!r} is not supported (accepted: {allowed})")


def _is_neutral(value: Any, allowed: tuple[Any, ...] | None) -> bool:
    """Whether `value` is one of `allowed` (None: any value), of its type too (1 is not True)."""
    return allowed is None or any(value is a or (value == a and type(value) is type(a)) for a in allowed)


def resolve_dtype(dtype: Any = None, torch_dtype: Any = None) -> torch.dtype | str | None:
    """The dtype to load in, from `dtype` or transformers' older `torch_dtype`: a floating `torch.dtype`, "auto",
    or None. Strings are read as transformers reads them: "auto" or a name of a torch dtype ("bfloat16")."""
    if dtype is not None and torch_dtype is not None and resolve_dtype(dtype) != resolve_dtype(torch_dtype):
        raise ConfigError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: give one")
    value = dtype if dtype is not None else torch_dtype
    if value is None or value == "auto":
        return value
    resolved = getattr(torch, value, None) if isinstance(value, str) else value
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"dtype {value!r} is not a torch dtype: give e.g. torch.bfloat16, 'bfloat16' or 'auto'")
    if not resolved.is_floating_point:
        raise ConfigError(f"dtype {value!r} is not a floating point type: the weights would be truncated")
    return resolved


def torch_device(device: str | int | torch.device) -> torch.device:
    """`device` as a `torch.device`; "auto" is CUDA when available. `ConfigError` for a name torch does not
    know, or CUDA on a torch without a GPU (torch's own answer is a bare AssertionError, later)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"bad device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return dev


def _device_of_map(device_map: str | int | torch.device | Mapping[str, Any]) -> torch.device:
    """transformers' `device_map` for a model that is never split: one device, or `{"": device}`."""
    if isinstance(device_map, Mapping):
        if set(device_map) != {""}:
            raise ConfigError(
                f"device_map {dict(device_map)!r}: ecglang models are not split across devices; give one device"
            )
        device_map = device_map[""]
    return torch_device(device_map)


def load_model(name_or_path: str | os.PathLike | None = None, device: str | None = None) -> EcgLangModel:
    """Load a checkpoint for inference (eval mode) on `device`.

    `name_or_path`: a checkpoint folder, a Hub id, or the name of a checkpoint bundled under the project's
    `checkpoints/` folder; None = the bundled `ecglang-mini`. `device`: None/"auto" = CUDA when available."""
    name = checkpoint.resolve_model_name(name_or_path)
    dev = torch_device("auto" if device is None else device)
    return EcgLangModel.from_pretrained(name).to(dev).eval()


# Registration: no trust_remote_code needed once ecglang is imported.
AutoConfig.register(EcgLangConfig.model_type, EcgLangConfig, exist_ok=True)
AutoModel.register(EcgLangConfig, EcgLangModel, exist_ok=True)

__all__ = [
    "EcgEncoderOutput",
    "EcgLangConfig",
    "EcgLangModel",
    "EcgLangOutput",
    "TextEncoderOutput",
    "load_model",
    "resolve_dtype",
    "torch_device",
]
