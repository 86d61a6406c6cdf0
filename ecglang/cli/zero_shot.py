"""`ecglang zero-shot PATH...`: score records against labels or a prompt set, with knowledge retrieval."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecglang.cli import count, plot_file, print_failures
from ecglang.core.outputs import output_file
from ecglang.errors import PromptError, UsageError

if TYPE_CHECKING:  # hints only: the scoring stack loads when a command runs
    from ecglang.scores.classifier import ZeroShotResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zero-shot",
        help="zero-shot classification of records or folders",
        description="Score ECG records against your labels or a prompt set. Bad files are listed at the end "
        "and make the exit status non-zero; the others are still scored.",
    )
    p.add_argument(
        "paths", nargs="+",
        help="record files and/or folders (scanned recursively); or one signal cache or prepared folder "
        "(`ecglang data build --out`), whose rows are scored as built",
    )  # fmt: skip
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help='label names, e.g. "atrial fibrillation" (words, not a file: labels kept in a file go in a prompt set, '
        "--prompt-set FILE.json)",
    )
    which.add_argument(
        "--prompt-set",
        metavar="NAME|FILE",
        help="a bundled prompt set (ptbxl_super, ptbxl_sub, ptbxl_form, ptbxl_rhythm, cpsc2018, chapman, "
        "cinc2021: the files in prompts/) or a prompt-set file (default, without --labels: ptbxl_super)",
    )
    p.add_argument(
        "--knowledge",
        default="default",
        metavar="DIR|default|off",
        help="knowledge base folder/index for test-time retrieval (default: the bundled base)",
    )
    # = ecglang.scores.labels.DEFAULT_KNOWLEDGE_K (not imported: `--help` must not wait for torch)
    p.add_argument(
        "-k",
        type=count,
        default=1,
        action=_Given,
        help="snippets retrieved per label (default 1; not with --knowledge off)",
    )
    p.add_argument(
        "--drop-ambiguous-prompts",
        action="store_true",
        help="leave out prompts that the text tower places nearer another label's name than their own",
    )
    p.add_argument("--model", default=None, metavar="DIR|HUB_ID", help="checkpoint (default: the bundled ecglang-mini)")
    p.add_argument(
        "--mode",
        choices=["cosine", "softmax", "sigmoid"],
        default="cosine",
        help="cosine (ranking/AUROC), softmax (one true label), sigmoid (multi-label)",
    )
    p.add_argument("--top", type=count, default=5, help="labels shown per record (default 5)")
    p.add_argument(
        "--out",
        metavar="CSV",
        type=output_file,
        help="write the score table: record, path (the file read), one column per label",
    )
    p.add_argument(
        "--failures",
        metavar="CSV",
        type=output_file,
        help="write the records that failed to this CSV (default: next to --out when --out is given; without "
        "either, failures are only printed)",
    )
    p.add_argument(
        "--prototypes",
        metavar="DIR",
        help="prototype index (`ecglang prototypes build`): show the reference beats nearest to the beat behind "
        "each record's top label, with their reports",
    )
    p.add_argument(
        "--prototype-k", type=count, default=3, action=_Given, help="prototypes shown per record (default 3)"
    )
    p.add_argument(
        "--prototypes-out",
        metavar="CSV|JSON",
        type=output_file,
        help="write every record's nearest prototypes (JSON when it ends in .json)",
    )
    p.add_argument(
        "--plot", metavar="PNG", type=plot_file, help="12-lead figure highlighting the beats/leads behind the top label"
    )
    p.add_argument("--plot-max", type=count, default=10, help="at most this many figures (default 10)")
    p.add_argument(
        "--fs", type=float, help="sampling rate of .npy input, or of an .npz that stores none (an .npz storing "
        "another rate fails; WFDB and .mat records keep their own)"
    )  # fmt: skip
    p.add_argument(
        "--leads", help="comma-separated lead names of .npy input, or of an .npz that stores none (an .npz storing "
        "other leads fails)"
    )  # fmt: skip
    p.add_argument(
        "--metadata",
        metavar="CSV",
        help="age and sex per record for headers without them (PTB-XL's ptbxl_database.csv, or a CSV with id or "
        "path, age, sex); read only by a model with demographics",
    )
    p.add_argument("--batch-size", type=count, default=64, help="records per batch (default 64)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="ECG encoder arithmetic (default fp32; bf16 is faster on CPUs with native bfloat16; fp16 needs a GPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-record tables")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (as evaluate's --no-progress)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the command lists every failure itself at the end; the classifier's one-line warning would say it twice.
    # Restored afterwards: a caller of `cli.main` in its own process keeps its logging as it was.
    classifier_logger = logging.getLogger("ecglang.scores.classifier")
    level = classifier_logger.level
    classifier_logger.setLevel(logging.ERROR)
    try:
        return _score(args)
    finally:
        classifier_logger.setLevel(level)


class _Given(argparse.Action):
    """Stores the value and notes that the option was given (`<dest>_given`): for an option another one makes moot."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def _score(args: argparse.Namespace) -> int:
    _check_options(args)
    # Here, not at the top: `ecglang --help` must not wait for torch and transformers.
    from ecglang.encoders.modeling import load_model
    from ecglang.record.demographics import read_demographics_table
    from ecglang.scores.classifier import ZeroShotClassifier

    labels = args.labels if args.labels else (args.prompt_set or "ptbxl_super")
    cache = _cache_folder(args)  # checked before the model loads, as a bad metadata table is
    table = read_demographics_table(args.metadata) if args.metadata else None  # a bad table fails before the model
    model = load_model(args.model)
    extra = {} if not args.prototypes else {"prototypes": args.prototypes, "prototype_k": args.prototype_k}
    clf = ZeroShotClassifier(
        model, knowledge=args.knowledge, k=args.k, batch_size=args.batch_size, precision=args.precision,
        drop_ambiguous_prompts=args.drop_ambiguous_prompts, **extra,
    )  # fmt: skip
    leads = args.leads.split(",") if args.leads else None
    if cache is not None:
        result = clf.score_cache(cache, labels, mode=args.mode, progress=not args.no_progress)
    else:
        result = clf(args.paths, labels=labels, mode=args.mode, explain=bool(args.plot), fs=args.fs, leads=leads,
                     progress=not args.no_progress,
                     keep_signals=args.plot_max if args.plot else 0, metadata=table)  # fmt: skip
    if table is not None:
        # Looked up as the classifier did, by file stem: `00001_hr#2` (a second folder's 00001_hr) is 00001_hr.
        found = sum(_stem(rid, result) in table for rid in result.scores.index)
        reads = "read by this model" if model.config.ecg_tower.get("demographics") else "not read by this model"
        line = f"metadata: {args.metadata} has age/sex for {found} of {len(result.scores)} scored record(s) ({reads})"
        if found:
            print(line)
        else:  # most likely the ids do not match: say what they are
            print(f"{line}; records are looked up by file stem, e.g. {next(iter(result.scores.index), '-')!r}",
                  file=sys.stderr)  # fmt: skip

    # Files first: a reader leaving stdout early (`| head`) ended the command before it wrote any of them.
    said = _write_outputs(args, result, clf)
    stdout_gone = False
    try:
        if not args.quiet:
            _print_tables(args, result)
        for line in said:
            print(line)
    except BrokenPipeError:  # the files are written; the failures still go to stderr
        _silence_stdout()
        stdout_gone = True
    _note_long_records(result)
    _note_short_records(result, clf.processor.preprocess_config.pad)
    if args.plot and len(result.explanations) > args.plot_max:
        print(f"plot: {args.plot_max} of {len(result.explanations)} records drawn (--plot-max)", file=sys.stderr)
    if result.failures:
        print_failures(result.failures)
        if failures_path := _failures_path(args):
            print(f"failures: {failures_path}", file=sys.stderr)
        if result.scores.empty:
            print("no record could be scored", file=sys.stderr)
        return 1
    return 141 if stdout_gone else 0


