"""Evaluation reports: JSON result trees, Markdown tables of macro figures with CIs, ROC and probe figures,
and the files of an evaluation run (`write_outputs`: results.json, results.md, figures, failures.csv,
missing.csv).

Figures are drawn on `matplotlib.figure.Figure` objects (Agg canvas, no pyplot state), so they work
headless and from worker threads.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.errors import ConfigError
from ecglang.evaluation.metrics import CI, EvalResult, auroc, check_pair, roc_curve, skip_reason
from ecglang.evaluation.results import MODEL, RANDOM, EvaluationRun, RecordScores
from ecglang.record.leads import N_LEADS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = ["cut_prompts_text", "left_out_columns", "markdown_table", "missing_rows", "paired_markdown",
           "plot_probe_curve", "plot_roc_curves", "results_markdown", "to_jsonable", "write_json",
           "write_outputs"]  # fmt: skip

_METRICS = ("macro_auroc", "macro_max_f1", "macro_accuracy")
_METRIC_TITLES = {
    "macro_auroc": "macro AUROC",
    "macro_max_f1": "macro max-F1",
    "macro_accuracy": "macro accuracy",
}


# ---------------------------------------------------------------------------------------------------------
# JSON


def to_jsonable(obj: Any, where: str = "$") -> Any:
    """A JSON-safe copy of a result tree.

    `EvalResult`/`CI` (and anything with `to_dict`) become dicts, other dataclasses their fields, numpy
    scalars/arrays Python numbers/lists, paths strings, mapping keys strings (a probe fraction 0.1 becomes
    `"0.1"`), and NaN/inf `null`. Anything else is a `ConfigError` naming where it sits in the tree.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict(), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return {_key(k, where): to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), where)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(items)]
    raise ConfigError(f"cannot write {type(obj).__name__} at {where} to JSON")


def _key(k: Any, where: str) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (bool, int, float, np.integer, np.floating)):
        return str(k.item() if isinstance(k, np.generic) else k)
    raise ConfigError(f"cannot write a {type(k).__name__} mapping key at {where} to JSON")


