"""`EcgLangProcessor`: both inputs of an `EcgLangModel` from one object, as transformers' `CLIPProcessor` does
for images and text.

ECGs go through the checkpoint's `EcgProcessor` (its preprocessing contract, `processor_config.json`); report
texts through the checkpoint's tokenizer with the text tower's settings (length, sentences, lower-casing).
`EcgLangProcessor.from_pretrained` reads only those files: no model weights are loaded.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.encoders.checkpoint import (
    checkpoint_tokenizer,
    load_config,
    read_processor_contract,
    resolve_checkpoint,
    resolve_model_name,
)
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.ecg_processing import (
    PROCESSOR_CONFIG_NAME,
    EcgBatch,
    EcgInput,
    EcgProcessor,
    check_call_options,
    demographic_tensors,
    ecg_inputs,
)
from ecglang.encoders.text_encoder import tokenize_reports
from ecglang.errors import ConfigError, ModelLoadError

# The text settings of a processor saved on its own (in a checkpoint they are config.json's `text_tower`).
TEXT_PROCESSOR_NAME = "text_processor.json"
# The keywords of `EcgLangProcessor.__call__`, and the names other processors give them (CLIPProcessor's).
CALL_KEYWORDS = ("ecgs", "texts", "errors", "rng", "return_tensors")
_OTHER_NAMES = {"images": "ecgs", "ecg": "ecgs", "records": "ecgs", "text": "texts"}


class EcgLangProcessor:
    """`processor(ecgs=[...], texts=[...])` → one dict with the ECG tensors and the tokenized texts."""

    def __init__(
        self, ecg_processor: EcgProcessor, tokenizer: Any, text_config: Mapping[str, Any], demographics: bool = False
    ) -> None:
        self.ecg_processor = ecg_processor
        self.tokenizer = tokenizer
        self.text_config = dict(text_config)
        # The model's tower reads age and sex (`ecg_tower.demographics`): the ECG tensors then carry `age`/`sex`
        # from each record's metadata (NaN / 0 when its header has none).
        self.demographics = bool(demographics)

    @classmethod
    def from_model(cls, model: Any) -> EcgLangProcessor:
        """The processor of a loaded `EcgLangModel` (its contract and its text tower's tokenizer)."""
        return cls(model.get_processor(), model.get_tokenizer(), model.config.text_tower,
                   demographics=bool(model.config.ecg_tower.get("demographics", False)))  # fmt: skip

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, **hub: Any) -> EcgLangProcessor:
        """From a checkpoint folder, Hub id or bundled name (None: the bundled default), without its weights; or
        from a folder that `EcgLangProcessor.save_pretrained` wrote."""
        name = resolve_model_name(name_or_path)
        own = Path(name).expanduser()
        if (own / TEXT_PROCESSOR_NAME).is_file() and not (own / "config.json").is_file():
            return cls._from_saved(own)
        folder = resolve_checkpoint(name, **hub)
        config = load_config(folder)
        read_processor_contract(folder, config)
        if config.processor is None:
            raise ConfigError(f"{folder}: this checkpoint has no preprocessing contract (processor_config.json)")
        return cls(EcgProcessor.from_dict(dict(config.processor)), checkpoint_tokenizer(folder), config.text_tower,
                   demographics=bool(config.ecg_tower.get("demographics", False)))  # fmt: skip

    def __call__(
        self,
        ecgs: EcgInput | Sequence[EcgInput] | None = None,
        texts: str | Sequence[str] | None = None,
        *,
        errors: Literal["raise", "collect"] = "raise",
        rng: np.random.Generator | int | None = None,
        return_tensors: Literal["pt"] | None = None,
        **unknown: Any,
    ) -> dict[str, torch.Tensor]:
        """ECG tensors (`EcgProcessor.__call__`) and/or text tensors (`input_ids`, `attention_mask`, `token_mask`,
        `sentence_ids`) in one dict, ready for `model(**batch)`.

        `ecgs`: `Ecg` records and/or paths of record files (read inside the call, so that with `errors="collect"`
        an unreadable file is a listed failure, not the end of the batch); one alone is a batch of one.
        `texts`: one report per ECG, or one string. Given both, `texts[i]` is the report of `ecgs[i]`: with
        `errors="collect"`, the reports of the ECGs left out are left out too, so the rows stay pairs.
        `errors` ("raise" or "collect") and `rng` (for `crop="random"`) are `EcgProcessor.__call__`'s;
        `return_tensors`: "pt" or None (PyTorch tensors, the only kind returned). Any other keyword is a
        `TypeError` (CLIPProcessor's `text=` is `texts=` here)."""
        if unknown:
            raise TypeError(f"EcgLangProcessor got unexpected keyword argument(s) {_named(unknown)}; it takes ecgs, "
                            "texts, errors, rng and return_tensors")  # fmt: skip
        check_call_options("EcgLangProcessor", errors, return_tensors)
        if ecgs is None and texts is None:
            raise ConfigError("EcgLangProcessor needs ecgs, texts or both")
        out: dict[str, torch.Tensor] = EcgBatch({})
        if ecgs is not None:
            records = ecg_inputs(ecgs, "EcgLangProcessor")
            out = self.ecg_processor(records, errors=errors, rng=rng)
            if self.demographics:
                out.update(demographic_tensors(out.metadata))
        if texts is not None:
            texts = [texts] if isinstance(texts, str) else list(texts)
            if ecgs is not None:
                if len(texts) != len(records):
                    raise ConfigError(f"{len(records)} ECGs but {len(texts)} texts: give one report per ECG")
                texts = [texts[i] for i in out.indices]  # the reports of the ECGs kept
            out.update(tokenize_reports(self.tokenizer, texts, self.text_config))
        return out

    @classmethod
    def _from_saved(cls, folder: Path) -> EcgLangProcessor:
        path = folder / TEXT_PROCESSOR_NAME
        try:
            saved = parse_json(path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict) or not isinstance(saved.get("text_tower"), dict):
                raise JsonInputError("expected an object with a 'text_tower' object")
            text = EcgLangConfig(text_tower=saved["text_tower"]).text_tower  # checked as a model config's
        except (OSError, UnicodeDecodeError, JsonInputError, ConfigError) as exc:
            raise ModelLoadError(path, f"not a saved EcgLangProcessor: {exc}") from None
        ecg = EcgProcessor.from_pretrained(folder / PROCESSOR_CONFIG_NAME)
        return cls(ecg, checkpoint_tokenizer(folder), text, demographics=saved.get("demographics") is True)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `processor_config.json` (the ECG contract), the tokenizer files and `text_processor.json` (the
        text settings), which `EcgLangProcessor.from_pretrained(save_directory)` reads back. In a checkpoint
        folder the text settings also live in config.json."""
        self.ecg_processor.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(str(save_directory))
        settings = {"text_tower": self.text_config, "demographics": self.demographics}
        (Path(save_directory) / TEXT_PROCESSOR_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    def __repr__(self) -> str:
        return f"EcgLangProcessor(ecg={self.ecg_processor!r}, tokenizer={type(self.tokenizer).__name__})"


def _named(unknown: Mapping[str, Any]) -> str:
    """The unknown keywords of a call, each with the accepted one it most likely meant."""
    named = []
    for key in sorted(unknown):
        meant = _OTHER_NAMES.get(key) or next(iter(difflib.get_close_matches(key, CALL_KEYWORDS, n=1)), None)
        named.append(f"{key!r}" + (f" (did you mean {meant}=?)" if meant else ""))
    return ", ".join(named)
