"""Label tables and score tables paired by name: `aligned_scores` puts a score DataFrame in the order of the
label DataFrame it is evaluated against, or says which labels or records differ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ecglang.errors import ConfigError


def aligned_scores(y_true: Any, scores: Any) -> Any:
    """`scores` reordered to `y_true`'s columns and index when both carry them (DataFrames, or Series for the
    index); anything else is returned as given and paired by position. Different label or record sets are
    a `ConfigError` naming what is missing, never a silent pairing.

    Rows: two indexes holding the same labels are paired by label, whatever their order (a sorted or
    shuffled score frame beside a 0..N-1 label frame included). A default 0..N-1 index beside record names
    carries no names, so that pair goes by position, as arrays do; a 0..N-1 index beside other integer
    labels that share some of its values is ambiguous and an error."""
    tables = (pd.DataFrame, pd.Series)
    if not isinstance(y_true, tables) or not isinstance(scores, tables):
        return scores
    for axis in ("columns", "index"):
        want, have = getattr(y_true, axis, None), getattr(scores, axis, None)
        if want is None or have is None or want.equals(have):
            continue
        what = "label columns" if axis == "columns" else "records (index)"
        if want.has_duplicates or have.has_duplicates:
            if axis == "index" and (_positional(want) or _positional(have)):
                continue  # repeated record names beside a 0..N-1 index: nothing to pair by name
            raise ConfigError(f"y_true and scores must not repeat {what} when they are paired by name")
        want_set, have_set = set(want), set(have)
        if axis == "index" and want_set != have_set and (_positional(want) or _positional(have)):
            if _positional(want) and _positional(have):
                continue  # two default indexes of different lengths: the shape check says so
            named = have if _positional(want) else want
            if want_set & have_set and all(_is_int(x) for x in named):
                # e.g. a label frame's 0..N-1 beside scores.iloc[10:70] of a larger frame: by label or by
                # position would both be a guess
                raise ConfigError(
                    "y_true and scores have integer indexes that share some records but not all (a default "
                    f"0..N-1 index against {_few(list(named), 3)}): reset_index(drop=True) on both to pair rows "
                    "by position, or select the same records in both (pandas: .loc[...])"
                )
            continue  # a default 0..N-1 index carries no record names: paired by position, as for arrays
        missing, extra = [x for x in want if x not in have_set], [x for x in have if x not in want_set]
        if axis == "index" and len(missing) == len(want) and len(extra) == len(have):
            raise ConfigError(
                f"y_true and scores name their records differently ({_few(list(want), 3)} against "
                f"{_few(list(have), 3)}): no record is in both. Index y_true by the scores' record ids "
                "(e.g. y_true.set_axis(result.scores.index) when the rows are in the same order), or pass "
                ".to_numpy() arrays to pair rows by position"
            )
        if missing or extra:
            raise ConfigError(
                f"y_true and scores name different {what}: missing from scores {_few(missing)}, "
                f"not in y_true {_few(extra)}; select the same {what} in both (pandas: .loc[...])"
            )
        scores = scores.reindex(**{axis: want})
    return scores


def _positional(index: Any) -> bool:
    """A default 0..N-1 index (in that order): what pandas gives a table read or built without record names."""
    return list(index) == list(range(len(index)))


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _few(items: Sequence[Any], n: int = 5) -> str:
    shown = [str(x) for x in items[:n]]
    return "[" + ", ".join(shown) + (f", … {len(items) - n} more" if len(items) > n else "") + "]"