def _check_options(args: argparse.Namespace) -> None:
    """Options that do nothing here, or outputs that would overwrite each other: refused before anything loads."""
    if args.labels:
        _check_labels(args.labels)
    if args.prompt_set:
        # here: `ecglang --help` imports no scoring module
        from ecglang.scores.prompts import prompt_source_problem

        if (problem := prompt_source_problem(args.prompt_set)) is not None:
            raise UsageError(problem)  # a name that is no prompt set: the command line alone is wrong
    if getattr(args, "k_given", False) and str(args.knowledge).lower() == "off":
        raise UsageError("-k sets the snippets retrieved per label: it does nothing with --knowledge off")
    outputs = {"--out": args.out, "--failures": _failures_path(args), "--prototypes-out": args.prototypes_out}
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        if path:
            where = os.path.abspath(path)
            if where in seen:  # the last one written would replace the other (the scores, by the failures)
                raise UsageError(f"{flag} and {seen[where]} name the same file {path}: give each its own")
            seen[where] = flag
    given = {"--prototypes-out": args.prototypes_out, "--prototype-k": getattr(args, "prototype_k_given", False)}
    moot = [flag for flag, value in given.items() if value]
    if moot and not args.prototypes:  # a header-only file, or nothing, with no word
        raise UsageError(f"{' and '.join(moot)} need(s) --prototypes DIR (a prototype index)")


