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
from dataclasses import dataclass

import numpy as np

from scorelib.errors import DataError, OptionError
from scorelib.data.readers import read_table

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


def as_matrix(values, k: int) -> np.ndarray:
    """Scores of any shape ((N,), (N, K) or (K,)) as (N, K) float64."""
    return np.asarray(values, dtype=np.float64).reshape(-1, k)


def seed_shape(matrix: np.ndarray) -> np.ndarray:
    """(N, K) -> the shape the seed's tensors use (fairseq's regression head): (N,) when K == 1, else (N, K)."""
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
