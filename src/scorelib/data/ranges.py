"""Declared score ranges: the ``--score-ranges`` file, checked against the prompts the data holds.

Part of ``load_dataset``'s input side (fairseq has no counterpart: its targets are labels). A ranges
file names prompts; when none of those names is a prompt of the data, the file would be ignored and
every prompt would take its training range, which trains a silently wrong model. :func:`check_named_prompts`
refuses that case, and :func:`prompt_column_candidates` finds the column a missing ``--prompt-column``
probably meant (a column whose values repeat like prompt ids).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from scorelib.errors import DataError
from scorelib.data.readers import read_table

MAX_PROMPT_IDS = 50  # a column with more distinct values is not taken for prompt ids


def read_ranges(path) -> dict[str, tuple[float, float]]:
    """Read ``--score-ranges FILE``: columns prompt, min, max (one row per prompt)."""
    frame = read_table(path)
    missing = [name for name in ("prompt", "min", "max") if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (--score-ranges); columns found: "
                        f"{[c for c in frame.columns if c != '_row']}")
    ranges = {}
    for _, r in frame.iterrows():
        try:
            lo, hi = float(r["min"]), float(r["max"])
        except ValueError:
            raise DataError(f"{path}: row {r['_row']}: min/max {r['min']!r}, {r['max']!r} are not numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"{path}: row {r['_row']}: prompt {r['prompt']!r} needs min < max, got {lo} .. {hi}")
        pid = str(r["prompt"]).strip()
        if pid in ranges:
            rows = frame["_row"][frame["prompt"].astype(str).str.strip() == pid].tolist()
            raise DataError(f"{path}: prompt {pid!r} is listed twice (rows {', '.join(map(str, rows))}); keep one row "
                            f"per prompt")
        ranges[pid] = (lo, hi)
    return ranges


def prompt_column_candidates(raw: pd.DataFrame, used) -> dict[str, list[str]]:
    """Columns of a table read without a prompt column whose values repeat like prompt ids.

    Args:
        raw (pd.DataFrame): a table as :func:`scorelib.data.readers.read_table` gives it (every cell a string).
        used (Iterable[str]): the columns already mapped (key, text, context, score columns): never candidates.

    Returns:
        dict[str, list[str]]: per candidate column (names like prompt, question, set, task first), its distinct
        values (stripped, in order of first use). A candidate has 2 to :data:`MAX_PROMPT_IDS` distinct non-empty
        values, each on at least two rows, and fewer distinct values than half its rows.
    """
    out = {}
    for name in raw.columns:
        if name == "_row" or name in set(used):
            continue
        values = raw[name].astype(str).str.strip()
        counts = values[values != ""].value_counts(sort=False)
        if 2 <= len(counts) <= MAX_PROMPT_IDS and counts.min() >= 2 and len(counts) <= len(values) / 2:
            out[str(name)] = [str(v) for v in pd.unique(values[values != ""])]
    likely = sorted(out, key=lambda c: not re.search(r"prompt|question|set|task|item|topic|id", c, re.I))
    return {c: out[c] for c in likely}  # names that sound like prompt ids first


def candidates_hint(candidates: dict[str, list[str]]) -> str:
    """``" (column 'question' repeats like prompt ids: Q1, Q2, Q3; did you mean --prompt-column question?)"``."""
    if not candidates:
        return ""
    name, values = next(iter(candidates.items()))
    shown = ", ".join(values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
    others = f"; also {', '.join(map(repr, list(candidates)[1:]))}" if len(candidates) > 1 else ""
    return f" (column {name!r} repeats like prompt ids: {shown}{others}; did you mean --prompt-column {name}?)"


def check_named_prompts(path, named, data_prompts, uncovered, candidates: dict | None = None) -> None:
    """Refuse a ranges file that names prompts the data does not hold while a data prompt has no declared range.

    Args:
        path: the ``--score-ranges`` file, named in the error.
        named (Iterable[str]): the prompts the file names (``"*"``, all prompts, is left out).
        data_prompts (Sequence[str]): every prompt of the data (before ``--prompts``), in display order.
        uncovered (Sequence[str]): the prompts kept for the run that have no declared range.
        candidates (dict, optional): :func:`prompt_column_candidates` of the data, for the hint.

    Raises:
        DataError: naming the file's absent prompts, the data's, and the likely missing ``--prompt-column``.
    """
    absent = [p for p in named if p != "*" and p not in set(data_prompts)]
    if not absent or not uncovered:
        return
    def listed(ids):
        return ", ".join(map(repr, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    no_column = list(data_prompts) == ["0"]
    why = ("the data has no prompt column, so every row is prompt '0'" if no_column
           else f"the data's prompts are {listed(list(data_prompts))} ({listed(list(uncovered))} without a range)")
    fix = candidates_hint(candidates or {}) or (" (give --prompt-column)" if no_column else "")
    raise DataError(f"--score-ranges {path}: names prompt(s) {listed(absent)}, which do not occur in the data; "
                    f"{why}{fix}. Fix the prompt column or the ranges file")
