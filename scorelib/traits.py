"""Several trait scores per text: the names, the gold columns and the ranges file's ``trait`` column.

fairseq's counterpart is ``sentence_prediction`` with ``--regression-target --num-classes K``
(``fairseq/tasks/sentence_prediction.py``): one head with K regression outputs. Here
``--score-column cohesion,syntax`` names the K traits; each trait's gold scores sit in a frame
column ``score_{trait}`` (a single score column keeps the one ``score`` column, as before).
This module holds only those names and readers; it imports no other scorelib module but
:mod:`scorelib.errors` and :mod:`scorelib.readers`, so that the tables, the prompt table and
the dataset can all use it.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DataError, OptionError
from .readers import read_table


def parse_traits(score_column: str | None) -> list[str]:
    """The traits named by ``--score-column a,b,c``; ``[]`` for a single score column (or none)."""
    if not score_column or "," not in score_column:
        return []
    names = [t.strip() for t in score_column.split(",")]
    if any(not t for t in names):
        raise OptionError(f"--score-column {score_column!r}: an empty name in the comma list")
    dup = sorted({t for t in names if names.count(t) > 1})
    if dup:
        raise OptionError(f"--score-column {score_column!r}: trait(s) {', '.join(dup)} named twice")
    return names


def gold_column(trait: str) -> str:
    """The frame column holding one trait's gold scores."""
    return f"score_{trait}"


def score_matrix(frame, traits: list[str]) -> np.ndarray:
    """Gold scores exactly as read: (N,) from ``score`` without traits, else (N, K), NaN where a column is absent."""
    if not traits:
        return frame["score"].to_numpy(dtype=np.float64)
    cols = [frame[gold_column(t)].to_numpy(dtype=np.float64) if gold_column(t) in frame
            else np.full(len(frame), np.nan) for t in traits]
    return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))


def has_trait_column(path) -> bool:
    """Whether a ``--score-ranges`` file has a ``trait`` column."""
    return "trait" in read_table(path).columns


def read_trait_ranges(path, traits: list[str]) -> tuple[dict, dict]:
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
    ranges, steps = {}, {}
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
        ranges.setdefault(trait, {})[prompt or "*"] = (lo, hi)
        if step is not None:
            steps[trait] = step
    return ranges, steps
