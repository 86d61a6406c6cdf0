"""The run's log files in the output folder (main process only): metrics.csv, validation.jsonl, config.yaml,
excluded_records.csv and skipped_records.csv; plus the TensorBoard helpers.

On resume, rows the interrupted run wrote after its last checkpoint are dropped (they are redone), and the
records it had already skipped are kept.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ecglang.errors import ConfigError

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
VALIDATION_LOG = "validation.jsonl"
SKIPPED_CSV = "skipped_records.csv"
EXCLUDED_CSV = "excluded_records.csv"
RESOLVED_CONFIG = "config.yaml"


class CsvLog:
    """Append-only CSV with a fixed header, flushed after every row (readable while the run goes on)."""

    def __init__(self, path: Path, columns: Sequence[str], keep_until_step: int) -> None:
        self.path, self.columns = path, list(columns)
        rows: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= keep_until_step]
        self.file = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")
        self.writer.writeheader()
        for r in rows:
            self.writer.writerow(r)
        self.file.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow({k: csv_value(v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def csv_value(v: Any) -> Any:
    """A float as its repr (NaN as an empty cell); anything else unchanged."""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def truncate_jsonl(path: Path, until_step: int) -> None:
    """Keep only the lines of a JSON-lines log whose `step` is at most `until_step`."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= until_step]
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def tensorboard_available() -> bool:
    """True when accelerate's TensorBoard tracker can run (the tensorboard package is importable)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_trackers(section: Any) -> list[str]:
    """The accelerate trackers of `logging`: `log_with` (any name `accelerate` knows: tensorboard, wandb, mlflow,
    comet_ml, aim, clearml, dvclive, ...; "all" for every installed one) plus TensorBoard when `tensorboard: true`
    and its package is importable. A named tracker whose package is missing is a `ConfigError`."""
    names = section.log_with
    names = [names] if isinstance(names, str) else list(names or [])
    if names:
        # accelerate is slow to import; loaded when a run starts
        import accelerate.utils
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        if "all" in names:
            names = [n for n in LOGGER_TYPE_TO_CLASS if getattr(accelerate.utils, f"is_{n}_available", bool)()]
        unknown = [n for n in names if n not in LOGGER_TYPE_TO_CLASS]
        if unknown:
            raise ConfigError(
                f"logging.log_with: unknown tracker(s) {unknown}; accelerate has {list(LOGGER_TYPE_TO_CLASS)}"
            )
        missing = [n for n in names if not getattr(accelerate.utils, f"is_{n}_available", lambda: True)()]
        if missing:
            raise ConfigError(f"logging.log_with: the package of tracker(s) {missing} is not installed")
    if section.tensorboard and "tensorboard" not in names and tensorboard_available():
        names.append("tensorboard")
    return names


def flat_dict(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as `{"a/b": value}` with scalar values (TensorBoard's hyper-parameter table)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_dict(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def write_excluded(output: Path, excluded: Sequence[tuple[str, str]]) -> Path:
    """`excluded_records.csv` (id, reason) in `output`: the records left out before training."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / EXCLUDED_CSV
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "reason"])
        w.writerows(excluded)
    return path


class RunLogs:
    """The output folder's logs. Only the main process writes; on the others every method is a no-op
    except `note_skipped`, which keeps the skipped records (for the result)."""

    def __init__(self, output: Path, main: bool) -> None:
        self.output, self.main = output, main
        self.skipped: dict[str, str] = {}
        self.csv: CsvLog | None = None
        self._skipped_file: Any = None
        self._skipped_writer: Any = None

    def open(
        self,
        columns: Sequence[str],
        resumed_step: int | None,
        config: Mapping[str, Any],
        excluded: Sequence[tuple[str, str]],
    ) -> None:
        """Start (or, with `resumed_step`, continue) the logs of a run."""
        if not self.main:
            return
        out = self.output
        # On resume, rows the interrupted run wrote after its last checkpoint are dropped (they are redone).
        self.csv = CsvLog(out / METRICS_CSV, columns, keep_until_step=resumed_step if resumed_step is not None else -1)
        if resumed_step is not None:
            truncate_jsonl(out / VALIDATION_LOG, resumed_step)
        else:
            (out / VALIDATION_LOG).write_text("", encoding="utf-8")
        (out / RESOLVED_CONFIG).write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        write_excluded(out, excluded)
        skipped_path = out / SKIPPED_CSV
        if resumed_step is not None and skipped_path.is_file():
            with skipped_path.open(newline="", encoding="utf-8") as f:
                self.skipped = {r["id"]: r["reason"] for r in csv.DictReader(f)}
        self._skipped_file = skipped_path.open("w", newline="", encoding="utf-8")
        self._skipped_writer = csv.writer(self._skipped_file)
        self._skipped_writer.writerow(["id", "reason"])
        self._skipped_writer.writerows(self.skipped.items())
        self._skipped_file.flush()

    def note_skipped(self, items: Sequence[tuple[str, str]]) -> None:
        """Log and list records without usable beats (each once)."""
        new = [(i, r) for i, r in items if i not in self.skipped]
        for i, r in new:
            self.skipped[i] = r
            logger.warning("skipped record %s: %s", i, r)
        if new and self._skipped_file is not None:
            self._skipped_writer.writerows(new)
            self._skipped_file.flush()

    def write_row(self, row: Mapping[str, Any]) -> None:
        """One row of metrics.csv."""
        if self.csv is not None:
            self.csv.write(row)

    def write_validation(self, step: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        """One line of validation.jsonl (every metric, per-label AUROCs included)."""
        if self.main:
            with (self.output / VALIDATION_LOG).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "epoch": epoch, **metrics}, default=float) + "\n")

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
        if self._skipped_file is not None:
            self._skipped_file.close()


__all__ = [
    "EXCLUDED_CSV",
    "METRICS_CSV",
    "RESOLVED_CONFIG",
    "SKIPPED_CSV",
    "VALIDATION_LOG",
    "CsvLog",
    "RunLogs",
    "csv_value",
    "flat_dict",
    "resolve_trackers",
    "tensorboard_available",
    "truncate_jsonl",
    "write_excluded",
]
