"""`EcgProcessor`: preprocessing + beat tokenization for a batch of records → model input tensors.

Saved next to checkpoints as `processor_config.json`, so a model always sees its inputs prepared the
way it was trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ecglang.beats.tokenize import BeatConfig, BeatTokens, tokenize_beats
from ecglang.errors import ConfigError, EcgLangError, ModelLoadError, RecordFailure
from ecglang.record.demographics import metadata_demographics
from ecglang.record.ecg import Ecg, record_id_of
from ecglang.record.leads import N_LEADS
from ecglang.signal.preprocess import PreprocessConfig, preprocess

PROCESSOR_CONFIG_NAME = "processor_config.json"
# 2: preprocess.edge_pad is written (format 1 files filtered with the "odd" edge).
# 3: beats.lead_weighting, beats.lead_combine and beats.edge_rule are written (files of format 1-2 detect with
#    "equal", "mean" and "start"), and preprocess.flat_block_ptp_mv/flat_block_fraction (files of format 1-2 mask no
#    mostly flat lead: ptp 0).
_FORMAT_VERSION = 3

# Row order of the model input, as indices into the canonical order (I, II, III, aVR, aVL, aVF, V1-V6).
# "mimic": MIMIC-IV-ECG's order (aVF before aVL), which MERL was trained on and swaps every input into.
LEAD_ORDERS: dict[str, list[int]] = {
    "canonical": list(range(N_LEADS)),
    "mimic": [0, 1, 2, 3, 5, 4, *range(6, N_LEADS)],
}


#: What the processors take for one record: an `Ecg`, or the path of a file that `load_ecg` reads.
EcgInput = Ecg | str | os.PathLike


def ecg_inputs(ecgs: Any, owner: str) -> list[EcgInput]:
    """`ecgs` (one record or path, or a sequence of them) as a list, checked before anything is read: a `TypeError`
    naming `owner`, the input's position and what to do for anything else (an array: wrap it as an `Ecg`)."""
    if isinstance(ecgs, (Ecg, str, os.PathLike)):
        return [ecgs]
    # a mapping or a DataFrame iterates its keys or column names, bytes its byte values: none is a list of inputs
    if not (_is_array(ecgs) or _is_table(ecgs) or isinstance(ecgs, (bytes, Mapping))):
        try:
            items = list(ecgs)
        except TypeError:
            items = None
        if items is not None:
            for i, item in enumerate(items):
                if not isinstance(item, (Ecg, str, os.PathLike)):
                    raise TypeError(f"{owner}: ecgs[{i}] is {_not_a_record(item)}")
            return items
    raise TypeError(f"{owner}: ecgs is {_not_a_record(ecgs, alone=True)}")


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor))


def _is_table(value: Any) -> bool:
    """A pandas DataFrame or Series (not imported here): samples × leads, as a CSV export holds an ECG."""
    return hasattr(value, "to_numpy") and hasattr(value, "shape") and not _is_array(value)


def _not_a_record(value: Any, alone: bool = False) -> str:
    """The end of `ecg_inputs`' message: what `value` is and what to pass instead."""
    if _is_table(value) and hasattr(value, "columns"):
        return (
            f"a {type(value).__name__} of shape {tuple(value.shape)}: wrap it as ecglang.Ecg.from_array("
            "df.to_numpy().T, fs, leads=list(df.columns)) (rows: samples, columns: leads, in mV)"
        )
    if _is_array(value):
        return (
            f"an array of shape {tuple(value.shape)}, which carries no sampling rate: wrap it as ecglang.Ecg(x, fs) "
            "([12, n_samples] in mV, canonical lead order; ecglang.Ecg.from_array(x, fs, leads=[...]) for other "
            "leads), or read the file with a path"
        )
    name = type(value).__name__
    what = "an Ecg record, a file path or a list of them" if alone else "an Ecg record or a file path"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}, not {what}"


