"""The score columns of a run: one score, or K traits, parsed once into :class:`ScoreColumns`.

fairseq's counterpart is ``sentence_prediction`` with ``--regression-target --num-classes K``
(``fairseq/tasks/sentence_prediction.py``): one head with K regression outputs. A single score
column is the case K = 1. ``--score-column cohesion,syntax`` names K traits; each trait's gold
scores sit in a frame column ``score_{trait}`` (one score column keeps the one ``score`` column).

Every computation on scores takes arrays of shape (N, K) (:meth:`ScoreColumns.matrix`); the one
place where the two cases differ is how things are *named* at the edges: result columns ``gold``
or ``gold_{trait}``, a float or a ``{trait: value}`` dict (:meth:`ScoreColumns.suffixed`,
:meth:`ScoreColumns.pack`). This module imports no other scorelib module but
:mod:`scorelib.errors` and :mod:`scorelib.data.readers`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scorelib.data.readers import read_table
from scorelib.errors import DataError, OptionError

SCORE = "score"  # the name of the one score of a single-score run


@dataclass(frozen=True)
class ScoreColumns:
    """What ``--score-column`` names.

    Args:
        traits (tuple[str, ...]): the K trait names of ``--score-column a,b,c``; ``()`` for one score column.
        column (str | None): the user's name of the one score column (``None``: the layout's, else ``score``).
    """

    traits: tuple = ()
    column: str | None = None

    @classmethod
    def parse(cls, score_column: str | None) -> "ScoreColumns":
        """Parse ``--score-column``: a comma list gives traits, anything else one score column."""
        if not score_column or "," not in score_column:
            return cls((), score_column)
        names = [t.strip() for t in score_column.split(",")]
        if any(not t for t in names):
            raise OptionError(f"--score-column {score_column!r}: an empty name in the comma list")
        dup = sorted({t for t in names if names.count(t) > 1})
        if dup:
            raise OptionError(f"--score-column {score_column!r}: trait(s) {', '.join(dup)} named twice")
        return cls(tuple(names), None)

    @property
    def names(self) -> tuple:
        """The K score names: the traits, or ``("score",)``."""
        return self.traits or (SCORE,)

    @property
    def k(self) -> int:
        return len(self.names)

    def suffixed(self, base: str) -> list[str]:
        """Column names of one kind of value: ``[base]`` for one score, ``[f"{base}_{trait}", ...]`` for traits."""
        return [f"{base}_{t}" for t in self.traits] or [base]

    @property
    def frame_columns(self) -> list[str]:
        """The normalized frame's gold columns: ``score``, or ``score_{trait}`` per trait."""
        return self.suffixed(SCORE)

    def user_columns(self, column: str = SCORE) -> list[str]:
        """The user's own names of those columns (for messages): the traits, or the one score column's name."""
        return list(self.traits) or [column]

    def pack(self, values, wrap=None):
        """Per-score values -> what the edges show: the one value for one score column, else ``{trait: value}``
        (passed through ``wrap`` where given). The one place where one score and K traits part ways."""
        values = list(values)
        return (wrap or dict)(dict(zip(self.traits, values))) if self.traits else values[0]

    def unpack(self, value) -> list:
        """The inverse of :meth:`pack`: a float, K values, or a ``{trait: value}`` dict -> a list of K values."""
        if isinstance(value, dict):
            return [value[t] for t in self.traits]
        return list(np.ravel(value))

    def matrix(self, frame) -> np.ndarray:
        """Gold scores exactly as read, (N, K) float64; NaN where a column is absent (unlabeled rows)."""
        cols = [frame[c].to_numpy(dtype=np.float64) if c in frame else np.full(len(frame), np.nan)
                for c in self.frame_columns]
        return np.stack(cols, axis=1)


def as_matrix(values, k: int | None = None) -> np.ndarray:
    """Scores of any shape ((N,), (N, K) or (K,)) as (N, K) float64; without ``k``, (N,) is one column and (N, K)
    stays as it is."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(-1, k if k is not None else values.shape[1] if values.ndim == 2 else 1)


def notes_shape(matrix: np.ndarray) -> np.ndarray:
    """(N, K) -> the shape the notes' tensors use (fairseq's regression head): (N,) when K == 1, else (N, K)."""
    return matrix[:, 0] if matrix.shape[1] == 1 else matrix


def has_trait_column(path) -> bool:
    """Whether a ``--score-ranges`` file has a ``trait`` column."""
    return "trait" in read_table(path).columns


def read_trait_ranges(path, traits) -> tuple[dict, dict]:
    """Read ``--score-ranges FILE`` with a ``trait`` column: columns trait, min, max, and optionally prompt, step.

    A row without a prompt column (or with an empty prompt cell) applies to every prompt (key ``"*"``).

    Returns:
        tuple[dict, dict]: ``{trait: {prompt or "*": (min, max)}}`` and ``{trait: step}`` (traits whose rows give one).
    """
    frame = read_table(path)
    for name in ("trait", "min", "max"):
        if name not in frame.columns:
            raise DataError(f"{path}: missing column {name!r} (--score-ranges); columns found: "
                            f"{[c for c in frame.columns if c != '_row']}")
    if not traits:
        raise OptionError(f"--score-ranges {path}: has a trait column, but --score-column names one score column; "
                          f"name the traits as --score-column a,b,c (or drop the trait column)")
    ranges, steps, seen = {}, {}, {}
    for _, r in frame.iterrows():
        trait, where = str(r["trait"]).strip(), f"{path}: row {r['_row']}"
        if trait not in traits:
            raise DataError(f"{where}: trait {trait!r} is not one of --score-column {','.join(traits)}")
        try:
            lo, hi = float(r["min"]), float(r["max"])
            step = float(r["step"]) if "step" in frame.columns and str(r["step"]).strip() else None
        except ValueError:
            raise DataError(f"{where}: min/max/step of trait {trait!r} are not numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"{where}: trait {trait!r} needs min < max, got {lo} .. {hi}")
        if step is not None and not (math.isfinite(step) and step > 0):
            raise DataError(f"{where}: trait {trait!r}: step must be positive, got {r['step']!r}")
        prompt = str(r["prompt"]).strip() if "prompt" in frame.columns else ""
        if (prompt or "*") in ranges.get(trait, {}):
            raise DataError(f"{where}: trait {trait!r}{f' of prompt {prompt!r}' if prompt else ''} is listed twice "
                            f"(rows {seen[trait, prompt]} and {r['_row']}); keep one row")
        seen[trait, prompt] = r["_row"]
        ranges.setdefault(trait, {})[prompt or "*"] = (lo, hi)
        if step is not None:
            steps[trait] = step
    return ranges, steps


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
