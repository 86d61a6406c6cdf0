"""12-lead ECG figures: detected R-peaks, beat windows, and highlighted beats/leads for explanations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ecglang.beats.tokenize import BeatTokens


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
        beats: beat tokens from `ecglang.beats.tokenize.tokenize_beats` (R-peaks + windows are drawn).
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
    # Only leads that hold data get a row; the missing ones are named in the title instead.
    rows = [i for i in range(len(CANONICAL_LEADS)) if ecg.lead_mask[i]]
    missing = [name for name, m in zip(CANONICAL_LEADS, ecg.lead_mask, strict=True) if not m]
    n_rows = max(len(rows), 1)
    note_height = 0.28 * len(notes)
    height = 1.05 * n_rows + 0.8 + note_height
    fig, axes = plt.subplots(n_rows, 1, figsize=(14, height), sharex=True, squeeze=False)
    axes = axes[:, 0]
    bw = _unit(beat_weights)
    lw = _unit(lead_weights)
    pre, post = _window_seconds(beats) if beats is not None else (0.0, 0.0)
    for ax, i in zip(axes, rows, strict=False):
        ax.plot(t, ecg.signal[i], lw=0.7, color="k")
        if beats is not None and beats.n_beats:
            r_times = np.asarray(beats.rpeaks[: beats.n_beats]) / beats.fs
            for b, r in enumerate(r_times):
                shade = 0.06 if bw is None else 0.05 + 0.45 * float(bw[b])
                ax.axvspan(r - pre, r + post, color="tab:blue" if bw is None else "tab:red", alpha=shade, lw=0)
            idx = np.clip(np.round(r_times * ecg.fs).astype(int), 0, ecg.n_samples - 1)
            ax.plot(t[idx], ecg.signal[i, idx], "v", ms=3, color="tab:orange")
        colour = "k" if lw is None else plt.cm.Reds(0.35 + 0.65 * float(lw[i]))
        weight = "bold" if lw is not None and lw[i] >= 0.5 else "normal"
        ax.set_ylabel(CANONICAL_LEADS[i], rotation=0, ha="right", va="center", color=colour, fontweight=weight)
        ax.tick_params(axis="y", labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    if missing:
        title = f"{title or repr(ecg)}   (missing leads: {', '.join(missing)})"
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or repr(ecg), fontsize=10)
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=7, va="bottom", family="monospace", wrap=True)
    fig.tight_layout(rect=(0, note_height / height, 1, 0.98))
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
    """Min-max scale weights to [0, 1] for shading, so the contrast between beats (or leads) shows."""
    if weights is None:
        return None
    w = np.nan_to_num(np.asarray(weights, dtype=float), nan=np.nan)
    finite = np.isfinite(w)
    if not finite.any():
        return np.zeros_like(w)
    lo, hi = w[finite].min(), w[finite].max()
    out = (w - lo) / (hi - lo) if hi > lo else np.ones_like(w)
    return np.where(finite, out, 0.0)