def check_call_options(owner: str, errors: Any, return_tensors: Any) -> None:
    """`ConfigError` for an `errors=` or `return_tensors=` value that a processor call does not take."""
    if errors not in ("raise", "collect"):
        raise ConfigError(f"errors must be 'raise' or 'collect', got {errors!r}")
    if return_tensors not in (None, "pt"):
        raise ConfigError(
            f"{owner} returns PyTorch tensors only: return_tensors must be 'pt' (or left out), got {return_tensors!r}"
        )


class EcgBatch(dict):
    """The model input: a `dict[str, torch.Tensor]` (keys in docs/ARCHITECTURE.md, "Model input").

    Attributes (not keys, so `model(**batch)` sees only tensors):
        indices: input position of each batch row.
        record_ids: record id of each batch row.
        failures: records left out with `errors="collect"` (`RecordFailure`, stage "read" for a file that could
            not be read, "process" for a record that preprocessing refused; empty otherwise).
        failed_indices: input position of each failure.
        tokens: the `BeatTokens` of each row (R-peak indices, heart rate, ...).
        metadata: the `Ecg.metadata` of each row's record (as read, before preprocessing).
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        indices: list[int] | None = None,
        record_ids: list[str] | None = None,
        failures: list[RecordFailure] | None = None,
        tokens: list[BeatTokens] | None = None,
        failed_indices: list[int] | None = None,
        metadata: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(tensors)
        self.indices = indices or []
        self.record_ids = record_ids or []
        self.failures = failures or []
        self.failed_indices = failed_indices or []
        self.tokens = tokens or []
        self.metadata = metadata or []


def _require_bool(value: Any, field: str) -> bool:
    """A JSON boolean, or a `ConfigError`: `bool("no")` would be True."""
    if not isinstance(value, bool):
        raise ConfigError(f"processor config {field} must be true or false, got {value!r}")
    return value


class EcgProcessor:
    """Preprocess (`ecglang.signal.preprocess`) and tokenize (`ecglang.beats.tokenize`) records into batched tensors.

    Args:
        preprocess: preprocessing settings (default `PreprocessConfig()`).
        beats: beat settings (default `BeatConfig()`); every batch is padded to `beats.max_beats`.
        return_signal: also return the preprocessed `signal [B, 12, T]` (for the ResNet1d baseline
            tower; needs `preprocess.target_samples` so that rows share one length).
        lead_order: row order of the lead axis of every output tensor (`LEAD_ORDERS`): `"canonical"`, or
            `"mimic"` (aVL and aVF swapped, what MERL's weights expect). Records are read and preprocessed
            in canonical order; only the output rows move.
    """

    def __init__(
        self,
        preprocess: PreprocessConfig | None = None,
        beats: BeatConfig | None = None,
        return_signal: bool = False,
        lead_order: str = "canonical",
    ) -> None:
        self.preprocess_config = preprocess or PreprocessConfig()
        self.beat_config = beats or BeatConfig()
        self.return_signal = bool(return_signal)
        if lead_order not in LEAD_ORDERS:
            raise ConfigError(f"lead_order must be one of {sorted(LEAD_ORDERS)}, got {lead_order!r}")
        self.lead_order = lead_order
        if self.return_signal and self.preprocess_config.target_samples is None:
            raise ConfigError("return_signal=True needs PreprocessConfig.target_samples (one length per batch)")

    def __repr__(self) -> str:
        return f"EcgProcessor({json.dumps(self.to_dict())})"

    def process(self, ecg: Ecg, rng: np.random.Generator | int | None = None) -> tuple[Ecg, BeatTokens]:
        """Preprocess and tokenize one record. Raises `EcgQualityError` naming the record."""
        clean = preprocess(ecg, self.preprocess_config, rng=rng)
        return clean, tokenize_beats(clean, self.beat_config)

    def __call__(
        self,
        ecgs: EcgInput | Sequence[EcgInput],
        errors: Literal["raise", "collect"] = "raise",
        rng: np.random.Generator | int | None = None,
        return_tensors: Literal["pt"] | None = None,
    ) -> EcgBatch:
        """Process a batch into an `EcgBatch` (a dict of tensors).

        `ecgs`: `Ecg` records and/or paths of record files (str or `os.PathLike`, read here with `load_ecg`, only
        the part that preprocessing uses); one record or path alone is a batch of one. An array is a `TypeError`:
        wrap it as `ecglang.Ecg(x, fs)`. With `errors="raise"` the first bad record raises its typed error
        (naming the record or file). With `errors="collect"` unreadable files (stage "read") and bad records
        (stage "process") are left out of the tensors and listed in `batch.failures` (one `RecordFailure` each,
        their input positions in `batch.failed_indices`); `batch.indices` maps each row back to its input
        position. Only `EcgLangError`s are collected: anything else is a bug and propagates. `return_tensors`:
        "pt" or None (PyTorch tensors, the only kind returned), as transformers' processors take it.
        """
        check_call_options(type(self).__name__, errors, return_tensors)
        items = ecg_inputs(ecgs, type(self).__name__)
        generator = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        window = self.preprocess_config.read_window()  # a long file is read only as far as preprocessing uses it
        tokens: list[BeatTokens] = []
        signals: list[np.ndarray] = []
        indices: list[int] = []
        record_ids: list[str] = []
        metadata: list[dict[str, Any]] = []
        failures: list[RecordFailure] = []
        failed_indices: list[int] = []
        for i, item in enumerate(items):
            ecg = item if isinstance(item, Ecg) else None
            try:
                if ecg is None:
                    # here: the readers import wfdb and pandas, which `ecglang data` and `--help` must not wait for
                    from ecglang.record.io import load_ecg

                    ecg = load_ecg(item, window=window)
                clean, tok = self.process(ecg, rng=generator)
            except EcgLangError as exc:
                if errors == "raise":
                    raise
                failures.append(_failure(i, item, ecg, exc))
                failed_indices.append(i)
                continue
            tokens.append(tok)
            signals.append(clean.signal)
            indices.append(i)
            record_ids.append(ecg.record_id)
            metadata.append(ecg.metadata)
        tensors = self.collate(tokens, signals if self.return_signal else None)
        return EcgBatch(
            tensors, indices=indices, record_ids=record_ids, failures=failures, tokens=tokens,
            failed_indices=failed_indices, metadata=metadata,
        )  # fmt: skip

    def collate(self, tokens: list[BeatTokens], signals: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """Stack `BeatTokens` (and optionally preprocessed signals) into batch tensors.

        Rows are padded to `beats.max_beats` beats (zeros, `beat_mask` False). An empty list gives
        tensors with a batch dimension of 0.
        """
        n, length = self.beat_config.max_beats, self.beat_config.beat_len
        b = len(tokens)
        beats = np.zeros((b, n, N_LEADS, length), dtype=np.float32)
        beat_mask = np.zeros((b, n), dtype=bool)
        lead_mask = np.zeros((b, N_LEADS), dtype=bool)
        rr = np.zeros((b, n, 2), dtype=np.float32)
        times = np.zeros((b, n), dtype=np.float32)
        for i, tok in enumerate(tokens):
            if tok.beats.shape[1:] != (N_LEADS, length) or tok.beats.shape[0] > n:
                raise ConfigError(
                    f"BeatTokens of shape {tok.beats.shape} do not fit this processor "
                    f"(max_beats={n}, beat_len={length})"
                )
            k = tok.beats.shape[0]
            beats[i, :k] = tok.beats
            beat_mask[i, :k] = tok.beat_mask
            rr[i, :k] = tok.rr
            times[i, :k] = tok.times
            lead_mask[i] = tok.lead_mask
        order = LEAD_ORDERS[self.lead_order]
        if order != LEAD_ORDERS["canonical"]:
            beats, lead_mask = beats[:, :, order], lead_mask[:, order]
        out = {
            "beats": torch.from_numpy(np.ascontiguousarray(beats)),
            "beat_mask": torch.from_numpy(beat_mask),
            "lead_mask": torch.from_numpy(np.ascontiguousarray(lead_mask)),
            "rr": torch.from_numpy(rr),
            "times": torch.from_numpy(times),
        }
        if signals is not None:
            if len(signals) != b:
                raise ConfigError(f"collate got {len(signals)} signals for {b} token sets")
            lengths = {s.shape for s in signals}
            if len(lengths) > 1:
                raise ConfigError(f"signals differ in shape {sorted(lengths)}; set PreprocessConfig.target_samples")
            t = self.preprocess_config.target_samples or (signals[0].shape[1] if signals else 0)
            stacked = np.stack(signals).astype(np.float32) if signals else np.zeros((0, N_LEADS, t), np.float32)
            if order != LEAD_ORDERS["canonical"]:
                stacked = np.ascontiguousarray(stacked[:, order])
            out["signal"] = torch.from_numpy(stacked)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {
            "processor_class": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "preprocess": self.preprocess_config.to_dict(),
            "beats": self.beat_config.to_dict(),
            "return_signal": self.return_signal,
        }
        if self.lead_order != "canonical":  # written only when set, so older contracts stay as they were
            d["lead_order"] = self.lead_order
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EcgProcessor:
        if not isinstance(d, dict):
            raise ConfigError(f"processor config must be a JSON object, got {type(d).__name__}")
        known = {"processor_class", "format_version", "preprocess", "beats", "return_signal", "lead_order"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown processor config key(s) {unknown}")
        if d.get("processor_class", cls.__name__) != cls.__name__:
            raise ConfigError(f"processor_class {d['processor_class']!r} is not {cls.__name__}")
        version = d.get("format_version", _FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError(f"processor config format_version must be an int, got {version!r}")
        if version > _FORMAT_VERSION:
            raise ConfigError(
                f"processor config format_version {d['format_version']} is newer than this ecglang "
                f"supports ({_FORMAT_VERSION}); upgrade ecglang"
            )
        # A file of format 1 was written before `edge_pad` existed: it keeps the edge filtering it was made with;
        # one of format 1-2 before the mostly-flat-lead rule and the lead weighting of R-peak detection: it keeps
        # the preprocessing and detection it was made with (each config's `SAVED_BEFORE` says which setting came
        # with which format). A dict without a format number (an override, a new model) reads as the current
        # format: the defaults.
        return cls(
            preprocess=PreprocessConfig.from_saved(d.get("preprocess", {}), format_version=version),
            beats=BeatConfig.from_saved(d.get("beats", {}), format_version=version),
            return_signal=_require_bool(d.get("return_signal", False), "return_signal"),
            lead_order=d.get("lead_order", "canonical"),
        )

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write `processor_config.json` into `save_directory` (created if needed); returns its path."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PROCESSOR_CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> EcgProcessor:
        """Load from a folder holding `processor_config.json` (or the file itself).

        Raises `ModelLoadError` when the file is missing or not JSON, `ConfigError` for bad values.
        """
        path = Path(directory)
        if path.is_dir():
            path = path / PROCESSOR_CONFIG_NAME
        if not path.is_file():
            raise ModelLoadError(path, f"no {PROCESSOR_CONFIG_NAME} found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(path, f"cannot read processor config: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def _failure(position: int, item: EcgInput, ecg: Ecg | None, exc: EcgLangError) -> RecordFailure:
    """The `RecordFailure` of input `position`: a file that could not be read (`ecg` None: stage "read", named
    by the id its record would have had), or a record that preprocessing refused (stage "process")."""
    reason = getattr(exc, "problem", None) or str(exc)
    if ecg is None:
        path = str(getattr(exc, "path", None) or item)
        return RecordFailure(record_id_of(item), "read", reason, path=path)
    path = str(ecg.metadata.get("source_path") or getattr(exc, "path", None) or "")
    return RecordFailure(ecg.record_id or path or f"#{position}", "process", reason, path=path)


def demographic_tensors(metadata: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """`{"age": float32 [B] (NaN unknown), "sex": int64 [B] (0 unknown, 1 male, 2 female)}` from each record's
    `Ecg.metadata` (header fields "age"/"sex"): the side input of a tower with `demographics: true`, which
    every other tower ignores."""
    codes = [metadata_demographics(m) for m in metadata]
    return {
        "age": torch.tensor([c[0] for c in codes], dtype=torch.float32),
        "sex": torch.tensor([c[1] for c in codes], dtype=torch.long),
    }