def _check_labels(labels: list[str]) -> None:
    """`UsageError` for a label that is an existing file or a folder's path (`--labels labels.txt` scored the file's
    name as a label; `PATH --labels a b DIR/` gave DIR to --labels, which takes several values) and for labels that
    `resolve_prompts` refuses by their words alone (duplicates, empties): before the model loads."""
    # here: `ecglang --help` imports no scoring module
    from ecglang.scores.prompts import clean_labels, prompt_set_hint

    for label in labels:
        path = Path(label)
        # a folder only with a separator: records sorted in folders named as labels ("normal/") are common
        if path.is_dir() and any(sep in label for sep in ("/", os.sep)):
            raise UsageError(f"--labels got {label!r}, an existing folder: --labels takes label names and several of "
                             "them, so put the record paths before --labels")  # fmt: skip
        if path.is_file():
            raise UsageError(
                f'--labels got {label!r}, an existing file: --labels takes label names (--labels "atrial '
                'fibrillation" "sinus rhythm"; put record paths before it). For labels kept in a file, write a '
                f"prompt set and pass --prompt-set FILE.json, {prompt_set_hint()}"
            )
    try:
        clean_labels(labels)
    except PromptError as exc:  # the command line alone is wrong: a usage error, as the README says
        raise UsageError(str(exc)) from None


def _failures_path(args: argparse.Namespace) -> str | None:
    """Where the failures CSV goes: --failures, or next to --out; None without either."""
    return args.failures or (str(Path(args.out).with_suffix(".failures.csv")) if args.out else None)


def _write_outputs(args: argparse.Namespace, result: ZeroShotResult, clf: Any) -> list[str]:
    """Write every file asked for (scores, prototypes, plots, failures); returns the lines that say so."""
    said = []
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        # record, path (the file read; the column even when every record failed), the labels
        result.score_table(with_path=True).to_csv(args.out, float_format="%.6f")
        said.append(f"\nscores: {args.out} ({len(result.scores)} records × {result.scores.shape[1]} labels)")
    if args.prototypes_out:
        said.append(_write_prototypes(result, Path(args.prototypes_out)))
    if args.plot and result.explanations:
        said += _plots(args, result, clf.prototypes, clf.processor.beat_config)
    if path := _failures_path(args):
        # Written on a clean run too (the header only): an earlier run's list must not stay as this run's.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["record", "path", "stage", "error"])
            writer.writeheader()
            writer.writerows({**f.to_dict(), "path": _failure_file(f)} for f in result.failures)
    return said


