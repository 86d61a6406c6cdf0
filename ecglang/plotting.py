"""12-lead ECG figures: detected R-peaks, beat windows, and highlighted beats/leads for explanations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecglang.leads import CANONICAL_LEADS
from ecglang.record import Ecg

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ecglang.beats import BeatTokens

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
) -> Figure:
    """Draw every lead on its own row with R-peaks and beat windows.

    Args:
        ecg: the record (any fs; missing leads are drawn as 'missing').
        beats: beat tokens from `ecglang.beats.tokenize_beats` (R-peaks + windows are drawn).
        beat_weights: `[n_beats]` non-negative weights; beats are shaded in proportion (explanations).
        lead_weights: `[12]` non-negative weights; lead labels are coloured in proportion.
        notes: lines of text shown under the traces (for example the knowledge snippets used).
        out: write a PNG there when given.
    """
    import matplotlib

    if out is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = np.arange(ecg.n_samples) / ecg.fs
    n_rows = len(CANONICAL_LEADS)
    note_height = 0.28 * len(notes)
    fig, axes = plt.subplots(
        n_rows, 1, figsize=(14, 1.05 * n_rows + 0.8 + note_height), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    bw = _unit(beat_weights)
    lw = _unit(lead_weights)
    for i, (ax, name) in enumerate(zip(axes, CANONICAL_LEADS)):
        if not ecg.lead_mask[i]:
            ax.text(0.5, 0.5, "missing", transform=ax.transAxes, ha="center", va="center", color="0.5")
        else:
            ax.plot(t, ecg.signal[i], lw=0.7, color="k")
        if beats is not None and beats.n_beats:
            half_pre = beats.rpeaks / beats.fs
            pre, post = _window_seconds(beats)
            for b, r in enumerate(half_pre):
                shade = 0.06 if bw is None else 0.05 + 0.45 * float(bw[b])
                colour = "tab:blue" if bw is None else "tab:red"
                ax.axvspan(r - pre, r + post, color=colour, alpha=shade, lw=0)
            if ecg.lead_mask[i]:
                idx = np.clip((beats.rpeaks * ecg.fs / beats.fs).astype(int), 0, ecg.n_samples - 1)
                ax.plot(t[idx], ecg.signal[i, idx], "v", ms=3, color="tab:orange")
        label_colour = "k" if lw is None else plt.cm.Reds(0.35 + 0.65 * float(lw[i]))
        weight = "bold" if lw is not None and lw[i] >= 0.5 else "normal"
        ax.set_ylabel(name, rotation=0, ha="right", va="center", color=label_colour, fontweight=weight)
        ax.tick_params(axis="y", labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or repr(ecg), fontsize=10)
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=7, va="bottom", family="monospace", wrap=True)
    fig.tight_layout(rect=(0, note_height / (1.05 * n_rows + 0.8 + note_height), 1, 0.98))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
        plt.close(fig)
    return fig


def _window_seconds(beats: BeatTokens) -> tuple[float, float]:
    cfg = getattr(beats, "config", None)
    if cfg is not None:
        return float(cfg.pre_s), float(cfg.post_s)
    return 0.25, 0.45


def _unit(weights: np.ndarray | None) -> np.ndarray | None:
    """Scale non-negative weights to [0, 1] for shading."""
    if weights is None:
        return None
    w = np.clip(np.nan_to_num(np.asarray(weights, dtype=float)), 0, None)
    top = w.max() if w.size else 0.0
    return w / top if top > 0 else w
