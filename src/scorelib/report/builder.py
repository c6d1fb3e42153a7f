"""``scorelib-report``: an evaluation report an assessment team can sign off, from scorelib's result files.

fairseq has no counterpart (its nearest is ``fairseq_cli/validate.py``); the report follows ETS's
RSMTool ``rsmeval`` (agreement, consistency, evaluation by group, fairness, true-score evaluation) and
the flags of Williamson, Xi and Breyer (2012). It reads a save dir's (or a CV dir's out-of-fold)
``results/result-{ckpt}-{split}.csv`` and ``prompts.json``, joins group and second-rater columns by key
from DATA where the result file lacks them, and writes ``report-{ckpt}-{split}.html`` and ``.json``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.data.prompts import PromptTable
from scorelib.data.readers import SUFFIXES, read_table
from scorelib.errors import DataError, MissingFileError, OptionError
from scorelib.hub.ensemble import is_cv_dir
from scorelib.report import assessment
from scorelib.report.html import render_html
from scorelib.report.rsmeval import write_rsmeval
from scorelib.writers import atomic_write, write_json

logger = logging.getLogger(__name__)

def locate(directory, split=None, results_path=None) -> dict:
    """Where a dir's result file is: ``{"dir", "cv", "split", "ckpt", "results", "file"}``."""
    d = Path(directory)
    if not d.is_dir():
        raise MissingFileError(f"{d}: not a folder; name a save dir of scorelib-train or a CV dir of scorelib-cv")
    cv = is_cv_dir(d)
    split = split or ("oof" if cv else "test")
    if split == "oof" and not cv:
        raise OptionError(f"--split oof: {d} is not a cross-validation dir (scorelib-cv); use --split test or valid")
    ckpt = ("cv" if split == "oof" else "ensemble") if cv else "checkpoint_best"
    results = Path(results_path) if results_path else d / "results"
    return {"dir": d, "cv": cv, "split": split, "ckpt": ckpt, "results": results,
            "file": results / f"result-{ckpt}-{split}.csv"}


def load_results(where: dict, data=None) -> pd.DataFrame:
    """The result file as text columns (a clear error naming the command to make it when it is missing)."""
    path = where["file"]
    if not path.is_file():
        how = f"scorelib-eval {where['dir']} --split {where['split']}" + (f" {data}" if data else "")
        why = "run scorelib-cv first" if where["split"] == "oof" else f"make it with: {how}"
        raise MissingFileError(f"{path}: result file not found; {why}")
    return read_table(path)


NA_TEXT = ("", "nan", "NaN", "NA", "N/A", "null")  # cells read as "no score"