def write_json(result_tree: Any, path: str | os.PathLike) -> Path:
    """Write a result tree (dicts/lists of `EvalResult`, `CI`, numbers, arrays) as indented JSON.

    The file is written next to its destination and renamed into place, so an interrupted run never
    leaves half a file. Parent folders are created. Returns the path.
    """
    path = Path(path)
    text = json.dumps(to_jsonable(result_tree), indent=2, allow_nan=False, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Markdown


Cell = EvalResult | CI | float | None


def _ci_of(cell: Cell, metric: str) -> CI | None:
    if cell is None:
        return None
    if isinstance(cell, EvalResult):
        return getattr(cell, metric)
    if isinstance(cell, CI):
        return cell
    if isinstance(cell, (int, float, np.floating, np.integer)):
        return CI(float(cell), math.nan, math.nan, 0)
    raise ConfigError(f"a table cell must be an EvalResult, CI or number, got {type(cell).__name__}")


def _columns(tree: Mapping[str, Any]) -> list[str] | None:
    """Column names of a nested `{row: {column: cell}}` tree (None for a flat `{row: cell}` one)."""
    nested = [isinstance(v, Mapping) for v in tree.values()]
    if not any(nested):
        return None
    if not all(nested):
        raise ConfigError("results must map every row to a cell, or every row to a {column: cell} dict")
    cols: list[str] = []
    for v in tree.values():
        cols += [str(c) for c in v if str(c) not in cols]
    return cols


def markdown_table(
    results: Mapping[str, Cell | Mapping[str, Cell]],
    baseline: Mapping[str, Cell | Mapping[str, Cell]] | None = None,
    *,
    metric: str = "macro_auroc",
    model_label: str = "model",
    baseline_label: str = "random encoder",
    row_header: str = "label set",
    digits: int = 3,
    footnotes: bool = True,
) -> str:
    """A Markdown table of "macro AUROC (95 % CI)" cells.

    `results` is either flat (`{row: EvalResult}` → one column) or nested (`{row: {column: EvalResult}}`,
    e.g. rows = label sets, columns = prompt sources). `baseline` has the same shape (e.g. the randomly
    initialised encoder); each column then appears twice side by side, `"<column> · model"` and
    `"<column> · random encoder"`. Cells may also be `CI`s or bare numbers; missing ones show "—".
    With `footnotes`, classes skipped in a row (single-valued in the evaluated records) are listed.
    """
    if metric not in _METRICS:
        raise ConfigError(f"metric must be one of {_METRICS}, got {metric!r}")
    if not results:
        raise ConfigError("markdown_table got no results")
    cols = _columns(results)
    base_cols = _columns(baseline) if baseline else None
    if baseline and (cols is None) != (base_cols is None):
        raise ConfigError("results and baseline must both be flat or both nested")
    level = f"{100 * (1 - _first_alpha(results)):g} % CI"
    col_keys = cols if cols is not None else [None]
    for c in base_cols or []:
        if c not in col_keys:
            col_keys.append(c)
    sources = [("model", results)] + ([("baseline", baseline)] if baseline else [])

    def label(c: str | None, which: str) -> str:
        tag = model_label if which == "model" else baseline_label
        return tag if c is None else (f"{c} · {tag}" if baseline else c)

    header = [row_header] + [label(c, w) for c in col_keys for w, _ in sources]
    rows = list(results) + [r for r in (baseline or {}) if r not in results]
    lines = [
        f"**{_METRIC_TITLES[metric]} ({level})**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|",
    ]
    notes: list[str] = []
    thinned: list[str] = []  # rows whose CI resamples averaged over fewer classes than the point
    for r in rows:
        cells = [str(r)]
        skipped_in: dict[str, list[str]] = {}  # skipped-classes text → model columns it applies to
        for c in col_keys:
            for which, tree in sources:
                entry = tree.get(r) if tree else None
                cell = entry.get(c) if (c is not None and isinstance(entry, Mapping)) else entry
                ci = _ci_of(cell, metric)
                cells.append("—" if ci is None else ci.format(digits))
                if isinstance(cell, EvalResult) and cell.skipped and which == "model":
                    text = "; ".join(f"{k} ({v})" for k, v in cell.skipped.items())
                    skipped_in.setdefault(text, []).append(str(c))
        lines.append("| " + " | ".join(cells) + " |")
        for text, where in skipped_in.items():
            # name the columns only when the skipped classes differ between them
            scope = "" if len(skipped_in) == 1 or col_keys == [None] else f" [{', '.join(where)}]"
            notes.append(f"- {r}{scope}: {text}")
        counts = _classes_per_resample(results.get(r))
        if counts and counts["min"] < counts["of"]:
            thinned.append(f"- {r}: {counts['min']}–{counts['of']} of its {counts['of']} classes "
                           f"(mean {counts['mean']:.1f})")  # fmt: skip
    if footnotes and notes:
        lines += ["", "Classes left out of the macro figures (each with the reason):"]
        lines += notes
    if footnotes and thinned:
        lines += [
            "",
            "Classes per resample in the CIs: a class drops out of a resample that draws none of its "
            "positives (or negatives), so these CIs average over fewer classes than their point figure:",
        ]
        lines += thinned
    return "\n".join(lines) + "\n"


def _classes_per_resample(entry: Any) -> dict[str, Any] | None:
    """`meta["classes_per_resample"]` of a row's first `EvalResult` (the columns share the records and labels)."""
    for cell in entry.values() if isinstance(entry, Mapping) else [entry]:
        if isinstance(cell, EvalResult):
            return cell.meta.get("classes_per_resample")
    return None


def _first_alpha(tree: Mapping[str, Any]) -> float:
    for v in tree.values():
        for cell in v.values() if isinstance(v, Mapping) else [v]:
            if isinstance(cell, EvalResult):
                return cell.alpha
    return 0.05


# ---------------------------------------------------------------------------------------------------------
# figures


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | os.PathLike, dpi: int) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def plot_roc_curves(
    y_true: Any,
    scores_by_source: Mapping[str, Any],
    label_names: Sequence[str] | None,
    out_png: str | os.PathLike,
    title: str = "",
    *,
    dpi: int = 110,
) -> Path:
    """One figure for a label set: a grid with one ROC panel per class and one line per score source.

    `scores_by_source` maps a source name (e.g. "model", "random encoder") to its `[N, C]` scores
    against the same `y_true`. Each legend entry carries that source's AUROC; a class with a single value
    gets an empty panel saying why. Returns the PNG path.
    """
    if not scores_by_source:
        raise ConfigError("plot_roc_curves needs at least one score source")
    checked = {}
    for name, scores in scores_by_source.items():
        try:
            y, s, names = check_pair(y_true, scores, label_names)
        except ConfigError as exc:
            raise ConfigError(f"scores of source {name!r}: {exc}") from None
        checked[name] = s
    n_cls = y.shape[1]
    ncols = min(n_cls, math.ceil(math.sqrt(n_cls)))
    nrows = math.ceil(n_cls / ncols)
    fig = _new_figure(2.7 * ncols + 0.3, 2.6 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        if j >= n_cls:
            ax.set_axis_off()
            continue
        ax.set_title(names[j], fontsize=8)
        ax.plot([0, 1], [0, 1], ls=":", lw=0.8, color="0.6")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.tick_params(labelsize=6)
        reason = skip_reason(int(y[:, j].sum()), y.shape[0])
        if reason:
            msg = f"skipped:\n{reason}"
            ax.text(0.5, 0.5, msg, ha="center", va="center", fontsize=7, color="0.4", transform=ax.transAxes)
            continue
        for name, s in checked.items():
            fpr, tpr, _ = roc_curve(y[:, j], s[:, j])
            ax.plot(fpr, tpr, lw=1.1, label=f"{name} {auroc(y[:, j], s[:, j]):.3f}")
        ax.legend(fontsize=6, loc="lower right", frameon=False)
        if j % ncols == 0:
            ax.set_ylabel("TPR", fontsize=7)
        if j >= n_cls - ncols:
            ax.set_xlabel("FPR", fontsize=7)
    fig.suptitle(title or "ROC curves", fontsize=11)
    fig.tight_layout()
    return _save(fig, out_png, dpi)


def plot_probe_curve(
    curves: Mapping[Any, Any],
    out_png: str | os.PathLike,
    title: str = "Linear probe",
    *,
    metric: str = "macro_auroc",
    dpi: int = 110,
) -> Path:
    """Macro figure vs fraction of labelled training data, with CI bars, one line per feature source.

    `curves` is either one probe result (`{fraction: EvalResult | CI}`, as `linear_probe` returns) or
    several (`{"model": {...}, "random encoder": {...}}`). Fractions go on a log axis. Returns the PNG path.
    """
    if metric not in _METRICS:
        raise ConfigError(f"metric must be one of {_METRICS}, got {metric!r}")
    if not curves:
        raise ConfigError("plot_probe_curve got no results")
    series = curves if all(isinstance(v, Mapping) for v in curves.values()) else {"model": curves}
    fig = _new_figure(5.5, 4.0)
    ax = fig.subplots()
    for name, points in series.items():
        try:
            rows = sorted((float(f), _ci_of(v, metric)) for f, v in points.items())
        except (TypeError, ValueError):
            raise ConfigError(f"probe curve {name!r}: keys must be label fractions (numbers)") from None
        x = np.array([f for f, _ in rows])
        p = np.array([ci.point for _, ci in rows])
        lo = np.array([ci.low for _, ci in rows])
        hi = np.array([ci.high for _, ci in rows])
        # no interval (n_boot=0) → a zero-length bar rather than a NaN that hides the point
        err = np.nan_to_num(np.vstack([p - lo, hi - p]), nan=0.0)
        ax.errorbar(x, p, yerr=err, marker="o", capsize=3, lw=1.3, label=str(name))
        for xi, pi in zip(x, p, strict=True):
            if np.isfinite(pi):
                ax.annotate(f"{pi:.3f}", (xi, pi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    fractions = sorted({float(f) for points in series.values() for f in points})
    ax.set_xticks(fractions, [f"{100 * f:g} %" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("labelled training records used")
    ax.set_ylabel(_METRIC_TITLES[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, out_png, dpi)


# ---------------------------------------------------------------------------------------------------------
# the files of an evaluation run


def _cells(run: EvaluationRun, which: str) -> dict[str, dict[str, EvalResult]]:
    out: dict[str, dict[str, EvalResult]] = {}
    for name, entry in run.tree["label_sets"].items():
        out[name] = {src: res[which] for src, res in entry.get("sources", {}).items() if which in res}
    return out


def recall_cell(m: dict, k: int) -> str:
    """ "0.222 (0.074–0.370)": recall@k with its bootstrap CI over queries when the result has one; "—" where
    k is not below the items (recall 1 by construction, for any encoder)."""
    if k >= m.get("n_items", math.inf):
        return "—"
    ci = m.get(f"recall@{k}_ci")
    return f"{m[f'recall@{k}']:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def results_markdown(run: EvaluationRun) -> str:
    """`results.md`: macro AUROC / max-F1 tables (rows = label sets, columns = sources × {model, random}),
    record counts, prompt-source notes, linear probe and retrieval tables."""
    tree = run.tree
    proto = tree["protocol"]
    lines = [
        "# ecglang zero-shot evaluation",
        "",
        f"- model: `{tree['model']['source']}` ({tree['model']['ecg_tower'].get('type')} ECG tower); "
        f"random baseline: same architecture, seed {tree['random_baseline']['random_seed']} "
        "(ECG tower and projection heads random, text tower shared)",
        f"- {_records_text(tree)}{_leads_text(proto)}; preprocessing: `{proto['preprocess']}`; "
        + f"score: {proto['score']}",
        f"- {proto['ci']}, {proto['n_boot']} resamples, seed {proto['seed']}"
        + (f"; at most {proto['limit']} records per label set (seeded sample)" if proto["limit"] else ""),
        "",
    ]
    model_cells, random_cells = _cells(run, MODEL), _cells(run, RANDOM)
    if any(model_cells.values()):
        for metric in ("macro_auroc", "macro_max_f1"):
            lines += [markdown_table(model_cells, random_cells, metric=metric, baseline_label="random"), ""]
    else:
        lines += ["No label set had records to evaluate.", ""]
    lines += paired_markdown(tree)
    lines += [
        "## Records",
        "",
        "| label set | part | rows in labels file | found on disk | missing | left out by limit | failed | evaluated |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in tree["label_sets"].items():
        r = entry["records"]
        lines.append(
            f"| {name} | {entry['part']} | {r['rows']} | {r['found']} | {r['missing']} | {r['left_out_by_limit']} "
            f"| {r['failed']} | {r['evaluated']} |"
        )
    notes = []
    for name, entry in tree["label_sets"].items():
        if entry.get("status"):
            notes.append(f"- {name}: {entry['status']}")
        for column, why in (entry.get("notes") or {}).get("columns_not_labels", {}).items():
            notes.append(f"- {name}: column {column!r} of the labels CSV is not a label column: {why}")
        if text := left_out_columns(name, entry):
            notes.append(f"- {text}")
        if (entry.get("notes") or {}).get("folds_not_applied"):
            notes.append(f"- {name}: {entry['notes']['folds_not_applied']}")
        for src, res in entry.get("sources", {}).items():
            if res.get("labels_missing"):
                notes.append(
                    f"- {name} · {src}: no text for {len(res['labels_missing'])} label(s), skipped for this "
                    f"source (its macro figures average over the others): {', '.join(res['labels_missing'])}"
                )
            if res.get("suspect"):
                notes.append(f"- {name} · {src}: entries flagged as suspect: "
                             + "; ".join(f"{c} ({why})" for c, why in res["suspect"].items()))  # fmt: skip
            if res.get("note") or res.get("status"):
                notes.append(f"- {name} · {src}: {res.get('status') or res.get('note')}")
        notes += [f"- {text}" for text in cut_prompts_text(name, entry)]
        if entry.get("roc_labels"):
            notes.append(
                f"- {name}: the ROC figure shows the labels every source scored: {', '.join(entry['roc_labels'])}"
            )
    if notes:
        lines += ["", "## Notes", "", *notes]
    probe_model = {n: e["probe"]["model"] for n, e in tree["label_sets"].items() if e.get("probe", {}).get("model")}
    if probe_model:
        probe_random = {n: tree["label_sets"][n]["probe"]["random"] for n in probe_model}
        lines += ["", "## Linear probe", ""]
        lines += [_probe_line(n, tree["label_sets"][n]["probe"]) for n in probe_model]
        lines += ["", markdown_table(probe_model, probe_random, baseline_label="random", row_header="label set")]
    skipped_probe = [f"- {n}: {e['probe']['status']}" for n, e in tree["label_sets"].items()
                     if e.get("probe", {}).get("status")]  # fmt: skip
    if skipped_probe:
        lines += ["", "Linear probe not run:", *skipped_probe]
    ret = tree.get("retrieval")
    if ret:
        lines += ["", "## Retrieval", ""]
        if ret.get("status"):
            lines.append(ret["status"])
        else:
            lines.append(
                f"{ret['pairs']} held-out PTB-XL ECG–report pairs (folds {ret['folds']}; "
                f"{ret['dropped_duplicate_reports']} pairs whose report repeats an earlier one dropped, "
                f"{ret['dropped_empty_reports']} without report); chance recall@1 = {ret['chance_recall@1']:.3f}"
                + ("." if ret["pairs"] > 10 else f"; recall@k for k ≥ {ret['pairs']} is 1 for any encoder (—).")
            )
            lines += [
                "",
                "| direction | encoder | recall@1 | recall@5 | recall@10 | median rank |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for direction in ("ecg_to_report", "report_to_ecg"):
                for key in (MODEL, RANDOM):
                    m = ret[key][direction]
                    cells = " | ".join(recall_cell(m, k) for k in (1, 5, 10))
                    lines.append(f"| {direction.replace('_', ' ')} | {key} | {cells} | {m['median_rank']:g} |")
    lines += ["", "## Failures", ""]
    if run.failures:
        lines.append(f"{len(run.failures)} record(s) could not be read or processed and were left out (failures.csv):")
        lines += [f"- `{f.record}` [{f.stage}]: {f.reason}" for f in run.failures[:20]]
        if len(run.failures) > 20:
            lines.append(f"- ... and {len(run.failures) - 20} more")
    else:
        lines.append("None: every record found on disk was read and processed.")
    return "\n".join(lines) + "\n"


def left_out_columns(name: str, entry: Mapping[str, Any]) -> str | None:
    """`"<name>: label column(s) 'X' are not codes of prompt set 'Y': not evaluated ..."` for the label columns of a
    label set (its `results.json` entry) that its prompt set lacks, and `"prompt-set code(s) 'Z' have no 0/1
    column ..."` for the codes its split file lacks; None when there are none. In results.md's Notes and, from
    the CLI, on stderr: those labels are not in the macro figures."""
    notes = entry.get("notes") or {}
    columns, codes = notes.get("columns_without_prompts"), notes.get("prompts_without_column")
    texts = []
    if columns:
        text = (f"label column(s) {', '.join(map(repr, columns))} are not codes of prompt set "
                f"{notes.get('prompt_set', name)!r}: not evaluated")  # fmt: skip
        if "id_column" in notes:  # a labels CSV, whose column names can be their own labels
            text += " (leave out --prompt-set to score every column on its own name)"
        texts.append(text)
    if codes:  # a split file without a column the prompt set has: that class is in no figure
        texts.append(f"prompt-set code(s) {', '.join(map(repr, codes))} have no 0/1 column in the split: not evaluated")
    return f"{name}: " + "; ".join(texts) if texts else None


def cut_prompts_text(name: str, entry: Mapping[str, Any]) -> list[str]:
    """`"<name> · <source>: N prompt(s) longer than the text tower reads (96 tokens) ..."`, one line per prompt source
    of a label set (its `results.json` entry) with prompts the text tower cut at its max_length
    (`protocol.cut_prompts`). In results.md's Notes and, from the CLI, on stderr: the figures are for the cut
    text, not the text the prompt list in results.json shows."""
    lines = []
    for src, res in (entry.get("sources") or {}).items():
        items = [(code, c) for code, cut in (res.get("truncated_prompts") or {}).items() for c in cut]
        if not items:
            continue
        shown = ", ".join(f"{code} ({c['tokens']} tokens, {c['dropped']} dropped)" for code, c in items[:6])
        more = f" and {len(items) - 6} more" if len(items) > 6 else ""
        lines.append(f"{name} · {src}: {len(items)} prompt(s) longer than the text tower reads "
                     f"({items[0][1]['read']} tokens), cut there, their ends never read: {shown}{more} "
                     "(the unread ends: truncated_prompts in results.json)")  # fmt: skip
    return lines


def missing_rows(name: str, entry: Mapping[str, Any], missing_csv: str | os.PathLike) -> str | None:
    """`"<name>: N of M labelled rows have no record on disk (listed in missing.csv)"`, with an id that may mean
    a record of another name ('00001' for '00001_hr'); None when every row has its record, or when the label set
    had none to evaluate (its status says so)."""
    records = entry.get("records") or {}
    if not records.get("missing") or entry.get("status"):
        return None
    reasons = records.get("missing_by_reason") or {}
    what = "have no record on disk" if set(reasons) <= {"not on disk"} else (
        "have no record to evaluate (" + ", ".join(f"{n} {why}" for why, n in reasons.items()) + ")")  # fmt: skip
    text = f"{name}: {records['missing']} of {records['rows']} labelled rows {what} (listed in {missing_csv})"
    near = (entry.get("notes") or {}).get("near_matches") or {}
    for rid, record in list(near.items())[:1]:
        text += (f"; {rid!r} may be the record {record!r} (ids match a record's path without extension, or its "
                 "file stem)")  # fmt: skip
    return text


def _records_text(tree: Mapping[str, Any]) -> str:
    """What the records are: the split part (and folds) of the published label sets; labels CSVs and
    header-labelled folders have no split part, so "split part: test" would misdescribe them."""
    proto, names = tree["protocol"], list(tree["label_sets"])
    split_sets = proto.get("part_applies_to", names)  # an older tree: every set was taken from a split
    folds = f", strat_folds {' '.join(map(str, proto['folds']))}" if proto.get("folds") else ""
    whole = [n for n in names if n not in split_sets]
    if not split_sets:
        return f"records: all of {', '.join(whole)} (no split part)"
    text = f"split part: `{proto['part']}`{folds}"
    return text + (f" ({', '.join(split_sets)}); all records of {', '.join(whole)}" if whole else "")


def _leads_text(proto: Mapping[str, Any]) -> str:
    """The header's leads clause when a lead subset was evaluated: a 1-lead table must not pass for a 12-lead one."""
    leads = proto.get("leads") or "all"
    if leads == "all":
        return ""
    n = len(str(leads).split(","))
    return f"; leads: `{leads}` only (the other {N_LEADS - n} masked, as if not recorded)"


def paired_markdown(tree: Mapping[str, Any], digits: int = 3) -> list[str]:
    """Lines of the paired-comparison table (`ecglang.evaluation.compare`); none when no set has one."""
    rows = []
    for name, entry in tree["label_sets"].items():
        for pair, res in entry.get("paired", {}).items():
            d = CI.from_dict(res["difference"])
            rows.append(
                f"| {name} | {pair} | {len(res['labels_with_both_classes'])} of {len(res['labels'])} "
                f"| {res['a_macro_auroc']:.{digits}f} | {res['b_macro_auroc']:.{digits}f} "
                f"| {d.format(digits)} | {'yes' if res['point_ge_0'] else 'no'} "
                f"| {'yes' if res['ci_contains_0'] else 'no'} | {res['verdict']} |"
            )
    if not rows:
        return []
    return [
        "## Paired comparison (model)",
        "",
        "Macro AUROC difference over the labels both sources scored that hold both classes among the records, "
        "with a paired 95 % bootstrap CI: the same resampled records for both sources. "
        "A − B ≥ 0: the point difference; CI contains 0: the sample cannot tell the two apart. Verdict, from "
        "the CI alone: better (the whole CI above 0), worse (the whole CI below 0), not distinguishable (the CI "
        "holds 0, whatever the point's sign).",
        "",
        "| label set | comparison | labels (AUROC) | A | B | A − B (95 % CI) | A − B ≥ 0 | CI contains 0 | verdict |",
        "|---|---|---:|---:|---:|:---:|:---:|:---:|---|",
        *rows,
        "",
    ]


def _probe_line(name: str, p: Mapping[str, Any]) -> str:
    def part(side: Mapping[str, Any]) -> str:
        folds = f", folds {side['folds']}" if side["folds"] else ""
        return f"`{side['part']}` ({side['records']} records{folds})"

    sizes = ", ".join(f"{f} = {r.meta.get('n_train')}" for f, r in p["model"].items())
    return (
        f"- {name}: train {part(p['train'])}, test {part(p['test'])}; training records per fraction: {sizes}; "
        f"features: {p['features']}"
    )


def remove_previous_outputs(out: Path, rewritten: Collection[str] = ()) -> list[str]:
    """Delete the files an earlier evaluation listed in `out/results.json` (its `outputs`): re-using an output
    folder left the earlier run's ROC plots and score tables beside the new results, as if they were its own.
    Only plain file names the earlier run wrote are removed; a user's other files stay. Returns the names
    removed that are not in `rewritten` (the files the new run writes again), for the caller to report."""
    try:
        earlier = parse_json((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, JsonInputError):
        return []  # no earlier run here, or not one of ours
    earlier = earlier.get("outputs", {}) if isinstance(earlier, dict) else {}
    removed = []
    for name in earlier.values() if isinstance(earlier, dict) else ():
        if isinstance(name, str) and name == Path(name).name and name not in ("", ".", ".."):
            path = out / name
            if path.is_file():
                path.unlink()
                if name not in rewritten:
                    removed.append(name)
    return removed


def _output_names(run: EvaluationRun) -> set[str]:
    """The file names `write_outputs` gives `run`'s outputs."""
    names = {"results.json", "results.md", "failures.csv", "missing.csv"}
    names |= {f"roc_{_safe(n)}.png" for n in run.roc} | {f"probe_{_safe(n)}.png" for n in run.probe_curves}
    return names | {f"scores_{_safe(n)}.csv" for n in run.record_scores}


def write_outputs(run: EvaluationRun, out_dir: str | Path) -> dict[str, Path]:
    """Write `results.json`, `results.md`, `roc_<label set>.png`, `probe_<label set>.png`,
    `failures.csv` and `missing.csv` into `out_dir`; returns `{name: path}`.

    An earlier evaluation's files in `out_dir` (those its results.json lists) are removed first, and a
    warning names those this run does not write again (e.g. another label set's `scores_*.csv`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_previous_outputs(out, rewritten=_output_names(run))
    if removed:
        log.warning("%s: removed %d file(s) of the earlier evaluation there that this run does not write: %s "
                    "(use a fresh --out to keep them)", out, len(removed), ", ".join(sorted(removed)))  # fmt: skip
    written: dict[str, Path] = {}
    for name, (y, scores, codes) in run.roc.items():
        path = plot_roc_curves(y, scores, codes, out / f"roc_{_safe(name)}.png", title=f"{name}: zero-shot ROC")
        run.tree["label_sets"][name]["roc_png"] = path.name
        written[f"roc_{name}"] = path
    for name, curves in run.probe_curves.items():
        path = plot_probe_curve(curves, out / f"probe_{_safe(name)}.png", title=f"{name}: linear probe")
        run.tree["label_sets"][name]["probe"]["png"] = path.name
        written[f"probe_{name}"] = path
    for name, table in run.record_scores.items():
        written[f"scores_{name}"] = write_record_scores(table, out / f"scores_{_safe(name)}.csv")
    failures_csv = out / "failures.csv"
    with failures_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record", "stage", "error", "label_sets"])
        writer.writerows((f.record, f.stage, f.reason, ";".join(f.label_sets)) for f in run.failures)
    written["failures"] = failures_csv
    missing_csv = out / "missing.csv"
    with missing_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label_set", "record_id", "path", "reason"])
        for name, items in run.missing.items():
            writer.writerows((name, m.record, m.path, m.reason) for m in items)
    written["missing"] = missing_csv
    run.tree["outputs"] = {k: p.name for k, p in written.items()} | {"results_md": "results.md"}
    written["results_json"] = write_json(run.tree, out / "results.json")
    md = out / "results.md"
    md.write_text(results_markdown(run), encoding="utf-8")
    written["results_md"] = md
    return written


def write_record_scores(table: RecordScores, path: Path) -> Path:
    """One row per (record, label, source, side): `record_id, label, truth, source, side, score`, long form
    because codes may hold any character (CinC classes are "A|B"); `pandas.pivot_table` makes it wide."""
    truth = {code: table.labels[:, j] for j, code in enumerate(table.label_codes)}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "label", "truth", "source", "side", "score"])
        for (source, side), (codes, scores) in table.scores.items():
            for j, code in enumerate(codes):
                writer.writerows(
                    (rid, code, int(t), source, side, f"{float(v):.6g}")
                    for rid, t, v in zip(table.record_ids, truth[code], scores[:, j], strict=True)
                )
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