def _failure_file(failure: Any) -> str:
    """The absolute file of a failed record (as the scores' `path` column gives it), "" when there is none."""
    if failure.path:
        return str(Path(failure.path).resolve())
    candidate = Path(failure.record)
    return str(candidate.resolve()) if candidate.exists() else ""


def _silence_stdout() -> None:
    """Point stdout at the null device: its reader is gone, and every later print (and the flush at exit) would
    raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _print_tables(args: argparse.Namespace, result: ZeroShotResult) -> None:
    """Each record's top labels (and prototypes), then what knowledge was retrieved."""
    paths = {} if result.sources is None else result.sources
    for rid in result.scores.index:
        path = paths.get(rid)  # ids repeat across folders (`00317_lr#2`): the file says which record it is
        print(f"\n== {rid}" + (f"  ({path})" if path else ""))
        table = result.ranked(rid).head(args.top)
        if (table["name"] == table["label"]).all():
            table = table.drop(columns="name")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        if args.prototypes:
            _print_prototypes(result, rid)
    used = {s["id"] for spec in result.labels.values() for s in spec.snippets}
    if used:
        # `knowledge show` reads the bundled base unless told: a base of the user's own needs its --kb
        own = str(args.knowledge).lower() not in ("default", "on")
        show = "ecglang knowledge show ID" + (f" --kb {shlex.quote(str(args.knowledge))}" if own else "")
        print(f"\nknowledge: {len(used)} snippet(s) retrieved for {len(result.labels)} label(s) "
              f"(ids in the 'snippets' column; `{show}` prints their text)")  # fmt: skip
    bare = [spec.name for spec in result.labels.values() if not spec.snippets]
    if bare and str(args.knowledge).lower() != "off":
        print(f"knowledge: no knowledge found for {len(bare)} label(s), scored on their own words: "
              + ", ".join(bare[:10]) + (" ..." if len(bare) > 10 else ""))  # fmt: skip


def _cache_folder(args: argparse.Namespace) -> str | None:
    """The signal cache or prepared folder (`ecglang data build --out`) to score, when that is what PATHS names:
    its rows are scored as built (already preprocessed), a batch at a time, not scanned as record files."""
    from ecglang.data.prepared import is_cache_folder  # here: `ecglang --help` must not wait for the data layer

    folders = [p for p in args.paths if is_cache_folder(p)]
    if not folders:
        return None
    if len(args.paths) > 1:
        raise UsageError(
            f"{folders[0]} is a signal cache or prepared folder: score it on its own (one PATH), not with "
            "record files or other folders"
        )
    options = {"--plot": args.plot, "--fs": args.fs, "--leads": args.leads, "--metadata": args.metadata,
               "--prototypes": args.prototypes}  # fmt: skip
    given = [flag for flag, value in options.items() if value]
    if given:
        raise UsageError(
            f"{folders[0]} is a signal cache or prepared folder, whose rows are scored as preprocessed, without "
            f"explanations or metadata: {', '.join(given)} need(s) record files"
        )
    return folders[0]


def _stem(record_id: str, result) -> str:
    """The file stem of a scored record (its id without the `#2` of a repeated stem), else the id itself."""
    from ecglang.record.ecg import record_id_of

    path = None if result.sources is None else result.sources.get(record_id)
    return record_id_of(Path(path)) if isinstance(path, str) else record_id


def _note_long_records(result) -> None:
    """Say which records were longer than the part the model scores (a Holter record is not scored whole)."""
    long = result.long_records()
    if not long:
        return
    seconds, crop = result.window
    part = {"start": f"first {seconds:g} s", "center": f"middle {seconds:g} s"}.get(crop, f"a random {seconds:g} s")
    print(f"note: {len(long)} record(s) longer than {seconds:g} s, each scored on its {part} only (the model's "
          f"input, as in the published protocol): {_first_ids(long)}", file=sys.stderr)  # fmt: skip