def numbers(frame: pd.DataFrame, column: str, where) -> np.ndarray:
    """A column as float64 (blank or NA: NaN); a cell that is not a number is an error naming file, row and column."""
    if column not in frame:
        raise DataError(f"{where}: no column {column!r} (columns: {', '.join(c for c in frame if c != '_row')})")
    text = frame[column].astype(str).str.strip()
    blank = text.isin(NA_TEXT).to_numpy()
    values = pd.to_numeric(text.where(~blank, None), errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(np.isnan(values) & ~blank)
    if len(bad):
        i = bad[0]
        raise DataError(f"{where}: row {frame['_row'].iloc[i]}, column {column!r}: {text.iloc[i]!r} is not a number")
    return values


def read_data(data, key_column: str) -> pd.DataFrame:
    """DATA as text columns: one table, or the tables of a folder that have ``key_column``, pooled."""
    path = Path(data)
    if not path.is_dir():
        return read_table(path)
    tables = [read_table(p) for p in sorted(path.iterdir()) if p.suffix.lower() in SUFFIXES]
    tables = [t for t in tables if key_column in t]
    if not tables:
        raise DataError(f"{path}: no .csv, .tsv or .xlsx table in this folder has a column {key_column!r}; "
                        f"name the key column with --key-column")
    return pd.concat(tables, ignore_index=True)


def join_columns(frame: pd.DataFrame, columns: list[str], data, key_column: str, source) -> pd.DataFrame:
    """Add ``columns`` that ``frame`` lacks from DATA, matching ``frame['key']`` to DATA's ``key_column``."""
    missing = [c for c in columns if c not in frame]
    if not missing:
        return frame
    if data is None:
        raise OptionError(f"{source}: no column {missing[0]!r}; name the input table as DATA to join it by key "
                          f"(scorelib-report DIR DATA ...)")
    table = read_data(data, key_column)
    for col in [key_column] + missing:
        if col not in table:
            raise DataError(f"{data}: no column {col!r} (columns: {', '.join(c for c in table if c[0] != '_')})"
                            + ("; name the key column with --key-column" if col == key_column else ""))
    dup = table[key_column][table[key_column].duplicated()]
    if len(dup):
        raise DataError(f"{data}: column {key_column!r}: key {dup.iloc[0]!r} occurs more than once")
    lookup = table.set_index(key_column)
    absent = ~frame["key"].isin(lookup.index)
    if absent.any():
        raise DataError(f"{data}: column {key_column!r}: key {frame['key'][absent].iloc[0]!r} of {source} not found "
                        f"({int(absent.sum())} such keys)")
    return frame.assign(**{c: lookup.loc[frame["key"], c].to_numpy() for c in missing})


def evaluate_frame(frame: pd.DataFrame, table: PromptTable, groups=(), second=(), bootstrap=1000, seed=1,
                   source="results", min_n_per_group: int = assessment.MIN_N_PER_GROUP) -> dict:
    """The report's ``traits`` part: per trait, the section of all prompts together and one per prompt.

    Prompts of one range are pooled as they are; prompts of different ranges are pooled only on one 0-1 scale
    (each score as ``(score - min) / (max - min)`` of its prompt), where agreement, QWK, distributions and
    confusion matrices are left to each prompt's own section (``pooled_scale`` says which).

    Args:
        frame (pd.DataFrame): a result file's text columns (``key, prompt``; ``gold, pred, pred_rounded`` or
            ``gold_{t}, pred_{t}, pred_rounded_{t}`` per trait) plus the group and second-score columns.
        table (PromptTable): the save dir's prompts (ranges, step, cut-points, traits).
        groups (list[str]): group columns. second (list[str]): second-score columns, one per trait (or none).
        min_n_per_group (int): RSMTool's ``min_n_per_group``: smaller groups get N and means only.
    """
    out = {}
    for k, (trait, view) in enumerate(table.views.items()):
        cols = [table.scores.suffixed(c)[k] for c in ("gold", "pred", "pred_rounded")]
        gold, pred, rounded = (numbers(frame, c, source) for c in cols)
        keep = np.isfinite(gold)
        if np.isnan(pred[keep]).any():
            raise DataError(f"{source}: column {cols[1]!r}: empty on a labeled row")
        prompts = frame["prompt"].astype(str).to_numpy(dtype=object)
        nearest = view.without_cutpoints().round(pred, prompts) if view.cutpoints else None
        h2 = numbers(frame, second[k], source) if second else None
        grp = {c: frame[c].astype(str).str.strip().to_numpy(dtype=object) for c in groups}

        def sec(rows, scope, pids, scaled=False):
            if scaled:  # prompts of different ranges: every score on the 0-1 scale, no rubric points
                s01 = lambda x: view.scale(x[rows], prompts[rows])  # noqa: E731
                return assessment.section(s01(gold), s01(pred), s01(rounded), prompts[rows], None, None, None,
                                          None if h2 is None else s01(h2), {c: g[rows] for c, g in grp.items()},
                                          bootstrap, assessment.seed_for(seed, trait, scope), min_n_per_group)
            pts = assessment.rubric_points([view.ranges[p] for p in pids], view.step) if view.step else None
            return assessment.section(gold[rows], pred[rows], rounded[rows], prompts[rows], pts, view.step,
                             None if nearest is None else nearest[rows], None if h2 is None else h2[rows],
                             {c: g[rows] for c, g in grp.items()}, bootstrap, assessment.seed_for(seed, trait, scope),
                             min_n_per_group)
        pids = [p for p in view.ids if (prompts[keep] == p).any()]
        ranges = sorted({tuple(view.ranges[p]) for p in pids})
        scaled = len(ranges) > 1
        overall = sec(keep, "overall", pids, scaled)
        overall["scale"] = "0-1" if scaled else "own"
        out[trait] = {"n_unlabeled": int((~keep).sum()), "overall": overall,
                      "pooled_scale": ("one 0-1 scale: prompts of different ranges (" + ", ".join(f"{a:g}-{b:g}" for a, b in ranges)
                                       + ") pooled as (score - min) / (max - min); QWK, agreement and distributions "
                                         "per prompt only") if scaled else
                                      (f"their own scale: every prompt's range is {ranges[0][0]:g}-{ranges[0][1]:g}" if ranges
                                       else "their own scale"),
                      "per_prompt": {p: sec(keep & (prompts == p), p, [p]) for p in pids}}
    return out


def report_of(frame: pd.DataFrame, table: PromptTable, group_columns=(), second_score_columns=(), bootstrap=1000,
              seed=1, source=None, min_n_per_group: int = assessment.MIN_N_PER_GROUP) -> dict:
    """The report of a result frame already in memory (what :func:`make_report` writes, before JSON).

    Args:
        frame (pd.DataFrame): a result file's columns (``key, prompt``, ``gold, pred, pred_rounded`` or per trait
            ``gold_{t}, pred_{t}, pred_rounded_{t}``) plus the group and second-score columns named below.
        table (PromptTable): ranges, step and cut-points. Others as :func:`make_report`.

    Returns:
        dict: ``source``, ``thresholds``, ``traits`` (per trait: ``overall`` and ``per_prompt`` sections),
        ``flags`` and ``warnings`` (sections of fewer than ``MIN_ROWS`` rows).
    """
    report = {"source": dict(source or {}, group_columns=list(group_columns),
                             second_score_columns=list(second_score_columns), bootstrap=bootstrap, seed=seed,
                             min_n_per_group=min_n_per_group),
              "thresholds": dict(assessment.THRESHOLDS, min_rows=assessment.MIN_ROWS),
              "traits": evaluate_frame(frame, table, list(group_columns), list(second_score_columns), bootstrap, seed,
                                       (source or {}).get("results_file", "results"), min_n_per_group)}
    report["flags"] = assessment.flags(report)
    report["warnings"] = assessment.warnings(report)
    for w in report["warnings"]:
        logger.warning("report [%s, %s]: %s", w["trait"], w["scope"], w["en"])
    return report


def make_report(directory, data=None, split=None, group_columns=(), second_score_columns=(), key_column="key",
                bootstrap=1000, seed=1, results_path=None, rsmeval_dir=None,
                min_n_per_group: int = assessment.MIN_N_PER_GROUP) -> dict:
    """Write ``report-{ckpt}-{split}.html`` and ``.json`` beside the result files of a save dir or CV dir.

    Args:
        directory (str | os.PathLike): a save dir (``checkpoint_best``) or a CV dir (``cv``: out-of-fold rows).
        data (str | os.PathLike | None): the input table (or a folder of tables) to join missing columns from.
        split (str | None): default ``test`` (``oof`` for a CV dir).
        group_columns, second_score_columns (Sequence[str]): as ``--group-column`` / ``--second-score-column``.
        key_column (str): DATA's key column. bootstrap (int): resamples; seed (int): their seed.
        results_path: folder of the result files (default ``DIR/results``). rsmeval_dir: also write rsmeval inputs.
        min_n_per_group (int): RSMTool's ``min_n_per_group``: a smaller group gets N and means only, no DSM flag.

    Returns:
        dict: ``report`` (the JSON's content), ``html`` and ``json`` (paths), ``rsmeval`` (paths written).
    """
    if bootstrap < 0:
        raise OptionError(f"--bootstrap {bootstrap}: must be 0 (no intervals) or more")
    if min_n_per_group < 1:
        raise OptionError(f"--min-n-per-group {min_n_per_group}: must be 1 or more")
    where = locate(directory, split, results_path)
    table = PromptTable.load(where["dir"] / "prompts.json")
    frame = load_results(where, data)
    second = list(second_score_columns)
    if second and len(second) != table.num_traits:
        raise OptionError(f"--second-score-column {','.join(second)}: give one column per trait "
                          f"({', '.join(table.scores.names)}), in that order")
    frame = join_columns(frame, list(group_columns) + second, data, key_column, where["file"])
    report = report_of(frame, table, group_columns, second, bootstrap, seed,
                       {"dir": str(where["dir"]), "results_file": str(where["file"]), "split": where["split"],
                        "checkpoint": where["ckpt"], "cross_validation": where["cv"], "data": data and str(data)},
                       min_n_per_group)
    tag = f"{where['ckpt']}-{where['split']}"
    where["results"].mkdir(parents=True, exist_ok=True)
    paths = {"json": where["results"] / f"report-{tag}.json", "html": where["results"] / f"report-{tag}.html"}
    write_json(report, paths["json"])
    html = render_html(report, title=f"{where['dir'].name} · {where['ckpt']} · {where['split']}")
    atomic_write(paths["html"], lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))
    written = write_rsmeval(frame, table, rsmeval_dir, list(group_columns), second, tag) if rsmeval_dir else []
    return {"report": report, **paths, "rsmeval": written}

