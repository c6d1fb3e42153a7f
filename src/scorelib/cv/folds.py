"""Folds of a cross-validation: which fold predicts each row, drawn stratified or read from a column.

No fairseq counterpart (fairseq trains one split); :func:`scorelib.cli.cv.cross_validate` trains one run per fold.
Folds are
drawn with scikit-learn's ``StratifiedKFold``, stratified by prompt and by score within a prompt, or
taken as a table gives them (``--fold-column``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scorelib.data.prompts import PromptTable
from scorelib.data.readers import read_table
from scorelib.data.tables import natural_key
from scorelib.errors import DataError, OptionError


def strata(frame: pd.DataFrame, table: PromptTable, k: int) -> np.ndarray:
    """Stratum of each row: prompt and score (rubric point, or quantile bin of a continuous score).

    With traits, the score is the mean of the row's trait scores, binned as a continuous score.
    Score strata with fewer than ``k`` rows are merged into their prompt's largest stratum.
    """
    scores = table.scores.matrix(frame).mean(axis=1)  # one score: itself
    out = np.empty(len(frame), dtype=object)
    for pid, rows in frame.groupby("prompt").indices.items():
        if len(rows) < k:
            raise DataError(f"prompt {pid!r} has {len(rows)} rows, fewer than --folds {k}; lower --folds or "
                            f"leave it out with --prompts")
        score = scores[rows]
        if table.step is not None:  # rubric points (several traits have no common step: their mean is binned)
            label = np.round((score - table.ranges[pid][0]) / table.step).astype(np.int64)
        else:
            bins = max(1, min(5, len(rows) // k))
            label = pd.qcut(pd.Series(score).rank(method="first"), bins, labels=False).to_numpy()
        counts = pd.Series(label).value_counts()
        label = np.where(counts.loc[label].to_numpy() < k, counts.idxmax(), label)
        out[rows] = [f"{pid}|{v}" for v in label]
    return out


def assign_folds(frame: pd.DataFrame, table: PromptTable, k: int, seed: int) -> np.ndarray:
    """Fold number (0 .. k-1) of each row: scikit-learn's ``StratifiedKFold`` over :func:`strata`."""
    from sklearn.model_selection import StratifiedKFold

    if k < 2:
        raise OptionError(f"--folds must be at least 2, got {k}")
    folds = np.empty(len(frame), dtype=np.int64)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, held) in enumerate(skf.split(np.zeros(len(frame)), strata(frame, table, k))):
        folds[held] = i
    return folds


def given_folds(frame: pd.DataFrame, args) -> np.ndarray:
    """``--fold-column NAME``: the folds the table holds, numbered 0 .. K-1 in their natural order."""
    if args.data is None:
        raise OptionError("--fold-column needs DATA; the demo data has no fold column")
    values = []
    for file, rows in frame.groupby("_file", sort=False).indices.items():
        raw = read_table(file, args.encoding, sheet=args.sheet)
        if args.fold_column not in raw.columns:
            raise DataError(f"{file}: missing column {args.fold_column!r} (--fold-column)")
        by_row = dict(zip(raw["_row"], raw[args.fold_column].astype(str).str.strip()))
        values.append(pd.Series([by_row[r] for r in frame["_row"].iloc[rows]], index=rows))
    values = pd.concat(values).sort_index()
    if (values == "").any():
        raise DataError(f"--fold-column {args.fold_column!r}: empty fold at row(s) "
                        f"{frame['_row'][(values == '').to_numpy()].tolist()[:5]}")
    ids = sorted(values.unique(), key=natural_key)
    if args.folds is not None and args.folds != len(ids):
        raise OptionError(f"--folds {args.folds}, but --fold-column {args.fold_column!r} holds {len(ids)} folds "
                          f"({', '.join(ids)})")
    if len(ids) < 2:
        raise DataError(f"--fold-column {args.fold_column!r}: a single fold ({ids[0]!r}); need at least 2")
    return values.map({v: i for i, v in enumerate(ids)}).to_numpy(np.int64)