def _note_short_records(result: ZeroShotResult, pad: str) -> None:
    """Say which records were shorter than the model's input: padded to it, they read as another rhythm (a 121 bpm
    3 s strip, zero-padded to 10 s, topped "sinus bradycardia"). Their scores are as computed."""
    short = result.short_records()  # empty without a window
    if not short:
        return
    seconds = result.window[0]
    how = {"zero": "zero-padded", "edge": "padded with its last value", "repeat": "repeated"}.get(pad, "padded")
    print(f"note: {len(short)} record(s) shorter than {seconds:g} s, each {how} to {seconds:g} s (the model's input): "
          f"rhythm and rate labels are unreliable on them: {_first_ids(short)}", file=sys.stderr)  # fmt: skip


def _first_ids(ids: list[str], shown: int = 5) -> str:
    """The first `shown` record ids of a note, then "..." where there are more."""
    return ", ".join(ids[:shown]) + (" ..." if len(ids) > shown else "")


def _print_prototypes(result, rid: str) -> None:
    table = result.prototype_table().query("record == @rid")
    if table.empty:
        print("nearest prototypes: none")
        return
    first = table.iloc[0]
    print(f"nearest prototypes of beat {first['beat']} (the beat behind {first['label']}):")
    for row in table.itertuples(index=False):
        print(f"  {row.rank}. {row.prototype_record} beat {row.prototype_beat}  cos {row.similarity:.3f}  "
              f"{textwrap.shorten(row.report or '(no report)', 90, placeholder=' ...')}")  # fmt: skip


def _write_prototypes(result, path: Path) -> str:
    table = result.prototype_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(table.to_dict(orient="records"), ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")  # fmt: skip
    else:
        table.to_csv(path, index=False, float_format="%.6f")
    return f"prototypes: {path} ({len(table)} rows)"


def plot_notes(result: ZeroShotResult, record_id: str, label: str) -> list[str]:
    """The lines under a record's plot: its top label and the leads that raise its score (and those that lower it:
    the score is higher without them), the file it was read from (an id such as `00317_lr#2` does not say which
    folder's `00317_lr` it is), and the snippets behind the score."""
    exp = result.explanations[record_id][label]
    lowering = exp.lowering_leads(3)
    notes = [f"top label: {result.labels[label].name} ({label}), score {exp.score:.3f}; "
             f"leads raising it: {', '.join(exp.top_leads(3)) or 'none'}"
             + (f"; lowering it: {', '.join(lowering)}" if lowering else "")]  # fmt: skip
    if (path := result.source_of(record_id)) is not None:
        notes.append(f"file: {path}")
    return notes + [f"[{s['id']}] {s['title']} — {s['source'][:90]}" for s in exp.snippets]


def _plots(args: argparse.Namespace, result, prototypes=None, beat_config=None) -> list[str]:
    """Draw the figures; returns the lines that name them."""
    # here: matplotlib loads only when a plot is asked for
    from ecglang.report.plotting import plot_ecg, plot_explanation

    said = []
    out = Path(args.plot)
    ids = [rid for rid, exps in result.explanations.items() if next(iter(exps.values())).signal is not None]
    for rid in ids:
        top = result.scores.loc[rid].idxmax()
        exp = result.explanations[rid][top]
        notes = plot_notes(result, rid, top)
        target = out if len(ids) == 1 else out.with_name(f"{out.stem}_{rid}{out.suffix or '.png'}")
        # The record as the model saw it (preprocessed at the model's fs), so the R-peaks line up.
        plot_ecg(exp.signal, exp.tokens, beat_weights=exp.beat_contributions, lead_weights=exp.lead_contributions,
                 title=f"{rid}: {result.labels[top].name}", notes=notes, out=target,
                 beat_config=beat_config)  # fmt: skip
        said.append(f"plot: {target}")
        if prototypes is not None:  # the case-based figure: the beat behind the score beside its prototypes
            explained = target.with_name(f"{target.stem}_prototypes{target.suffix or '.png'}")
            plot_explanation(
                exp, prototypes, title=f"{rid}: {result.labels[top].name}", out=explained, beat_config=beat_config
            )
            said.append(f"plot: {explained}")
    return said
