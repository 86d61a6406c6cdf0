"""Figures: 12-lead ECGs with detected R-peaks, beat windows and highlighted beats/leads (`plot_ecg`), and one
explanation at a glance: the input beat beside its nearest prototype beats and their reports, and the lead/beat
attention maps beside the contributions (`plot_explanation`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.beats.config import BeatConfig
from ecglang.errors import ConfigError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS, LEAD_INDEX, canonical_lead_name
from ecglang.report.figure_paths import figure_path
from ecglang.scores.explain import most_contributing_beat

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ecglang.beats.tokenize import BeatTokens
    from ecglang.embeddings.prototypes import PrototypeIndex, PrototypeMatch
    from ecglang.scores.explain import Explanation

log = logging.getLogger(__name__)

# How to get an explanation's signal and beats, for the errors and notes that find them missing.
KEEP_SIGNALS_HINT = "pass keep_signals=N with explain=True to the ZeroShotClassifier call to keep the first N records'"


def plot_ecg(
    ecg: Ecg,
    beats: BeatTokens | None = None,
    *,
    beat_weights: np.ndarray | None = None,
    lead_weights: np.ndarray | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
    out: str | Path | None = None,
    dpi: int = 120,
    beat_config: BeatConfig | None = None,
    unit: str | None = None,
) -> Figure:
    """Draw every lead on its own row with R-peaks and beat windows.

    Args:
        ecg: the record (any fs; missing leads are drawn as 'missing').
        beats: beat tokens from `ecglang.beats.tokenize.tokenize_beats` (R-peaks + windows are drawn).
        beat_weights: `[n_beats]` signed weights (explanations: each beat's cosine with the label); a beat is
            shaded red where positive and blue where negative, in proportion to |weight| / max |weight|.
        lead_weights: `[12]` signed weights (explanations: how much the score drops without the lead); lead
            labels are coloured the same way (NaN: no colour).
        notes: lines of text shown under the traces (for example the knowledge snippets used).
        out: write a PNG there when given.
        beat_config: the beat settings `beats` were cut with (the model's: `processor.beat_config`), for the
            drawn windows; default `BeatConfig()` (0.25 s before to 0.45 s after R, as ecglang-mini).
        unit: the unit of the values, written on the y-axis ("mV" for a record as read, `Ecg`'s unit); None
            (default) writes none, as for a preprocessed signal in the model's normalised units.

    Raises `ConfigError` when `ecg` is None (an explanation's `signal`, kept only with `keep_signals`), or
    `beat_weights` is not one weight per beat of `beats` or `lead_weights` not one per lead, before any figure is
    opened; a figure whose drawing or writing fails is closed before the error is raised.
    """
    if ecg is None:  # `plot_ecg(exp.signal, exp.tokens)` after `explain=True` alone: an AttributeError on None
        raise ConfigError(f"no record to draw (ecg is None, as Explanation.signal is unless kept): {KEEP_SIGNALS_HINT} "
                          "signals and beats")  # fmt: skip
    # Checked here: a short list failed mid-drawing with an IndexError, and a long one set the colour scale.
    if beat_weights is not None:
        if beats is None:
            raise ConfigError("beat_weights given without beats: pass the beat tokens the weights are for")
        _check_length("beat_weights", beat_weights, beats.n_beats, "beat")
    if lead_weights is not None:
        _check_length("lead_weights", lead_weights, len(CANONICAL_LEADS), f"lead: {', '.join(CANONICAL_LEADS)}")
    out = None if out is None else figure_path(out)  # a bad file type fails before drawing
    import matplotlib

    if out is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = np.arange(ecg.n_samples) / ecg.fs
    # Only leads that hold data get a row; the missing ones are named in the title instead.
    rows = [i for i in range(len(CANONICAL_LEADS)) if ecg.lead_mask[i]]
    missing = [name for name, m in zip(CANONICAL_LEADS, ecg.lead_mask, strict=True) if not m]
    n_rows = max(len(rows), 1)
    note_height = 0.28 * len(notes)
    height = 1.05 * n_rows + 0.8 + note_height
    bw = signed_unit(beat_weights)
    lw = signed_unit(lead_weights)
    # BeatTokens do not carry their settings: the windows drawn are those of the config given
    cfg = beat_config or BeatConfig()
    pre, post = cfg.pre_s, cfg.post_s
    fig, axes = plt.subplots(n_rows, 1, figsize=(14, height), sharex=True, squeeze=False)
    with _drawing(fig, out, dpi=dpi):
        axes = axes[:, 0]
        for ax, i in zip(axes, rows, strict=False):
            ax.plot(t, ecg.signal[i], lw=0.7, color="k")
            if beats is not None and beats.n_beats:
                r_times = np.asarray(beats.rpeaks[: beats.n_beats]) / beats.fs
                for b, r in enumerate(r_times):
                    colour, shade = ("0.5", 0.08) if bw is None else _beat_shade(float(bw[b]))
                    # clipped to the drawn signal: an edge beat's window ran past its end (the window is padded)
                    ax.axvspan(max(r - pre, 0.0), min(r + post, t[-1]), color=colour, alpha=shade, lw=0)
                idx = np.clip(np.round(r_times * ecg.fs).astype(int), 0, ecg.n_samples - 1)
                ax.plot(t[idx], ecg.signal[i, idx], "v", ms=3, color="tab:orange")
            colour = "k" if lw is None else _lead_colour(float(lw[i]))
            weight = "bold" if lw is not None and abs(lw[i]) >= 0.5 else "normal"
            ax.set_ylabel(CANONICAL_LEADS[i], rotation=0, ha="right", va="center", color=colour, fontweight=weight)
            ax.tick_params(axis="y", labelsize=6)
            ax.spines[["top", "right"]].set_visible(False)
        if missing:
            title = f"{title or repr(ecg)}   (missing leads: {', '.join(missing)})"
        axes[-1].set_xlabel("time (s)")
        if unit:
            fig.supylabel(f"amplitude ({unit})", fontsize=8)
        if bw is not None or lw is not None:  # the colours carry a sign: say which is which, and of what
            key = []
            if bw is not None:
                key.append("beats: red similar to the label, blue dissimilar (cosine / largest |cosine|)")
            if lw is not None:
                key.append("lead names: red raises the score, blue lowers it (drop without the lead / largest)")
            title = "\n".join([title or repr(ecg), *key])
        fig.suptitle(title or repr(ecg), fontsize=10)
        if notes:
            fig.text(0.01, 0.005, "\n".join(notes), fontsize=7, va="bottom", family="monospace", wrap=True)
        fig.tight_layout(rect=(0, note_height / height, 1, 0.98))
    return fig


def signed_unit(weights: np.ndarray | None) -> np.ndarray | None:
    """Weights divided by their largest magnitude, in [-1, 1], NaN as 0. The sign is kept: a min-max scale would
    draw the most negative beat (the one least like the label) as the zero of the scale and the least negative
    as the one behind the score, even when every beat's cosine with the label is negative."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    w = np.where(np.isfinite(w), w, 0.0)
    top = float(np.abs(w).max()) if w.size else 0.0
    return w / top if top > 0 else np.zeros_like(w)


def _check_length(name: str, weights: np.ndarray, expected: int, per: str) -> None:
    """`ConfigError` naming `name` unless `weights` holds `expected` values in one dimension."""
    shape = np.shape(weights)
    if shape != (expected,):
        given = f"{shape[0]} values" if len(shape) == 1 else f"shape {shape}"
        raise ConfigError(f"{name} has {given}, expected {expected} (one per {per})")


@contextmanager
def _drawing(fig: Figure, out: Path | None, **savefig: Any) -> Iterator[Figure]:
    """Draw `fig` inside the block, then write it to `out` and close it when `out` is given. A failure in the
    block or in the writing closes the figure before it is raised: a batch script that catches the error and goes
    on would otherwise keep one open figure per failure."""
    import matplotlib.pyplot as plt  # here: matplotlib loads only when a figure is drawn

    try:
        yield fig
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, **savefig)
    except BaseException:
        plt.close(fig)
        raise
    if out is not None:
        plt.close(fig)


def _beat_shade(w: float) -> tuple[str, float]:
    """(colour, alpha) of a beat's window for a signed unit weight: red for positive, blue for negative."""
    return ("tab:red" if w >= 0 else "tab:blue"), 0.05 + 0.45 * abs(w)


def _lead_colour(w: float) -> tuple[float, float, float, float]:
    """A lead label's colour for a signed unit weight (never paler than 0.35 of the map, so it stays legible)."""
    import matplotlib.pyplot as plt

    return (plt.cm.Reds if w >= 0 else plt.cm.Blues)(0.35 + 0.65 * abs(w))


def plot_explanation(
    explanation: Explanation,
    prototypes: PrototypeIndex | None = None,
    *,
    title: str | None = None,
    lead: str | None = None,
    report_width: int = 48,
    out: str | Path | None = None,
    dpi: int = 120,
    beat_config: BeatConfig | None = None,
) -> Figure:
    """One explanation at a glance: the input beat beside its nearest prototype beats (with their reports, wrapped
    and shortened), and the tower's lead and beat attention maps beside the contributions.

    The input beat is the one with the largest contribution (`Explanation.prototype_beat` with a prototype index:
    the same beat), else the most attended when there are no contributions; its title says which and why. It needs
    `explanation.tokens`, kept only for the first `keep_signals` records of the classifier call: without them the
    rest is drawn, the input-beat panel says how to keep them, and a warning is logged. `prototypes`: the index
    its matches came from (for their windows; without it, or without stored windows, only their reports are shown;
    `ConfigError` for another index, whose rows hold other beats). `lead`: the lead drawn (default: II when
    present, else the most attended lead). Beats are drawn against time from their R peak, in ms, from
    `beat_config` (the model's `processor.beat_config`; default `BeatConfig()`); the input beat or a prototype
    whose record lacks the lead drawn says so instead of drawing its zeros. The lower panels show each lead's
    contribution as the score's drop without it, and each beat's as its cosine with the label."""
    import textwrap

    out = None if out is None else figure_path(out)  # a bad file type fails before drawing
    import matplotlib

    if out is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    exp = explanation
    matches = list(exp.prototypes or [])
    if prototypes is not None:  # checked before the figure is opened: a row of another index is another beat
        _check_matches(matches, prototypes)
    li = _beat_lead(exp, lead)
    beat, why = _input_beat(exp)
    cfg = beat_config or BeatConfig()
    ms = 1000.0 * cfg.offsets_s()  # the window's sample times from R: the x axis of every beat panel
    trace = None
    if exp.tokens is None:  # the rest is still worth drawing (a loop over more records than were kept goes on)
        log.warning("%s, %s: the explanation holds no beats (Explanation.tokens is None), the input-beat panel "
                    "is left empty: %s beats", exp.record_id, exp.label, KEEP_SIGNALS_HINT)  # fmt: skip
    elif exp.tokens.n_beats:
        trace = np.asarray(exp.tokens.beats[beat, li])
        if len(trace) != len(ms):  # checked before the figure is opened, like the lead
            raise ConfigError(f"beat windows of {len(trace)} samples, but beat_config.beat_len is {cfg.beat_len}: "
                              "pass the beat_config the beats were cut with")  # fmt: skip
        if not exp.tokens.lead_mask[li]:  # a lead asked for that the record lacks: its zeros are not a beat
            trace = None
    n_cols = 1 + max(len(matches), 1)
    fig = plt.figure(figsize=(3.2 * n_cols, 7.2))
    with _drawing(fig, out, dpi=dpi, bbox_inches="tight"):
        grid = fig.add_gridspec(2, n_cols, height_ratios=(1.25, 1.0), hspace=0.55, wspace=0.3)
        ax = fig.add_subplot(grid[0, 0])
        n_beats = len(exp.beat_contributions)
        if trace is not None:
            ax.plot(ms, trace, color="tab:red", lw=1.2)
            head = f"input beat {beat} of {n_beats} (lead {CANONICAL_LEADS[li]})\n{why}"
        elif exp.tokens is not None and exp.tokens.n_beats:  # the record lacks the lead asked for, as prototypes may
            ax.tick_params(left=False, labelleft=False)
            head = f"input beat {beat} of {n_beats} (lead {CANONICAL_LEADS[li]})\n{why}"
            recorded = [name for name, m in zip(CANONICAL_LEADS, exp.tokens.lead_mask, strict=True) if m]
            note = f"lead {CANONICAL_LEADS[li]} not recorded\n(recorded: {', '.join(recorded) or 'none'})"
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4")
        else:  # a bare 0-1 frame looked like a drawn beat (tick_params: the prototypes' panels share its y axis)
            ax.tick_params(left=False, labelleft=False, bottom=False, labelbottom=False)
            head = "input beat not kept" if exp.tokens is None else "input beat: none (no beats detected)"
            if exp.tokens is None:
                note = "not kept: pass keep_signals=N\nwith explain=True to the\nZeroShotClassifier call"
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4")
        ax.set_xlabel("time from R (ms)", fontsize=7)
        ax.set_ylabel("amplitude (model input)", fontsize=7)
        ax.set_title(f"{head}\nscore {exp.score:.3f}", fontsize=8)
        for j, match in enumerate(matches):
            pax = fig.add_subplot(grid[0, 1 + j], sharey=ax)
            window = None if prototypes is None else prototypes.window(match.row)
            if window is not None and not prototypes.lead_masks[match.row][li]:
                pax.text(0.5, 0.5, f"lead {CANONICAL_LEADS[li]} not recorded", transform=pax.transAxes, ha="center",
                         fontsize=7, color="0.4")  # fmt: skip
            elif window is not None:
                pax.plot(ms[: len(window[li])], window[li], color="k", lw=1.0)
            report = textwrap.shorten(match.report or "(no report)", width=3 * report_width, placeholder=" …")
            pax.set_title(f"{match.record_id} beat {match.beat_index}, cos {match.similarity:.3f}", fontsize=7)
            pax.set_xlabel(textwrap.fill(report, report_width), fontsize=6.5)
        for a in fig.axes:
            a.tick_params(labelsize=6)
            a.spines[["top", "right"]].set_visible(False)
        maps = grid[1, :].subgridspec(1, 2, wspace=0.45)  # the twin axes' labels need room between the panels
        _bars(fig.add_subplot(maps[0, 0]), list(CANONICAL_LEADS), exp.lead_contributions, exp.lead_attention, "leads",
              LEAD_CONTRIBUTION)  # fmt: skip
        beat_names = [str(i) for i in range(len(exp.beat_contributions))]
        _bars(fig.add_subplot(maps[0, 1]), beat_names, exp.beat_contributions, exp.beat_attention, "beats",
              BEAT_CONTRIBUTION)  # fmt: skip
        fig.suptitle(title or f"{exp.record_id}: {exp.label}", fontsize=10)
    return fig


def _check_matches(matches: Sequence[PrototypeMatch], prototypes: PrototypeIndex) -> None:
    """`ConfigError` unless each match's row of `prototypes` holds its record's beat: a match keeps only its row,
    and another index (a rebuild, another folder) holds another beat there, drawn under the match's name."""
    for rank, match in enumerate(matches, 1):
        row = match.row
        held = None
        if 0 <= row < len(prototypes):
            rec = prototypes.records[int(prototypes.beat_record[row])]
            held = (rec["id"], int(prototypes.beat_index[row]), rec.get("source"))
            if held == (match.record_id, match.beat_index, match.path):
                continue
        there = "past its end" if held is None else f"{held[0]} beat {held[1]}"
        raise ConfigError(
            f"these matches come from another prototype index: match {rank} ({match.record_id} beat "
            f"{match.beat_index}) is row {row}, which in the index given ({prototypes!r}) is {there}; pass the "
            "index the classifier used (clf.prototypes)"
        )


def _input_beat(exp: Explanation) -> tuple[int, str]:
    """The beat to draw and why it was chosen: the prototypes' beat when matched, else the one the classifier
    would match them to (the largest contribution; the most attended without contributions; else the first)."""
    contributions, attention = np.asarray(exp.beat_contributions, dtype=float), exp.beat_attention
    beat = exp.prototype_beat
    if beat is None:
        beat = most_contributing_beat(contributions, attention)
    if contributions.size and np.isfinite(contributions).any() and beat == int(np.nanargmax(contributions)):
        return beat, f"largest contribution (cos {contributions[beat]:.3f})"
    if attention is not None and np.isfinite(attention).any() and beat == int(np.nanargmax(attention)):
        return beat, "most attended (no beat contributions)"
    if exp.prototype_beat is not None:
        return beat, "the beat its prototypes were matched to"
    return beat, "first beat (no contributions or attention)"


def _beat_lead(exp: Explanation, lead: str | None) -> int:
    """The lead to draw: the one asked for, else II when present, else the most attended (or first present)."""
    present = exp.tokens.lead_mask if exp.tokens is not None else np.isfinite(exp.lead_contributions)
    if lead is not None:
        name = canonical_lead_name(lead)  # "v1", "avr" and "MLII" as the readers and `Ecg.lead` take them
        if name is None:
            raise ConfigError(f"unknown lead {lead!r}: use one of the 12 leads {', '.join(CANONICAL_LEADS)}")
        return LEAD_INDEX[name]
    ii = LEAD_INDEX["II"]
    if present[ii]:
        return ii
    weights = exp.lead_attention if exp.lead_attention is not None else np.nan_to_num(exp.lead_contributions, nan=-1)
    return int(np.argmax(np.where(present, weights, -np.inf)))


# At most this many beat numbers under the beat bars: 37 beats of a tachycardia ran into one another.
MAX_TICK_LABELS = 20
# What each panel's contributions are (`ecglang.scores.explain`): a lead's is not a cosine but a score difference
LEAD_CONTRIBUTION = "score drop without the lead"
BEAT_CONTRIBUTION = "cosine with the label"


def _bars(
    ax: Axes, names: list[str], contributions: np.ndarray, attention: np.ndarray | None, what: str, measure: str
) -> None:
    """Contributions (`measure`: what they are, for the legend and axis) and attention (share of attention) of
    each lead or beat, side by side on two axes, since their scales differ. The two axes put their zero at the same
    height (else negative contributions hang from the top while attention rises from the bottom), the legend sits
    above the panel (not over the bars), and a missing lead is marked as missing, not drawn as a zero
    contribution."""
    x = np.arange(len(names))
    values = np.asarray(contributions, dtype=float)
    missing = ~np.isfinite(values)
    ax.bar(x - 0.2, np.where(missing, 0.0, values), width=0.4, color="tab:red", label=measure)
    ax.axhline(0.0, color="0.3", lw=0.6)
    ax.set_ylabel(measure, fontsize=7)
    step = max(1, int(np.ceil(len(names) / MAX_TICK_LABELS)))
    ax.set_xticks(x[::step], [names[i] for i in x[::step]], fontsize=6)
    if what == "beats":
        ax.set_xlabel("beat" if step == 1 else f"beat (numbered every {step})", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(f"{what}: contribution and attention", fontsize=8, pad=16)
    finite = values[~missing]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(0.0, float(finite.max())) if finite.size else 1.0
    pad = 0.08 * ((hi - lo) or 1.0)
    lo, hi = (lo - pad if lo < 0 else 0.0), (hi + pad if hi > 0 else 0.0)
    if -lo > 1.5 * hi:  # mostly negative: keep the upper 40 % for the attention bars, which start at zero
        hi = -lo / 1.5
    hi = hi if hi > 0 else 1.0  # every contribution zero
    ax.set_ylim(lo, hi)
    for i in np.flatnonzero(missing):
        ax.text(i, 0.0, "missing", rotation=90, ha="center", va="bottom", fontsize=5.5, color="0.45")
    twin = ax.twinx()
    if attention is not None:
        twin.bar(x + 0.2, attention, width=0.4, color="tab:blue", label="attention")
        twin.set_ylabel("attention (share)", fontsize=7)
        top = float(np.nanmax(attention)) if np.size(attention) else 1.0
        top = 1.05 * top if top > 0 else 1.0
        # the twin's zero at the same fraction of the height as the contributions' zero
        twin.set_ylim(top * lo / hi, top)
        twin.set_yticks([t for t in twin.get_yticks() if 0 <= t <= top])  # attention is never negative
    else:
        twin.set_yticks([])
        twin.text(0.5, 0.9, "no attention map (mixer without attention weights)", transform=ax.transAxes,
                  ha="center", fontsize=6.5, color="tab:blue")  # fmt: skip
    twin.tick_params(labelsize=6)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False,
              borderaxespad=0.1)  # fmt: skip
